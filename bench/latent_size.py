"""How many bytes the -M latent adds to a file, per format and image size.

    python bench/latent_size.py --weights models/weights/irn-m-x4 --image ../shared/data/train/<photo>.png

The photo is mirror-tiled to 1, 4 and 12 MP (a real photo's texture at every size; upscaling it
would smooth it and flatter the compression), downscaled in tiles, and written as PNG (zTXt),
JPEG and WebP (EXIF). Prints the code's raw, zlib and stored sizes, each file's bytes per HR
pixel, and whether JPEG's 64 KB APP1 segment could hold the header.
"""

import argparse
import base64
import json
import zlib

import numpy as np
import torch

from models import files
from models.files.containers import JPEG_MAX_EXIF, exif_bytes
from models.files.errors import MetadataTooLargeError
from models.files.header import Header, dump_header
from models.files.images import load_rgb
from models.inference.pipeline import downscale_image
from models.inference.tiles import Tiling
from models.store.registry import Registry


def mirror_tile(image: np.ndarray, megapixels: float) -> np.ndarray:
    """A 4:3 image of about `megapixels`, the photo mirrored at its edges to fill it."""
    h = int(round((megapixels * 1e6 * 3 / 4) ** 0.5))
    w = int(round(h * 4 / 3))
    reps = (h // image.shape[0] + 2, w // image.shape[1] + 2)
    flipped = [image, image[:, ::-1]]
    row = np.concatenate([flipped[i % 2] for i in range(reps[1])], axis=1)
    rows = [row, row[::-1]]
    return np.concatenate([rows[i % 2] for i in range(reps[0])], axis=0)[:h, :w]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--weights", required=True, help="a -M model folder")
    p.add_argument("--image", required=True)
    p.add_argument("--megapixels", type=float, nargs="+", default=[1, 4, 12])
    p.add_argument("--quality", type=int, default=95)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    registry = Registry([args.weights], include_shipped=False)
    entry = next(iter(registry.entries.values()))
    if not entry.config.metadata:
        raise SystemExit(f"{args.weights} is {entry.config.variant}, not a -M model")
    model = registry.model(entry.weights_id)
    photo = load_rgb(args.image)
    print(f"{entry.config.variant} x{entry.config.scale} ({entry.weights_id}), JPEG APP1 holds {JPEG_MAX_EXIF:,} B")
    q = args.quality
    print(
        f"| HR MP | code shape | raw B | zlib B | header in EXIF B | PNG B/px | JPEG q{q} B/px | WebP q{q} B/px "
        f"| AVIF q{q} B/px |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for mp in args.megapixels:
        image = mirror_tile(photo, mp)
        down = downscale_image(model, image, Tiling(tile=192))
        code = down.code
        meta = json.loads(
            dump_header(
                Header(entry.config.variant, entry.config.scale, entry.weights_id, down.hr_size, down.lr_size), code
            )
        )
        packed = len(base64.b64decode(meta["code"]["data"]))
        exif = len(exif_bytes(json.dumps(meta, separators=(",", ":"))))
        cells = []
        for fmt in files.FORMATS:
            quality = args.quality if fmt != "png" else 95
            try:
                data = files.encode(
                    down,
                    variant=entry.config.variant,
                    scale=entry.config.scale,
                    weights_id=entry.weights_id,
                    format=fmt,
                    quality=quality,
                )
                cells.append(f"{len(data) / image.shape[0] / image.shape[1]:.3f}")
            except MetadataTooLargeError:
                cells.append("too large for APP1")
        assert zlib.decompress(base64.b64decode(meta["code"]["data"])) == np.ascontiguousarray(code).tobytes()
        print(
            f"| {image.shape[0] * image.shape[1] / 1e6:.1f} | {'x'.join(map(str, code.shape))} | {code.size:,} | "
            f"{packed:,} | {exif:,} | " + " | ".join(cells) + " |"
        )


if __name__ == "__main__":
    main()
