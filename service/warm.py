"""Convert every model's graphs into the cache before the service starts (a container image build does this,
so its first start loads them instead of converting: about 5 s a model here).

    python -m service.warm [--cache-dir DIR] [--weights FOLDER ...]
"""

import argparse
import time
from pathlib import Path

import torch

from models.inference.engine_set import EngineSet
from models.inference.engines import default_cache_dir
from models.registry import Registry
from service.settings import Settings


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cache-dir", type=Path, default=None, help="default: RESCALE_COMPILE_CACHE_DIR, else ~/.cache")
    p.add_argument("--weights", nargs="*", default=[], help="model folders besides the shipped ones")
    args = p.parse_args()
    cache_dir = args.cache_dir or Settings().compile_cache_dir or default_cache_dir()
    started = time.perf_counter()
    engines = EngineSet(Registry(args.weights), cache_dir=cache_dir, max_loaded=1)  # one in memory at a time
    engines.warm([torch.device("cpu")])
    print(f"{len(engines.registry.entries)} models ready in {cache_dir} ({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
