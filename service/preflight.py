"""What `rescale serve` checks before it listens: weights that load, and a graph cache it can use.

A container that cannot serve exits at once with one line (exit code 2) instead of starting,
failing its probes and looping on a traceback: missing or unreadable weights, or an OpenVINO
graph cache that is missing and cannot be made, or read-only without the graphs it needs.
"""

import os
from pathlib import Path

from models.inference.engines import engine_key, resolve_backend
from models.inference.openvino_engine import OpenVINOEngine, graph_cache_path
from models.store.registry import Registry
from service.runtime import preloaded, visible_devices
from service.settings import Settings


def preflight(settings: Settings) -> Registry:
    """The registry the service will serve; OSError or ValueError with the reason when it cannot."""
    registry = Registry(settings.weights_dirs, include_shipped=settings.include_shipped_weights)
    if not registry.entries:
        raise ValueError("no model weights found: ship models/weights or set RESCALE_WEIGHTS_DIRS")
    preloaded(registry, settings.preload)  # names it does not know
    devices = visible_devices(settings.device)
    if settings.compile_cache_dir is not None and resolve_backend(settings.backend, devices[0]) == "openvino":
        check_graph_cache(settings.compile_cache_dir, registry)
    return registry


def check_graph_cache(cache_dir: Path, registry: Registry) -> None:
    """A cache folder that exists or can be made, and that is writable or already holds every graph."""
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OSError(
            f"the graph cache {cache_dir} does not exist and cannot be made ({exc.strerror}): mount a writable "
            "volume there or set RESCALE_COMPILE_CACHE_DIR to a writable folder"
        ) from None
    if writable(cache_dir):
        return
    missing = sorted(
        {
            f"{entry.config.variant} x{entry.config.scale} ({wid})"
            for wid, entry in registry.entries.items()
            for name in OpenVINOEngine.graph_names(entry.config)
            if not graph_cache_path(cache_dir, engine_key(wid), name).is_file()
        }
    )
    if missing:
        raise OSError(
            f"the graph cache {cache_dir} is read-only and lacks the converted graphs of {', '.join(missing)}: "
            "fill it where the image is built (python -m service.warm) or mount it writable"
        )


def writable(folder: Path) -> bool:
    """Whether a file can be made here (os.access says yes to root on a read-only mount)."""
    try:
        probe = folder / f".write-probe-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError:
        return False
    return True
