"""Downscaled images as files that say what made them (format 1).

- `png`: 8-bit RGB, or straight (not premultiplied) RGBA for -A whose alpha is the 4th LR
  channel with codes 1..254; the header in zTXt chunks `rescale`, `rescale/1`, ...
- `jpeg`, `webp`, `avif` (lossy, `quality`): RGB only, the header in EXIF (Software = "rescale",
  UserComment = the header JSON): spliced in with piexif (JPEG, WebP), AVIF's EXIF item
  written by Pillow's encoder. -A needs PNG.

`decode` never returns a silently wrong image: malformed files raise a FileFormatError
subclass (errors.py); files that lost what the LR hides come back with `degraded` set:

- `metadata_missing`: no header (stripped by a CDN, or never ours): upscaling needs a
  caller-given scale and model and runs with z = 0;
- `alpha_missing` / `alpha_flattened`: a -A file whose alpha was dropped or made opaque:
  upscaling uses alpha = 0.5 (a zero high-frequency mean);
- `pixels_modified` (only when the caller allows it): a lossless file whose pixels no longer
  match its checksums; upscaled as it is with the model its header names.
"""

from dataclasses import dataclass, replace

import numpy as np

from models.files.containers import read_image, write_lossy, write_png
from models.files.downscaled import Downscaled
from models.files.errors import ChecksumError, FileFormatError, HeaderError
from models.files.header import FORMAT_VERSION, Header, crc32, dump_header, parse_header

FORMATS = ("png", "jpeg", "webp", "avif")
MEDIA_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp", "avif": "image/avif"}
NEUTRAL_ALPHA = 128  # code for alpha = 0.5 (logit 0) when a -A file lost its alpha
DEFAULT_MAX_PIXELS = 50_000_000

__all__ = [
    "FORMATS",
    "FORMAT_VERSION",
    "MEDIA_TYPES",
    "DecodedFile",
    "FileFormatError",
    "Header",
    "decode",
    "encode",
]


@dataclass
class DecodedFile:
    format: str
    rgb: np.ndarray  # (h, w, 3) uint8
    alpha: np.ndarray | None  # (h, w) uint8, -A
    code: np.ndarray | None  # (4, h/4, w/4) uint8, -M
    header: Header | None
    degraded: tuple[str, ...] = ()

    def with_neutral_alpha(self, reason: str = "alpha_missing") -> "DecodedFile":
        """Alpha = 0.5 everywhere (a zero high-frequency mean), flagged as degraded."""
        alpha = np.full(self.rgb.shape[:2], NEUTRAL_ALPHA, np.uint8)
        return replace(self, alpha=alpha, degraded=(*self.degraded, reason))

    def downscaled(self, scale: int | None = None) -> Downscaled:
        """What the upscaler needs; without a header the HR size is the LR size times `scale`."""
        if self.header is not None:
            hr_size = self.header.hr_size
        elif scale is None:
            raise ValueError("a file without a header needs an explicit scale")
        else:
            hr_size = (self.rgb.shape[0] * scale, self.rgb.shape[1] * scale)
        return Downscaled(rgb=self.rgb, hr_size=hr_size, alpha=self.alpha, code=self.code)


def encode(
    downscaled: Downscaled,
    *,
    variant: str,
    scale: int,
    weights_id: str,
    format: str = "png",
    quality: int = 95,
) -> bytes:
    if format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be in 1..100, got {quality}")
    if downscaled.alpha is not None and format != "png":
        raise ValueError(f"{variant} keeps its 4th channel in the alpha channel: use format png, not {format}")
    lossless = format == "png"
    header = Header(
        variant=variant,
        scale=scale,
        weights_id=weights_id,
        hr_size=downscaled.hr_size,
        lr_size=downscaled.lr_size,
        rgb_crc32=crc32(downscaled.rgb) if lossless else None,
        alpha_crc32=crc32(downscaled.alpha) if downscaled.alpha is not None else None,
    )
    text = dump_header(header, downscaled.code)
    if lossless:
        return write_png(downscaled.rgb, downscaled.alpha, text)
    return write_lossy(downscaled.rgb, text, format, quality)


def decode(
    data: bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    allow_modified: bool = False,
    missing_header: str | None = None,
) -> DecodedFile:
    """`allow_modified`: a lossless file whose pixels changed after downscaling (a lossy optimiser, a CMS
    flattening the alpha) is returned flagged `pixels_modified` instead of refused. `missing_header`: a file
    without header raises NotRescaledError with this message, before its pixels are decoded."""
    fmt, rgb, alpha, text = read_image(data, max_pixels=max_pixels, missing_header=missing_header)
    if text is None:
        return DecodedFile(fmt, rgb, None, None, None, ("metadata_missing",))
    header, code = parse_header(text, max_pixels=max_pixels, image_size=(rgb.shape[0], rgb.shape[1]))
    if (rgb.shape[0], rgb.shape[1]) != header.lr_size:
        h, w = header.lr_size
        raise HeaderError(f"header says the LR is {w}x{h} but the image is {rgb.shape[1]}x{rgb.shape[0]}")
    degraded: tuple[str, ...] = ()
    if header.rgb_crc32 is not None and crc32(rgb) != header.rgb_crc32:
        if not allow_modified:
            raise ChecksumError("the LR pixels changed after downscaling (RGB CRC-32 mismatch)")
        degraded = ("pixels_modified",)
    if not header.variant.endswith("-a"):
        return DecodedFile(fmt, rgb, None, code, header, degraded)
    decoded = DecodedFile(fmt, rgb, alpha, code, header, degraded)
    if alpha is None:
        return decoded.with_neutral_alpha("alpha_missing")
    if header.alpha_crc32 is not None and crc32(alpha) != header.alpha_crc32:
        if alpha.min() == 255:
            return decoded.with_neutral_alpha("alpha_flattened")
        if not allow_modified:
            raise ChecksumError("the alpha channel changed after downscaling (CRC-32 mismatch)")
        if "pixels_modified" not in degraded:
            decoded = replace(decoded, degraded=(*degraded, "pixels_modified"))
    return decoded
