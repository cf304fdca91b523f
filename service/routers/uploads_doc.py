"""OpenAPI description of the image body both endpoints take (read by hand, see service/uploads.py)."""

IMAGE_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["image"],
                    "properties": {"image": {"type": "string", "format": "binary"}},
                }
            },
            "image/png": {"schema": {"type": "string", "format": "binary"}},
            "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
            "image/webp": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}

ERROR = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
ERROR_RESPONSES = {
    status: {"description": text, **ERROR}
    for status, text in {
        400: "corrupt, truncated or empty image, or a malformed multipart body",
        401: "API key missing or not valid (when keys are configured)",
        408: "the upload did not arrive in time",
        413: "upload, pixel count or model time over the limit",
        415: "not PNG, JPEG or WebP",
        422: "bad parameter or unusable file",
        503: "queue full or shutting down (Retry-After)",
        504: "deadline exceeded",
    }.items()
}
