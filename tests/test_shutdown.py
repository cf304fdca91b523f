"""SIGTERM on a real `rescale serve`: one drain budget, and every request finishes or gets a clean 503."""

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from tests.conftest import ROOT
from tests.service_helpers import free_port, png_bytes

DRAIN_S = 3


@pytest.fixture
def server():
    port = free_port()
    env = os.environ | {
        "RESCALE_WEIGHTS_DIRS": json.dumps([str(ROOT / "models" / "weights" / "irn-x2")]),
        "RESCALE_INCLUDE_SHIPPED_WEIGHTS": "false",
        "RESCALE_DRAIN_TIMEOUT_S": str(DRAIN_S),
        "RESCALE_TORCH_THREADS": "1",
        "RESCALE_MAX_BATCH_SIZE": "1",
        "RESCALE_LOG_LEVEL": "warning",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "models", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.2)
    else:
        process.kill()
        pytest.fail(f"the server did not start: {process.communicate()[0][-2000:]}")
    yield base, process
    if process.poll() is None:
        process.kill()
        process.wait()


def test_sigterm_drains_within_one_budget_and_answers_every_request(server):
    base, process = server
    image = png_bytes(np.random.default_rng(0).integers(0, 256, (640, 640, 3), dtype=np.uint8))

    def downscale(_):
        try:
            return httpx.post(
                f"{base}/downscale",
                params={"scale": 2, "mode": "plain"},
                content=image,
                headers={"content-type": "image/png"},
                timeout=60,
            )
        except httpx.TransportError as exc:  # a connection cut without an answer
            return exc

    with ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(downscale, i) for i in range(6)]  # queued one input at a time: ~6 x 2 s of work
        time.sleep(1.5)
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        responses = [f.result() for f in futures]
    process.wait(timeout=DRAIN_S + 10)
    exited_after = time.monotonic() - signalled
    output = process.stdout.read()

    assert all(isinstance(r, httpx.Response) for r in responses), responses
    statuses = sorted(r.status_code for r in responses)
    assert set(statuses) <= {200, 503}, (statuses, output[-2000:])
    assert 503 in statuses, statuses  # 12 s of queued work cannot finish in a 3 s drain
    for r in responses:
        if r.status_code == 503:
            assert r.json()["code"] == "shutting_down" and r.headers["retry-after"]
    assert exited_after < DRAIN_S + 4, exited_after  # one drain budget, not two
    assert "Traceback" not in output, output[-3000:]
