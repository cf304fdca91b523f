"""Does the -A alpha survive a lossy WebP, and does that pay? `python -m models.evaluation.alpha_webp`

WebP keeps a lossless alpha plane beside a lossy RGB, so an IRN-A LR can be saved as a lossy
RGBA WebP whose alpha (the high-frequency mean of eq. 1) comes back exact. This measures that
against the compression-aware plain model (IRN-JPEG) and the bicubic thumbnail through the same
WebP qualities, PSNR-Y and bytes per HR pixel on a folder of photos, and prints a markdown table
with, for each -A point, the PSNR-Y of IRN-JPEG at the same bytes (interpolated on its curve).
"""

import argparse
import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from models.evaluation.bicubic import modcrop
from models.evaluation.evaluate import Method, round_trip_file
from models.evaluation.metrics import psnr_y
from models.evaluation.rate_distortion import bicubic_lossy_round_trip
from models.files.downscaled import Downscaled
from models.files.images import load_rgb
from models.inference.devices import pick_device
from models.inference.engine_set import EngineSet
from models.inference.engines import default_cache_dir
from models.inference.pipeline import downscale_image, upscale_image
from models.store.registry import Registry


def rgba_webp(downscaled: Downscaled, quality: int) -> tuple[Downscaled, int]:
    """The -A LR as one lossy WebP (alpha lossless, Pillow's default alpha_quality=100), read back."""
    rgba = np.dstack([downscaled.rgb, downscaled.alpha])
    buffer = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buffer, format="WEBP", quality=quality)
    with Image.open(io.BytesIO(buffer.getvalue())) as image:
        back = np.asarray(image.convert("RGBA")).copy()
    return Downscaled(rgb=back[..., :3], hr_size=downscaled.hr_size, alpha=back[..., 3]), len(buffer.getvalue())


def at_equal_bytes(points: list[tuple[float, float]], bpp: float) -> float | None:
    """PSNR of a (bpp, PSNR) curve at `bpp`, linear between its points; None outside them."""
    points = sorted(points)
    for (b0, p0), (b1, p1) in zip(points, points[1:], strict=False):
        if b0 <= bpp <= b1:
            return p0 + (p1 - p0) * (bpp - b0) / (b1 - b0) if b1 > b0 else p0
    return None


def measure(folder: Path, scale: int, qualities: list[int], limit: int | None) -> dict[str, list[tuple]]:
    registry = Registry()
    alpha_entry = registry.find("irn-a", scale)
    jpeg_entry = registry.find("irn", scale, lossy=True)
    engines = EngineSet(registry, cache_dir=default_cache_dir())
    device = pick_device("auto")
    alpha_model, jpeg_model = (engines.engine(e.weights_id, device) for e in (alpha_entry, jpeg_entry))
    paths = sorted(folder.glob("*.png"))[:limit]
    sums = {name: {q: [0.0, 0.0, 0.0] for q in qualities} for name in ("IRN-A", "IRN-JPEG", "Bicubic")}
    alpha_exact = True
    for path in paths:
        hr = modcrop(load_rgb(path), scale)
        pixels = hr.shape[0] * hr.shape[1]
        down_a, down_j = downscale_image(alpha_model, hr), downscale_image(jpeg_model, hr)
        for q in qualities:
            back, size = rgba_webp(down_a, q)
            alpha_exact &= bool(np.array_equal(back.alpha, down_a.alpha))
            results = {
                "IRN-A": (upscale_image(alpha_model, back), size),
                "IRN-JPEG": round_trip_file(jpeg_model, jpeg_entry, hr, Method(jpeg_entry, "webp", q), down_j),
                "Bicubic": bicubic_lossy_round_trip(hr, scale, "webp", q),
            }
            for name, (out, stored) in results.items():
                acc = sums[name][q]
                acc[0] += psnr_y(hr, out[: hr.shape[0], : hr.shape[1]], scale)
                acc[1] += stored / pixels
                acc[2] += 1
    print(f"x{scale}: {len(paths)} photos of {folder}; alpha came back bit-exact: {alpha_exact}")
    return {name: [(q, acc[1] / acc[2], acc[0] / acc[2]) for q, acc in per_q.items()] for name, per_q in sums.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/eval"))
    parser.add_argument("--scales", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--qualities", type=int, nargs="+", default=[50, 75, 90, 95])
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print("| scale | method | webp q | bytes per HR px | PSNR-Y (dB) | IRN-JPEG at the same bytes (dB) |")
    print("|---|---|---|---|---|---|")
    for scale in args.scales:
        curves = measure(args.data, scale, args.qualities, args.limit)
        jpeg_curve = [(bpp, psnr) for _, bpp, psnr in curves["IRN-JPEG"]]
        for name, points in curves.items():
            for q, bpp, psnr in points:
                cell = ""
                if name == "IRN-A":
                    same = at_equal_bytes(jpeg_curve, bpp)
                    cell = "outside its curve" if same is None else f"{same:.2f}"
                print(f"| x{scale} | {name} | {q} | {bpp:.3f} | {psnr:.2f} | {cell} |")


if __name__ == "__main__":
    main()
