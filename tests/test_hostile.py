"""What a hostile client sends, over real HTTP against uvicorn on loopback: each case names the defect."""

import io
import json
import os
import random
import re
import socket
import struct
import time

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

from models.files.containers import read_image, write_lossy, write_png
from models.files.errors import HeaderError
from models.files.header import parse_header
from service import metrics
from tests.service_helpers import png_bytes, running_server, settings_for


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 1e6


def exif_count_bomb(count: int = 1 << 26) -> bytes:
    """A 700-byte JPEG whose EXIF declares a SHORT entry of `count` values: piexif compiled a struct format
    of that length per request, and CPython's struct cache kept it (545 MB per file at 2^28)."""
    tiff = b"MM\x00*" + struct.pack(">I", 8)
    ifd = struct.pack(">H", 1) + struct.pack(">HHII", 0x0131, 3, count, 26) + struct.pack(">I", 0)
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, "JPEG", exif=b"Exif\x00\x00" + tiff + ifd + b"\x00" * 16)
    return buffer.getvalue()


def post(client: httpx.Client, path: str, data: bytes, params=None) -> httpx.Response:
    return client.post(path, content=data, params=params or {}, headers={"content-type": "application/octet-stream"})


def test_exif_with_huge_declared_counts_holds_no_memory(client):
    bomb = exif_count_bomb()
    assert len(bomb) < 800
    assert post(client, "/upscale", bomb).status_code == 422  # warm-up: imports, first allocations
    before = rss_mb()
    for _ in range(20):
        response = post(client, "/upscale", bomb)
        assert response.status_code == 422 and response.json()["code"] == "not_rescaled", response.text
    assert rss_mb() - before < 50


# -- crafted headers ----------------------------------------------------------------------------


def lr_file(client: httpx.Client, photo: np.ndarray, **params) -> bytes:
    response = post(client, "/downscale", png_bytes(photo), {"scale": 2, **params})
    assert response.status_code == 200, response.text
    return response.content


def header_of(data: bytes) -> str | None:
    return read_image(data, max_pixels=10**8)[3]


def with_header(data: bytes, text: str) -> bytes:
    """The same pixels with another header text (PNG keeps alpha; JPEG/WebP rewritten at quality 95)."""
    with Image.open(io.BytesIO(data)) as image:
        fmt = image.format
        pixels = np.array(image)
    if fmt == "PNG":
        alpha = pixels[..., 3] if pixels.shape[-1] == 4 else None
        return write_png(np.ascontiguousarray(pixels[..., :3]), alpha, text)
    return write_lossy(pixels, text, fmt.lower(), 95)


def as_x4(text: str) -> str:
    """A consistent x4 header (sizes included) over x2 weights."""
    meta = json.loads(text)
    h, w = meta["lr_size"]
    meta.update(scale=4, hr_size=[4 * h, 4 * w], padding=[0, 0])
    return json.dumps(meta)


@pytest.mark.parametrize(
    ("mode", "edit", "code", "message"),
    [
        (
            "plain",
            lambda t: t.replace('"format":1', '"format":' + "9" * 5000),
            "bad_header",
            "the text chunks are over",
        ),
        ("plain", lambda t: t.replace('"variant":"irn"', '"variant":"irn-a"'), "weights_mismatch", "irn-a x2"),
        ("alpha", lambda t: t.replace('"variant":"irn-a"', '"variant":"irn"'), "weights_mismatch", "irn x2"),
        ("plain", lambda t: as_x4(t), "weights_mismatch", "are irn x2"),
    ],
)
def test_crafted_headers_are_422_with_their_own_code(client, photo, mode, edit, code, message):
    data = lr_file(client, photo, mode=mode)
    text = header_of(data)
    crafted = edit(text)
    assert crafted != text
    response = post(client, "/upscale", with_header(data, crafted))
    assert response.status_code == 422, response.text
    assert response.json()["code"] == code
    assert message in response.json()["message"]


def test_an_integer_of_more_than_4300_digits_is_a_header_error():
    """json.loads raises ValueError (not JSONDecodeError) for it: that was a 500."""
    text = json.dumps({"format": 1}).replace("1", "9" * 5000)
    with pytest.raises(HeaderError, match="header is not valid JSON: Exceeds the limit"):
        parse_header(text, max_pixels=10**8, image_size=(1000, 1000))


def test_metadata_file_whose_code_does_not_cover_its_lr(client, photo):
    """A -M header that declares a 1x1 LR (HR 1x1) with an empty code reached the model and raised there."""
    data = lr_file(client, photo, mode="metadata")
    meta = json.loads(header_of(data))
    meta.update(hr_size=[1, 1], lr_size=[1, 1], padding=[1, 1])
    meta["code"]["shape"] = [4, 0, 0]
    tiny = write_png(np.zeros((1, 1, 3), np.uint8), None, json.dumps(meta))
    response = post(client, "/upscale", tiny)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "bad_latent"
    assert response.json()["message"] == "code shape [4, 0, 0] does not match the LR: expected [4, 1, 1]"


# -- mutation fuzz -------------------------------------------------------------------------------

ODD_VALUES = [
    -1,
    0,
    1,
    3,
    2**31,
    2**64,
    3.5,
    True,
    None,
    "",
    "x",
    "ffffffffffffffff",
    [],
    [0, 0],
    [1, 1],
    [3, 3],
    [4, 1000],
    [100000, 100000],
    [1, 2, 3],
    {},
    {"shape": [4, 1, 1]},
]


def mutate_header(meta: dict, rng: random.Random, other_ids: list[str]) -> str:
    meta = json.loads(json.dumps(meta))
    target = meta["code"] if "code" in meta and rng.random() < 0.3 else meta
    key = rng.choice(sorted(target))
    roll = rng.random()
    if roll < 0.2:
        meta["weights_id"] = rng.choice(other_ids)  # another model's weights under this header
    elif roll < 0.35:
        del target[key]
    else:
        target[key] = rng.choice(ODD_VALUES)
    return json.dumps(meta)


def mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    roll = rng.random()
    if roll < 0.4:
        for _ in range(rng.randint(1, 4)):
            out[rng.randrange(len(out))] = rng.randrange(256)
    elif roll < 0.7:
        del out[rng.randrange(8, len(out)) :]
    else:
        at = rng.randrange(len(out))
        out[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
    return bytes(out)


# CI runs a short fuzz; RESCALE_FUZZ_REQUESTS / RESCALE_FUZZ_SEED run a longer or another one
FUZZ_REQUESTS = int(os.environ.get("RESCALE_FUZZ_REQUESTS", "250"))
FUZZ_SEED = int(os.environ.get("RESCALE_FUZZ_SEED", "0"))


def test_mutation_fuzz_of_downscale_outputs_never_answers_500(client, photo):
    seeds = [
        lr_file(client, photo, mode="plain"),
        lr_file(client, photo, mode="alpha"),
        lr_file(client, photo, mode="metadata"),
        lr_file(client, photo, mode="metadata", format="webp"),
        lr_file(client, photo, mode="plain", format="jpeg"),
    ]
    metas = [json.loads(header_of(data)) for data in seeds]
    ids = [m["weights_id"] for m in metas if m]
    rng = random.Random(FUZZ_SEED)
    statuses: dict[int, int] = {}
    server_errors: list[str] = []
    for _ in range(FUZZ_REQUESTS):
        i = rng.randrange(len(seeds))
        if rng.random() < 0.6:
            body = with_header(seeds[i], mutate_header(metas[i], rng, ids))
        else:
            body = mutate_bytes(seeds[i], rng)
        params = {"best_effort": rng.choice(["true", "false"]), "scale": rng.choice([2, 4])}
        response = post(client, "/upscale", body, params)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        if response.status_code >= 500:
            server_errors.append(response.text)
        elif response.status_code != 200:
            assert set(response.json()) >= {"code", "message"}
    print(f"upscale mutation fuzz, {FUZZ_REQUESTS} requests: {dict(sorted(statuses.items()))}")  # pytest -s
    assert not server_errors, (statuses, sorted(set(server_errors)))  # every status counted, then judged
    assert statuses.get(200, 0) > 0 and sum(v for k, v in statuses.items() if k >= 400) > 50, statuses


# -- clients that leave -------------------------------------------------------------------------


def request_count(endpoint: str, status: int) -> float:
    sample = metrics.REGISTRY.get_sample_value("rescale_requests_total", {"endpoint": endpoint, "status": str(status)})
    return sample or 0.0


def test_a_client_that_leaves_during_the_upload_is_a_499_not_a_500(url, photo):
    host, port = url.removeprefix("http://").split(":")
    before_499, before_500 = request_count("/downscale", 499), request_count("/downscale", 500)
    for _ in range(3):
        with socket.create_connection((host, int(port))) as sock:
            head = (
                f"POST /downscale?scale=2 HTTP/1.1\r\nHost: {host}\r\nContent-Type: image/png\r\n"
                "Content-Length: 200000\r\n\r\n"
            )
            sock.sendall(head.encode() + png_bytes(photo)[:1000])
            time.sleep(0.2)
    deadline = time.monotonic() + 10
    while request_count("/downscale", 499) < before_499 + 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert request_count("/downscale", 499) == before_499 + 3
    assert request_count("/downscale", 500) == before_500


# -- oversized headers ------------------------------------------------------------------------------


def test_a_small_png_with_a_huge_header_is_refused_before_inflating_it(client):
    """64 MB of header text used to be inflated and parsed (9 s with the event loop stalled, +1.5 GB)."""
    text = json.dumps({"format": 1, "padding": "x" * (8 << 20)})
    data = write_png(np.zeros((64, 64, 3), np.uint8), None, text)
    assert len(data) < 64 << 10
    response = post(client, "/upscale", data)
    assert response.status_code == 422, response.text
    assert response.json() == {
        "code": "bad_header",
        "message": "the text chunks are over the 2,476 characters that a header of a 64x64 image can need",
    }


def test_a_webp_with_a_huge_exif_header_is_refused_before_parsing_it(client):
    text = json.dumps({"format": 1, "padding": "x" * (2 << 20)})
    data = write_lossy(np.zeros((64, 64, 3), np.uint8), text, "webp", 90)
    response = post(client, "/upscale", data)
    assert response.status_code == 422, response.text
    assert response.json()["message"] == (
        f"header of {len(text):,} characters is over the 2,476 that an image of this size can need"
    )


def test_a_client_that_trickles_its_upload_is_cut(weights, photo):
    settings = settings_for(weights, upload_timeout_s=1.0)
    with running_server(settings) as base:
        host, port = base.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(
                f"POST /downscale?scale=2 HTTP/1.1\r\nHost: {host}\r\nContent-Type: image/png\r\n"
                "Content-Length: 100000\r\n\r\n".encode()
            )
            started = time.monotonic()
            answer = b""
            for _ in range(40):  # a byte every 0.1 s, until the server answers
                try:
                    sock.sendall(b"\0")
                except OSError:
                    break
                sock.settimeout(0.1)
                try:
                    chunk = sock.recv(4096)
                except TimeoutError:
                    continue
                if not chunk:
                    break
                answer += chunk
                if b"}" in answer:
                    break
            waited = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert b'"code":"upload_timeout"' in answer and b"connection: close" in answer.lower()
    assert waited < 3


# -- files that cost far more than their size ----------------------------------------------------


def jpeg_declaring(width: int, height: int) -> bytes:
    """A complete 8x8 JPEG whose SOF is patched to declare another size: libjpeg fills the missing blocks."""
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (90, 120, 150)).save(buffer, "JPEG", quality=90)
    data = bytearray(buffer.getvalue())
    sof = data.find(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def test_a_tiny_jpeg_declaring_a_large_image_is_refused_before_decoding(client):
    data = jpeg_declaring(630, 630)
    with Image.open(io.BytesIO(data)) as image:  # what the attack relies on: it decodes at full size
        image.load()
        assert image.size == (630, 630)
    response = post(client, "/downscale", data, {"scale": 2})
    assert response.status_code == 400, response.text
    assert response.json() == {
        "code": "corrupt_file",
        "message": f"{len(data):,} bytes cannot hold a complete 630x630 JPEG (at least 776 are needed): "
        "the file is truncated or crafted",
    }


def test_a_jpeg_cut_inside_its_scan_is_truncated(client, photo):
    buffer = io.BytesIO()
    Image.fromarray(photo).save(buffer, "JPEG", quality=90)
    data = buffer.getvalue()
    response = post(client, "/downscale", data[: len(data) * 2 // 3], {"scale": 2})
    assert response.status_code == 400, response.text
    assert response.json() == {
        "code": "truncated_file",
        "message": "truncated JPEG: the scan data ends before the end-of-image marker",
    }
    assert post(client, "/downscale", data + b"trailing bytes", {"scale": 2}).status_code == 200


def test_upscale_refuses_a_file_without_header_before_decoding_its_pixels(client, photo):
    """A plain PNG whose pixel data is broken: the missing header is what the client needs to hear."""
    data = bytearray(png_bytes(photo))
    idat = data.find(b"IDAT")
    data[idat + 20 : idat + 60] = b"\xff" * 40
    response = post(client, "/upscale", bytes(data))
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "not_rescaled"
    assert post(client, "/upscale", bytes(data), {"best_effort": "true"}).json()["code"] == "corrupt_file"


def test_a_png_missing_its_iend_still_upscales_exactly(client, photo):
    """Accepted on purpose: the pixel data is complete and the header's CRC-32 checks every LR pixel."""
    lr = lr_file(client, photo, mode="plain")
    assert lr.endswith(b"IEND\xaeB`\x82")
    exact = post(client, "/upscale", lr)
    cut = post(client, "/upscale", lr[:-12])
    assert exact.status_code == cut.status_code == 200
    assert cut.content == exact.content


def test_an_image_whose_model_time_would_pass_the_deadline_is_refused_before_queueing(weights, photo):
    """The pixel limit is no cost limit on a CPU: FLOPs per pixel at the FLOP rate the workers reach decide."""
    settings = settings_for(
        weights, request_timeout_s=0.5, max_pixels=4_000_000, max_upload_bytes=20_000_000, preload=["all"]
    )  # built before the first request: a model built on first use would spend the 0.5 s deadline on its build
    with running_server(settings) as base, httpx.Client(base_url=base, timeout=60) as c:
        # before any batch has run the rate is unknown and nothing is refused on cost
        first = post(c, "/downscale", png_bytes(photo), {"scale": 2, "mode": "plain"})
        assert first.status_code == 200, first.text
        big = np.tile(photo, (20, 26, 1))  # 1800x1820: 3.3 MP, inside the 4 MP limit, some 30x the small one
        response = post(c, "/downscale", png_bytes(big), {"scale": 2, "mode": "plain"})
        assert response.status_code == 413, response.text
        body = response.json()
        assert body["code"] == "too_much_work"
        assert re.fullmatch(
            r"a 1820x1800 image needs about \d+ s of model time on this device, over the 0 s deadline; "
            r"send at most \d+\.\d megapixels",
            body["message"],
        ), body["message"]
        assert metrics.REGISTRY.get_sample_value("rescale_queue_depth") == 0


def test_the_cost_model_learns_the_rate_from_batches():
    from service.cost import CostModel
    from service.errors import ServiceError

    counted = {("w", "encode"): 1e6, ("w", "decode"): 2e6}  # as if counted on a first request
    cost = CostModel(registry=None, device=torch.device("cpu"), flops_per_pixel=counted)
    cost.check("w", "encode", (10_000, 10_000), 1.0)  # no rate yet: nothing refused
    cost.observe("w", "encode", 1_000_000, 2.0)  # 0.5 TFLOP/s... a slow batch
    cost.observe("w", "encode", 1_000_000, 1.0)  # ...and a faster one: the best recent rate counts
    assert cost.flops_per_second == 1e12
    assert cost.estimate_s("w", "decode", 1_000_000) == pytest.approx(2.0 * 1.3)
    cost.check("w", "decode", (1000, 1000), 3.0)
    with pytest.raises(ServiceError, match="a 2000x1000 image needs about 5 s of model time"):
        cost.check("w", "decode", (1000, 2000), 3.0)
