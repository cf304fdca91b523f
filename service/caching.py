"""Strong ETags for deterministic outputs, and 304 for a client (or CDN) that already holds the answer.

An output is a function of the uploaded bytes, the effective parameters and the weights
(named by their id), so the ETag hashes exactly those (the format written, not `auto`: each
negotiated variant has its own ETag); `If-None-Match` with it answers 304 before any model work.
"""

import hashlib

from fastapi import Request, Response

from models.files.header import FORMAT_VERSION


def etag_for(endpoint: str, data: bytes, weights_id: str, **params: object) -> str:
    digest = hashlib.sha256()
    described = ";".join(f"{k}={params[k]}" for k in sorted(params))
    digest.update(f"{endpoint}|{weights_id}|format{FORMAT_VERSION}|{described}|".encode())
    digest.update(data)
    return f'"{digest.hexdigest()[:32]}"'


def cache_headers(etag: str, cache_control: str, *, negotiated: bool = False) -> dict[str, str]:
    """`negotiated`: the format came from the Accept header, so caches must key the answer on it too."""
    return {"ETag": etag, "Cache-Control": cache_control} | ({"Vary": "Accept"} if negotiated else {})


def not_modified(request: Request, etag: str, cache_control: str, *, negotiated: bool = False) -> Response | None:
    """304 when If-None-Match names this ETag (or is `*`); it carries the Vary a 200 would."""
    asked = request.headers.get("if-none-match")
    if asked is None:
        return None
    tags = {t.strip().removeprefix("W/") for t in asked.split(",")}
    if etag in tags or "*" in tags:
        return Response(status_code=304, headers=cache_headers(etag, cache_control, negotiated=negotiated))
    return None
