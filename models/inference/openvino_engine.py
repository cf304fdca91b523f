"""A model's two directions as OpenVINO graphs: exported with `torch.export` (batch, height and width dynamic),
converted once and cached by weights, network code and OpenVINO release."""

import inspect
import logging
import math
import os
import re
import threading
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torch.export import Dim

from models.networks.latent_codec import CODE_CHANNELS, CODE_REDUCTION
from models.networks.rescaler import Encoded, ModelConfig, Rescaler

log = logging.getLogger("rescale.engines")
TORCH_PYTREE_WARNING = "`isinstance(treespec, LeafSpec)` is deprecated"


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

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        rgb, *rest = inputs
        alpha = rest.pop(0) if self.alpha else None
        code = rest.pop(0) if self.code else None
        return self.model.decode(Encoded(rgb=rgb, alpha=alpha, code=code))


def export_graph(graph: nn.Module, example: list[torch.Tensor]) -> torch.export.ExportedProgram:
    """`torch.export` with batch, height and width dynamic: one graph serves every tile and image.

    The example batch is 2, since an example dimension of 1 would be specialised to 1. Dim.DYNAMIC refuses to
    export (rather than silently fixing a size) if the network ever ties a dimension to a constant.
    """
    example = [t.expand(2, -1, -1, -1).contiguous() for t in example]
    dims = [{0: Dim.DYNAMIC, 2: Dim.DYNAMIC, 3: Dim.DYNAMIC} for _ in example]
    (name, parameter), *_ = inspect.signature(graph.forward).parameters.items()
    varargs = parameter.kind is inspect.Parameter.VAR_POSITIONAL
    with torch.no_grad():
        return torch.export.export(graph, tuple(example), dynamic_shapes={name: tuple(dims) if varargs else dims[0]})


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

        build, _ = self._graph_specs()[name]
        path = self._cache_path(name)
        if path is not None and path.is_file() and path.with_suffix(".bin").is_file():
            try:
                return ov.Core().read_model(path)
            except RuntimeError as exc:  # a torn or foreign file: convert again below
                log.warning("ignoring the cached graph %s: %s", path, exc)
        with warnings.catch_warnings():
            # raised inside torch's pytree while the program is exported and decomposed: not our code's
            warnings.filterwarnings("ignore", re.escape(TORCH_PYTREE_WARNING), FutureWarning)
            graph = ov.convert_model(export_graph(build(), self._inputs(name, 4 * self.config.size_multiple)))
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
