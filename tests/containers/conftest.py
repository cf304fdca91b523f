"""Real containers of the images `make images` builds, over real HTTP on loopback (host network).

Run by `make test-containers` (CI's step after `make test`); skipped with a one-line reason where no Docker
engine answers or the images are not built.
"""

import json
import subprocess
import time
from contextlib import contextmanager

import httpx
import pytest

from tests.service_helpers import free_port

SERVING_IMAGE = "rescale:cpu"
TRAINING_IMAGE = "rescale:train-cpu"
PROMETHEUS_IMAGE = "rescale-prometheus:debian"
READ_ONLY = ["--read-only", "--tmpfs", "/tmp"]  # as k8s/ declares the pod: read-only root, an emptyDir on /tmp


def docker(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed ({result.returncode}): {result.stderr[-2000:]}")
    return result


@pytest.fixture(scope="session", autouse=True)
def engine_and_images() -> None:
    try:
        engine = subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        engine = False
    if not engine:
        pytest.skip("no Docker engine answers here (make test-containers starts one where it can)")
    missing = [
        i
        for i in (SERVING_IMAGE, TRAINING_IMAGE, PROMETHEUS_IMAGE)
        if docker("image", "inspect", i, check=False).returncode
    ]
    if missing:
        pytest.skip(f"images not built: {', '.join(missing)} (make images)")


def wait_ready(base: str, container: str, timeout_s: float = 120) -> float:
    """Seconds until /readyz answers 200; fails with the container's log when it exits or never gets there."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return time.monotonic() - started
        except httpx.TransportError:
            pass
        state = docker("inspect", "-f", "{{.State.Running}}", container, check=False).stdout.strip()
        if state == "false":
            break
        time.sleep(0.1)
    logs = docker("logs", container, check=False)
    raise AssertionError(f"{container} never got ready: {(logs.stdout + logs.stderr)[-3000:]}")


@contextmanager
def serving(*options: str, env: dict[str, str] | None = None, image: str = SERVING_IMAGE):
    """A serving container on a free loopback port: yields (base URL, container id, seconds to ready)."""
    port = free_port()
    variables = {"RESCALE_PORT": str(port), "RESCALE_HOST": "127.0.0.1", **(env or {})}
    env_args = [a for k, v in variables.items() for a in ("-e", f"{k}={v}")]
    container = docker("run", "-d", "--network", "host", *env_args, *options, image).stdout.strip()
    try:
        base = f"http://127.0.0.1:{port}"
        yield base, container, wait_ready(base, container)
    finally:
        docker("rm", "-f", container, check=False)


def weights_dirs(*folders: str) -> str:
    return json.dumps(list(folders))
