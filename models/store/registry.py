"""Model folders by weights id: the shipped set under models/weights plus any folder given.

A weights id is the first 16 hex digits of the sha256 of `model.safetensors`; files
written by `rescale downscale` name it, so upscaling finds the exact weights. Shipped weights
that newer ones supersede (`superseded_by` in the manifest) stay loadable for the files they
made, and make no new ones; those retired from the shipped set (models/store/retire.py) leave a record in the
manifest, so that a file they made is refused with the folder to serve, and that folder, given by hand, reads
old files and makes no new ones.
"""

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from models.files.header import Header, check_weights
from models.networks.rescaler import ModelConfig, Rescaler
from models.store.checkpoint import CONFIG_FILE, WEIGHTS_FILE, load_model, sha256_file

SHIPPED = Path(__file__).resolve().parents[1] / "weights"
MANIFEST = SHIPPED / "manifest.json"
RETIRED = SHIPPED.parent / "retired"  # superseded twice over: in the source, not in the image (retire.py)
ID_LENGTH = 16


@dataclass(frozen=True)
class Entry:
    weights_id: str
    folder: Path
    config: ModelConfig
    lossy: bool = False  # trained through a lossy codec: the model for JPEG/WebP files
    context_lr: int | None = None  # LR pixels of context its tiles need, measured (models/inference/context.py)
    superseded_by: str | None = None  # the shipped model that makes new files in its place; it reads old ones

    @property
    def label(self) -> str:
        """IRN, IRN-A, ... and IRN-JPEG, IRN-M-JPEG for the compression-aware (JPEG-trained) models."""
        return self.config.variant.upper() + ("-JPEG" if self.lossy else "")


class UnknownWeightsError(LookupError):
    pass


def _manifest() -> dict:
    return json.loads(MANIFEST.read_text()) if MANIFEST.is_file() else {"models": []}


def resolve_folder(folder: str | Path, *, shipped: Path | None = None, retired: Path | None = None) -> Path:
    """The folder itself, or, where it named a shipped model that has since retired, where that model is now."""
    folder, shipped, retired = Path(folder), shipped or SHIPPED, retired or RETIRED
    if folder.exists() or folder.resolve().parent != shipped.resolve():
        return folder
    moved = retired / folder.name
    return moved if moved.is_dir() else folder


def weights_id(folder: str | Path) -> str:
    return sha256_file(Path(folder) / WEIGHTS_FILE)[:ID_LENGTH]


class Registry:
    def __init__(self, folders: list[str | Path] | None = None, *, include_shipped: bool = True) -> None:
        self.entries: dict[str, Entry] = {}
        candidates = [Path(f) for f in folders or []]
        if include_shipped and SHIPPED.is_dir():
            # a dot folder is a publish in progress (models/store/publish.py)
            candidates += sorted(
                p.parent for p in SHIPPED.glob(f"*/{WEIGHTS_FILE}") if not p.parent.name.startswith(".")
            )
        shipped_manifest = _manifest()
        manifest = {m["name"]: m for m in shipped_manifest["models"]}
        # weights id -> record of a model retired from the shipped set
        self.retired: dict[str, dict] = {r["weights_id"]: r for r in shipped_manifest.get("retired", [])}
        for folder in candidates:
            if not (folder / WEIGHTS_FILE).is_file() or not (folder / CONFIG_FILE).is_file():
                raise FileNotFoundError(f"{folder} must hold {WEIGHTS_FILE} and {CONFIG_FILE}")
            saved = json.loads((folder / CONFIG_FILE).read_text())
            config = ModelConfig.from_dict(saved["model"])
            lossy = "lossy_codec" in saved.get("training", {})
            sha = sha256_file(folder / WEIGHTS_FILE)
            shipped = manifest.get(folder.name, {}) if folder.parent == SHIPPED else {}
            if shipped.get("sha256", sha) != sha:
                raise ValueError(f"{folder / WEIGHTS_FILE} does not match the sha256 in {MANIFEST}")
            wid = sha[:ID_LENGTH]
            context = saved.get("inference", {}).get("context_lr")
            superseded_by = shipped.get("superseded_by") or self.retired.get(wid, {}).get("superseded_by")
            self.entries.setdefault(wid, Entry(wid, folder, config, lossy, context, superseded_by))
        self._loaded: dict[tuple[str, str], Rescaler] = {}

    def find(self, variant: str, scale: int, *, lossy: bool = False) -> Entry:
        """The first folder given (or shipped, not superseded) for this variant and scale, trained for lossless
        files or (`lossy`) through a lossy codec: the weights that make new files."""
        for entry in self.entries.values():
            made_for = (entry.config.variant, entry.config.scale, entry.lossy)
            if made_for == (variant, scale, lossy) and entry.superseded_by is None:
                return entry
        kind = " compression-aware" if lossy else ""
        raise UnknownWeightsError(f"no{kind} weights for {variant} x{scale}; train them or pass --weights FOLDER")

    def find_for_file(self, variant: str, scale: int, fmt: str) -> Entry:
        """The weights for a file of this format: a JPEG/WebP LR (plain or -M) gets the compression-aware model
        where one is loaded (the lossless-trained one otherwise); PNG and -A keep the lossless-trained ones."""
        if fmt != "png" and not ModelConfig(variant=variant).alpha:
            try:
                return self.find(variant, scale, lossy=True)
            except UnknownWeightsError:
                pass
        return self.find(variant, scale)

    def get(self, wid: str) -> Entry:
        if wid not in self.entries and wid in self.retired:
            r = self.retired[wid]
            raise UnknownWeightsError(
                f"this file was made by weights {wid} ({r['name']}, {r['variant']} x{r['scale']}), retired from the "
                f"shipped set: serve their folder {r['folder']} with RESCALE_WEIGHTS_DIRS or --weights to read it"
            )
        if wid not in self.entries:
            known = ", ".join(f"{e.config.variant} x{e.config.scale} ({k})" for k, e in self.entries.items()) or "none"
            raise UnknownWeightsError(f"this file was made by weights {wid}, which are not loaded (known: {known})")
        return self.entries[wid]

    def for_header(self, header: Header) -> Entry:
        """The weights a file names, checked against the variant and scale its header declares."""
        entry = self.get(header.weights_id)
        check_weights(header, entry.config.variant, entry.config.scale)
        return entry

    def model(self, wid: str, device: torch.device | str = "cpu") -> Rescaler:
        """The model for these weights on this device, loaded once."""
        key = (wid, str(device))
        if key not in self._loaded:
            self._loaded[key] = load_model(self.get(wid).folder, device=device)
        return self._loaded[key]
