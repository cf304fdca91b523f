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
