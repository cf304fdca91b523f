"""Reading uploads (multipart or raw body) and encoding the upscaled image; decoding an uploaded photo is
models/files/photos.py, shared with the CLI."""

import io

import numpy as np
from fastapi import Request
from PIL import Image
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from models.files.containers import PILLOW_FORMATS
from service.errors import ServiceError

FIELDS = ("image", "file")  # the names people use (`curl -F image=@...`, `-F file=@...`); any single file part is taken
RAW_TYPES = ("image/png", "image/jpeg", "image/webp", "image/avif", "application/octet-stream")
FILE_PART = f"a file part named {' or '.join(repr(name) for name in FIELDS)}"
# Starlette raises the same 400 for every multipart limit; this is how it words the file-count one
TOO_MANY_FILES_PREFIX = "Too many files"


async def read_multipart(request: Request) -> bytes:
    """The bytes of the one file part, whatever its name; a second file part is refused before it is buffered."""
    try:
        form = await request.form(max_files=1, max_fields=4)
    except StarletteHTTPException as exc:  # Starlette's multipart limits and parse errors
        detail = str(exc.detail).rstrip(".")
        if detail.startswith(TOO_MANY_FILES_PREFIX):
            raise ServiceError(
                400,
                "too_many_files",
                f"the multipart body has more than one file part: send one image per request, as {FILE_PART}",
            ) from exc
        raise ServiceError(400, "bad_multipart", f"{detail}: send the image as {FILE_PART}") from exc
    try:
        uploads = [value for _, value in form.multi_items() if isinstance(value, UploadFile)]
        if not uploads:
            raise ServiceError(
                422, "missing_image", f"the multipart body has no file part: send the image as {FILE_PART}"
            )
        return await uploads[0].read()
    finally:
        await form.close()  # a part over 1 MB spooled to a temporary file: removed now, not when collected


async def read_upload(request: Request) -> bytes:
    """The image bytes: the multipart body's one file part, or the raw body with an image Content-Type."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        data = await read_multipart(request)
    elif content_type.startswith("image/") or content_type == "application/octet-stream":
        if content_type not in RAW_TYPES:
            raise ServiceError(
                415, "unsupported_format", f"{content_type} is not supported: send PNG, JPEG, WebP or AVIF"
            )
        data = await request.body()
    else:
        raise ServiceError(
            415,
            "unsupported_media_type",
            f"send the image as {FILE_PART} of a multipart body, or as the raw body with Content-Type image/png, "
            "image/jpeg, image/webp or image/avif",
        )
    if not data:
        raise ServiceError(400, "empty_image", "the image is empty")
    return data


def encode_image(image: np.ndarray, fmt: str = "png", quality: int = 90) -> bytes:
    """The upscaled image: PNG (lossless, zlib level 3), or JPEG/WebP/AVIF at `quality` (a tenth of the bytes)."""
    buffer = io.BytesIO()
    if fmt == "png":
        Image.fromarray(image).save(buffer, format="PNG", compress_level=3)
    else:
        Image.fromarray(image).save(buffer, format=PILLOW_FORMATS[fmt], quality=quality)
    return buffer.getvalue()
