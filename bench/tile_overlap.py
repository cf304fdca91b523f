"""How much tile overlap makes tiled processing match whole-image processing.

    python bench/tile_overlap.py --weights runs/irn-a-x2 --image ../shared/data/eval/sheep.png

Prints, per overlap (LR pixels), the largest difference in 8-bit codes between tiled and
whole-image results: the LR file contents (RGB, alpha, code) and the upscaled HR.
"""

import argparse

import numpy as np
import torch

from models.files.images import load_rgb
from models.inference.pipeline import Tiling, downscale_image, upscale_image
from models.store.checkpoint import load_model


def max_diff(a: np.ndarray | None, b: np.ndarray | None) -> int:
    return 0 if a is None else int(np.abs(a.astype(int) - b.astype(int)).max())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--weights", required=True)
    p.add_argument("--image", required=True)
    p.add_argument("--crop", type=int, default=512, help="HR crop side, centre of the image")
    p.add_argument("--tile", type=int, default=64, help="LR core side; each tile adds the overlap around it")
    p.add_argument("--overlaps", type=int, nargs="+", default=[0, 4, 8, 12, 16, 24, 32])
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_model(args.weights)
    image = load_rgb(args.image)
    h, w = image.shape[:2]
    c = min(args.crop, h, w)
    image = image[(h - c) // 2 : (h - c) // 2 + c, (w - c) // 2 : (w - c) // 2 + c]
    whole = downscale_image(model, image)
    whole_hr = upscale_image(model, whole)
    print(f"{model.config.variant} x{model.config.scale}, {c}x{c} HR, LR tiles of {args.tile}")
    print("overlap_lr  lr_rgb  alpha  code  hr (max |diff| in 8-bit codes)")
    for overlap in args.overlaps:
        tiling = Tiling(tile=args.tile + 2 * overlap, overlap=overlap)  # cores of --tile
        tiled = downscale_image(model, image, tiling)
        tiled_hr = upscale_image(model, whole, tiling)
        print(
            f"{overlap:>10}  {max_diff(whole.rgb, tiled.rgb):>6}  {max_diff(whole.alpha, tiled.alpha):>5}  "
            f"{max_diff(whole.code, tiled.code):>4}  {max_diff(whole_hr, tiled_hr):>2}"
        )


if __name__ == "__main__":
    main()
