import json
from pathlib import Path

import httpx
import pytest
from safetensors import safe_open

from models.store.checkpoint import sha256_file
from models.store.publish import publish, record_eval
from models.store.registry import weights_id
from tests.conftest import SHARED_DATA
from tests.service_helpers import running_server, settings_for

SHARED_EVAL = SHARED_DATA / "eval"


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
    assert entry["config"]["blocks_per_level"] == 1

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
    run = model_folder("irn", 2)
    publish(run, dest=dest)
    publish(run, dest=dest)  # the same weights: nothing a file names changes
    assert len(json.loads((dest / "manifest.json").read_text())["models"]) == 1
    publish(model_folder("irn", 2), dest=dest, overwrite=True)  # other weights, on purpose
    models = json.loads((dest / "manifest.json").read_text())["models"]
    assert [m["weights_id"] for m in models] == [weights_id(dest / "irn-x2")]


def test_shipped_weights_are_checked_against_the_manifest(model_folder, tmp_path, monkeypatch):
    from models.store import registry

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

    from models.store.publish import record_eval

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


def test_new_weights_supersede_shipped_ones_and_the_old_files_still_read(model_folder, photo, tmp_path, monkeypatch):
    import numpy as np
    import torch
    from PIL import Image

    from models.cli import main
    from models.files import decode
    from models.store import publish as publishing
    from models.store import registry
    from models.store.checkpoint import load_model, save_model
    from service.catalogue import Catalogue

    dest = tmp_path / "weights"
    dest.mkdir()
    monkeypatch.setattr(registry, "SHIPPED", dest)
    monkeypatch.setattr(registry, "MANIFEST", dest / "manifest.json")
    monkeypatch.setattr(publishing, "SHIPPED", dest)
    old_run, new_run = model_folder("irn", 2), tmp_path / "retrained"
    model = load_model(old_run)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    save_model(model, new_run)
    src, old_file, before, after = (tmp_path / n for n in ("in.png", "old.png", "before.png", "after.png"))
    Image.fromarray(photo).save(src)

    assert main(["publish", str(old_run)]) == 0
    old_id = weights_id(dest / "irn-x2")
    assert main(["downscale", str(src), str(old_file), "--scale", "2", "--variant", "irn"]) == 0
    assert main(["upscale", str(old_file), str(before)]) == 0

    # the same name with other weights would orphan every file the shipped ones made
    with pytest.raises(ValueError, match=rf"irn-x2 already ships other weights \({old_id}\), and the files they made"):
        publish(new_run, dest=dest)
    assert weights_id(dest / "irn-x2") == old_id and not list(dest.glob(".*"))
    with pytest.raises(ValueError, match="--supersedes irn-x4: no such model in"):
        publish(new_run, name="irn-x2-v2", dest=dest, supersedes="irn-x4")

    assert main(["publish", str(new_run), "--name", "irn-x2-v2", "--supersedes", "irn-x2"]) == 0
    manifest = {m["name"]: m for m in json.loads((dest / "manifest.json").read_text())["models"]}
    assert manifest["irn-x2"]["superseded_by"] == "irn-x2-v2" and "superseded_by" not in manifest["irn-x2-v2"]
    loaded = registry.Registry()
    new_id = weights_id(dest / "irn-x2-v2")
    assert new_id != old_id and loaded.find("irn", 2).weights_id == new_id
    assert loaded.get(old_id).superseded_by == "irn-x2-v2"
    catalogue = Catalogue(loaded)  # the service's view: new files get the new weights, /v1/models lists both
    assert catalogue.resolve(model=None, mode="plain", scale=2).weights_id == new_id
    assert {m["weights_id"]: m["superseded_by"] for m in catalogue.describe()} == {old_id: "irn-x2-v2", new_id: None}

    # a file made before the change is upscaled by the weights that made it, pixel for pixel as before
    assert main(["upscale", str(old_file), str(after)]) == 0
    assert np.array_equal(np.asarray(Image.open(before)), np.asarray(Image.open(after)))
    new_file = tmp_path / "new.png"
    assert main(["downscale", str(src), str(new_file), "--scale", "2", "--variant", "irn"]) == 0
    assert decode(new_file.read_bytes()).header.weights_id == new_id

    # overwriting on purpose drops the old weights: their files no longer read
    publish(new_run, name="irn-x2", dest=dest, overwrite=True)
    assert weights_id(dest / "irn-x2") == new_id


def test_publish_into_a_folder_of_its_own_leaves_the_shipped_weights_alone(model_folder, tmp_path, capsys):
    from models.cli import main
    from models.store.registry import MANIFEST

    shipped = MANIFEST.read_bytes()
    run = model_folder("irn", 2)
    assert main(["publish", str(run), "--name", "mine-x2", "--into", str(tmp_path / "weights"), "--no-context"]) == 0
    out = capsys.readouterr().out
    assert f"published mine-x2 in {tmp_path / 'weights' / 'mine-x2'}" in out
    assert "tile context not measured: tiles carry the default 24 LR px (--context-data)" in out
    manifest = json.loads((tmp_path / "weights" / "manifest.json").read_text())
    assert [m["name"] for m in manifest["models"]] == ["mine-x2"]
    assert manifest["models"][0]["weights_id"] == weights_id(tmp_path / "weights" / "mine-x2")
    assert MANIFEST.read_bytes() == shipped


def test_a_run_from_published_weights_counts_the_stages_behind_them(model_folder, tmp_path):
    """The run folders behind a published model are gone; its manifest entry keeps their budgets."""
    from models.store.checkpoint import load_model, save_model

    def run(folder, source, init_from, steps):
        training = {"steps": steps, "batch_size": 8, "patch": 64, "seed": 0, "config": {"init_from": init_from}}
        return save_model(load_model(source), folder, extra={"training": training}).parent

    dest = tmp_path / "weights"
    dest.mkdir()
    first = run(tmp_path / "first", model_folder("irn", 2), None, 100)
    second = run(tmp_path / "second", first, str(first), 200)
    publish(second, dest=dest)
    for path in sorted(first.iterdir()):  # the first run's folder goes, as runs/ does in a clone
        path.unlink()
    third = run(tmp_path / "third", second, str(dest / "irn-x2"), 300)
    entry = publish(third, name="irn-x2-v2", dest=dest, supersedes="irn-x2")
    assert [(s["run"], s["steps"]) for s in entry["training"]["earlier_stages"]] == [
        (str(dest / "irn-x2"), 200),
        (str(first), 100),
    ]


def test_publish_measures_the_tile_context_the_service_then_uses(model_folder, tmp_path, capsys):
    from PIL import Image

    from models.cli import main
    from models.inference.context import MARGIN_LR
    from models.store.registry import Registry

    photos = tmp_path / "photos"
    photos.mkdir()
    with Image.open(SHARED_EVAL / "cliff.png") as im:
        im.convert("RGB").crop((400, 200, 592, 392)).save(photos / "cliff.png")
    run = model_folder("irn-a", 2)
    args = ["publish", str(run), "--name", "mine-x2", "--into", str(tmp_path / "weights")]
    assert main([*args, "--context-data", str(photos), "--context-photos", "cliff"]) == 0
    out = capsys.readouterr().out
    assert "LR px within 1 code" in out
    folder = tmp_path / "weights" / "mine-x2"
    measured = json.loads((folder / "config.json").read_text())["inference"]
    assert measured["measured"]["photos"] == ["cliff"]
    assert measured["context_lr"] == measured["measured"]["smallest_overlap_within_1_code"] + MARGIN_LR
    (entry,) = Registry([folder], include_shipped=False).entries.values()
    assert entry.context_lr == measured["context_lr"]


def test_publish_names_missing_context_photos_before_writing_anything(model_folder, tmp_path, capsys):
    from models.cli import main

    run = model_folder("irn-a", 2)
    args = ["publish", str(run), "--name", "mine-x2", "--into", str(tmp_path / "weights")]
    assert main([*args, "--context-data", str(tmp_path), "--context-photos", "cliff", "rocks"]) == 2
    assert f"--context-photos: no cliff.png, rocks.png in {tmp_path}" in capsys.readouterr().err
    assert not (tmp_path / "weights").exists()


@pytest.fixture
def shipped_store(tmp_path, monkeypatch):
    """models/weights and models/retired of their own: every module reads them where the shipped ones are."""
    from models.store import publish as publishing
    from models.store import registry

    dest, retired = tmp_path / "models" / "weights", tmp_path / "models" / "retired"
    dest.mkdir(parents=True)
    monkeypatch.setattr(registry, "SHIPPED", dest)
    monkeypatch.setattr(registry, "MANIFEST", dest / "manifest.json")
    monkeypatch.setattr(registry, "RETIRED", retired)
    monkeypatch.setattr(publishing, "SHIPPED", dest)
    return dest, retired


def perturbed_run(model_folder, tmp_path, name: str, seed: int) -> Path:
    """Another set of weights for irn x2: a run to publish after the first."""
    import torch

    from models.store.checkpoint import load_model, save_model

    model = load_model(model_folder("irn", 2))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=generator))
    return save_model(model, tmp_path / name).parent


def test_a_model_superseded_twice_over_retires_and_its_files_name_the_folder_to_serve(
    model_folder, photo, tmp_path, shipped_store, capsys
):
    import numpy as np
    from PIL import Image

    from models.cli import main
    from models.store import registry
    from models.store.retire import retire

    dest, retired = shipped_store
    src, old_file, before, after = (tmp_path / n for n in ("in.png", "old.png", "before.png", "after.png"))
    Image.fromarray(photo).save(src)
    assert main(["publish", str(model_folder("irn", 2)), "--name", "irn-x2", "--no-context"]) == 0
    first = weights_id(dest / "irn-x2")
    assert main(["downscale", str(src), str(old_file), "--scale", "2", "--variant", "irn"]) == 0
    assert main(["upscale", str(old_file), str(before)]) == 0
    second, third = (perturbed_run(model_folder, tmp_path, f"run-{s}", s) for s in (2, 3))
    assert main(["publish", str(second), "--name", "irn-x2-v2", "--supersedes", "irn-x2", "--no-context"]) == 0
    capsys.readouterr()

    # the model that makes new files, and the one it superseded while its successor makes them, stay
    with pytest.raises(ValueError, match=r"^irn-x2-v2 makes new irn x2 files: publish its successor with "):
        retire("irn-x2-v2")
    with pytest.raises(
        ValueError,
        match=r"^irn-x2 is superseded by irn-x2-v2, which makes new files: the shipped set keeps the model it "
        r"replaced for the files made before it; retire irn-x2 once irn-x2-v2 is superseded too$",
    ):
        retire("irn-x2")
    with pytest.raises(ValueError, match=r"^no model irn-x4 in "):
        retire("irn-x4")
    assert main(["retire"]) == 0
    assert capsys.readouterr().out == "no shipped model is due to retire\n"

    assert main(["publish", str(third), "--name", "irn-x2-v3", "--supersedes", "irn-x2-v2", "--no-context"]) == 0
    assert "they can leave the shipped set: rescale retire irn-x2\n" in capsys.readouterr().out
    assert main(["retire"]) == 0
    assert capsys.readouterr().out == "due to retire: irn-x2\n"
    size = (dest / "irn-x2" / "model.safetensors").stat().st_size
    assert main(["retire", "irn-x2"]) == 0
    out = capsys.readouterr().out
    assert (
        out.startswith(f"retired irn-x2 ({first}) to models/retired/irn-x2: ")
        and int(out.split(": ")[1].split(" ")[0].replace(",", "")) > size
    )
    assert not (dest / "irn-x2").exists() and weights_id(retired / "irn-x2") == first

    manifest = json.loads((dest / "manifest.json").read_text())
    assert [m["name"] for m in manifest["models"]] == ["irn-x2-v2", "irn-x2-v3"]
    assert manifest["retired"] == [
        {
            "name": "irn-x2",
            "variant": "irn",
            "scale": 2,
            "weights_id": first,
            "sha256": sha256_file(retired / "irn-x2" / "model.safetensors"),
            "superseded_by": "irn-x2-v2",
            "folder": "models/retired/irn-x2",
        }
    ]
    kept = json.loads((retired / "manifest.json").read_text())["models"]
    assert [m["name"] for m in kept] == ["irn-x2"] and kept[0]["superseded_by"] == "irn-x2-v2"
    with pytest.raises(ValueError, match=r"^irn-x2 is retired already: its folder is models/retired/irn-x2$"):
        retire("irn-x2")

    # its files are refused with the folder to serve, by the CLI and by the service
    assert main(["upscale", str(old_file), str(after)]) == 2
    message = (
        f"this file was made by weights {first} (irn-x2, irn x2), retired from the shipped set: serve their folder "
        "models/retired/irn-x2 with RESCALE_WEIGHTS_DIRS or --weights to read it"
    )
    assert capsys.readouterr().err == f"rescale upscale: {message}\n"
    with running_server(settings_for({}, include_shipped_weights=True, backend="torch")) as base:
        response = httpx.post(f"{base}/upscale", content=old_file.read_bytes(), headers={"content-type": "image/png"})
    assert response.status_code == 422
    assert response.json()["code"] == "unknown_weights" and response.json()["message"] == message

    # served from its folder, it reads them pixel for pixel as before, and still makes no new files
    assert main(["upscale", str(old_file), str(after), "--weights", str(retired / "irn-x2")]) == 0
    assert np.array_equal(np.asarray(Image.open(before)), np.asarray(Image.open(after)))
    loaded = registry.Registry([retired / "irn-x2"])
    assert loaded.get(first).superseded_by == "irn-x2-v2"
    assert loaded.find("irn", 2).weights_id == weights_id(dest / "irn-x2-v3")
    assert registry.Registry([retired / "irn-x2"], include_shipped=False).get(first).superseded_by == "irn-x2-v2"


def test_paths_to_a_retired_model_still_find_it(model_folder, tmp_path, shipped_store):
    """A config's init_from and the stages behind a model name models/weights/NAME: they follow it when it retires."""
    from models.store.checkpoint import load_model, save_model
    from models.store.publish import earlier_stages
    from models.store.registry import resolve_folder
    from models.store.retire import retire

    dest, retired = shipped_store
    publish(model_folder("irn", 2), name="irn-x2", dest=dest)
    for version, before in ((2, "irn-x2"), (3, "irn-x2-v2")):
        publish(
            perturbed_run(model_folder, tmp_path, f"run-{version}", version),
            name=f"irn-x2-v{version}",
            dest=dest,
            supersedes=before,
        )
    warm = save_model(
        load_model(dest / "irn-x2"),
        tmp_path / "warm",
        extra={"training": {"steps": 5, "seed": 1, "config": {"init_from": str(dest / "irn-x2")}}},
    ).parent
    training = json.loads((warm / "config.json").read_text())["training"]
    stages = earlier_stages(training, root=dest)
    retire("irn-x2")

    assert resolve_folder(dest / "irn-x2") == retired / "irn-x2"
    assert resolve_folder(dest / "irn-x2-v3") == dest / "irn-x2-v3"
    assert resolve_folder(tmp_path / "elsewhere") == tmp_path / "elsewhere"  # not a shipped path: left as given
    assert earlier_stages(training, root=dest) == stages and stages[0]["run"] == str(dest / "irn-x2")
