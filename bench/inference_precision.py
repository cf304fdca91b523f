"""fp32 against bf16 autocast for inference: time and PSNR-Y through the product's files, side by side.

    python bench/inference_precision.py --weights models/weights/irn-a-x4 --images ../shared/data/eval/*.png

Each image is downscaled and upscaled (PNG file in between) once per precision; the table gives
the seconds per HR megapixel of both passes and the PSNR-Y against the original.
"""

import argparse
import time

import torch

from models.evaluation.bicubic import modcrop
from models.evaluation.evaluate import round_trip_file
from models.evaluation.metrics import psnr_y
from models.files.images import load_rgb
from models.inference.precision import PRECISIONS, autocast
from models.store.registry import Registry


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--weights", required=True)
    p.add_argument("--images", nargs="+", required=True)
    p.add_argument("--crop", type=int, default=0, help="HR centre crop side (0: whole image)")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    registry = Registry([args.weights], include_shipped=False)
    entry = next(iter(registry.entries.values()))
    model = registry.model(entry.weights_id)
    scale = entry.config.scale
    totals = {p: [0.0, 0.0, 0] for p in PRECISIONS}  # seconds, sum of PSNR, HR pixels
    for path in args.images:
        hr = modcrop(load_rgb(path), scale)
        if args.crop:
            h, w = hr.shape[:2]
            c = min(args.crop, h, w) // (4 * scale) * (4 * scale)
            hr = hr[(h - c) // 2 : (h - c) // 2 + c, (w - c) // 2 : (w - c) // 2 + c]
        for precision, total in totals.items():
            start = time.perf_counter()
            with autocast("cpu", precision):
                out, _ = round_trip_file(model, entry, hr)
            total[0] += time.perf_counter() - start
            total[1] += psnr_y(hr, out, scale)
            total[2] += hr.shape[0] * hr.shape[1]
    n = len(args.images)
    print(f"{entry.config.variant} x{scale} ({entry.weights_id}), {n} images, {torch.get_num_threads()} threads")
    print("| precision | s per HR MP (down + up) | mean PSNR-Y |")
    print("|---|---|---|")
    for precision, (seconds, psnr, pixels) in totals.items():
        print(f"| {precision} | {seconds / (pixels / 1e6):.2f} | {psnr / n:.2f} |")


if __name__ == "__main__":
    main()
