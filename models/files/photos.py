"""An HR photo to downscale, from its bytes: what the service and the CLI both accept.

PNG, JPEG, WebP and AVIF only (GIF, HEIC and others are refused by both, `unsupported_format`); the pixel
count is checked and implausibly small files are refused before decoding. Conversions:
EXIF orientation is applied; grayscale, palette, CMYK and 1-bit images become RGB; 16-bit
images are reduced to 8 bits; transparent pixels are composited on white (BACKGROUND), or the
photo is refused when the caller asks for that (an LR of RGB cannot carry transparency);
animated images use their first frame.
"""

import numpy as np
from PIL import Image, ImageOps

from models.files.containers import decoder_errors, open_image, sniff
from models.files.errors import FileFormatError

BACKGROUND = (255, 255, 255)
BACKGROUND_NAME = "white"
TRANSPARENCY = ("composite", "refuse")


class TransparentInputError(FileFormatError):
    """The photo has transparent pixels and the caller asked to refuse such photos."""

    code = "transparent_input"


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info


def _composited(image: Image.Image, transparency: str) -> tuple[Image.Image, bool]:
    """(the image without alpha, whether any pixel was transparent)."""
    if not _has_alpha(image):
        return image, False
    rgba = image.convert("RGBA")
    if rgba.getchannel("A").getextrema()[0] == 255:
        return rgba.convert("RGB"), False  # an alpha channel, but nothing transparent
    if transparency == "refuse":
        raise TransparentInputError(
            f"the image has transparent pixels; send it without alpha, or with transparency=composite to have it "
            f"composited on {BACKGROUND_NAME}"
        )
    background = Image.new("RGBA", rgba.size, (*BACKGROUND, 255))
    return Image.alpha_composite(background, rgba).convert("RGB"), True


def _to_rgb(image: Image.Image) -> np.ndarray:
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        wide = np.array(image, dtype=np.uint32)
        gray = (wide >> 8).astype(np.uint8) if wide.max() > 255 else wide.astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if image.mode == "RGB":
        return np.array(image)
    return np.array(image.convert("RGB"))


def decode_photo(data: bytes, *, max_pixels: int, transparency: str = "composite") -> tuple[np.ndarray, bool]:
    """An uploaded photo as (H, W, 3) uint8, and whether transparent pixels were composited on the background;
    the pixel count is checked before decoding."""
    if transparency not in TRANSPARENCY:
        raise ValueError(f"transparency must be one of {', '.join(TRANSPARENCY)}, got {transparency!r}")
    fmt = sniff(data)
    with decoder_errors(fmt):
        _, image = open_image(data, max_pixels=max_pixels)
        if getattr(image, "n_frames", 1) > 1:
            image.seek(0)  # animated: the first frame
        image.load()
        image = ImageOps.exif_transpose(image)
        if image.mode.startswith("I"):  # 16-bit: no alpha
            return np.ascontiguousarray(_to_rgb(image)), False
        flat, composited = _composited(image, transparency)
        return np.ascontiguousarray(_to_rgb(flat)), composited


def decode_hr(data: bytes, *, max_pixels: int) -> np.ndarray:
    """The photo as (H, W, 3) uint8, transparent pixels composited on the background."""
    return decode_photo(data, max_pixels=max_pixels)[0]
