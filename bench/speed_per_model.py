"""Seconds per HR megapixel of every shipped model, each direction, through the product's tiled pipeline and engine.

    python bench/speed_per_model.py --image ../shared/data/eval/cliff.png --threads 2

Run it on an idle machine: it prints a Markdown table (the README's speed table) and the
CPU it ran on. Each direction is timed once after a warm-up on the same image.
"""

import argparse
import time

import torch

from models.evaluation.bicubic import modcrop
from models.files.images import load_rgb
from models.inference.devices import cpu_name
from models.inference.engine_set import EngineSet
from models.inference.pipeline import downscale_image, upscale_image
from models.store.registry import Registry


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--image", required=True)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    registry = Registry()
    engines = EngineSet(registry, threads=args.threads)  # what the service and the CLI run by default
    print(f"{cpu_name()}, {torch.get_num_threads()} threads, fp32, the default engine and tiles")
    print("| model | scale | HR size | downscale s/MP | upscale s/MP |")
    print("|---|---|---|---|---|")
    entries = sorted(registry.entries.values(), key=lambda e: (e.config.scale, e.label))
    for entry in entries:
        model, tiling = engines.engine(entry.weights_id), engines.tiling(entry.weights_id)
        hr = modcrop(load_rgb(args.image), entry.config.scale)
        mp = hr.shape[0] * hr.shape[1] / 1e6
        with torch.inference_mode():
            upscale_image(model, downscale_image(model, hr, tiling), tiling)  # warm-up on the same image
            start = time.perf_counter()
            down = downscale_image(model, hr, tiling)
            down_s = time.perf_counter() - start
            start = time.perf_counter()
            upscale_image(model, down, tiling)
            up_s = time.perf_counter() - start
        size = f"{hr.shape[1]}x{hr.shape[0]}"
        print(f"| {entry.label} | x{entry.config.scale} | {size} | {down_s / mp:.2f} | {up_s / mp:.2f} |")


if __name__ == "__main__":
    main()
