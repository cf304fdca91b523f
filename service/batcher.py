"""Dynamic batching over one worker thread per device.

Requests put model inputs (whole images or tiles) on a bounded queue. A worker takes
the oldest input, waits up to `max_wait` for more inputs of the same kind (operation,
weights, shape), and runs them as one batch. Inputs of other shapes wait for their own
batch: big images are cut into equal tiles, so their tiles batch across requests.
A failed batch is retried one input at a time, so one bad input fails only its request.
Inputs whose request was cancelled (client gone) or whose deadline passed are dropped
before they cost model time.
"""

import asyncio
import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from models.inference.engines import Engine
from models.networks.rescaler import Encoded
from service import metrics

log = logging.getLogger("rescale.batcher")


class QueueFullError(Exception):
    pass


class DeadlineExceededError(Exception):
    pass


class ShuttingDownError(Exception):
    pass


def _shape(payload: torch.Tensor | Encoded) -> tuple:
    if isinstance(payload, Encoded):
        return tuple(None if t is None else tuple(t.shape[1:]) for t in (payload.rgb, payload.alpha, payload.code))
    return tuple(payload.shape[1:])


@dataclass
class Item:
    op: str  # "encode" (HR -> Encoded) or "decode" (Encoded -> HR)
    weights_id: str
    payload: torch.Tensor | Encoded
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    deadline: float
    enqueued: float = field(default_factory=time.monotonic)

    @property
    def key(self) -> tuple:
        return self.op, self.weights_id, _shape(self.payload)

    def hr_pixels(self, scale_for: Callable[[str], int]) -> int:
        """The HR pixels this input stands for: its own (encode), or its LR's times scale^2 (decode)."""
        if self.op == "encode":
            return self.payload.shape[-2] * self.payload.shape[-1]
        return self.payload.rgb.shape[-2] * self.payload.rgb.shape[-1] * scale_for(self.weights_id) ** 2


@dataclass
class BatchTiming:
    queue_s: float = 0.0
    model_s: float = 0.0


class Batcher:
    def __init__(
        self,
        *,
        engine_for: Callable[[str, torch.device], Engine],
        devices: list[torch.device],
        max_batch: int,
        batch_pixels: Callable[[str], int | None] | None = None,
        max_wait_s: float,
        max_queue: int,
        on_batch: Callable[[str, str, int, float], None] | None = None,
        scale_for: Callable[[str], int] | None = None,
    ) -> None:
        self.engine_for = engine_for
        # the scale of these weights, without building their engine (engines load on first use, in _forward)
        self.scale_for = scale_for or (lambda weights_id: engine_for(weights_id, devices[0]).config.scale)
        self.on_batch = on_batch  # (weights id, op, HR pixels, seconds) of every batch run
        self.devices = devices
        self.max_batch = max_batch
        # the HR pixels a batch of these weights may hold (the memory bound; None: no bound)
        self.batch_pixels = batch_pixels or (lambda weights_id: None)
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        metrics.QUEUE_CAPACITY.set(max_queue)
        self._pending: dict[tuple, list[Item]] = {}
        self._depth = 0
        self._running = 0
        self._cond = threading.Condition()
        self._stopping = False
        self._drain_deadline: float | None = None
        self._threads: list[threading.Thread] = []
        self._batch_ids = itertools.count()

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        for device in self.devices:
            t = threading.Thread(target=self._worker, args=(device,), name=f"rescale-worker-{device}", daemon=True)
            t.start()
            self._threads.append(t)

    @property
    def alive(self) -> bool:
        return bool(self._threads) and all(t.is_alive() for t in self._threads)

    @property
    def depth(self) -> int:
        return self._depth

    @property
    def saturated(self) -> bool:
        return self._depth >= self.max_queue

    @property
    def drain_deadline(self) -> float | None:
        return self._drain_deadline

    @property
    def draining_past_deadline(self) -> bool:
        return self._drain_deadline is not None and time.monotonic() >= self._drain_deadline

    def begin_drain(self, deadline: float) -> None:
        """What was accepted may finish until `deadline` (monotonic); what still waits then is refused."""
        if self._drain_deadline is None or deadline < self._drain_deadline:
            self._drain_deadline = deadline

    async def drain(self, timeout_s: float | None = None) -> bool:
        """Let accepted work finish until the drain deadline (`begin_drain`'s, or now + `timeout_s`, whichever
        is sooner), refuse what still waits, stop the workers. One budget: nothing here waits past it."""
        if timeout_s is not None:
            self.begin_drain(time.monotonic() + timeout_s)
        if self._drain_deadline is None:
            raise ValueError("drain() needs a timeout or an earlier begin_drain(deadline)")
        while (self._depth or self._running) and not self.draining_past_deadline:
            await asyncio.sleep(0.05)
        drained = not (self._depth or self._running)
        with self._cond:
            self._stopping = True
            for items in self._pending.values():
                for item in items:
                    _resolve(item, error=ShuttingDownError("the service shut down before this request ran"))
            self._pending.clear()
            self._depth = 0
            self._cond.notify_all()
        for t in self._threads:  # a worker inside a forward pass finishes it; it is a daemon thread
            await asyncio.to_thread(t.join, 0.5)
        return drained

    # -- submitting ------------------------------------------------------------------------

    def check_room(self) -> None:
        """Raise ShuttingDownError once the drain time is over, QueueFullError while the queue holds `max_queue`
        inputs.

        While the service drains, the server takes no new connections: what reaches this point was accepted
        before, and is queued so that it can finish within the drain time. A request starts whenever the queue
        has room; its own tiles may overshoot (by at most what RESCALE_MAX_PIXELS allows), so a big image is
        never refused by an empty queue."""
        if self._stopping or self.draining_past_deadline:
            raise ShuttingDownError("the service is shutting down")
        if self._depth >= self.max_queue:
            metrics.REJECTED.inc()
            raise QueueFullError(f"the queue holds {self._depth} of {self.max_queue} inputs")

    async def run(
        self, op: str, weights_id: str, payloads: list, *, deadline: float, timing: BatchTiming | None = None
    ) -> list:
        """Queue every payload, wait for all of them; cancelling the caller drops what has not run.

        Raises QueueFullError when the queue already holds `max_queue` inputs.
        """
        loop = asyncio.get_running_loop()
        items = [Item(op, weights_id, p, loop.create_future(), loop, deadline) for p in payloads]
        with self._cond:
            self.check_room()
            for item in items:
                self._pending.setdefault(item.key, []).append(item)
            self._depth += len(items)
            metrics.QUEUE_DEPTH.set(self._depth)
            self._cond.notify_all()
        try:
            results = await asyncio.gather(*(i.future for i in items))
        except BaseException:
            for i in items:
                i.future.cancel()
            raise
        if timing is not None:
            timing.queue_s = max(r[1] for r in results)
            # Inputs of one request may share batches: count each batch once.
            timing.model_s = sum({r[3]: r[2] for r in results}.values())
        return [r[0] for r in results]

    # -- the worker ------------------------------------------------------------------------

    def _oldest_key(self) -> tuple:
        return min(self._pending, key=lambda k: self._pending[k][0].enqueued)

    def _room(self, item: Item) -> int:
        """How many inputs like this one a batch takes: max_batch, fewer where the memory bound says so."""
        bound = self.batch_pixels(item.weights_id)
        if bound is None:
            return self.max_batch
        return max(1, min(self.max_batch, bound // item.hr_pixels(self.scale_for)))

    def _next_batch(self) -> list[Item] | None:
        with self._cond:
            while True:
                if not self._pending:
                    if self._stopping:
                        return None
                    self._cond.wait(0.5)
                    continue
                key = self._oldest_key()
                waited = time.monotonic() - self._pending[key][0].enqueued
                room = self._room(self._pending[key][0])
                if len(self._pending[key]) >= room or waited >= self.max_wait_s or self._stopping:
                    batch = self._pending[key][:room]
                    rest = self._pending[key][room:]
                    if rest:
                        self._pending[key] = rest
                    else:
                        del self._pending[key]
                    self._depth -= len(batch)
                    self._running += len(batch)
                    metrics.QUEUE_DEPTH.set(self._depth)
                    return batch
                self._cond.wait(self.max_wait_s - waited)

    def _worker(self, device: torch.device) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            try:
                self._process(batch, device)
            finally:
                with self._cond:
                    self._running -= len(batch)

    def _process(self, batch: list[Item], device: torch.device) -> None:
        now = time.monotonic()
        live = []
        for item in batch:
            if item.future.cancelled():
                metrics.DROPPED.labels("cancelled").inc()
            elif now > item.deadline:
                metrics.DROPPED.labels("deadline").inc()
                _resolve(item, error=DeadlineExceededError("the request deadline passed while it was queued"))
            else:
                metrics.QUEUE_WAIT_SECONDS.observe(now - item.enqueued)
                live.append(item)
        if not live:
            return
        try:
            outputs, seconds = self._forward(live, device)
        except Exception as exc:  # noqa: BLE001 - isolate the failing input below
            if len(live) == 1:
                log.warning("model input failed: %s", exc)
                _resolve(live[0], error=exc)
                return
            for item in live:
                self._process([item], device)
            return
        batch_id = next(self._batch_ids)
        for item, out in zip(live, outputs, strict=True):
            _resolve(item, value=(out, now - item.enqueued, seconds, batch_id))

    def _forward(self, items: list[Item], device: torch.device) -> tuple[list, float]:
        op, wid = items[0].op, items[0].weights_id
        engine = self.engine_for(wid, device)
        started = time.perf_counter()
        if op == "encode":
            out = engine.encode(torch.cat([i.payload for i in items]))
            outputs = [e.to("cpu") for e in out.split()]
        else:
            out = engine.decode(Encoded.cat([i.payload for i in items]))
            outputs = list(out.cpu().split(1))
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - started
        if self.on_batch is not None:
            self.on_batch(wid, op, sum(i.hr_pixels(self.scale_for) for i in items), seconds)
        metrics.BATCH_SIZE.observe(len(items))
        metrics.MODEL_SECONDS.labels(op).observe(seconds)
        return outputs, seconds


def _resolve(item: Item, *, value=None, error: BaseException | None = None) -> None:
    def settle() -> None:
        if item.future.done():
            return
        if error is not None:
            item.future.set_exception(error)
        else:
            item.future.set_result(value)

    try:
        item.loop.call_soon_threadsafe(settle)
    except RuntimeError:  # the request's event loop is gone: nobody is waiting
        pass
