import json

import numpy as np
import pytest
import torch
from PIL import Image

from models.cli import main
from models.evaluation.bicubic import bicubic_round_trip, bicubic_thumbnail, modcrop
from models.evaluation.metrics import psnr_y, ssim_y
from models.evaluation.plots import plot_loss_curves
from models.files.images import list_images, load_rgb
from models.inference.pipeline import downscale_image, upscale_image
from models.store.checkpoint import load_model
from models.store.registry import Registry, weights_id
from tests.conftest import SHARED_DATA


@pytest.mark.parametrize(("variant", "scale"), [("irn", 2), ("irn-a", 4), ("irn-m", 2), ("dlv-irn-m", 4)])
@pytest.mark.parametrize("size", [(90, 70), (33, 17), (8, 5)])
def test_odd_sizes_come_back_exactly(model_folder, photo, variant, scale, size):
    model = load_model(model_folder(variant, scale))
    image = photo[: size[0], : size[1]]
    downscaled = downscale_image(model, image)
    assert downscaled.lr_size == (-(-size[0] // scale), -(-size[1] // scale))  # a thumbnail of known size, -M too
    out = upscale_image(model, downscaled)
    assert out.shape == image.shape
    assert psnr_y(image, out, 0) > 20  # a near-identity network stays close to the input


def test_metrics_reproduce_known_values():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
    assert psnr_y(a, a, 2) == float("inf")
    assert ssim_y(a, a, 2) == pytest.approx(1.0)
    b = a.copy()
    b[..., :] = np.clip(a.astype(int) + 1, 0, 255)  # +1 on every channel: Y moves by (65.481+128.553+24.966)/255
    expected = 10 * np.log10(255**2 / ((219 / 255) ** 2))
    assert psnr_y(a[a.max(-1) < 255].reshape(-1, 1, 3), b[a.max(-1) < 255].reshape(-1, 1, 3), 0) == pytest.approx(
        expected, abs=1e-6
    )


@pytest.mark.skipif(not (SHARED_DATA / "eval").is_dir(), reason="eval photos not present")
@pytest.mark.parametrize(("scale", "psnr", "ssim"), [(2, 35.73, 0.9390), (4, 30.09, 0.8097)])
def test_bicubic_row_reproduces_the_published_reference(scale, psnr, ssim):
    """shared/data/README.md measured these on eval/; the metric code must agree to the digit."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # SSIM's float64 filters over 12.5 MP, nothing else running meanwhile
    try:
        scores = [
            (psnr_y(hr, out, scale), ssim_y(hr, out, scale))
            for hr in (modcrop(load_rgb(p), scale) for p in list_images(SHARED_DATA / "eval"))
            for out in [bicubic_round_trip(hr, scale)]
        ]
    finally:
        torch.set_num_threads(threads)
    assert np.mean([s[0] for s in scores]) == pytest.approx(psnr, abs=0.005)
    assert np.mean([s[1] for s in scores]) == pytest.approx(ssim, abs=0.00005)


def test_cli_downscale_upscale_round_trip(model_folder, photo, tmp_path, capsys):
    folder = model_folder("irn-a", 2)
    src, small, big = tmp_path / "in.png", tmp_path / "small.png", tmp_path / "big.png"
    Image.fromarray(photo).save(src)
    assert (
        main(["downscale", str(src), str(small), "--scale", "2", "--variant", "irn-a", "--weights", str(folder)]) == 0
    )
    assert main(["upscale", str(small), str(big), "--weights", str(folder)]) == 0
    with Image.open(small) as s, Image.open(big) as b:
        assert s.size == (35, 45) and s.mode == "RGBA"
        assert b.size == (70, 90) and b.mode == "RGB"


def test_cli_refuses_files_from_unknown_weights(model_folder, photo, tmp_path, capsys):
    folder = model_folder("irn-a", 2)
    src, small = tmp_path / "in.png", tmp_path / "small.png"
    Image.fromarray(photo).save(src)
    main(["downscale", str(src), str(small), "--scale", "2", "--variant", "irn-a", "--weights", str(folder)])
    other = model_folder("irn", 4)
    capsys.readouterr()
    assert main(["upscale", str(small), str(tmp_path / "x.png"), "--weights", str(other)]) == 2
    err = capsys.readouterr().err
    assert f"this file was made by weights {weights_id(folder)}, which are not loaded" in err


def test_cli_eval_rows_for_formats_and_damage(model_folder, photo, tmp_path):
    data = tmp_path / "set"
    data.mkdir()
    Image.fromarray(photo).save(data / "a.png")
    folders = [model_folder("irn-m", 2), model_folder("irn-a", 2)]
    out = tmp_path / "report"
    argv = ["eval", "--data", str(data), "--scales", "2", "--out", str(out), "--formats", "png", "jpeg", "--damaged"]
    assert main(argv + ["--no-shipped", "--weights", *map(str, folders)]) == 0
    rows = {r["method"]: r["sets"]["set"] for r in json.loads((out / "results.json").read_text())}
    assert list(rows) == [
        "Bicubic",
        "IRN-A",
        "IRN-A [drop-alpha]",
        "IRN-M",
        "IRN-M (jpeg q95)",
        "IRN-M [strip-metadata]",
    ]
    assert rows["IRN-M (jpeg q95)"]["bytes_per_px"] < rows["IRN-M"]["bytes_per_px"]
    assert rows["IRN-A [drop-alpha]"]["bytes_per_px"] == rows["IRN-A"]["bytes_per_px"]


def test_cli_eval_counts_files_the_format_cannot_hold(model_folder, photo, tmp_path, monkeypatch):
    """A -M code over JPEG's APP1 limit is refused by the product, so the table counts it, not averages it."""
    from models.files import containers

    data = tmp_path / "set"
    data.mkdir()
    Image.fromarray(np.tile(photo, (4, 4, 1))).save(data / "a.png")
    Image.fromarray(photo[:32, :32]).save(data / "b.png")
    out = tmp_path / "report"
    argv = ["eval", "--data", str(data), "--scales", "2", "--out", str(out), "--formats", "png", "jpeg"]
    argv += ["--no-shipped", "--weights", str(model_folder("irn-m", 2))]
    sizes = []
    exif_bytes = containers.exif_bytes
    monkeypatch.setattr(containers, "exif_bytes", lambda text: sizes.append(len(exif_bytes(text))) or exif_bytes(text))
    assert main(argv) == 0
    assert min(sizes) + 1 < max(sizes) <= containers.JPEG_MAX_EXIF  # all fit under the real limit
    monkeypatch.setattr(containers, "JPEG_MAX_EXIF", (min(sizes) + max(sizes)) // 2)  # now the large one does not
    assert main(argv) == 0
    rows = {r["method"]: r["sets"]["set"] for r in json.loads((out / "results.json").read_text())}
    assert rows["IRN-M"]["refused"] == 0 and rows["IRN-M"]["images"] == 2
    assert rows["IRN-M (jpeg q95)"]["refused"] == 1 and rows["IRN-M (jpeg q95)"]["images"] == 2
    table = (out / "results.md").read_text()
    assert "| IRN-M (jpeg q95) | 2 | " in table and "(1 of 2; 1 refused: code too large) |" in table
    monkeypatch.setattr(containers, "JPEG_MAX_EXIF", min(sizes) - 1)  # neither fits: a row with no figures
    assert main(argv) == 0
    table = (out / "results.md").read_text()
    assert "| IRN-M (jpeg q95) | 2 | all 2 refused (code too large for the format) | — |" in table


def test_cli_eval_reuses_rows_of_the_same_weights_and_images(model_folder, photo, tmp_path):
    data = tmp_path / "set"
    data.mkdir()
    Image.fromarray(photo).save(data / "a.png")
    folder = model_folder("irn-a", 2)
    first, second = tmp_path / "first", tmp_path / "second"
    argv = ["eval", "--data", str(data), "--scales", "2", "--damaged", "--no-shipped", "--weights", str(folder)]
    assert main([*argv, "--out", str(first)]) == 0
    rows = json.loads((first / "results.json").read_text())
    for row in rows:
        row["sets"]["set"]["psnr"] = 99.0  # a marker: a reused row keeps it, a measured one cannot
    (first / "results.json").write_text(json.dumps(rows))
    assert main([*argv, "--out", str(second), "--reuse", str(first / "results.json")]) == 0
    assert [r["sets"]["set"]["psnr"] for r in json.loads((second / "results.json").read_text())] == [99.0] * 3
    Image.fromarray(photo[:64, :48]).save(data / "b.png")  # other images: measured again
    assert main([*argv, "--out", str(second), "--reuse", str(first / "results.json")]) == 0
    again = json.loads((second / "results.json").read_text())
    assert all(r["sets"]["set"]["images"] == 2 and r["sets"]["set"]["psnr"] < 99.0 for r in again)


def test_cli_eval_sets_each_models_lr_against_the_bicubic_thumbnail(model_folder, photo, tmp_path):
    data = tmp_path / "set"
    data.mkdir()
    Image.fromarray(photo).save(data / "a.png")
    folder = model_folder("irn-m", 2)
    argv = ["eval", "--data", str(data), "--scales", "2", "--formats", "png", "jpeg", "--damaged", "--no-shipped"]
    argv += ["--weights", str(folder)]
    first, second = tmp_path / "first", tmp_path / "second"
    assert main([*argv, "--out", str(first)]) == 0
    rows = {r["method"]: r["sets"]["set"] for r in json.loads((first / "results.json").read_text())}
    hr = modcrop(photo, 2)
    expected = psnr_y(bicubic_thumbnail(hr, 2), downscale_image(load_model(folder), hr).rgb, 0)
    # the service's engine and the PyTorch model may round a pixel apart: within a hundredth of a dB
    assert rows["IRN-M"]["lr_psnr"] == pytest.approx(expected, abs=0.01)
    assert rows["IRN-M"]["lr_psnr_min"] == rows["IRN-M"]["lr_psnr"]  # one photo
    # only the model's own lossless file carries the figure: the same LR, once
    assert [m for m, s in rows.items() if "lr_psnr" in s] == ["IRN-M"]

    # rows from before the figure existed: that row is measured again, the model's other rows are reused
    saved = json.loads((first / "results.json").read_text())
    for row in saved:
        for key in ("lr_psnr", "lr_psnr_min"):
            row["sets"]["set"].pop(key, None)
        row["sets"]["set"]["psnr"] = 99.0
    (first / "results.json").write_text(json.dumps(saved))
    assert main([*argv, "--out", str(second), "--reuse", str(first / "results.json")]) == 0
    again = {r["method"]: r["sets"]["set"] for r in json.loads((second / "results.json").read_text())}
    assert again["IRN-M"]["psnr"] < 99.0 and again["IRN-M"]["lr_psnr"] == pytest.approx(expected, abs=0.01)
    assert {m: s["psnr"] for m, s in again.items() if m != "IRN-M"} == dict.fromkeys(
        ["Bicubic", "IRN-M (jpeg q95)", "IRN-M [strip-metadata]"], 99.0
    )


def test_cli_eval_keeps_finished_rows_when_killed_and_resumes_from_them(model_folder, photo, tmp_path, monkeypatch):
    from models.evaluation import evaluate

    data = tmp_path / "set"
    data.mkdir()
    Image.fromarray(photo).save(data / "a.png")
    out = tmp_path / "report"
    argv = ["eval", "--data", str(data), "--scales", "2", "--no-shipped", "--weights", str(model_folder("irn", 2))]
    argv += ["--out", str(out)]

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patched:
        patched.setattr(evaluate, "round_trip_file", killed)  # dies inside the model's group, after bicubic's
        with pytest.raises(KeyboardInterrupt):
            main(argv)
    rows = json.loads((out / "results.json").read_text())
    assert [r["method"] for r in rows] == ["Bicubic"]
    rows[0]["sets"]["set"]["psnr"] = 99.0  # a marker: only a resumed row keeps it
    (out / "results.json").write_text(json.dumps(rows))
    assert main([*argv, "--reuse", str(out / "results.json")]) == 0
    resumed = json.loads((out / "results.json").read_text())
    assert [r["method"] for r in resumed] == ["Bicubic", "IRN"]
    assert resumed[0]["sets"]["set"]["psnr"] == 99.0 and resumed[1]["sets"]["set"]["psnr"] < 99.0


def test_cli_eval_writes_table_and_figure(model_folder, photo, tmp_path, capsys):
    data = tmp_path / "set"
    data.mkdir()
    Image.fromarray(photo).save(data / "a.png")
    Image.fromarray(photo[:64, :48]).save(data / "b.png")
    folder = model_folder("irn-a", 2)
    out = tmp_path / "report"
    argv = [
        "eval",
        "--data",
        str(data),
        "--scales",
        "2",
        "--no-shipped",
        "--weights",
        str(folder),
        "--out",
        str(out),
        "--figure",
        "--report",
        str(tmp_path / "docs" / "results.md"),
    ]
    plot_loss_curves([{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.0}], folder / "loss.png", "irn-a x2")
    assert main(argv) == 0
    report = (tmp_path / "docs" / "results.md").read_text()
    assert "| Bicubic | 2 | " in report and "| IRN-A | 2 | " in report
    assert "![crops](../report/figure.png)" in report
    assert "![irn-a x2](../irn-a-x2/loss.png)" in report
    assert "| IRN-A | 2 | " in report.split("## Distance to the paper")[1]  # x2 IRN-A: not in the paper
    rows = json.loads((out / "results.json").read_text())
    assert [r["method"] for r in rows if r["scale"] == 2][:1] == ["Bicubic"]
    learned = next(r for r in rows if r["method"] == "IRN-A")
    assert learned["sets"]["set"]["images"] == 2 and learned["sets"]["set"]["bytes_per_px"] > 0
    assert "| Bicubic | 2 |" in (out / "results.md").read_text()
    assert (out / "figure.png").stat().st_size > 1000


def test_registry_finds_by_variant_and_scale(model_folder):
    folder = model_folder("dlv-irn", 4)
    registry = Registry([folder], include_shipped=False)
    entry = registry.find("dlv-irn", 4)
    assert entry.weights_id == weights_id(folder) and len(entry.weights_id) == 16
    with pytest.raises(LookupError, match="no weights for irn x2"):
        registry.find("irn", 2)
