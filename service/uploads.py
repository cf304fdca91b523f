"""Reading uploads (multipart or raw body) and encoding the upscaled image; decoding an uploaded photo is
models/files/photos.py, shared with the CLI."""

import io

import numpy as np
from fastapi import Request
from PIL import Image
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

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


def encode_image(image: np.ndarray, fmt: str = "png", quality: int = 90) -> bytes:
    """The upscaled image: PNG (lossless, zlib level 3), or JPEG/WebP at `quality` (a tenth of the bytes)."""
    buffer = io.BytesIO()
    if fmt == "png":
        Image.fromarray(image).save(buffer, format="PNG", compress_level=3)
    else:
        Image.fromarray(image).save(buffer, format=fmt.upper(), quality=quality)
    return buffer.getvalue()
