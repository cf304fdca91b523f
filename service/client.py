"""A Python client for the rescale service: `Client` and `AsyncClient` call /downscale and /upscale, retry a busy
service or a failed connection within the call's time budget, and raise the service's errors as typed exceptions.

It needs httpx alone (no torch, numpy or Pillow), so it installs wherever the service is only called:

    with Client("http://localhost:8000", api_key="KEY") as client:
        small = client.downscale("photo.jpg", scale=4)
        client.upscale(small.content).save("restored.png")
"""

import asyncio
import os
import time
from pathlib import Path
from typing import BinaryIO, TypedDict, Unpack

import httpx

from service.client_errors import (
    BadRequest,
    Overloaded,
    RescaleError,
    ServerError,
    TransportFailure,
    Unauthorized,
    error_from_response,
    transport_failure,
)
from service.client_result import Result
from service.client_retries import RetryBudget

__all__ = [
    "AsyncClient",
    "BadRequest",
    "Client",
    "Overloaded",
    "RescaleError",
    "Result",
    "ServerError",
    "TransportFailure",
    "Unauthorized",
]

ImageSource = bytes | bytearray | memoryview | str | os.PathLike | BinaryIO
# the service sniffs the format itself; the right Content-Type keeps proxies and logs honest
MAGIC_TYPES = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"))

DEFAULT_TIMEOUT_S = 180.0  # the service's own deadline is 120 s, plus the upload and the download
DEFAULT_RETRIES = 3
DEFAULT_MAX_RETRY_WAIT_S = 10.0


def read_image(image: ImageSource) -> bytes:
    """The bytes of `image`: bytes as they are, a str or Path read from disk, a binary file object read to its end."""
    if isinstance(image, bytes | bytearray | memoryview):
        return bytes(image)
    if isinstance(image, str | os.PathLike):
        return Path(image).read_bytes()
    if hasattr(image, "read"):
        data = image.read()
        if not isinstance(data, bytes):
            raise TypeError("the file object must be opened in binary mode ('rb')")
        return data
    raise TypeError(f"image must be bytes, a path or a binary file object, not {type(image).__name__}")


def content_type(data: bytes) -> str:
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[4:8] == b"ftyp" and data[8:12] in (b"avif", b"avis"):  # other brands: the service tells AVIF from HEIC
        return "image/avif"
    return next((media for magic, media in MAGIC_TYPES if data.startswith(magic)), "application/octet-stream")


class DownscaleOptions(TypedDict, total=False):
    """/downscale's query; what is left out (or None) takes the service's default, scale aside (4)."""

    scale: int
    mode: str | None
    format: str | None
    quality: int | None
    model: str | None
    transparency: str | None


class UpscaleOptions(TypedDict, total=False):
    """/upscale's query; `best_effort` upscales any small image, not only a file that /downscale made."""

    format: str | None
    quality: int | None
    best_effort: bool
    scale: int | None
    mode: str | None
    model: str | None


def query(method: str, options: dict, allowed: type, **defaults: object) -> dict[str, str]:
    """The query string: parameters left at None are not sent (the service's defaults apply), booleans as true."""
    unknown = sorted(set(options) - set(allowed.__annotations__))
    if unknown:
        raise TypeError(f"{method}() got an unexpected keyword argument {unknown[0]!r}")
    params = defaults | options
    return {k: ("true" if v is True else str(v)) for k, v in params.items() if v is not None and v is not False}


class BaseClient:
    """What both clients share: the settings and what an attempt's outcome means."""

    http_class: type[httpx.Client] | type[httpx.AsyncClient]

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        retries: int = DEFAULT_RETRIES,
        max_retry_wait: float = DEFAULT_MAX_RETRY_WAIT_S,
    ) -> None:
        """`timeout`: seconds one call may take in all, retries and their waits included; `retries`: how many
        times a 503/429 or a failed connection is tried again; `max_retry_wait`: the longest wait between
        attempts, whatever Retry-After asks."""
        if timeout <= 0 or retries < 0 or max_retry_wait < 0:
            raise ValueError("timeout must be positive, retries and max_retry_wait not negative")
        self.base_url = base_url.rstrip("/")
        self.timeout, self.retries, self.max_retry_wait = timeout, retries, max_retry_wait
        self.headers = {"User-Agent": "rescale-client"}
        if api_key:
            self.headers["X-API-Key"] = api_key
        self.http = self.http_class(base_url=self.base_url, headers=self.headers)

    def budget(self) -> RetryBudget:
        return RetryBudget(timeout=self.timeout, retries=self.retries, max_retry_wait=self.max_retry_wait)

    def settle(self, path: str, attempt: httpx.Response | httpx.TransportError, budget: RetryBudget) -> Result | float:
        """The Result of an attempt, or the seconds to wait before the next one; raises the error when it is final."""
        if isinstance(attempt, httpx.TransportError):
            error, retry_after = transport_failure(attempt, f"{self.base_url}{path}"), None
        elif attempt.is_success:
            return Result.from_response(attempt)
        else:
            error, retry_after = error_from_response(attempt), attempt.headers.get("Retry-After")
        wait = budget.wait_before_retry(error, retry_after)
        if wait is None:
            raise error
        return wait


class Client(BaseClient):
    """The rescale service over HTTP; use it as a context manager, or call `close()`."""

    http_class = httpx.Client

    def downscale(self, image: ImageSource, **options: Unpack[DownscaleOptions]) -> Result:
        """The small file that /upscale brings back to `image`'s size."""
        return self.post("/downscale", read_image(image), query("downscale", options, DownscaleOptions, scale=4))

    def upscale(self, data: ImageSource, **options: Unpack[UpscaleOptions]) -> Result:
        """The full-size image from a file that /downscale made (or, with best_effort, from any small image)."""
        return self.post("/upscale", read_image(data), query("upscale", options, UpscaleOptions))

    def post(self, path: str, data: bytes, params: dict[str, str]) -> Result:
        budget = self.budget()
        headers = {"Content-Type": content_type(data)}
        while True:
            try:
                attempt = self.http.post(path, content=data, params=params, headers=headers, timeout=budget.remaining())
            except httpx.TransportError as exc:
                attempt = exc
            step = self.settle(path, attempt, budget)
            if isinstance(step, Result):
                return step
            time.sleep(step)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *_) -> None:
        self.close()


class AsyncClient(BaseClient):
    """`Client` for asyncio: the same methods, awaited; use it as an async context manager, or await `aclose()`."""

    http_class = httpx.AsyncClient

    async def downscale(self, image: ImageSource, **options: Unpack[DownscaleOptions]) -> Result:
        params = query("downscale", options, DownscaleOptions, scale=4)
        return await self.post("/downscale", await asyncio.to_thread(read_image, image), params)

    async def upscale(self, data: ImageSource, **options: Unpack[UpscaleOptions]) -> Result:
        params = query("upscale", options, UpscaleOptions)
        return await self.post("/upscale", await asyncio.to_thread(read_image, data), params)

    async def post(self, path: str, data: bytes, params: dict[str, str]) -> Result:
        budget = self.budget()
        headers = {"Content-Type": content_type(data)}
        while True:
            try:
                attempt = await self.http.post(
                    path, content=data, params=params, headers=headers, timeout=budget.remaining()
                )
            except httpx.TransportError as exc:
                attempt = exc
            step = self.settle(path, attempt, budget)
            if isinstance(step, Result):
                return step
            await asyncio.sleep(step)

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *_) -> None:
        await self.aclose()
