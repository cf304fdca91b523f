"""Where a model's forward passes run: eager PyTorch, or OpenVINO on the CPU.

An engine has the `Rescaler`'s inference contract, `encode(hr) -> Encoded` and
`decode(encoded) -> hr`, so the pipeline, the CLI and the service's batcher take either.
On the CPU OpenVINO ran the shipped networks 1.7-2.6x faster than eager PyTorch here, with
outputs within 0.001/255 of it (`bench/speed.py`), so `auto` picks it there; on a GPU
PyTorch runs. OpenVINO's graphs take any batch, height and width (dynamic shapes cost
nothing measurable against fixed ones), so one conversion per direction serves every tile
and image. A conversion takes seconds; the converted graphs are kept in a cache folder by
weights sha256, so a restarted service loads them instead.
"""

import hashlib
import logging
import math
import os
import threading
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import torch
from torch import nn

from models.inference.precision import autocast, native_bf16
from models.latent_codec import CODE_CHANNELS, CODE_REDUCTION
from models.rescaler import Encoded, ModelConfig, Rescaler

if TYPE_CHECKING:
    from models.inference.tiles import Tiling
    from models.registry import Registry

log = logging.getLogger("rescale.engines")

BACKENDS = ("auto", "torch", "openvino")


class Engine(Protocol):
    config: ModelConfig

    def encode(self, hr: torch.Tensor) -> Encoded: ...
    def decode(self, encoded: Encoded) -> torch.Tensor: ...


def openvino_available() -> bool:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_backend(backend: str, device: torch.device) -> str:
    """auto: OpenVINO on a CPU where it is installed, PyTorch otherwise (GPUs, other machines)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
    if backend == "auto":
        return "openvino" if device.type == "cpu" and openvino_available() else "torch"
    if backend == "openvino":
        if device.type != "cpu":
            raise ValueError(f"the openvino backend runs on the CPU, not on {device}")
        if not openvino_available():
            raise ValueError("the openvino backend needs the openvino package (pip install openvino)")
    return backend


def resolve_precision(precision: str, device: torch.device) -> str:
    """fp32 stays fp32; bf16 and auto give bf16 only where the device computes it natively (AMX or
    AVX512-BF16 on a CPU, where it was 1.7-2x faster; emulated it was 3x slower), fp32 elsewhere."""
    if precision == "fp32":
        return precision
    if precision not in ("bf16", "auto"):
        raise ValueError(f"precision must be fp32, bf16 or auto; got {precision!r}")
    if native_bf16(device):
        return "bf16"
    if precision == "bf16":
        log.warning("bf16 asked for, but %s has no native bf16 (it would run about 3x slower): using fp32", device)
    return "fp32"


class TorchEngine:
    """The model itself, under the chosen precision."""

    def __init__(self, model: Rescaler, *, precision: str = "fp32") -> None:
        self.model = model
        self.config = model.config
        self.precision = precision
        self.device = next(model.parameters()).device

    def encode(self, hr: torch.Tensor) -> Encoded:
        with torch.inference_mode(), autocast(self.device, self.precision):
            return self.model.encode(hr.to(self.device))

    def decode(self, encoded: Encoded) -> torch.Tensor:
        with torch.inference_mode(), autocast(self.device, self.precision):
            return self.model.decode(encoded.to(self.device))


# -- OpenVINO -------------------------------------------------------------------------------


class _EncodeGraph(nn.Module):
    def __init__(self, model: Rescaler) -> None:
        super().__init__()
        self.model = model

    def forward(self, hr: torch.Tensor):
        lr, code = self.model.encode_floats(hr)
        return lr if code is None else (lr, code)


class _DecodeGraph(nn.Module):
    """rgb [, alpha] [, code] -> HR; which inputs it has is fixed when it is converted."""

    def __init__(self, model: Rescaler, *, alpha: bool, code: bool) -> None:
        super().__init__()
        self.model, self.alpha, self.code = model, alpha, code

    def forward(self, rgb: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
        rest = list(rest)
        alpha = rest.pop(0) if self.alpha else None
        code = rest.pop(0) if self.code else None
        return self.model.decode(Encoded(rgb=rgb, alpha=alpha, code=code))


def _dynamic(channels: int):
    import openvino as ov

    return ov.PartialShape([-1, channels, -1, -1])


class OpenVINOEngine:
    """The model's two directions converted to OpenVINO graphs (fp32 weights, dynamic shapes)."""

    def __init__(
        self,
        model: Rescaler,
        *,
        key: str,
        precision: str = "fp32",
        threads: int | None = None,
        cache_dir: Path | None = None,
    ) -> None:
        self.model = model.float().eval()
        self.config = model.config
        self.key = key  # names the weights in the cache: their sha256
        self.precision = precision
        self.threads = threads or len(os.sched_getaffinity(0))
        self.cache_dir = cache_dir
        self._graphs: dict[str, object] = {}
        self._lock = threading.Lock()

    @staticmethod
    def graph_names(config: ModelConfig) -> list[str]:
        """The graphs a model converts to: its encoder, its decoder, and for -M the decoder of a coded file."""
        return ["encode", "decode", *(["decode-code"] if config.metadata else [])]

    # which graphs a model has: name -> (module, input channels)
    def _graph_specs(self) -> dict[str, tuple[Callable[[], nn.Module], list[int]]]:
        c = self.config
        specs = {"encode": (lambda: _EncodeGraph(self.model), [3])}
        decode_inputs = [3] + ([1] if c.alpha else [])
        specs["decode"] = (lambda: _DecodeGraph(self.model, alpha=c.alpha, code=False), decode_inputs)
        if c.metadata:
            specs["decode-code"] = (
                lambda: _DecodeGraph(self.model, alpha=c.alpha, code=True),
                [*decode_inputs, CODE_CHANNELS],
            )
        return specs

    def _inputs(self, name: str, hr_side: int) -> list[torch.Tensor]:
        """Random inputs of a graph for an HR of hr_side^2: the HR, or the LR (rgb, alpha) and the code."""
        _, channels = self._graph_specs()[name]
        side = hr_side if name == "encode" else hr_side // self.config.scale
        sides = [side // CODE_REDUCTION if ch == CODE_CHANNELS else side for ch in channels]
        return [torch.rand(1, ch, n, n) for ch, n in zip(channels, sides, strict=True)]

    def _cache_path(self, name: str) -> Path | None:
        return None if self.cache_dir is None else graph_cache_path(self.cache_dir, self.key, name)

    def _convert(self, name: str):
        import openvino as ov

        build, channels = self._graph_specs()[name]
        path = self._cache_path(name)
        if path is not None and path.is_file() and path.with_suffix(".bin").is_file():
            try:
                return ov.Core().read_model(path)
            except RuntimeError as exc:  # a torn or foreign file: convert again below
                log.warning("ignoring the cached graph %s: %s", path, exc)
        example = tuple(self._inputs(name, 4 * self.config.size_multiple))
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)  # shape checks traced as constants: meant
            graph = ov.convert_model(build(), example_input=example, input=[_dynamic(ch) for ch in channels])
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(f".{path.stem}.{os.getpid()}.xml")
                ov.save_model(graph, tmp, compress_to_fp16=False)
                tmp.with_suffix(".bin").replace(path.with_suffix(".bin"))
                tmp.replace(path)
            except OSError as exc:
                log.warning("could not cache the converted graph in %s: %s", path.parent, exc)
        return graph

    def _compiled(self, name: str):
        import openvino as ov

        with self._lock:
            if name not in self._graphs:
                properties = {
                    "INFERENCE_PRECISION_HINT": "bf16" if self.precision == "bf16" else "f32",
                    "INFERENCE_NUM_THREADS": self.threads,
                    "PERFORMANCE_HINT": "LATENCY",
                    "ENABLE_CPU_PINNING": False,  # leave the cores to the OS: codec threads share them
                }
                compiled = ov.Core().compile_model(self._convert(name), "CPU", properties)
                self._graphs[name] = (compiled, compiled.create_infer_request(), threading.Lock())
            return self._graphs[name]

    def warm(self) -> None:
        """Convert and compile every graph now and run it once on a 512^2 HR (the service does this before it
        takes traffic): a graph's first large input costs it about 1.5 s more, once."""
        for name in self._graph_specs():
            self._run(name, self._inputs(name, math.lcm(512, self.config.size_multiple)))

    def _run(self, name: str, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
        compiled, request, lock = self._compiled(name)
        with lock:
            results = request.infer([t.detach().float().contiguous().numpy() for t in inputs])
            return [torch.from_numpy(results[out].copy()) for out in compiled.outputs]

    def encode(self, hr: torch.Tensor) -> Encoded:
        self.model.check_hr(hr)
        outputs = self._run("encode", [hr.cpu()])
        return self.model.quantize(outputs[0], outputs[1] if len(outputs) > 1 else None)

    def decode(self, encoded: Encoded) -> torch.Tensor:
        self.model.check_encoded(encoded)
        inputs = [encoded.rgb] + ([encoded.alpha] if self.config.alpha else [])
        name = "decode"
        if self.config.metadata and encoded.code is not None:
            inputs.append(encoded.code)
            name = "decode-code"
        return self._run(name, [t.cpu() for t in inputs])[0]


def graph_cache_path(cache_dir: Path, key: str, name: str) -> Path:
    """Where a converted graph is kept: by weights, network code and OpenVINO release."""
    import openvino as ov

    return cache_dir / f"{key}-{name}-openvino-{ov.__version__.split('-')[0]}.xml"


def engine_key(weights_id: str) -> str:
    """What names a model's converted graphs: its weights and the network code that traced them."""
    return f"{weights_id}-{code_version()}"


def make_engine(
    model: Rescaler,
    *,
    key: str,
    backend: str = "auto",
    precision: str = "fp32",
    threads: int | None = None,
    cache_dir: Path | None = None,
) -> Engine:
    device = next(model.parameters()).device
    backend = resolve_backend(backend, device)
    precision = resolve_precision(precision, device)
    if backend == "openvino":
        return OpenVINOEngine(model, key=key, precision=precision, threads=threads, cache_dir=cache_dir)
    return TorchEngine(model, precision=precision)


def default_cache_dir() -> Path:
    """$XDG_CACHE_HOME/rescale, ~/.cache/rescale by default."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rescale"


class EngineSet:
    """Every model's engine per device, and its tiling, built on first use: the CLI's and the service's.

    A built OpenVINO engine holds its compiled graphs and their working memory (about 2 GB per direction after a
    tile of the default size), so at most `max_loaded` engines stay built: the least recently used one is dropped
    when another is built (a worker still running it keeps it until its batch ends), and `drop_idle` drops those
    not used for a while; a dropped engine builds again from the graph cache.
    """

    def __init__(
        self,
        registry: "Registry",
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

    def tiling(self, wid: str) -> "Tiling":
        from models.inference.memory import DEFAULT_TILE_MEMORY_MB, tiling_for

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


_NETWORK_MODULES = ("haar", "coupling", "latent_codec", "rescaler", "networks")


def code_version() -> str:
    """A digest of the network code: a converted graph cached under an older version is not reused."""
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for path in sorted(p for name in _NETWORK_MODULES for p in [*root.glob(f"{name}.py"), *root.glob(f"{name}/*.py")]):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]
