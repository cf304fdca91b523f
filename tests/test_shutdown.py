"""SIGTERM on a real `rescale serve`: one drain budget, and every request finishes or gets a clean 503."""

import signal
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from tests.service_helpers import png_bytes, rescale_serve

DRAIN_S = 3


@pytest.fixture
def server():
    with rescale_serve(
        RESCALE_DRAIN_TIMEOUT_S=str(DRAIN_S), RESCALE_MAX_BATCH_SIZE="1", RESCALE_LOG_LEVEL="warning"
    ) as (base, process):
        yield base, process


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

    # the model loads (and converts its graphs) on its first request: done before the drain is measured
    assert downscale(None).status_code == 200
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
