"""Running planned model inputs for one request: deadline, client disconnects, timings."""

import asyncio
import time
from dataclasses import dataclass, field

from fastapi import Request

from models.store.registry import Entry
from service import metrics
from service.batcher import BatchTiming, DeadlineExceededError, QueueFullError, ShuttingDownError
from service.errors import CLIENT_CLOSED, ServiceError
from service.runtime import Runtime
from service.settings import Settings

DISCONNECT_POLL_S = 0.25


@dataclass
class Timings:
    stages: dict[str, float] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)

    def add(self, stage: str, seconds: float) -> None:
        self.stages[stage] = self.stages.get(stage, 0.0) + seconds
        metrics.STAGE_SECONDS.labels(stage).observe(seconds)

    async def timed(self, stage: str, awaitable):
        start = time.perf_counter()
        try:
            return await awaitable
        finally:
            self.add(stage, time.perf_counter() - start)

    def header(self) -> str:
        parts = [f"{k};dur={v * 1000:.1f}" for k, v in self.stages.items()]
        parts.append(f"total;dur={(time.perf_counter() - self.started) * 1000:.1f}")
        return ", ".join(parts)


def busy_error(exc: QueueFullError | ShuttingDownError, settings: Settings) -> ServiceError:
    """The 503 for a full queue or a draining service, with Retry-After."""
    retry = {"Retry-After": str(settings.retry_after_s)}
    if isinstance(exc, QueueFullError):
        return ServiceError(503, "queue_full", f"the service is busy ({exc}); retry later", retry)
    return ServiceError(503, "shutting_down", str(exc), retry)


def refuse_when_busy(runtime: Runtime) -> None:
    """Answer 503 before the upload is read and decoded when the queue is already full or the service drains."""
    try:
        runtime.batcher.check_room()
    except (QueueFullError, ShuttingDownError) as exc:
        raise busy_error(exc, runtime.settings) from exc


async def run_model(
    runtime: Runtime, request: Request, op: str, weights_id: str, payloads: list, timings: Timings
) -> list:
    settings = runtime.settings
    deadline = time.monotonic() + settings.request_timeout_s
    batch_timing = BatchTiming()
    task = asyncio.create_task(runtime.batcher.run(op, weights_id, payloads, deadline=deadline, timing=batch_timing))
    start = time.perf_counter()
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=DISCONNECT_POLL_S)
            if done:
                outputs = task.result()
                break
            if await request.is_disconnected():
                task.cancel()
                raise ServiceError(CLIENT_CLOSED, "client_closed_request", "the client went away")
            if time.monotonic() > deadline:
                task.cancel()
                raise DeadlineExceededError("the request took longer than its deadline")
            if runtime.batcher.draining_past_deadline:
                task.cancel()
                raise ShuttingDownError("the service is shutting down and its drain time is over")
    except (QueueFullError, ShuttingDownError) as exc:
        raise busy_error(exc, settings) from exc
    except DeadlineExceededError as exc:
        raise ServiceError(504, "deadline_exceeded", f"{exc} ({settings.request_timeout_s:.0f} s)") from exc
    elapsed = time.perf_counter() - start
    timings.add("model", min(batch_timing.model_s, elapsed))
    timings.add("queue", max(0.0, elapsed - batch_timing.model_s))
    return outputs


def finish(endpoint: str, entry: Entry, size: tuple[int, int], timings: Timings) -> dict[str, str]:
    """Count the image and describe the result in response headers; `size` is (H, W) of the HR."""
    h, w = size
    metrics.IMAGES.labels(endpoint).inc()
    metrics.MEGAPIXELS.labels(endpoint).inc(h * w / 1e6)
    return {
        "X-Rescale-Variant": entry.config.variant,
        "X-Rescale-Scale": str(entry.config.scale),
        "X-Rescale-Original-Size": f"{w}x{h}",
        "X-Rescale-Weights-Id": entry.weights_id,
        "Server-Timing": timings.header(),
    }
