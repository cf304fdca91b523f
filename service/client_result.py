"""What /downscale and /upscale answer, as the client returns it: the image bytes and the response headers parsed."""

from dataclasses import dataclass, field
from pathlib import Path

import httpx

from service.client_errors import REQUEST_ID_HEADER


@dataclass(frozen=True)
class Result:
    content: bytes
    media_type: str
    variant: str | None = None
    scale: int | None = None
    original_size: tuple[int, int] | None = None  # (width, height) of the full-size image
    weights_id: str | None = None
    degraded: tuple[str, ...] = ()  # why an upscale is best effort: metadata_missing, pixels_modified, ...
    input_alpha: str | None = None  # composited-on-white when a transparent photo was flattened
    request_id: str | None = None
    etag: str | None = None
    server_timing: dict[str, float] = field(default_factory=dict)  # milliseconds per stage, and total

    @classmethod
    def from_response(cls, response: httpx.Response) -> "Result":
        headers = response.headers
        scale = headers.get("X-Rescale-Scale")
        degraded = headers.get("X-Rescale-Degraded", "")
        return cls(
            content=response.content,
            media_type=headers.get("Content-Type", "application/octet-stream").split(";")[0].strip(),
            variant=headers.get("X-Rescale-Variant"),
            scale=int(scale) if scale and scale.isdigit() else None,
            original_size=parse_size(headers.get("X-Rescale-Original-Size")),
            weights_id=headers.get("X-Rescale-Weights-Id"),
            degraded=tuple(reason.strip() for reason in degraded.split(",") if reason.strip()),
            input_alpha=headers.get("X-Rescale-Input-Alpha"),
            request_id=headers.get(REQUEST_ID_HEADER),
            etag=headers.get("ETag"),
            server_timing=parse_server_timing(headers.get("Server-Timing", "")),
        )

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_bytes(self.content)
        return path


def parse_size(value: str | None) -> tuple[int, int] | None:
    """`WxH` -> (W, H)."""
    width, _, height = (value or "").partition("x")
    return (int(width), int(height)) if width.isdigit() and height.isdigit() else None


def parse_server_timing(value: str) -> dict[str, float]:
    """`read;dur=1.2, model;dur=30.5` -> {"read": 1.2, "model": 30.5}; entries without a duration are left out."""
    timings = {}
    for entry in value.split(","):
        name, *params = (part.strip() for part in entry.split(";"))
        for param in params:
            key, _, number = param.partition("=")
            if name and key == "dur":
                try:
                    timings[name] = float(number)
                except ValueError:
                    pass
    return timings
