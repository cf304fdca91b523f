"""Seconds to convert each shipped model's graphs to OpenVINO, and to run the converted graph once on a 512^2 HR
(best of 3): `torch.export` (the product's path) against OpenVINO's TorchScript tracing (the path it replaced,
deprecated in the torch we pin), side by side per graph.

    python bench/openvino_conversion.py [--models irn-a-x4 irn-x2]

A conversion happens once per model, weights and code version on a machine (the graph cache keeps it); this
prices a model's first request on a fresh replica, and the test session's conversions.
"""

import argparse
import time
import warnings

import openvino as ov
import torch

from models.inference.openvino_engine import OpenVINOEngine, export_graph
from models.store.registry import Registry


def traced(build, example: list[torch.Tensor], channels: list[int]):
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        shapes = [ov.PartialShape([-1, ch, -1, -1]) for ch in channels]
        return ov.convert_model(build(), example_input=tuple(example), input=shapes)


def run_ms(graph, inputs) -> float:
    compiled = ov.Core().compile_model(graph, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    request = compiled.create_infer_request()
    request.infer(inputs)  # the first run allocates
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        request.infer(inputs)
        best = min(best, time.perf_counter() - started)
    return best * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", help="shipped model names (default: all)")
    args = parser.parse_args()
    registry = Registry()
    print(f"torch {torch.__version__}, openvino {ov.__version__}, {torch.get_num_threads()} threads")
    print("| model | graph | convert: torch.export (s) | trace (s) | ratio | run 512^2: export (ms) | trace (ms) |")
    print("|---|---|---|---|---|---|---|")
    totals = [0.0, 0.0]
    for wid, entry in registry.entries.items():
        if args.models and entry.folder.name not in args.models:
            continue
        engine = OpenVINOEngine(registry.model(wid), key=wid)
        for name, (build, channels) in engine._graph_specs().items():
            example = engine._inputs(name, 4 * entry.config.size_multiple)
            started = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                exported_graph = ov.convert_model(export_graph(build(), example))
            exported = time.perf_counter() - started
            started = time.perf_counter()
            traced_graph = traced(build, example, channels)
            trace = time.perf_counter() - started
            totals[0] += exported
            totals[1] += trace
            inputs = [t.numpy() for t in engine._inputs(name, 512)]
            runs = [run_ms(graph, inputs) for graph in (exported_graph, traced_graph)]
            print(
                f"| {entry.folder.name} | {name} | {exported:.1f} | {trace:.1f} | {exported / trace:.1f}x "
                f"| {runs[0]:.0f} | {runs[1]:.0f} |"
            )
    print(f"| all | | {totals[0]:.1f} | {totals[1]:.1f} | {totals[0] / max(totals[1], 1e-9):.1f}x |")


if __name__ == "__main__":
    main()
