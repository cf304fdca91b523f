import json

import pytest

from models.evaluation import pools, report
from models.evaluation.report import write_report
from models.store.checkpoint import load_model, save_model
from models.store.publish import publish


def _row(method, scale, psnr, fmt="png", damage=None):
    return {
        "method": method,
        "scale": scale,
        "format": None if method == "Bicubic" else fmt,
        "damage": damage,
        "weights_id": None,
        "sets": {"eval": {"psnr": psnr, "ssim": 0.9, "bytes_per_px": None if method == "Bicubic" else 0.5}},
    }


def test_report_puts_our_gain_beside_the_papers(tmp_path):
    rows = [
        _row("Bicubic", 4, 30.0),
        _row("IRN", 4, 33.0),
        _row("IRN", 4, 31.0, fmt="jpeg"),
        _row("IRN-M", 4, 32.0, damage="strip-metadata"),
        _row("Bicubic", 2, 35.0),
        _row("IRN-A", 2, 43.0),
    ]
    text = write_report(
        report=tmp_path / "results.md", rows=rows, set_names=["eval"], models=[], figure=None, loss_curves={}
    ).read_text()
    gaps = text.split("## Distance to the paper")[1]
    # paper x4 IRN: 35.07 - 26.66 = +8.41 dB; ours +3.00, so 5.41 dB to go
    assert "| IRN | 4 | +3.00 dB | +8.41 dB | 5.41 dB |" in gaps
    assert "| IRN-A | 2 | +8.00 dB | not reported | — |" in gaps
    assert "jpeg" not in gaps and "strip-metadata" not in gaps
    assert "| IRN | 4 | 33.00 / 0.9000 (+3.00) | 0.500 |" in text


def test_report_sets_each_budget_against_the_papers():
    model = {
        "name": "irn-x4",
        "variant": "irn",
        "weights_id": "0" * 16,
        "parameters": 4_355_136,
        "training": {"steps": 1800, "batch_size": 8, "patch": 64, "wall_time_s": 3600.0, "hardware": "cpu"},
    }
    a = model | {"name": "irn-a-x4", "variant": "irn-a"}
    text = report._paper_budget_rows([model, a])
    # 500k x 16 x 144^2 = 165.9 G pixels against 1800 x 8 x 64^2 = 59 M: 2,812.5x the pixels, so as many hours
    assert text[2] == "| irn-x4 | 59 M | 166 G | 2,812x | 2,812 h on cpu |"
    assert text[3] == "| irn-a-x4 | 59 M | 83 G | 1,406x | 1,406 h on cpu |"


def test_report_counts_the_runs_a_warm_started_model_stands_on():
    stage = {"steps": 1800, "batch_size": 8, "patch": 64, "wall_time_s": 3600.0}
    model = {
        "name": "irn-x4",
        "variant": "irn",
        "weights_id": "0" * 16,
        "parameters": 4_355_136,
        "training": stage | {"hardware": "cpu", "init_from": "irn x4 at step 1800", "earlier_stages": [stage]},
    }
    # twice the pixels at the same rate: half the multiple, the same hours
    assert report._paper_budget_rows([model])[2] == "| irn-x4 | 118 M | 166 G | 1,406x | 2,812 h on cpu |"
    assert "| irn x4 at step 1800 | 1.00 h (2.00 h) | cpu |" in report._budget_rows([model])[2]


def test_pypi_pool_names_the_missing_package(monkeypatch):
    monkeypatch.setattr(pools.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match=r"needs the scikit-image package: pip install -e '.\[eval\]'"):
        pools.image_set("pypi")


def test_a_folder_set_is_named_after_the_folder(tmp_path, photo):
    from PIL import Image

    (tmp_path / "pool").mkdir()
    Image.fromarray(photo).save(tmp_path / "pool" / "b.png")
    Image.fromarray(photo).save(tmp_path / "pool" / "a.jpg")
    image_set = pools.image_set(str(tmp_path / "pool"))
    assert image_set.name == "pool" and [p.name for p in image_set.paths] == ["a.jpg", "b.png"]


def test_publish_records_where_a_warm_started_run_began(model_folder, tmp_path):
    source = model_folder("irn-a", 2)
    base = model_folder("irn", 2)
    save_model(load_model(base), base, extra={"training": {"steps": 3000, "wall_time_s": 60.0}})
    source_training = {"steps": 1284, "wall_time_s": 30.0, "config": {"init_from": str(base)}}
    save_model(load_model(source), source, extra={"training": source_training})
    run = model_folder("irn-a", 4)
    save_model(load_model(run), run, extra={"training": {"steps": 10, "config": {"init_from": str(source)}}})
    dest = tmp_path / "weights"
    dest.mkdir()
    entry = publish(run, dest=dest)
    assert entry["training"]["init_from"] == f"irn-a x2 at step 1284 ({source})"
    assert entry["training"]["earlier_stages"] == [
        {"run": str(source), "variant": "irn-a", "scale": 2, "steps": 1284, "wall_time_s": 30.0},
        {"run": str(base), "variant": "irn", "scale": 2, "steps": 3000, "wall_time_s": 60.0},
    ]
    assert "config" not in json.loads((dest / "manifest.json").read_text())["models"][0]["training"]


def test_report_sets_each_model_against_bicubic_and_what_it_extends():
    rows = [
        _row("Bicubic", 2, 35.0),
        _row("IRN", 2, 43.0),
        _row("IRN-A", 2, 44.5),
        _row("IRN-A", 2, 34.0, damage="drop-alpha"),
        _row("IRN-M", 2, 43.5, fmt="webp"),
        _row("DLV-IRN-A", 2, 45.0),
    ]
    lines = report._margin_rows(rows, "eval")
    assert lines[2:] == [
        "| IRN | 2 | 43.00 | +8.00 dB | — | — |",
        "| IRN-A | 2 | 44.50 | +9.50 dB | IRN | +1.50 dB |",
        "| DLV-IRN-A | 2 | 45.00 | +10.00 dB | DLV-IRN | — |",  # no DLV-IRN row to set it against
    ]


def test_report_lists_each_models_lr_against_the_thumbnail():
    rows = [
        _row("Bicubic", 2, 35.0),
        _row("IRN", 2, 43.0) | {"weights_id": "a" * 16},
        _row("IRN", 2, 31.0, fmt="jpeg") | {"weights_id": "a" * 16},
        _row("IRN-JPEG", 2, 37.5) | {"weights_id": "b" * 16},
    ]
    rows[1]["sets"]["eval"] |= {"lr_psnr": 46.904, "lr_psnr_min": 39.08}
    rows[3]["sets"]["pypi"] = {"psnr": 32.5, "ssim": 0.9, "lr_psnr": 37.0, "lr_psnr_min": 30.0}
    assert report._thumbnail_rows(rows, ["eval", "pypi"]) == [
        "| Model | Scale | eval: mean / worst photo | pypi: mean / worst photo |",
        "|---|---|---|---|",
        "| IRN | 2 | 46.90 / 39.08 dB | — |",
        "| IRN-JPEG | 2 | — | 37.00 / 30.00 dB |",  # rows measured before the figure existed show none
    ]
