"""An HR photo to downscale, from its bytes: what the service and the CLI both accept.

PNG, JPEG and WebP only (GIF and others are refused by both, `unsupported_format`); the pixel
count is checked and implausibly small files are refused before decoding. Conversions:
EXIF orientation is applied; grayscale, palette, CMYK and 1-bit images become RGB; 16-bit
images are reduced to 8 bits; an input alpha channel is ignored (the RGB is downscaled);
animated images use their first frame.
"""

import numpy as np
from PIL import Image, ImageOps

from models.files.containers import decoder_errors, open_image, sniff


def _to_rgb(image: Image.Image) -> np.ndarray:
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        wide = np.array(image, dtype=np.uint32)
        gray = (wide >> 8).astype(np.uint8) if wide.max() > 255 else wide.astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if image.mode == "RGB":
        return np.array(image)
    if image.mode in ("P", "PA") or (image.mode == "L" and "transparency" in image.info):
        image = image.convert("RGBA")
    return np.array(image.convert("RGB"))


def decode_hr(data: bytes, *, max_pixels: int) -> np.ndarray:
    """An uploaded photo as (H, W, 3) uint8; the pixel count is checked before decoding."""
    fmt = sniff(data)
    with decoder_errors(fmt):
        _, image = open_image(data, max_pixels=max_pixels)
        if getattr(image, "n_frames", 1) > 1:
            image.seek(0)  # animated: the first frame
        image.load()
        return np.ascontiguousarray(_to_rgb(ImageOps.exif_transpose(image)))
