"""How many LR pixels of context a model's tiles need, measured: the smallest overlap at which tiled
results match whole-image results within one 8-bit code, in both directions, on real photos.

A coupling stack's receptive field is large on paper (every 3x3 convolution of every dense
block widens it), but what reaches the 8-bit output fades within a few pixels; measuring it
lets the tiles carry that much context and no more.

    python -m models.inference.context --write    # every shipped model, stored in its config.json
"""

import argparse
import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from models.files.images import load_rgb
from models.inference.engines import Engine, make_engine
from models.inference.pipeline import downscale_image, upscale_image
from models.inference.tiles import Tiling
from models.store.checkpoint import CONFIG_FILE
from models.store.registry import Registry

CANDIDATES = (0, 2, 4, 6, 8, 12, 16, 24, 32, 48)
MARGIN_LR = 4  # added to what the photos measured: other photos may need a little more
CORE_LR = 24  # small cores: many tile seams per photo
DEFAULT_DATA = "../shared/data/eval"
DEFAULT_PHOTOS = ("cliff", "lighthouse", "rocks")  # a sharp, a smooth and a busy photo


def max_code_difference(a: np.ndarray | None, b: np.ndarray | None) -> int:
    return 0 if a is None else int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())


def tiled_difference(engine: Engine, image: np.ndarray, overlap: int) -> int:
    """Largest difference in 8-bit codes between tiled and whole-image results (LR file contents, HR)."""
    tiling = Tiling(tile=CORE_LR + 2 * overlap, overlap=overlap)
    whole = downscale_image(engine, image)
    tiled = downscale_image(engine, image, tiling)
    lr = max(max_code_difference(getattr(whole, k), getattr(tiled, k)) for k in ("rgb", "alpha", "code"))
    hr = max_code_difference(upscale_image(engine, whole), upscale_image(engine, whole, tiling))
    return max(lr, hr)


def measure_context(engine: Engine, images: Iterable[np.ndarray], tolerance: int = 1) -> tuple[int, dict[int, int]]:
    """(the smallest candidate overlap within `tolerance` codes on every image, {overlap: worst difference})."""
    images = list(images)
    seen: dict[int, int] = {}
    for overlap in CANDIDATES:
        seen[overlap] = max(tiled_difference(engine, image, overlap) for image in images)
        if seen[overlap] <= tolerance:
            return overlap, seen
    raise RuntimeError(f"no overlap up to {CANDIDATES[-1]} LR px matches whole-image work: {seen}")


def centre_crops(folder: str | Path, names: Iterable[str], side: int = 512) -> list[np.ndarray]:
    crops = []
    for name in names:
        image = load_rgb(Path(folder) / f"{name}.png")
        h, w = image.shape[:2]
        y, x = max(0, (h - side) // 2), max(0, (w - side) // 2)
        crops.append(image[y : y + side, x : x + side])
    return crops


def record(folder: Path, context_lr: int, seen: dict[int, int], photos: list[str]) -> None:
    """Store the context in the model folder's config.json (beside, not inside, the hashed weights)."""
    path = folder / CONFIG_FILE
    saved = json.loads(path.read_text())
    saved["inference"] = {
        "context_lr": context_lr,
        "measured": {
            "smallest_overlap_within_1_code": context_lr - MARGIN_LR,
            "margin_lr": MARGIN_LR,
            "worst_code_difference_by_overlap": {str(k): v for k, v in seen.items()},
            "photos": photos,
        },
    }
    path.write_text(json.dumps(saved, indent=2) + "\n")


def measure_and_record(
    registry: Registry, data: str | Path, photos: list[str], *, backend: str = "auto", write: bool = False
) -> None:
    """Each model's smallest overlap within one code on centre crops of `photos`, printed (and with `write`
    stored, plus the margin, as its context)."""
    crops = centre_crops(data, photos)
    for wid, entry in registry.entries.items():
        engine = make_engine(registry.model(wid), key=wid, backend=backend)
        overlap, seen = measure_context(engine, crops)
        print(f"{entry.label} x{entry.config.scale} ({wid}): {overlap} LR px within 1 code; worst by overlap {seen}")
        if write:
            record(entry.folder, overlap + MARGIN_LR, seen, photos)


def main() -> None:
    p = argparse.ArgumentParser(description="Measure (and with --write store) each model's tile context.")
    p.add_argument("--weights", nargs="*", default=None, help="model folders (default: the shipped ones)")
    p.add_argument("--data", default=DEFAULT_DATA)
    p.add_argument("--photos", nargs="+", default=list(DEFAULT_PHOTOS))
    p.add_argument("--write", action="store_true", help="store context_lr in each folder's config.json")
    p.add_argument("--backend", default="auto")
    args = p.parse_args()
    registry = Registry(args.weights or [], include_shipped=args.weights is None)
    measure_and_record(registry, args.data, args.photos, backend=args.backend, write=args.write)


if __name__ == "__main__":
    main()
