import json

import pytest
from safetensors import safe_open

from models.checkpoint import sha256_file
from models.publish import publish, record_eval
from models.registry import weights_id


def test_publish_writes_fp16_weights_and_a_manifest_entry(model_folder, tmp_path):
    run = model_folder("irn-a", 2)
    dest = tmp_path / "weights"
    dest.mkdir()
    entry = publish(run, dest=dest)
    folder = dest / "irn-a-x2"
    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        assert {str(f.get_tensor(k).dtype) for k in f.keys()} == {"torch.float16"}
    manifest = json.loads((dest / "manifest.json").read_text())
    assert manifest["models"] == [entry]
    assert entry["sha256"] == sha256_file(folder / "model.safetensors")
    assert entry["weights_id"] == weights_id(folder)
    assert entry["variant"] == "irn-a" and entry["scale"] == 2 and entry["dtype"] == "float16"
    assert entry["config"]["blocks_per_level"] == 2

    rows = [
        {
            "method": "Bicubic",
            "scale": 2,
            "format": None,
            "damage": None,
            "weights_id": None,
            "sets": {"eval": {"psnr": 30.0}},
        },
        {
            "method": "IRN-A",
            "scale": 2,
            "format": "png",
            "damage": None,
            "weights_id": entry["weights_id"],
            "sets": {"eval": {"psnr": 40.0}},
        },
        {
            "method": "IRN-A (drop)",
            "scale": 2,
            "format": "png",
            "damage": "drop-alpha",
            "weights_id": entry["weights_id"],
            "sets": {"eval": {"psnr": 20.0}},
        },
    ]
    assert record_eval(rows, dest / "manifest.json") == ["irn-a-x2"]
    stored = json.loads((dest / "manifest.json").read_text())["models"][0]["eval"]
    assert stored == {"eval": {"psnr": 40.0, "bicubic": {"psnr": 30.0}}}


def test_republishing_replaces_the_entry(model_folder, tmp_path):
    dest = tmp_path / "weights"
    dest.mkdir()
    publish(model_folder("irn", 2), dest=dest)
    publish(model_folder("irn", 2), dest=dest)
    assert len(json.loads((dest / "manifest.json").read_text())["models"]) == 1


def test_shipped_weights_are_checked_against_the_manifest(model_folder, tmp_path, monkeypatch):
    from models import registry

    dest = tmp_path / "weights"
    dest.mkdir()
    publish(model_folder("irn", 2), dest=dest)
    monkeypatch.setattr(registry, "SHIPPED", dest)
    monkeypatch.setattr(registry, "MANIFEST", dest / "manifest.json")
    assert len(registry.Registry().entries) == 1
    manifest = json.loads((dest / "manifest.json").read_text())
    manifest["models"][0]["sha256"] = "0" * 64
    (dest / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="does not match the sha256 in"):
        registry.Registry()


def test_a_compression_aware_model_records_its_figures_through_each_codec(tmp_path):
    import json

    from models.publish import record_eval

    manifest = tmp_path / "manifest.json"
    entry = {"name": "irn-jpeg-x4", "scale": 4, "variant": "irn", "weights_id": "a" * 16, "eval": {}}
    entry["training"] = {"lossy_codec": {"quality_min": 50, "quality_max": 95}}
    manifest.write_text(json.dumps({"models": [entry]}))

    def row(method, wid, fmt, psnr):
        return {
            "method": method,
            "scale": 4,
            "format": fmt,
            "damage": None,
            "weights_id": wid,
            "sets": {"eval": {"psnr": psnr}},
        }

    rows = [
        row("Bicubic", None, None, 30.0),
        row("Bicubic (jpeg q90)", None, "jpeg", 29.0),
        row("IRN-JPEG", "a" * 16, "png", 31.0),
        row("IRN-JPEG (jpeg q90)", "a" * 16, "jpeg", 30.5),
    ]
    assert record_eval(rows, manifest) == ["irn-jpeg-x4"]
    saved = json.loads(manifest.read_text())["models"][0]
    assert saved["eval"]["eval"] == {"psnr": 31.0, "bicubic": {"psnr": 30.0}}
    assert saved["eval_lossy"] == {"jpeg q90": {"eval": {"psnr": 30.5, "bicubic": {"psnr": 29.0}}}}
