"""The service's error answers (`{"code", "message"}`) and transport failures as typed exceptions for the client.

Plain standard library and httpx only: the client is importable without torch.
"""

import json

import httpx

REQUEST_ID_HEADER = "X-Request-ID"


class RescaleError(Exception):
    """A call that did not give an image: `status` is None when no answer came back."""

    def __init__(
        self, status: int | None, code: str, message: str, request_id: str | None = None, field: str | None = None
    ) -> None:
        super().__init__(f"{status or 'no answer'} {code}: {message}")
        self.status, self.code, self.message, self.request_id, self.field = status, code, message, request_id, field


class BadRequest(RescaleError):
    """The request or its image was refused (4xx other than 401/403/429): retrying the same call will not help."""


class Unauthorized(RescaleError):
    """The API key is missing or not valid (401/403)."""


class Overloaded(RescaleError):
    """The service is busy or shutting down (503/429), still after the retries."""


class ServerError(RescaleError):
    """The service failed (500) or ran past its deadline (504)."""


class TransportFailure(RescaleError):
    """No answer: the connection failed or the call's time budget ran out."""


def error_class(status: int) -> type[RescaleError]:
    if status in (401, 403):
        return Unauthorized
    if status in (429, 503):
        return Overloaded
    if status >= 500:
        return ServerError
    if status >= 400:
        return BadRequest
    return RescaleError  # a redirect or another answer that carries no image


def error_from_response(response: httpx.Response) -> RescaleError:
    """The typed exception for an error answer; a body that is not the service's JSON (a proxy's page) is kept
    as the message."""
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    if isinstance(body, dict) and isinstance(body.get("code"), str):
        code, message, field = body["code"], str(body.get("message", "")), body.get("field")
    else:
        code, message, field = f"http_{response.status_code}", response.text[:500], None
    status = response.status_code
    return error_class(status)(status, code, message, response.headers.get(REQUEST_ID_HEADER), field)


def transport_failure(exc: httpx.TransportError, url: str) -> TransportFailure:
    code = "timeout" if isinstance(exc, httpx.TimeoutException) else "connection_failed"
    failure = TransportFailure(None, code, f"{url}: {type(exc).__name__}: {exc}".rstrip(": "))
    failure.__cause__ = exc
    return failure
