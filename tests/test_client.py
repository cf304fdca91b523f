"""service.client against a real `rescale serve` on loopback, and against stub servers for retries and failures."""

import asyncio
import io
import json
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from PIL import Image

from models.store.registry import weights_id
from service.client import (
    AsyncClient,
    BadRequest,
    Client,
    Overloaded,
    RescaleError,
    ServerError,
    TransportFailure,
    Unauthorized,
)
from tests.conftest import ROOT
from tests.service_helpers import png_bytes, rescale_serve

API_KEY = "client-test-key"
X2 = {"scale": 2, "mode": "plain"}  # the served model: the shipped x2 IRN alone
NOT_RESCALED = (
    "this image has no rescale header (not made by /downscale, or its metadata was stripped); "
    "pass best_effort=true with scale (and mode/model) to upscale it with z = 0"
)


@pytest.fixture(scope="module")
def served():
    """One `rescale serve` for the module (it takes about a minute to become ready), requiring an API key."""
    with rescale_serve(RESCALE_API_KEYS=json.dumps([API_KEY])) as (base, _):
        yield base


@pytest.fixture
def service(served):
    with Client(served, api_key=API_KEY, timeout=120) as client:
        yield client


def decoded(data: bytes) -> np.ndarray:
    return np.array(Image.open(io.BytesIO(data)).convert("RGB"))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255**2 / mse))


# -- against the real service ---------------------------------------------------------------------


def test_round_trip_from_a_path_bytes_and_a_file_object(service, photo, tmp_path):
    source = tmp_path / "photo.png"
    source.write_bytes(png_bytes(photo))
    with source.open("rb") as file:
        smalls = [service.downscale(source, **X2), service.downscale(str(source), **X2)]
        smalls += [service.downscale(source.read_bytes(), **X2), service.downscale(file, **X2)]
    assert len({small.content for small in smalls}) == 1  # deterministic, whatever the input was
    small = smalls[0]
    assert small.media_type == "image/png"
    assert (small.variant, small.scale, small.original_size) == ("irn", 2, (70, 90))
    assert small.weights_id == weights_id(ROOT / "models" / "weights" / "irn-x2")
    assert small.degraded == () and small.input_alpha is None
    assert small.request_id and small.etag.startswith('"') and "total" in small.server_timing
    assert Image.open(io.BytesIO(small.content)).size == (35, 45)

    big = service.upscale(small.content)
    assert (big.media_type, big.variant, big.scale, big.original_size) == ("image/png", "irn", 2, (70, 90))
    restored = decoded(big.save(tmp_path / "restored.png").read_bytes())
    assert restored.shape == photo.shape
    assert psnr(restored, photo) > 30  # the shipped IRN brings the photo back, not merely an image of its size


def test_upscale_parameters_reach_the_service(service, photo):
    best = service.upscale(png_bytes(photo[:44, :34]), best_effort=True, scale=2, format="jpeg", quality=80)
    assert best.media_type == "image/jpeg" and best.original_size == (68, 88)
    assert best.degraded == ("metadata_missing",)


def test_the_api_key_is_required(served, photo):
    with Client(served, timeout=30) as anonymous, pytest.raises(Unauthorized) as refused:
        anonymous.downscale(png_bytes(photo), **X2)
    error = refused.value
    assert (error.status, error.code) == (401, "unauthorized")
    assert error.message == "missing or unknown API key: send it as 'Authorization: Bearer KEY' or 'X-API-Key: KEY'"
    assert error.request_id
    with Client(served, api_key="wrong", timeout=30) as wrong, pytest.raises(Unauthorized):
        wrong.downscale(png_bytes(photo), **X2)


def test_a_refused_image_raises_the_service_code_and_message(service, photo):
    with pytest.raises(BadRequest) as refused:
        service.upscale(png_bytes(photo))
    error = refused.value
    assert (error.status, error.code, error.message) == (422, "not_rescaled", NOT_RESCALED)
    assert str(error) == f"422 not_rescaled: {NOT_RESCALED}"


def test_a_bad_parameter_names_its_field(service, photo):
    with pytest.raises(BadRequest) as refused:
        service.downscale(png_bytes(photo), scale=2, quality=0)
    error = refused.value
    assert (error.status, error.code, error.field) == (422, "invalid_parameter", "quality")
    assert error.message == "quality: Input should be greater than or equal to 1"


def test_the_async_client_round_trip(served, photo):
    async def round_trip():
        async with AsyncClient(served, api_key=API_KEY, timeout=120) as client:
            small = await client.downscale(png_bytes(photo), **X2)
            return small, await client.upscale(small.content)

    small, big = asyncio.run(round_trip())
    assert (small.variant, small.scale, small.original_size) == ("irn", 2, (70, 90))
    assert decoded(big.content).shape == photo.shape


# -- against stub servers -----------------------------------------------------------------------------


@contextmanager
def stub_server(answers: list[tuple[int, dict[str, str], bytes]]):
    """An HTTP server on loopback that gives `answers` in turn (the last one again once they run out); yields
    (base URL, the times the requests arrived)."""
    arrivals: list[float] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            arrivals.append(time.monotonic())
            status, headers, body = answers[min(len(arrivals), len(answers)) - 1]
            self.send_response(status)
            for name, value in {"Content-Length": str(len(body)), **headers}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", arrivals
    finally:
        server.shutdown()
        server.server_close()


def busy(retry_after: str | None = "1", status: int = 503) -> tuple[int, dict[str, str], bytes]:
    headers = {"Content-Type": "application/json", "X-Request-ID": "busy-1"}
    if retry_after is not None:
        headers["Retry-After"] = retry_after
    return status, headers, json.dumps({"code": "queue_full", "message": "the service is busy"}).encode()


PNG_ANSWER = (200, {"Content-Type": "image/png", "X-Rescale-Scale": "4", "X-Rescale-Original-Size": "8x4"}, b"png")


def test_a_503_is_retried_after_its_retry_after():
    with stub_server([busy(), busy(), PNG_ANSWER]) as (base, arrivals), Client(base, timeout=30) as client:
        start = time.monotonic()
        result = client.downscale(b"image")
        elapsed = time.monotonic() - start
    assert len(arrivals) == 3
    assert 2.0 <= elapsed < 6.0
    assert all(b - a >= 0.95 for a, b in zip(arrivals, arrivals[1:], strict=False))
    assert (result.content, result.scale, result.original_size, result.degraded) == (b"png", 4, (8, 4), ())


def test_retry_after_is_capped_and_a_429_is_retried_too():
    with stub_server([busy("3600", status=429), PNG_ANSWER]) as (base, arrivals):
        with Client(base, timeout=30, max_retry_wait=0.3) as client:
            start = time.monotonic()
            assert client.upscale(b"small").content == b"png"
            assert time.monotonic() - start < 3.0
    assert len(arrivals) == 2


def test_a_service_still_busy_after_the_retries_raises_overloaded():
    with stub_server([busy("0")]) as (base, arrivals), Client(base, timeout=30, retries=2) as client:
        with pytest.raises(Overloaded) as busy_error:
            client.downscale(b"image")
    assert len(arrivals) == 3  # the call and two retries, never more
    error = busy_error.value
    assert (error.status, error.code, error.message, error.request_id) == (
        503,
        "queue_full",
        "the service is busy",
        "busy-1",
    )


def test_a_retry_after_past_the_budget_fails_at_once():
    with stub_server([busy("20")]) as (base, arrivals), Client(base, timeout=5, max_retry_wait=60) as client:
        start = time.monotonic()
        with pytest.raises(Overloaded):
            client.downscale(b"image")
        assert time.monotonic() - start < 2.0
    assert len(arrivals) == 1


@pytest.mark.parametrize(
    ("answer", "error_type", "code"),
    [
        ((500, {}, b"<html>proxy error</html>"), ServerError, "http_500"),
        ((504, {"Content-Type": "application/json"}, b'{"code": "deadline_exceeded", "message": "late"}'), ServerError,
         "deadline_exceeded"),
        ((403, {}, b"forbidden"), Unauthorized, "http_403"),
        ((413, {}, b'{"code": "upload_too_large", "message": "big"}'), BadRequest, "upload_too_large"),
        ((302, {"Location": "/elsewhere"}, b""), RescaleError, "http_302"),
    ],
)  # fmt: skip
def test_other_answers_are_not_retried_and_map_to_their_family(answer, error_type, code):
    with stub_server([answer]) as (base, arrivals), Client(base, timeout=10) as client:
        with pytest.raises(error_type) as failed:
            client.downscale(b"image")
    assert type(failed.value) is error_type and failed.value.code == code and failed.value.status == answer[0]
    assert len(arrivals) == 1


def test_a_dead_address_fails_within_the_timeout():
    with socket.socket() as placeholder:  # a loopback port that nothing listens on
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]
    with Client(f"http://127.0.0.1:{port}", timeout=3, retries=10, max_retry_wait=1) as client:
        start = time.monotonic()
        with pytest.raises(TransportFailure) as failed:
            client.downscale(b"image")
        elapsed = time.monotonic() - start
    assert 0.5 < elapsed < 4.0  # it backed off and retried, then gave up inside the budget
    error = failed.value
    assert (error.status, error.code) == (None, "connection_failed")
    assert error.message.startswith(f"http://127.0.0.1:{port}/downscale: ConnectError")


def test_a_silent_server_fails_when_the_budget_is_spent():
    with socket.socket() as silent:  # accepts connections (the backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        base = f"http://127.0.0.1:{silent.getsockname()[1]}"
        with Client(base, timeout=1.5) as client:
            start = time.monotonic()
            with pytest.raises(TransportFailure) as failed:
                client.downscale(b"image")
            elapsed = time.monotonic() - start
    assert 1.4 < elapsed < 3.0
    assert failed.value.code == "timeout"


def test_the_async_client_retries_too():
    async def call(base):
        async with AsyncClient(base, timeout=30) as client:
            return await client.downscale(b"image")

    with stub_server([busy("0.2"), PNG_ANSWER]) as (base, arrivals):
        assert asyncio.run(call(base)).content == b"png"
    assert len(arrivals) == 2


def test_inputs_of_the_wrong_kind_are_a_type_error(tmp_path):
    text = tmp_path / "note.txt"
    text.write_text("x")
    with Client("http://127.0.0.1:9", timeout=1) as client:
        with pytest.raises(TypeError, match="binary mode"), text.open() as opened:
            client.downscale(opened)
        with pytest.raises(TypeError, match="not int"):
            client.downscale(42)
        with pytest.raises(TypeError, match="downscale\\(\\) got an unexpected keyword argument 'scael'"):
            client.downscale(b"\x89PNG", scael=2)  # a typo never silently takes the default
        with pytest.raises(TypeError, match="upscale\\(\\) got an unexpected keyword argument 'transparency'"):
            client.upscale(b"\x89PNG", transparency="refuse")  # /downscale's, not /upscale's

    async def typo():
        async with AsyncClient("http://127.0.0.1:9", timeout=1) as client:
            await client.downscale(b"\x89PNG", qualty=80)

    with pytest.raises(TypeError, match="downscale\\(\\) got an unexpected keyword argument 'qualty'"):
        asyncio.run(typo())


def test_the_client_imports_without_torch():
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from service.client import AsyncClient, Client\n"
        "heavy = sorted(m for m in ('numpy', 'PIL', 'fastapi', 'models') if m in sys.modules)\n"
        "print(heavy)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
