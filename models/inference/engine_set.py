"""Every model's engine per device and its tiling, built on first use and dropped when idle or least recently used."""

import logging
import threading
import time
from collections import OrderedDict
from pathlib import Path

import torch

from models.inference.engines import Engine, TorchEngine, engine_key, make_engine, resolve_backend
from models.inference.memory import DEFAULT_TILE_MEMORY_MB, tiling_for
from models.inference.openvino_engine import OpenVINOEngine
from models.inference.precision import resolve_precision
from models.inference.tiles import Tiling
from models.store.registry import Registry

log = logging.getLogger("rescale.engines")


class EngineSet:
    """Every model's engine per device, and its tiling, built on first use: the CLI's and the service's.

    A built OpenVINO engine holds its compiled graphs and their working memory (about 2 GB per direction after a
    tile of the default size), so at most `max_loaded` engines stay built: the least recently used one is dropped
    when another is built (a worker still running it keeps it until its batch ends), and `drop_idle` drops those
    not used for a while; a dropped engine builds again from the graph cache.
    """

    def __init__(
        self,
        registry: Registry,
        *,
        backend: str = "auto",
        precision: str = "fp32",
        threads: int | None = None,
        cache_dir: Path | None = None,
        tile_lr: int | None = None,
        overlap_lr: int | None = None,
        tile_memory_mb: int | None = None,
        max_loaded: int | None = None,
    ) -> None:
        if max_loaded is not None and max_loaded < 1:
            raise ValueError(f"max_loaded must be at least 1 (or None: no bound), got {max_loaded}")
        self.registry = registry
        self.backend, self.precision, self.threads, self.cache_dir = backend, precision, threads, cache_dir
        self.tile_lr, self.overlap_lr, self.tile_memory_mb = tile_lr, overlap_lr, tile_memory_mb
        self.max_loaded = max_loaded
        self._engines: OrderedDict[tuple[str, str], Engine] = OrderedDict()  # least recently used first
        self._building: dict[tuple[str, str], threading.Lock] = {}
        self._tilings: dict[str, Tiling] = {}
        self._last_used: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()
        self.evictions = 0

    def engine(self, wid: str, device: torch.device | str = "cpu") -> Engine:
        key = (wid, str(device))
        with self._lock:
            self._last_used[key] = time.monotonic()
            if key in self._engines:
                self._engines.move_to_end(key)
                return self._engines[key]
            building = self._building.setdefault(key, threading.Lock())
        with building:  # one build per key; other models' lookups go on meanwhile
            with self._lock:
                if key in self._engines:
                    return self._engines[key]
            engine = make_engine(
                self.registry.model(wid, device),
                key=engine_key(self.registry.get(wid).weights_id),
                backend=self.backend,
                precision=self.precision,
                threads=self.threads,
                cache_dir=self.cache_dir,
            )
            with self._lock:
                self._engines[key] = engine
                while self.max_loaded is not None and len(self._engines) > self.max_loaded:
                    dropped, _ = self._engines.popitem(last=False)
                    self.evictions += 1
                    log.info("dropped the engine of %s on %s (more than %d built)", *dropped, self.max_loaded)
            return engine

    def drop_idle(self, idle_s: float, keep: frozenset[str] = frozenset()) -> list[tuple[str, str]]:
        """Drop the engines not asked for in `idle_s` seconds: a compiled graph keeps the working memory of the
        largest input it ran (GBs after a large tile) until it is dropped, and builds again from the graph cache
        in seconds. The weights in `keep` stay. Returns what was dropped."""
        now = time.monotonic()
        with self._lock:
            idle = [k for k in self._engines if k[0] not in keep and now - self._last_used.get(k, now) > idle_s]
            for key in idle:
                del self._engines[key]
        for key in idle:
            log.info("dropped the engine of %s on %s (idle for over %.0f s)", *key, idle_s)
        return idle

    @property
    def loaded(self) -> list[tuple[str, str]]:
        """(weights id, device) of the engines built now, least recently used first."""
        with self._lock:
            return list(self._engines)

    def tiling(self, wid: str) -> Tiling:
        with self._lock:
            if wid in self._tilings:
                return self._tilings[wid]
        tiling = tiling_for(  # a small eager pass: outside the lock
            self.registry.get(wid),
            self.registry.model(wid),
            tile_lr=self.tile_lr,
            overlap_lr=self.overlap_lr,
            memory_mb=self.tile_memory_mb or DEFAULT_TILE_MEMORY_MB,
        )
        with self._lock:
            return self._tilings.setdefault(wid, tiling)

    def batch_pixels(self, wid: str) -> int | None:
        """The HR pixels one batch may hold: what the largest tile was sized for (None: no bound), so a full
        tile runs alone and small images batch."""
        tiling = self.tiling(wid)
        return (tiling.tile * self.registry.get(wid).config.scale) ** 2 if tiling.tile else None

    def kind(self, device: torch.device | str = "cpu") -> str:
        """The engine class and precision a model gets on this device, e.g. 'OpenVINOEngine-fp32', known without
        building one."""
        device = torch.device(device)
        backend = resolve_backend(self.backend, device)
        engine = OpenVINOEngine if backend == "openvino" else TorchEngine
        return f"{engine.__name__}-{resolve_precision(self.precision, device)}"

    def signature(self, wid: str, device: torch.device | str = "cpu") -> str:
        """What decides a result's bytes besides the input and the weights: the engine, its precision and the
        tiling (backends and tiles agree within one code, not bit for bit), e.g. 'OpenVINOEngine-fp32-385-10'."""
        tiling = self.tiling(wid)
        return f"{self.kind(device)}-{tiling.tile}-{tiling.overlap}"

    def describe(self) -> str:
        """What runs each built model, e.g. 'IRN x4 on cpu: OpenVINOEngine fp32, tiles of 334 LR px with 10 px
        of context'."""
        parts = []
        for (wid, device), engine in list(self._engines.items()):
            entry, tiling = self.registry.get(wid), self._tilings.get(wid)
            tiles = f", tiles of {tiling.tile} LR px with {tiling.overlap} px of context" if tiling else ""
            parts.append(
                f"{entry.label} x{entry.config.scale} on {device}: {type(engine).__name__} {engine.precision}{tiles}"
            )
        return "; ".join(parts)

    def warm(self, devices: list[torch.device], wids: list[str] | None = None) -> None:
        """Build these models' engines (all by default: converting their graphs) and tilings now, before any
        request needs them."""
        for wid in self.registry.entries if wids is None else wids:
            self.tiling(wid)
            for device in devices:
                engine = self.engine(wid, device)
                if isinstance(engine, OpenVINOEngine):
                    engine.warm()
