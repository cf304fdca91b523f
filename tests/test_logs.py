"""Request ids in responses and in every log line of a real `rescale serve` (JSON logs)."""

import json

import httpx
import numpy as np

from tests.service_helpers import png_bytes, rescale_serve


def test_request_ids_are_echoed_and_in_every_json_log_line():
    with rescale_serve(RESCALE_LOG_FORMAT="json") as (base, process):
        image = png_bytes(np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8))
        given = httpx.post(
            f"{base}/downscale",
            params={"scale": 2, "mode": "plain"},
            content=image,
            headers={"content-type": "image/png", "x-request-id": "cdn-7f3a.42"},
        )
        assert given.status_code == 200 and given.headers["x-request-id"] == "cdn-7f3a.42"
        made = httpx.post(f"{base}/upscale", content=b"not an image", headers={"content-type": "image/png"})
        assert made.status_code == 415 and len(made.headers["x-request-id"]) == 32  # a uuid4, hex
        hostile = httpx.get(f"{base}/healthz", headers={"x-request-id": "a b\tc" + "x" * 300})
        assert hostile.headers["x-request-id"] != "a b\tc" + "x" * 300  # replaced, not echoed
        process.terminate()
        output, _ = process.communicate(timeout=60)
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert lines and len(lines) == len([line for line in output.splitlines() if line.strip()]), output[-2000:]
    access = [line for line in lines if line["name"] == "uvicorn.access"]
    assert any(line["request_id"] == "cdn-7f3a.42" and "/downscale" in line["message"] for line in access)
    assert any(line["request_id"] == made.headers["x-request-id"] and "415" in line["message"] for line in access)
    assert all({"asctime", "level", "request_id", "name", "message"} <= set(line) for line in lines)
