"""Reading uploads: size limits, format sniffing, pixel limits before decoding, mode conversion.

Input conversions (documented in the README): EXIF orientation is applied; grayscale,
palette, CMYK and 1-bit images become RGB; 16-bit images are reduced to 8 bits; an
input alpha channel is ignored (the RGB is downscaled); animated images use their
first frame.
"""

import io

import numpy as np
from fastapi import Request
from PIL import Image, ImageOps
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from models.files.containers import decoder_errors, open_image, sniff
from service.errors import ServiceError

FIELD = "image"
RAW_TYPES = ("image/png", "image/jpeg", "image/webp", "application/octet-stream")


async def read_upload(request: Request) -> bytes:
    """The image bytes: multipart field `image`, or the raw body with an image Content-Type."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        try:
            form = await request.form(max_files=1, max_fields=4)
        except StarletteHTTPException as exc:  # Starlette's multipart limits and parse errors
            raise ServiceError(
                400, "bad_multipart", f"{exc.detail.rstrip('.')}: send one file field named '{FIELD}'"
            ) from exc
        upload = form.get(FIELD)
        if not isinstance(upload, UploadFile):
            raise ServiceError(422, "missing_image", f"multipart body needs a file field named '{FIELD}'")
        data = await upload.read()
    elif content_type.startswith("image/") or content_type == "application/octet-stream":
        if content_type not in RAW_TYPES:
            raise ServiceError(415, "unsupported_format", f"{content_type} is not supported: send PNG, JPEG or WebP")
        data = await request.body()
    else:
        raise ServiceError(
            415,
            "unsupported_media_type",
            "send the image as multipart field 'image' or as the raw body with Content-Type image/png, "
            "image/jpeg or image/webp",
        )
    if not data:
        raise ServiceError(400, "empty_image", "the image is empty")
    return data


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


def encode_image(image: np.ndarray, fmt: str = "png", quality: int = 90) -> bytes:
    """The upscaled image: PNG (lossless, zlib level 3), or JPEG/WebP at `quality` (a tenth of the bytes)."""
    buffer = io.BytesIO()
    if fmt == "png":
        Image.fromarray(image).save(buffer, format="PNG", compress_level=3)
    else:
        Image.fromarray(image).save(buffer, format=fmt.upper(), quality=quality)
    return buffer.getvalue()
