"""What the app holds while it runs: settings, models, the batcher and the codec threads."""

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Annotated

import torch
from fastapi import Depends, Request
from PIL import Image

from models.inference.engine_set import EngineSet
from models.inference.tiles import Tiling
from models.store.registry import Entry, Registry
from service import metrics
from service.batcher import Batcher
from service.catalogue import Catalogue
from service.cost import CostModel
from service.settings import Settings

log = logging.getLogger("rescale.service")


GPU_LATENCY_OBJECTIVE_S = 10.0
CPU_LATENCY_OBJECTIVE_S = 60.0


def visible_devices(name: str) -> list[torch.device]:
    """One worker per visible GPU; one CPU worker when there is none."""
    if name == "auto":
        if torch.cuda.is_available():
            return [torch.device("cuda", i) for i in range(torch.cuda.device_count())]
        return [torch.device("cpu")]
    return [torch.device(d.strip()) for d in name.split(",")]


@dataclass
class Runtime:
    settings: Settings
    catalogue: Catalogue
    batcher: Batcher
    codec_pool: ThreadPoolExecutor
    devices: list[torch.device]
    engines: EngineSet
    cost: CostModel
    preloaded: frozenset[str] = frozenset()

    @classmethod
    def start(cls, settings: Settings) -> "Runtime":
        if settings.torch_threads:
            torch.set_num_threads(settings.torch_threads)
        # Every decode checks RESCALE_MAX_PIXELS from the header before loading; Pillow's own
        # cap would answer first with its own wording, so the service's limit replaces it.
        Image.MAX_IMAGE_PIXELS = None
        registry = Registry(settings.weights_dirs, include_shipped=settings.include_shipped_weights)
        if not registry.entries:
            raise RuntimeError("no model weights found: ship models/weights or set RESCALE_WEIGHTS_DIRS")
        devices = visible_devices(settings.device)
        engines = EngineSet(
            registry,
            max_loaded=settings.max_loaded_models,
            backend=settings.backend,
            precision=settings.precision,
            threads=settings.torch_threads,
            cache_dir=settings.compile_cache_dir,
            tile_lr=settings.tile_lr,
            overlap_lr=settings.tile_overlap_lr,
            tile_memory_mb=settings.tile_memory_mb,
        )
        started = time.perf_counter()
        preload = preloaded(registry, settings.preload)
        engines.warm(devices, preload)  # the rest build on first use, from the graph cache when it has them
        for device in devices:
            name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
            metrics.DEVICE_INFO.labels(str(device), name).set(1)
        if preload:
            log.info("preloaded in %.1f s: %s", time.perf_counter() - started, engines.describe())
        cost = CostModel(registry, devices[0])
        objective = settings.latency_objective_s or (
            GPU_LATENCY_OBJECTIVE_S if devices[0].type == "cuda" else CPU_LATENCY_OBJECTIVE_S
        )
        metrics.LATENCY_OBJECTIVE.set(objective)
        batcher = Batcher(
            engine_for=engines.engine,
            batch_pixels=engines.batch_pixels,
            devices=devices,
            max_batch=settings.max_batch_size,
            max_wait_s=settings.max_batch_wait_ms / 1000,
            max_queue=settings.max_queue,
            on_batch=cost.observe,
            scale_for=lambda wid: registry.get(wid).config.scale,
        )
        batcher.start()
        log.info("serving %d models on %s", len(registry.entries), ", ".join(map(str, devices)))
        return cls(
            settings=settings,
            catalogue=Catalogue(registry),
            batcher=batcher,
            codec_pool=ThreadPoolExecutor(settings.codec_threads, thread_name_prefix="rescale-codec"),
            devices=devices,
            engines=engines,
            cost=cost,
            preloaded=frozenset(preload),
        )

    async def unload_idle_models(self) -> None:
        """Until cancelled: drop the models idle for RESCALE_UNLOAD_IDLE_S, so an idle replica gives back what its
        last large images left in them."""
        idle_s = self.settings.unload_idle_s
        if idle_s is None:
            return
        while True:
            await asyncio.sleep(min(idle_s / 4, 30.0))
            await self.in_codec_pool(self.engines.drop_idle, idle_s, self.preloaded)

    def begin_drain(self) -> None:
        """SIGTERM: what was accepted has RESCALE_DRAIN_TIMEOUT_S to finish; what still waits then gets 503."""
        self.batcher.begin_drain(time.monotonic() + self.settings.drain_timeout_s)

    async def stop(self) -> None:
        """After the server has answered every request: stop the workers within what is left of the drain budget
        (all of it when the shutdown did not start with a signal, as in tests)."""
        if self.batcher.drain_deadline is None:
            self.begin_drain()
        drained = await self.batcher.drain()
        if not drained:
            log.warning("shutdown: in-flight work did not finish within %.0f s", self.settings.drain_timeout_s)
        self.codec_pool.shutdown(wait=False, cancel_futures=True)

    async def tiling(self, entry: Entry) -> Tiling:
        """The model's tiles; sized by a small eager pass on its first request, off the event loop."""
        return await self.in_codec_pool(self.engines.tiling, entry.weights_id)

    async def check_cost(self, entry: Entry, op: str, hr_size: tuple[int, int]) -> None:
        """413 when the model time would pass the deadline (FLOPs counted on first use, off the event loop)."""
        await self.in_codec_pool(self.cost.check, entry.weights_id, op, hr_size, self.settings.request_timeout_s)

    async def in_codec_pool(self, fn, *args, **kwargs):
        """PNG/JPEG/WebP work off the event loop and off the model workers."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.codec_pool, lambda: fn(*args, **kwargs))


def preloaded(registry: Registry, names: list[str]) -> list[str]:
    """The weights ids that RESCALE_PRELOAD names: "all", or models as the shipped folders are named (`irn-a-x4`;
    "-jpeg" for the compression-aware ones: `irn-jpeg-x2`)."""
    if "all" in names:
        return list(registry.entries)
    by_name = {entry_name(e): wid for wid, e in registry.entries.items() if e.superseded_by is None}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ValueError(f"RESCALE_PRELOAD names {', '.join(unknown)}; known: all, {', '.join(sorted(by_name))}")
    return [by_name[n] for n in names]


def entry_name(entry: Entry) -> str:
    """irn-a-x4, irn-jpeg-x2: the variant, -jpeg for compression-aware weights, and the scale."""
    return f"{entry.config.variant}{'-jpeg' if entry.lossy else ''}-x{entry.config.scale}"


def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
