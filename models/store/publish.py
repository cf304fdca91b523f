"""Shipping weights: a trained run becomes fp16 safetensors under models/weights/ plus a manifest entry.

The manifest (models/weights/manifest.json) lists, per model: variant, scale, architecture
config, sha256, weights id, size, training data and budget, and the eval figures that
`rescale eval --manifest` measured from the shipped (fp16) files.
"""

import json
import os
import shutil
from pathlib import Path

import torch

from models.store.checkpoint import CONFIG_FILE, WEIGHTS_FILE, load_model, save_model, sha256_file
from models.store.registry import ID_LENGTH, MANIFEST, RETIRED, SHIPPED, resolve_folder

LOSS_PLOT = "loss.png"


def read_manifest(path: Path = MANIFEST) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {"models": []}


def write_manifest(manifest: dict, path: Path = MANIFEST) -> None:
    manifest["models"].sort(key=lambda m: (m["scale"], m["variant"]))
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(tmp, path)


STAGE_KEYS = (
    "seed",
    "steps",
    "batch_size",
    "patch",
    "precision",
    "codec_pretrain_steps",
    "wall_time_s",
    "hardware",
    "sittings",
)


def earlier_stages(training: dict, manifest: dict | None = None, root: Path = SHIPPED) -> list[dict]:
    """The runs a warm-started run stands on, nearest first, each with its own budget (what its folder recorded).
    A shipped model's own earlier stages come from its manifest entry: the run folders it came from are not
    kept, its entry is."""
    retired = root.parent / RETIRED.name  # a model retired from the shipped set keeps its full entry there
    shipped = {(root / m["name"]).resolve(): m for m in (manifest or read_manifest(root / MANIFEST.name))["models"]}
    shipped |= {(retired / m["name"]).resolve(): m for m in read_manifest(retired / MANIFEST.name)["models"]}
    stages: list[dict] = []
    folder = training.get("config", {}).get("init_from")
    while folder and len(stages) < 16:
        found = resolve_folder(folder, shipped=root, retired=retired)
        if not (found / CONFIG_FILE).is_file():
            break
        source = json.loads((found / CONFIG_FILE).read_text())
        earlier = source.get("training", {})
        model = source["model"]
        stages.append(
            {"run": str(folder), "variant": model["variant"], "scale": model["scale"]}
            | {k: earlier[k] for k in STAGE_KEYS if k in earlier}
        )
        entry = shipped.get(found.resolve())
        if entry is not None:
            return stages + entry["training"].get("earlier_stages", [])
        folder = earlier.get("config", {}).get("init_from")
    return stages


def warm_start(training: dict, stages: list[dict]) -> str | None:
    """'<variant> x<scale> at step N (<folder>)' for a run that started from another model folder."""
    folder = training.get("config", {}).get("init_from")
    if not folder:
        return None
    if not stages:  # the folder it started from is gone
        return str(folder)
    first = stages[0]
    return f"{first['variant']} x{first['scale']} at step {first.get('steps', '?')} ({folder})"


class PublishError(ValueError):
    pass


def publish(
    run: str | Path,
    *,
    name: str | None = None,
    dest: Path | None = None,
    supersedes: str | None = None,
    overwrite: bool = False,
) -> dict:
    """Ship a run as fp16 weights under `dest/name` with its manifest entry.

    Files name the weights that made them, so shipped weights are never replaced silently: new weights for a
    variant and scale go under a new name with `supersedes` (the old ones stay loadable for the files already
    made, and stop serving new ones), or over the old folder only with `overwrite`."""
    run, dest = Path(run), SHIPPED if dest is None else dest
    model = load_model(run)
    training = json.loads((run / CONFIG_FILE).read_text()).get("training", {})
    lossy = "-jpeg" if "lossy_codec" in training else ""  # compression-aware: beside the lossless model
    name = name or f"{model.config.variant}{lossy}-x{model.config.scale}"
    manifest_path = dest / "manifest.json"
    manifest = read_manifest(manifest_path)
    shipped = {m["name"]: m for m in manifest["models"]}
    if supersedes is not None:
        old = shipped.get(supersedes)
        if old is None:
            raise PublishError(f"--supersedes {supersedes}: no such model in {manifest_path}")
        if supersedes == name:
            raise PublishError(f"--supersedes {supersedes} needs a new --name: the old weights keep their folder")
        if (old["variant"], old["scale"]) != (model.config.variant, model.config.scale):
            raise PublishError(
                f"--supersedes {supersedes}: it is {old['variant']} x{old['scale']}, "
                f"this run is {model.config.variant} x{model.config.scale}"
            )
    stages = earlier_stages(training, manifest, dest)
    folder, staging = dest / name, dest / f".{name}.publishing"
    shutil.rmtree(staging, ignore_errors=True)  # a publish killed halfway
    save_model(model, staging, dtype=torch.float16, extra={"training": training})
    if (run / LOSS_PLOT).is_file():
        shutil.copyfile(run / LOSS_PLOT, staging / LOSS_PLOT)
    sha = sha256_file(staging / WEIGHTS_FILE)
    previous = shipped.get(name)
    if previous is not None and not overwrite and previous["sha256"] != sha:
        shutil.rmtree(staging)
        raise PublishError(
            f"{name} already ships other weights ({previous['weights_id']}), and the files they made name them: "
            f"publish under a new --name with --supersedes {name}, or pass --overwrite to drop them"
        )
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(staging, folder)
    entry = {
        "name": name,
        "variant": model.config.variant,
        "scale": model.config.scale,
        "weights_id": sha[:ID_LENGTH],
        "sha256": sha,
        "bytes": (folder / WEIGHTS_FILE).stat().st_size,
        "dtype": "float16",
        "parameters": sum(p.numel() for p in model.parameters()),
        "config": model.config.to_dict(),
        "training": {k: v for k, v in training.items() if k != "config"}
        | {"init_from": warm_start(training, stages), "earlier_stages": stages},
        "eval": {},
    }
    if supersedes is not None:
        shipped[supersedes]["superseded_by"] = name
    manifest["models"] = [m for m in manifest["models"] if m["name"] != name] + [entry]
    write_manifest(manifest, manifest_path)
    return entry


def record_eval(rows: list[dict], manifest_path: Path = MANIFEST) -> list[str]:
    """Store each shipped model's PNG round-trip figures (and bicubic on the same images); a compression-aware
    model also gets its figures through each real codec measured, beside the bicubic thumbnail's."""
    manifest = read_manifest(manifest_path)
    bicubic = {
        (r["scale"], r["method"], name): s for r in rows if r["weights_id"] is None for name, s in r["sets"].items()
    }
    updated = []
    for entry in manifest["models"]:
        for row in rows:
            if row["weights_id"] != entry["weights_id"] or row["damage"]:
                continue
            if row["format"] == "png":
                for name, score in row["sets"].items():
                    entry["eval"][name] = {**score, "bicubic": bicubic.get((row["scale"], "Bicubic", name))}
                updated.append(entry["name"])
            elif "lossy_codec" in entry["training"] and "(" in row["method"]:
                codec = row["method"].split("(", 1)[1].rstrip(")")  # e.g. "jpeg q90"
                thumbnail = f"Bicubic ({codec})"
                entry.setdefault("eval_lossy", {})[codec] = {
                    name: {**score, "bicubic": bicubic.get((row["scale"], thumbnail, name))}
                    for name, score in row["sets"].items()
                }
    write_manifest(manifest, manifest_path)
    return sorted(set(updated))
