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
import os
from pathlib import Path
from typing import Protocol

import torch

from models.inference.openvino_engine import OpenVINOEngine
from models.inference.precision import autocast, native_bf16, resolve_precision
from models.networks.rescaler import Encoded, ModelConfig, Rescaler

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


def engine_key(weights_id: str) -> str:
    """What names a model's converted graphs: its weights and the network code they were exported from."""
    return f"{weights_id}-{code_version()}"


def code_version() -> str:
    """A digest of the network code: a converted graph cached under an older version is not reused."""
    networks = Path(__file__).resolve().parents[1] / "networks"
    digest = hashlib.sha256()
    for path in sorted(networks.glob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


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
    if precision == "bf16" and not native_bf16(device):
        log.warning("bf16 asked for, but %s has no native bf16 (it would run about 3x slower): using fp32", device)
    precision = resolve_precision(precision, device)
    if backend == "openvino":
        return OpenVINOEngine(model, key=key, precision=precision, threads=threads, cache_dir=cache_dir)
    return TorchEngine(model, precision=precision)


def default_cache_dir() -> Path:
    """$XDG_CACHE_HOME/rescale, ~/.cache/rescale by default."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rescale"
