"""The product path for lossy files: the compression-aware model by default, and files that went through a CDN."""

import io
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from models.cli import main
from models.store.registry import weights_id
from tests.service_helpers import png_bytes, running_server, settings_for


@pytest.fixture(scope="module")
def client(folders):
    with running_server(settings_for(folders)) as base, httpx.Client(base_url=base, timeout=60) as c:
        yield c


def post(client, path, data, **params):
    return client.post(path, content=data, params=params, headers={"content-type": "application/octet-stream"})


@pytest.mark.parametrize(("fmt", "expected"), [("jpeg", "irn-jpeg"), ("webp", "irn-jpeg"), ("png", "irn")])
def test_lossy_formats_get_the_compression_aware_model(client, folders, photo, fmt, expected):
    response = post(client, "/downscale", png_bytes(photo), scale=2, mode="plain", format=fmt, quality=80)
    assert response.status_code == 200, response.text
    assert response.headers["x-rescale-weights-id"] == weights_id(folders[expected])
    assert response.headers["content-type"] == f"image/{fmt}"
    with Image.open(io.BytesIO(response.content)) as image:
        assert image.format == fmt.upper() and image.size == (35, 45)  # ceil(70 / 2) x ceil(90 / 2)


@pytest.mark.parametrize(
    ("params", "expected", "fmt"),
    [
        ({"format": "jpeg"}, "irn-jpeg", "JPEG"),  # no mode: plain for a lossy format
        ({"format": "webp", "mode": "metadata"}, "irn-m-jpeg", "WEBP"),
        ({"format": "jpeg", "mode": "metadata"}, "irn-m-jpeg", "JPEG"),
        ({"format": "png", "mode": "metadata"}, "irn-m", "PNG"),
        ({}, "irn-a", "PNG"),  # no mode, no format: the -A PNG
    ],
)
def test_the_default_mode_follows_the_format(client, folders, photo, params, expected, fmt):
    response = post(client, "/downscale", png_bytes(photo), scale=2, **params)
    assert response.status_code == 200, response.text
    assert response.headers["x-rescale-weights-id"] == weights_id(folders[expected])
    with Image.open(io.BytesIO(response.content)) as image:
        assert image.format == fmt and image.size == (35, 45)


def test_a_compression_aware_m_file_keeps_its_code_through_a_cdn_that_keeps_exif(client, folders, photo):
    """Re-encoded with its EXIF kept: a lossy file carries no pixel checksum (JPEG decoders differ by a code),
    so it is upscaled with its code as it is; stripped of its EXIF, best effort upscales it with z = 0."""
    lr = post(client, "/downscale", png_bytes(photo), scale=2, mode="metadata", format="jpeg", quality=90).content
    with Image.open(io.BytesIO(lr)) as image:
        exif = image.info["exif"]
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=70, exif=exif)
    recoded = buffer.getvalue()
    response = post(client, "/upscale", recoded)
    assert response.status_code == 200, response.text
    assert response.headers["x-rescale-weights-id"] == weights_id(folders["irn-m-jpeg"])
    assert "x-rescale-degraded" not in response.headers
    no_code = post(client, "/upscale", strip_metadata(lr), best_effort="true", scale=2, mode="metadata")
    assert no_code.status_code == 200, no_code.text
    assert no_code.headers["x-rescale-weights-id"] == weights_id(folders["irn-m-jpeg"])
    assert no_code.headers["x-rescale-degraded"] == "metadata_missing"
    with_code, without = (np.asarray(Image.open(io.BytesIO(r.content))) for r in (response, no_code))
    assert with_code.shape == without.shape == (90, 70, 3) and not np.array_equal(with_code, without)


def strip_metadata(data: bytes) -> bytes:
    """What a CDN does: decode, re-encode at its own quality, no EXIF."""
    with Image.open(io.BytesIO(data)) as image:
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, format="WEBP", quality=80)
    return buffer.getvalue()


def test_a_cdn_copy_without_header_is_upscaled_by_the_compression_aware_model(client, folders, photo):
    lr = post(client, "/downscale", png_bytes(photo), scale=2, mode="plain", format="jpeg", quality=90).content
    assert_best_effort_upscale(client, folders, strip_metadata(lr))


def test_a_file_with_its_header_kept_gets_the_exact_model(client, folders, photo):
    lr = post(client, "/downscale", png_bytes(photo), scale=2, mode="plain", format="webp", quality=75).content
    response = post(client, "/upscale", lr)
    assert response.status_code == 200, response.text
    assert response.headers["x-rescale-weights-id"] == weights_id(folders["irn-jpeg"])
    assert "x-rescale-degraded" not in response.headers


def one_pixel_changed(data: bytes) -> bytes:
    """The same PNG, header chunks and all, with one LR pixel changed (what a lossy optimiser does)."""
    from models.files.containers import read_image, write_png

    _, rgb, alpha, text = read_image(data, max_pixels=10**8)
    rgb = rgb.copy()
    rgb[3, 4, 1] ^= 0x10
    return write_png(rgb, alpha, text)


@pytest.mark.parametrize("mode", ["plain", "alpha"])
def test_changed_pixels_with_the_header_kept(client, folders, photo, mode):
    lr = post(client, "/downscale", png_bytes(photo), scale=2, mode=mode).content
    changed = one_pixel_changed(lr)
    refused = post(client, "/upscale", changed)
    assert refused.status_code == 422
    assert refused.json() == {
        "code": "checksum_mismatch",
        "message": "the LR pixels changed after downscaling (RGB CRC-32 mismatch)",
    }
    response = post(client, "/upscale", changed, best_effort="true")
    assert response.status_code == 200, response.text
    assert response.headers["x-rescale-degraded"] == "pixels_modified"
    assert response.headers["x-rescale-weights-id"] == weights_id(folders["irn" if mode == "plain" else "irn-a"])
    exact = post(client, "/upscale", lr)
    got, want = (np.asarray(Image.open(io.BytesIO(r.content))).astype(int) for r in (response, exact))
    assert 0 < np.abs(got - want).sum() and (np.abs(got - want) > 0).mean() < 0.1  # a local change only


# -- the CLI -------------------------------------------------------------------------------------


def cli_setup(folders, photo, tmp_path) -> tuple[Path, list[str]]:
    """The photo as a PNG to downscale, and the flags that load the test weights alone."""
    src = tmp_path / "in.png"
    Image.fromarray(photo).save(src)
    return src, ["--weights", *map(str, folders.values()), "--no-shipped"]


def test_cli_takes_the_format_from_the_extension(folders, photo, tmp_path, capsys):
    src, weights = cli_setup(folders, photo, tmp_path)
    out = tmp_path / "small.jpg"
    assert main(["downscale", str(src), str(out), "--scale", "2", "--quality", "80", *weights]) == 0
    with Image.open(out) as image:
        assert image.format == "JPEG" and image.size == (35, 45)
    assert f"IRN-JPEG x2, jpeg, {out.stat().st_size} bytes, weights {weights_id(folders['irn-jpeg'])}" in (
        capsys.readouterr().out
    )
    stripped = tmp_path / "cdn.webp"
    stripped.write_bytes(strip_metadata(out.read_bytes()))
    big = tmp_path / "big.png"
    assert main(["upscale", str(stripped), str(big), "--best-effort", "--scale", "2", *weights]) == 0
    assert "(irn x2, degraded: metadata_missing)" in capsys.readouterr().out
    assert Image.open(big).size == (70, 90)


def test_cli_writes_an_m_jpeg_with_the_compression_aware_m_model(folders, photo, tmp_path, capsys):
    src, weights = cli_setup(folders, photo, tmp_path)
    out = tmp_path / "small.webp"
    assert main(["downscale", str(src), str(out), "--scale", "2", "--variant", "irn-m", *weights]) == 0
    wid = weights_id(folders["irn-m-jpeg"])
    assert f"IRN-M-JPEG x2, webp, {out.stat().st_size} bytes, weights {wid}" in capsys.readouterr().out
    big = tmp_path / "big.png"
    assert main(["upscale", str(out), str(big), *weights]) == 0
    assert Image.open(big).size == (70, 90)


def test_cli_refuses_a_format_that_contradicts_the_extension(folders, photo, tmp_path, capsys):
    src = tmp_path / "in.png"
    Image.fromarray(photo).save(src)
    out = tmp_path / "small.jpg"
    code = main(["downscale", str(src), str(out), "--format", "webp", "--weights", str(folders["irn"])])
    assert code == 2
    assert capsys.readouterr().err.strip() == (
        f"rescale downscale: --format webp contradicts the extension of {out} (jpeg); change one of them"
    )
    assert not out.exists()


# -- rate against distortion through real codecs ---------------------------------------------------


def test_eval_measures_every_method_through_real_codecs(folders, photo, tmp_path):
    import json

    from models.evaluation.rate_distortion import bicubic_lossy_round_trip, lossy_copy

    data = tmp_path / "set"
    data.mkdir()
    Image.fromarray(photo[:88, :68]).save(data / "a.png")
    out = tmp_path / "eval"
    weights = ["--no-shipped", "--weights", str(folders["irn"]), str(folders["irn-jpeg"]), str(folders["irn-a"])]
    argv = ["eval", "--data", str(data), "--scales", "2", "--lossy", "jpeg:90", "webp:75", "--out", str(out)]
    assert main([*argv, *weights, "--report", str(tmp_path / "results.md")]) == 0
    rows = {r["method"]: r["sets"]["set"] for r in json.loads((out / "results.json").read_text())}
    for family in ("Bicubic", "Original", "IRN", "IRN-JPEG"):
        for codec in ("jpeg q90", "webp q75"):
            assert rows[f"{family} ({codec})"]["bytes_per_px"] > 0
    assert not any(name.startswith("IRN-A (") for name in rows)  # -A needs PNG
    hr = photo[:88, :68]
    out_jpeg, size = bicubic_lossy_round_trip(hr, 2, "jpeg", 90)
    assert rows["Bicubic (jpeg q90)"]["bytes_per_px"] == size / hr.shape[0] / hr.shape[1]
    assert rows["Original (webp q75)"]["bytes_per_px"] == lossy_copy(hr, "webp", 75)[1] / hr.size * 3
    assert set(rows["IRN-JPEG (jpeg q90)"]["per_image"]) == {"a"}
    report = (tmp_path / "results.md").read_text()
    table = report.split("## Through real codecs: rate against distortion")[1]
    assert "| x2 | jpeg q90 | " in table and "| x2 | webp q75 | " in table
    assert "![rate against distortion](eval/rate_distortion.png)" in table
    floors = report.split("### The compression-aware models against their floors (set)")[1]
    gain = rows["IRN-JPEG (jpeg q90)"]["psnr"] - rows["Bicubic (jpeg q90)"]["psnr"]
    met = "yes" if gain >= 3.5 else "no"
    assert f"| x2 | q90 | IRN-JPEG | {rows['IRN-JPEG (jpeg q90)']['psnr']:.2f} | " in floors
    assert f"| {gain:+.2f} | +3.50 | {met} | " in floors
    assert (out / "rate_distortion.png").stat().st_size > 1000


def test_a_row_with_refused_photos_is_compared_on_the_photos_it_holds():
    """A -M JPEG whose code was too large for some photos: its gain is taken on the photos it holds, not
    against the thumbnail's mean over all of them."""
    from models.evaluation.rate_distortion import floor_table, rd_table

    def row(method, per_image, refused=0, images=3):
        psnr = sum(per_image.values()) / len(per_image)
        summary = {"psnr": psnr, "ssim": 0.9, "bytes_per_px": 0.05, "images": images, "refused": refused}
        return {"method": method, "scale": 2, "damage": None, "sets": {"s": summary | {"per_image": per_image}}}

    rows = [
        row("Bicubic (jpeg q90)", {"a": 30.0, "b": 40.0, "c": 20.0}),
        row("IRN-M (jpeg q90)", {"a": 31.0, "b": 41.0}, refused=1),
        row("IRN-JPEG (jpeg q90)", {"a": 34.0, "b": 43.0, "c": 24.0}),
    ]
    table = rd_table(rows, "s")
    assert "| x2 | jpeg q90 | 30.00 @ 0.400 | 33.67 @ 0.400 (+3.67) | 36.00 @ 0.400 (+1.00, 2 of 3 photos) |" in table
    floors = floor_table(rows, "s")
    assert "| x2 | q90 | IRN-JPEG | 33.67 | Bicubic 30.00 | +3.67 | +3.50 | yes | +3.00, 3 of 3 |" in floors


def assert_best_effort_upscale(client, folders, stripped: bytes) -> None:
    """A lossy LR whose header a CDN stripped: refused as it is, upscaled by the compression-aware model with
    best_effort, and said to be degraded."""
    refused = post(client, "/upscale", stripped)
    assert refused.status_code == 422 and refused.json()["code"] == "not_rescaled"
    response = post(client, "/upscale", stripped, best_effort="true", scale=2)
    assert response.status_code == 200, response.text
    assert response.headers["x-rescale-weights-id"] == weights_id(folders["irn-jpeg"])
    assert response.headers["x-rescale-degraded"] == "metadata_missing"
    with Image.open(io.BytesIO(response.content)) as image:
        assert image.size == (70, 90)
