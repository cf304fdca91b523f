"""Optional API keys (RESCALE_API_KEYS): `Authorization: Bearer KEY` or `X-API-Key: KEY`, 401 otherwise.

Health, readiness and metrics stay open for probes and scrapers; with no keys configured
every request is let through.
"""

import hmac

from fastapi import Request

from service.errors import ServiceError
from service.runtime import RuntimeDep


def presented_key(request: Request) -> str | None:
    if key := request.headers.get("x-api-key"):
        return key
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    return credentials.strip() or None if scheme.lower() == "bearer" else None


async def require_api_key(request: Request, runtime: RuntimeDep) -> None:
    keys = runtime.settings.api_keys
    if not keys:
        return
    given = presented_key(request)
    # compare against every key in constant time: no early exit that a timing attack could read
    valid = given is not None and any(
        [hmac.compare_digest(given.encode(), k.get_secret_value().encode()) for k in keys]
    )
    if not valid:
        raise ServiceError(
            401,
            "unauthorized",
            "missing or unknown API key: send it as 'Authorization: Bearer KEY' or 'X-API-Key: KEY'",
            {"WWW-Authenticate": 'Bearer realm="rescale"'},
        )
