"""`docker-compose up` of the CPU profile: the service and a Prometheus that scrapes it, on a compose network."""

import os
import subprocess
import time

import httpx
import pytest

from tests.conftest import ROOT
from tests.containers.conftest import PROMETHEUS_IMAGE
from tests.containers.test_serving_image import photo_png
from tests.service_helpers import free_port

pytestmark = pytest.mark.containers  # make test-containers

PROJECT = "rescale-test"


def compose(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    command = ["docker-compose", "-p", PROJECT, "--profile", "cpu", *args]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=os.environ | env, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(command)}: {result.stderr[-3000:]}"
    return result


def eventually(check, what: str, timeout_s: float = 120):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if (value := check()) is not None:
                return value
        except httpx.TransportError:
            pass
        time.sleep(1)
    pytest.fail(f"{what} did not happen within {timeout_s:.0f} s")


@pytest.fixture(scope="module")
def stack():
    env = {
        "PROMETHEUS_IMAGE": PROMETHEUS_IMAGE,
        "HOST_PORT": str(free_port()),
        "PROMETHEUS_HOST_PORT": str(free_port()),
    }
    compose("up", "-d", "rescale-cpu", "prometheus-cpu", env=env)
    try:
        yield f"http://127.0.0.1:{env['HOST_PORT']}", f"http://127.0.0.1:{env['PROMETHEUS_HOST_PORT']}"
    finally:
        logs = compose("logs", "--no-color", "--tail", "30", env=env).stdout
        compose("down", "-v", env=env)
        print(logs[-4000:])


def query(prometheus: str, expression: str) -> list[dict]:
    answer = httpx.get(f"{prometheus}/api/v1/query", params={"query": expression}, timeout=5).json()
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


def test_prometheus_scrapes_the_service_and_loads_the_alert_rules(stack):
    service, prometheus = stack
    eventually(lambda: httpx.get(f"{service}/readyz", timeout=2).status_code == 200 or None, "the service ready")
    # the first scrape may come before the service listened: up goes 0 -> 1
    up = eventually(lambda: query(prometheus, 'up{job="rescale"} == 1') or None, "a successful scrape")
    assert [sample["metric"]["instance"] for sample in up] == ["rescale-cpu:8000"]

    def requests_counted() -> float | None:
        samples = query(prometheus, 'sum(rescale_requests_total{endpoint="/downscale"})')
        return float(samples[0]["value"][1]) if samples else None

    before = requests_counted() or 0.0
    answer = httpx.post(f"{service}/downscale?scale=4", files={"image": photo_png(160, 120)}, timeout=120)
    assert answer.status_code == 200, answer.text
    eventually(lambda: (requests_counted() or 0) > before or None, "the request counted in Prometheus")

    rules = httpx.get(f"{prometheus}/api/v1/rules", timeout=5).json()["data"]["groups"]
    names = {rule["name"] for group in rules for rule in group["rules"]}
    assert {"RescaleTargetDown", "RescaleTargetAbsent"} <= names, names
    assert all(rule["health"] == "ok" for group in rules for rule in group["rules"])
