"""Domain errors as JSON {"code", "message"} with the right HTTP status."""

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from models.files.errors import FileFormatError
from models.store.registry import UnknownWeightsError

log = logging.getLogger("rescale.service")

CLIENT_CLOSED = 499  # nginx's code for a request whose client went away: counted, never a 5xx

FILE_ERROR_STATUS = {
    "unsupported_format": 415,
    "image_too_large": 413,
    "truncated_file": 400,
    "corrupt_file": 400,
    "not_rescaled": 422,
    "bad_header": 422,
    "newer_format": 422,
    "weights_mismatch": 422,
    "transparent_input": 422,
    "bad_latent": 422,
    "checksum_mismatch": 422,
    "metadata_too_large": 422,
}


class ServiceError(Exception):
    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None, field: str | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}
        self.field = field


def error_response(status: int, code: str, message: str, headers: dict | None = None, **extra) -> JSONResponse:
    return JSONResponse({"code": code, "message": message, **extra}, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def _service(_: Request, exc: ServiceError) -> JSONResponse:
        extra = {"field": exc.field} if exc.field else {}
        return error_response(exc.status, exc.code, exc.message, exc.headers, **extra)

    @app.exception_handler(FileFormatError)
    async def _file(_: Request, exc: FileFormatError) -> JSONResponse:
        return error_response(FILE_ERROR_STATUS.get(exc.code, 400), exc.code, str(exc))

    @app.exception_handler(UnknownWeightsError)
    async def _weights(_: Request, exc: UnknownWeightsError) -> JSONResponse:
        return error_response(422, "unknown_weights", str(exc.args[0]))

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"] if p not in ("query", "body"))
        return error_response(422, "invalid_parameter", f"{field}: {first['msg']}", field=field)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(ClientDisconnect)
    async def _gone(_: Request, exc: ClientDisconnect) -> JSONResponse:
        # the client left mid-upload: nobody reads this answer, but it is counted as 499, not as a 5xx
        return error_response(CLIENT_CLOSED, "client_closed_request", "the client went away during the upload")

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return error_response(500, "internal_error", f"{type(exc).__name__}: the request failed on the server")
