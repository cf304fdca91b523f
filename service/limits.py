"""Pure ASGI middleware: the upload size and time limits (Starlette has neither) and request metrics.

Pure ASGI rather than BaseHTTPMiddleware, so handlers still see client disconnects.
"""

import asyncio
import time
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service import metrics
from service.errors import error_response


class TrackedSend:
    """`send`, remembering whether the response has started: after that no error response can replace it."""

    def __init__(self, send: Send) -> None:
        self.send = send
        self.started = False

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
        await self.send(message)


async def run_or_reject(
    app: ASGIApp, scope: Scope, receive: Receive, send: Send, error: type[Exception], rejection: Callable[[], ASGIApp]
) -> None:
    """Run `app` with a checked `receive`; when the check raises `error` before the response has started,
    `rejection()` answers instead (after it has started, the connection just ends)."""
    tracked = TrackedSend(send)
    try:
        await app(scope, receive, tracked)
    except error:
        if not tracked.started:
            await rejection()(scope, receive, send)


class BodyTooLargeError(Exception):
    pass


class BodySizeLimit:
    """413 when Content-Length says too much, or when the streamed body passes the limit."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _rejection(self) -> ASGIApp:
        return error_response(413, "upload_too_large", f"the upload is over the {self.max_bytes:,}-byte limit")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await self._rejection()(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLargeError()
            return message

        await run_or_reject(self.app, scope, limited_receive, send, BodyTooLargeError, self._rejection)


class UploadTimeoutError(Exception):
    pass


class UploadTimeout:
    """408 when the request body has not fully arrived `timeout_s` after the request started: a client that
    trickles its upload would otherwise hold a connection (and a file descriptor) for as long as it likes."""

    def __init__(self, app: ASGIApp, timeout_s: float) -> None:
        self.app = app
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        deadline = time.monotonic() + self.timeout_s
        body_done = False

        async def timed_receive() -> Message:
            nonlocal body_done
            if body_done:  # later receives only wait for a disconnect: no deadline on those
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), timeout=max(deadline - time.monotonic(), 0.0))
            except TimeoutError:
                raise UploadTimeoutError() from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        await run_or_reject(self.app, scope, timed_receive, send, UploadTimeoutError, self._rejection)

    def _rejection(self) -> ASGIApp:
        message = f"the upload did not arrive within {self.timeout_s:g} s; send it faster or in one piece"
        return error_response(408, "upload_timeout", message, {"connection": "close"})


class RequestMetrics:
    """Counts requests by endpoint and status and observes their latency."""

    def __init__(self, app: ASGIApp, endpoints: set[str]) -> None:
        self.app = app
        self.endpoints = endpoints

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        endpoint = scope["path"] if scope["path"] in self.endpoints else "other"
        in_flight = metrics.IN_FLIGHT.labels(endpoint)
        in_flight.inc()

        async def tracking_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        finally:
            in_flight.dec()
            metrics.REQUESTS.labels(endpoint, str(status)).inc()
            metrics.REQUEST_SECONDS.labels(endpoint).observe(time.perf_counter() - start)
