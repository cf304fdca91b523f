"""A real Prometheus server (Debian's package, installed by .ci/run) scrapes /metrics."""

import subprocess
import time

import httpx

from tests.external_tools import tool
from tests.service_helpers import free_port, png_bytes


def test_prometheus_scrapes_the_service(url, tmp_path, photo):
    prometheus = tool("prometheus")
    target = url.removeprefix("http://")
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n"
        f"scrape_configs:\n  - job_name: rescale\n    static_configs:\n      - targets: ['{target}']\n"
    )
    port = free_port()
    proc = subprocess.Popen(
        [
            prometheus,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        httpx.post(f"{url}/downscale", files={"image": ("x.png", png_bytes(photo), "image/png")}, params={"scale": 2})
        api = f"http://127.0.0.1:{port}/api/v1/query"
        deadline, series = time.monotonic() + 60, []
        while time.monotonic() < deadline and not series:
            time.sleep(1)
            try:
                answer = httpx.get(api, params={"query": 'rescale_requests_total{endpoint="/downscale"}'}).json()
                series = answer["data"]["result"]
            except (httpx.HTTPError, KeyError, ValueError):
                continue
        assert series, "Prometheus never returned the service's series"
        assert series[0]["metric"]["job"] == "rescale" and float(series[0]["value"][1]) >= 1
        up = httpx.get(api, params={"query": "up{job='rescale'}"}).json()["data"]["result"]
        assert up[0]["value"][1] == "1"
    finally:
        proc.terminate()
        proc.wait(10)
