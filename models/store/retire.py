"""Retiring superseded weights from the shipped set, so that the image stays within its weights budget.

A superseded model still reads the files it made. Once its successor is superseded too, its files are two
models old: its folder and full manifest entry move to models/retired/ (kept in the source, left out of the
image and the wheel), and the shipped manifest keeps a record of it (`"retired"`), so that a file it made is
refused with a message naming the folder to serve, and a folder given by hand stays superseded.

Paths that name `models/weights/NAME` (configs' `init_from`, the stages a manifest entry lists) find a
retired NAME through `registry.resolve_folder`.
"""

import shutil
from pathlib import Path

from models.store import registry
from models.store.checkpoint import WEIGHTS_FILE, sha256_file
from models.store.publish import read_manifest, write_manifest

RECORD_KEYS = ("name", "variant", "scale", "weights_id", "sha256", "superseded_by")


class RetireError(ValueError):
    pass


def folder_bytes(folder: Path | None = None) -> int:
    """Bytes in a folder and below it: the shipped set's by default, as the image takes it."""
    return sum(p.stat().st_size for p in (folder or registry.SHIPPED).rglob("*") if p.is_file())


def due(manifest: dict | None = None) -> list[str]:
    """The shipped models that can retire: superseded by a model that is itself superseded. Per variant and
    scale the image keeps the model that makes new files and the one it superseded."""
    manifest = manifest or read_manifest(registry.MANIFEST)
    by_name = {m["name"]: m for m in manifest["models"]}
    return sorted(
        m["name"]
        for m in manifest["models"]
        if "superseded_by" in m and "superseded_by" in by_name.get(m["superseded_by"], {})
    )


def retire(name: str, *, shipped: Path | None = None, retired: Path | None = None) -> dict:
    """Move shipped model `name` to `retired/name` with its manifest entry; returns the record left behind.

    Each step leaves a state the next call completes: the entry is copied to the retired manifest first, the
    folder moves next, and the shipped manifest changes last."""
    shipped, retired = shipped or registry.SHIPPED, retired or registry.RETIRED
    manifest_path = shipped / registry.MANIFEST.name
    manifest = read_manifest(manifest_path)
    by_name = {m["name"]: m for m in manifest["models"]}
    record_folder = f"{shipped.parent.name}/{retired.name}/{name}"
    if name not in by_name:
        if any(r["name"] == name for r in manifest.get("retired", [])):
            raise RetireError(f"{name} is retired already: its folder is {record_folder}")
        raise RetireError(f"no model {name} in {manifest_path}")
    entry = by_name[name]
    successor = entry.get("superseded_by")
    if successor is None:
        raise RetireError(
            f"{name} makes new {entry['variant']} x{entry['scale']} files: publish its successor with "
            f"--supersedes {name} first"
        )
    if "superseded_by" not in by_name.get(successor, {}):
        raise RetireError(
            f"{name} is superseded by {successor}, which makes new files: the shipped set keeps the model it "
            f"replaced for the files made before it; retire {name} once {successor} is superseded too"
        )
    source, target = shipped / name, retired / name
    if source.is_dir() and sha256_file(source / WEIGHTS_FILE) != entry["sha256"]:
        raise RetireError(f"{source / WEIGHTS_FILE} does not match the sha256 in {manifest_path}")

    retired.mkdir(parents=True, exist_ok=True)
    retired_manifest = read_manifest(retired / registry.MANIFEST.name)
    retired_manifest["models"] = [m for m in retired_manifest["models"] if m["name"] != name] + [entry]
    write_manifest(retired_manifest, retired / registry.MANIFEST.name)
    if source.is_dir():
        shutil.rmtree(target, ignore_errors=True)  # a move killed halfway across file systems
        shutil.move(source, target)
    if sha256_file(target / WEIGHTS_FILE) != entry["sha256"]:
        raise RetireError(f"{target / WEIGHTS_FILE} does not match the sha256 of {name} in {manifest_path}")

    record = {k: entry[k] for k in RECORD_KEYS} | {"folder": record_folder}
    manifest["models"] = [m for m in manifest["models"] if m["name"] != name]
    manifest["retired"] = sorted(
        [r for r in manifest.get("retired", []) if r["name"] != name] + [record], key=lambda r: r["name"]
    )
    write_manifest(manifest, manifest_path)
    return record
