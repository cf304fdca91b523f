"""OpenAPI description of the image body both endpoints take (read by hand, see service/uploads.py)."""

from fastapi import Response

from models.files import MEDIA_TYPES
from service.uploads import FIELDS

IMAGE_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "description": "one file part, named image or file (a single file part of any other name is "
                    "taken too); two or more are a 400 too_many_files",
                    "properties": {name: {"type": "string", "format": "binary"} for name in FIELDS},
                    "minProperties": 1,
                    "maxProperties": 1,
                }
            },
            "image/png": {"schema": {"type": "string", "format": "binary"}},
            "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
            "image/webp": {"schema": {"type": "string", "format": "binary"}},
            "image/avif": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}

ERROR = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
ERROR_RESPONSES = {
    status: {"description": text, **ERROR}
    for status, text in {
        400: "corrupt, truncated or empty image, a malformed multipart body, or more than one file part",
        401: "API key missing or not valid (when keys are configured)",
        408: "the upload did not arrive in time",
        413: "upload, pixel count or model time over the limit",
        415: "not PNG, JPEG, WebP or AVIF (HEIC is refused)",
        422: "bad parameter or unusable file",
        503: "queue full or shutting down (Retry-After)",
        504: "deadline exceeded",
    }.items()
}

# what both image endpoints declare: an image body in, an image (or an Error) out
IMAGE_ROUTE = {
    "response_class": Response,
    "responses": {200: {"content": {t: {} for t in MEDIA_TYPES.values()}}, **ERROR_RESPONSES},
    "openapi_extra": IMAGE_BODY,
}
