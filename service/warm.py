"""Convert the graphs of every model the service would serve into the cache before it starts (a container image
build does this, so a replica loads them instead of converting: 40-50 s a shipped x4 model on 2 cores).

    python -m service.warm [--cache-dir DIR] [--weights FOLDER ...] [--jobs N]

The models are those of the service's settings (RESCALE_WEIGHTS_DIRS, RESCALE_INCLUDE_SHIPPED_WEIGHTS), and
--weights besides.

Conversion is mostly single-threaded work (torch.export, then OpenVINO's decomposition), so the models are
shared out over one process per core (two x4 models on 2 cores: 112 s in one process, 65 s in two); each
writes its graphs under names of its own and renames them into place.
"""

import argparse
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

from models.inference.engine_set import EngineSet
from models.inference.engines import default_cache_dir
from models.store.registry import Registry
from service.settings import Settings


def warm_models(registry: Registry, cache_dir: Path, wids: list[str], threads: int) -> None:
    torch.set_num_threads(threads)
    engines = EngineSet(registry, cache_dir=cache_dir, max_loaded=1)  # one in memory at a time
    engines.warm([torch.device("cpu")], wids)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cache-dir", type=Path, default=None, help="default: RESCALE_COMPILE_CACHE_DIR, else ~/.cache")
    p.add_argument("--weights", nargs="*", default=[], help="model folders besides the settings' ones")
    cores = os.cpu_count() or 1
    p.add_argument(
        "--jobs", type=int, default=min(cores, 4), help="processes converting at once (default: the cores, 4 at most)"
    )
    args = p.parse_args(argv)
    if args.jobs < 1:
        p.error(f"--jobs must be at least 1, got {args.jobs}")
    settings = Settings()
    cache_dir = args.cache_dir or settings.compile_cache_dir or default_cache_dir()
    started = time.perf_counter()
    registry = Registry([*settings.weights_dirs, *args.weights], include_shipped=settings.include_shipped_weights)
    wids = list(registry.entries)
    jobs = min(args.jobs, len(wids))
    if jobs <= 1:
        warm_models(registry, cache_dir, wids, cores)
    else:
        # spawn: a fresh interpreter per worker, nothing of this one's torch or OpenVINO threads forked
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
            each = [pool.submit(warm_models, registry, cache_dir, [wid], max(1, cores // jobs)) for wid in wids]
            for done in each:
                done.result()  # a failed conversion fails the build
    print(f"{len(wids)} models ready in {cache_dir} ({time.perf_counter() - started:.0f} s, {jobs} processes)")


if __name__ == "__main__":
    main()
