"""The service through real HTTP against uvicorn on loopback."""

import io
import re
import struct
import time
import zlib
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from PIL import Image

from models.cli import main
from models.networks.rescaler import Rescaler
from models.store.checkpoint import save_model
from models.store.registry import weights_id
from tests.conftest import perturbed, tiny_config
from tests.service_helpers import OVERLAP, TILE, png_bytes, running_server, settings_for


def post_image(client, path: str, data: bytes, params=None, raw: str | None = None):
    if raw:
        return client.post(path, content=data, params=params, headers={"content-type": raw})
    return client.post(path, files={"image": ("x.png", data, "image/png")}, params=params)


# -- operations -----------------------------------------------------------------------------


def test_health_ready_models_docs(client, weights):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {
        "models_loaded": True,
        "workers_running": True,
        "queue_not_saturated": True,
    }
    listed = client.get("/v1/models").json()
    assert listed["devices"] == ["cpu"]
    assert {(m["variant"], m["scale"], m["weights_id"]) for m in listed["models"]} == {
        (k.rsplit("-x", 1)[0], int(k.rsplit("-x", 1)[1]), weights_id(f)) for k, f in weights.items()
    }
    assert client.get("/docs").status_code == 200
    assert {"/downscale", "/upscale"} <= set(client.get("/openapi.json").json()["paths"])


# -- round trips --------------------------------------------------------------------------------


def test_alpha_round_trip_keeps_the_exact_size_and_matches_the_cli(client, photo, weights, tmp_path):
    response = post_image(client, "/downscale", png_bytes(photo), {"scale": 2, "mode": "alpha"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    assert response.headers["x-rescale-variant"] == "irn-a"
    assert response.headers["x-rescale-original-size"] == "70x90"
    assert response.headers["x-rescale-weights-id"] == weights_id(weights["irn-a-x2"])
    assert re.search(r"model;dur=[\d.]+", response.headers["server-timing"])
    small = Image.open(io.BytesIO(response.content))
    assert small.mode == "RGBA" and small.size == (35, 45)

    src, cli_small = tmp_path / "in.png", tmp_path / "small.png"
    src.write_bytes(png_bytes(photo))
    tiling = ["--tile", str(TILE), "--overlap", str(OVERLAP)]
    argv = ["downscale", str(src), str(cli_small), "--scale", "2", "--variant", "irn-a", *tiling]
    assert main([*argv, "--weights", *map(str, weights.values())]) == 0
    assert cli_small.read_bytes() == response.content

    up = post_image(client, "/upscale", response.content)
    assert up.status_code == 200 and up.headers["content-type"] == "image/png"
    assert "x-rescale-degraded" not in up.headers
    assert Image.open(io.BytesIO(up.content)).size == (70, 90)
    cli_big = tmp_path / "big.png"
    assert main(["upscale", str(cli_small), str(cli_big), *tiling, "--weights", *map(str, weights.values())]) == 0
    assert np.array_equal(np.array(Image.open(cli_big)), np.array(Image.open(io.BytesIO(up.content))))


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
def test_metadata_mode_in_every_format(client, photo, fmt):
    down = post_image(client, "/downscale", png_bytes(photo), {"scale": 2, "mode": "metadata", "format": fmt})
    assert down.status_code == 200, down.text
    assert down.headers["content-type"] == f"image/{fmt}"
    up = post_image(client, "/upscale", down.content, raw=f"image/{fmt}")
    assert up.status_code == 200 and Image.open(io.BytesIO(up.content)).size == (70, 90)


def test_big_image_goes_through_tiles(client, photo):
    big = np.tile(photo, (3, 4, 1))  # 270x280 -> LR 135x140, several 64-pixel tiles
    down = post_image(client, "/downscale", png_bytes(big), {"scale": 2, "mode": "plain"})
    assert down.status_code == 200
    up = post_image(client, "/upscale", down.content)
    assert np.array(Image.open(io.BytesIO(up.content))).shape == big.shape


@pytest.mark.parametrize(
    ("mode", "expected_size"),
    [("L", (70, 90)), ("P", (70, 90)), ("I;16", (70, 90)), ("CMYK", (70, 90)), ("LA", (70, 90))],
)
def test_input_modes_are_converted(client, photo, mode, expected_size):
    image = Image.fromarray(photo)
    if mode == "I;16":
        image = Image.fromarray(np.array(image.convert("L")).astype(np.uint16) * 257)
    else:
        image = image.convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG" if mode == "CMYK" else "PNG")
    down = post_image(client, "/downscale", buffer.getvalue(), {"scale": 2})
    assert down.status_code == 200, down.text
    assert down.headers["x-rescale-original-size"] == f"{expected_size[0]}x{expected_size[1]}"


def test_exif_rotation_and_animation(client, photo):
    rotated = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    Image.fromarray(photo).save(rotated, format="JPEG", exif=exif)
    down = post_image(client, "/downscale", rotated.getvalue(), {"scale": 2})
    assert down.headers["x-rescale-original-size"] == "90x70"
    frames = [Image.fromarray(photo), Image.fromarray(photo[::-1])]
    animated = io.BytesIO()
    frames[0].save(animated, format="WEBP", save_all=True, append_images=frames[1:], lossless=True)
    down = post_image(client, "/downscale", animated.getvalue(), {"scale": 2})
    assert down.status_code == 200 and down.headers["x-rescale-original-size"] == "70x90"


# -- degraded and foreign files -----------------------------------------------------------------


def test_plain_image_needs_best_effort(client, photo):
    small = png_bytes(photo[:44, :34])
    refused = post_image(client, "/upscale", small)
    assert refused.status_code == 422
    assert refused.json()["code"] == "not_rescaled"
    assert "pass best_effort=true" in refused.json()["message"]
    ok = post_image(client, "/upscale", small, {"best_effort": "true", "scale": 2})
    assert ok.status_code == 200 and ok.headers["x-rescale-degraded"] == "metadata_missing"
    assert Image.open(io.BytesIO(ok.content)).size == (68, 88)


def test_dropped_alpha_is_flagged(client, photo):
    down = post_image(client, "/downscale", png_bytes(photo), {"scale": 2, "mode": "alpha"})
    image = Image.open(io.BytesIO(down.content))
    info = __import__("PIL.PngImagePlugin", fromlist=["PngInfo"]).PngInfo()
    info.add_text("rescale", image.text["rescale"], zip=True)
    flattened = png_bytes(np.array(image.convert("RGB")), pnginfo=info)
    up = post_image(client, "/upscale", flattened)
    assert up.status_code == 200 and up.headers["x-rescale-degraded"] == "alpha_missing"


# -- errors -------------------------------------------------------------------------------------


def huge_png_header() -> bytes:
    ihdr = struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    idat = zlib.compress(b"\x00" * 1000)
    idat_chunk = struct.pack(">I", len(idat)) + b"IDAT" + idat + struct.pack(">I", zlib.crc32(b"IDAT" + idat))
    return b"\x89PNG\r\n\x1a\n" + chunk + idat_chunk


@pytest.mark.parametrize(
    ("path", "params", "body", "content_type", "status", "code", "message"),
    [
        ("/downscale", {"scale": 3}, "photo", None, 422, "invalid_parameter", "scale: Input should be 2 or 4"),
        ("/downscale", {"quality": 0}, "photo", None, 422, "invalid_parameter", "quality: Input should be greater"),
        ("/downscale", {"mode": "alpha", "format": "jpeg"}, "photo", None, 422, "invalid_parameter", "format=png"),
        ("/downscale", {"mode": "metadata", "scale": 4}, "photo", None, 422, "unknown_weights", "no weights loaded"),
        ("/downscale", {"scale": 2}, b"GIF89a" + b"\0" * 50, "image/png", 415, "unsupported_format", "not a PNG"),
        (
            "/downscale",
            {"scale": 2},
            "photo",
            "text/plain",
            415,
            "unsupported_media_type",
            "a file part named 'image' or 'file' of a multipart body",
        ),
        ("/downscale", {"scale": 2}, huge_png_header(), "image/png", 413, "image_too_large", "900,000,000 pixels"),
        ("/downscale", {"scale": 2}, "truncated", "image/png", 400, "truncated_file", "truncated PNG"),
        ("/downscale", {"scale": 2}, b"", "image/png", 400, "empty_image", "the image is empty"),
        ("/downscale", {"scale": 2}, b"\0" * 3_100_000, "image/png", 413, "upload_too_large", "3,000,000-byte"),
        ("/upscale", {}, b"\x89PNG\r\n\x1a\n" + b"\0" * 40, "image/png", 400, "corrupt_file", "cannot decode"),
        ("/nowhere", {}, b"", "image/png", 404, "not_found", "Not Found"),
    ],
)
def test_error_statuses_and_texts(client, photo, path, params, body, content_type, status, code, message):
    if body == "photo":
        body = png_bytes(photo)
    elif body == "truncated":
        body = png_bytes(photo)[:300]
    if content_type is None:
        response = post_image(client, path, body, params)
    else:
        response = client.post(path, content=body, params=params, headers={"content-type": content_type})
    assert response.status_code == status, response.text
    assert response.json()["code"] == code
    assert message in response.json()["message"]


def test_unknown_weights_are_named(client, photo, tmp_path):
    other = perturbed(Rescaler(tiny_config("irn", 2)), seed=7)
    folder = tmp_path / "other"
    save_model(other, folder)
    src, small = tmp_path / "in.png", tmp_path / "s.png"
    src.write_bytes(png_bytes(photo))
    assert main(["downscale", str(src), str(small), "--scale", "2", "--variant", "irn", "--weights", str(folder)]) == 0
    response = post_image(client, "/upscale", small.read_bytes())
    assert response.status_code == 422 and response.json()["code"] == "unknown_weights"
    assert f"made by weights {weights_id(folder)}, which are not loaded" in response.json()["message"]


# -- batching and the queue ---------------------------------------------------------------------


def metric(text: str, name: str) -> float:
    return sum(float(m) for m in re.findall(rf"^{name}(?:{{[^}}]*}})? ([\d.e+]+)$", text, re.M))


def test_concurrent_requests_form_batches(weights, photo):
    with running_server(settings_for(weights, max_batch_wait_ms=300, max_batch_size=8)) as base:
        body = png_bytes(photo)
        before = httpx.get(f"{base}/metrics").text

        def one(_):
            with httpx.Client(base_url=base, timeout=60) as c:
                return post_image(c, "/downscale", body, {"scale": 2, "mode": "plain"}).status_code

        with ThreadPoolExecutor(8) as pool:
            assert list(pool.map(one, range(8))) == [200] * 8
        text = httpx.get(f"{base}/metrics").text
    batches = metric(text, "rescale_batch_size_count") - metric(before, "rescale_batch_size_count")
    inputs = metric(text, "rescale_batch_size_sum") - metric(before, "rescale_batch_size_sum")
    assert inputs == 8  # a 90x70 photo is one tile of LR 45x35
    assert batches <= 4  # inputs from different requests shared batches
    assert 'rescale_requests_total{endpoint="/downscale",status="200"}' in text


def test_full_queue_answers_503_with_retry_after(weights, photo):
    overrides = dict(max_queue=1, tile_lr=16, tile_overlap_lr=4, max_pixels=2_000_000, max_upload_bytes=20_000_000)
    with running_server(settings_for(weights, **overrides)) as base:
        body = png_bytes(np.tile(photo, (16, 16, 1)))  # 1440x1120: ~1,500 small LR tiles, about 1.5 s of work

        def one(delay: float):
            time.sleep(delay)
            with httpx.Client(base_url=base, timeout=60) as c:
                return post_image(c, "/downscale", body, {"scale": 2})

        def corrupt(delay: float):
            time.sleep(delay)
            with httpx.Client(base_url=base, timeout=60) as c:
                return post_image(c, "/upscale", b"\x89PNG\r\n\x1a\n" + b"\0" * 40)

        with ThreadPoolExecutor(3) as pool:
            first = pool.submit(one, 0.0)  # its tiles take seconds to run
            second, third = pool.submit(one, 0.6), pool.submit(corrupt, 0.6)  # while its tiles are queued
            first, second, third = first.result(), second.result(), third.result()
    assert first.status_code == 200  # an empty queue takes a request of any size
    assert second.status_code == 503
    assert second.json()["code"] == "queue_full" and second.headers["retry-after"] == "2"
    assert re.search(r"the queue holds \d+ of 1 inputs", second.json()["message"])
    # decided before the upload is decoded: a corrupt file gets the 503, not its 400
    assert third.status_code == 503 and third.json()["code"] == "queue_full"


def test_schemathesis_finds_no_server_errors(url):
    """Property-based requests generated from the OpenAPI schema never get a 5xx."""
    import subprocess
    import sys
    from pathlib import Path

    cli = str(Path(sys.executable).parent / "schemathesis")
    result = subprocess.run(
        [
            cli,
            "run",
            f"{url}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "25",
            "--request-timeout",
            "60",
            "--phases",
            "examples,coverage,fuzzing",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-4000:]


def test_requests_whose_client_left_are_dropped_before_the_model(weights, photo):
    import socket

    with running_server(settings_for(weights, max_batch_wait_ms=3000, max_batch_size=8)) as base:
        host, port = base.removeprefix("http://").split(":")
        body = png_bytes(photo)
        before = httpx.get(f"{base}/metrics").text
        head = (
            f"POST /downscale?scale=2&mode=plain HTTP/1.1\r\nHost: {host}\r\nContent-Type: image/png\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        with socket.create_connection((host, int(port))) as sock:
            sock.sendall(head + body)
            time.sleep(0.5)  # queued, waiting for a batch
        time.sleep(3.5)  # the batch window closes; the worker finds the input cancelled
        text = httpx.get(f"{base}/metrics").text

    def dropped(t: str) -> float:
        found = re.search(r'^rescale_dropped_total\{reason="cancelled"\} ([\d.]+)$', t, re.M)
        return float(found.group(1)) if found else 0.0

    assert dropped(text) - dropped(before) == 1
    assert 'rescale_requests_total{endpoint="/downscale",status="499"}' in text  # not counted as a 5xx
    assert metric(text, "rescale_batch_size_count") == metric(before, "rescale_batch_size_count")  # no model run
