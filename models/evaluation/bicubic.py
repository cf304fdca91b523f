"""The bicubic baseline: Pillow's antialiased bicubic down, 8-bit, bicubic up."""

import numpy as np
from PIL import Image


def bicubic_thumbnail(image: np.ndarray, scale: int) -> np.ndarray:
    """(H, W, 3) uint8 with H, W multiples of `scale` -> the (H / s, W / s) thumbnail a CDN would make."""
    h, w = image.shape[:2]
    return np.asarray(Image.fromarray(image).resize((w // scale, h // scale), Image.Resampling.BICUBIC))


def bicubic_round_trip(image: np.ndarray, scale: int) -> np.ndarray:
    """(H, W, 3) uint8 with H, W multiples of `scale` -> the same size, through an 8-bit LR."""
    h, w = image.shape[:2]
    return np.asarray(Image.fromarray(bicubic_thumbnail(image, scale)).resize((w, h), Image.Resampling.BICUBIC))


def modcrop(image: np.ndarray, scale: int) -> np.ndarray:
    h, w = image.shape[:2]
    return image[: h - h % scale, : w - w % scale]


def centre_crop(image: np.ndarray, size: int) -> np.ndarray:
    """The centre size x size pixels (size a multiple of every scale, so x2 and x4 see the same HR pixels)."""
    h, w = image.shape[:2]
    if h < size or w < size:
        raise ValueError(f"a {w}x{h} photo is smaller than the {size}x{size} crop; choose a smaller --crop")
    top, left = (h - size) // 2, (w - size) // 2
    return image[top : top + size, left : left + size]
