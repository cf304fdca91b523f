"""Speed against what the CPU can do: the network alone per backend, the product's tiled pipeline, the
service over HTTP, and the cost of tiling a 12 MP photo, side by side in one run.

    python bench/speed.py --image ../shared/data/eval/cliff.png --threads 2

Run it on an idle machine. FLOPs are counted with torch.utils.flop_counter; the peak is the
best of several 2048^2 fp32 matmuls in the same run; "% of peak" is (FLOPs / seconds) / peak,
so a backend that computes fewer FLOPs than counted (Winograd convolutions) can pass 100%.
"Before" is the path this product had: eager PyTorch fp32, 192-px LR tile cores with 24 px of
context clipped at the borders. Outputs of every backend are compared with eager fp32 (max
difference in 8-bit codes of the LR or HR).
"""

import argparse
import io
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np
import torch
from loopback import serving  # bench/, beside this script
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

from models.files.images import load_rgb
from models.inference import pipeline
from models.inference.devices import cpu_name
from models.inference.engine_set import EngineSet
from models.inference.engines import make_engine
from models.inference.precision import autocast, native_bf16
from models.inference.tiles import Box, Tiling, work_ratio
from models.store.registry import Registry


def matmul_peak(repeats: int = 5) -> float:
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * 2048**3 / best


def best_of(fn, repeats: int = 3) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def legacy_plan_tiles(lr_size, tiling, align=1):
    """The tiles this product used before: `tile`-px cores, context clipped at the borders (unequal tiles)."""
    h, w = lr_size
    if not tiling.tile or (h <= tiling.tile and w <= tiling.tile):
        return [(Box(0, h, 0, w), Box(0, h, 0, w))]
    t, o = max(align, tiling.tile // align * align), -(-tiling.overlap // align) * align
    tiles = []
    for y0 in range(0, h, t):
        for x0 in range(0, w, t):
            core = Box(y0, min(y0 + t, h), x0, min(x0 + t, w))
            tiles.append((core, Box(max(0, y0 - o), min(h, core.y1 + o), max(0, x0 - o), min(w, core.x1 + o))))
    return tiles


@contextmanager
def legacy_tiles():
    current = pipeline.plan_tiles
    pipeline.plan_tiles = legacy_plan_tiles
    try:
        yield
    finally:
        pipeline.plan_tiles = current


LEGACY = Tiling(tile=192, overlap=24)  # cores of 192 with the legacy planner


class _Graph(torch.nn.Module):
    def __init__(self, model, direction: str) -> None:
        super().__init__()
        self.model, self.direction = model, direction

    def forward(self, x):
        return self.model.net.downscale(x)[0] if self.direction == "down" else self.model.net.upscale(x)


def network_rows(model, wid: str, side: int, threads: int, peak: float) -> list[str]:
    """The network alone on a whole side^2 HR image, per backend, both directions."""
    rows = []
    precisions = ("fp32", "bf16") if native_bf16("cpu") else ("fp32",)
    converted = {p: make_engine(model, key=wid, backend="openvino", precision=p, threads=threads) for p in precisions}
    hr = torch.rand(1, 3, side, side)
    with torch.inference_mode():
        lr = model.net.downscale(hr)[0]
    for direction, x in (("down", hr), ("up", lr)):
        graph = _Graph(model, direction).eval()
        with torch.inference_mode():
            reference = graph(x)
        counter = FlopCounterMode(display=False)
        with counter, torch.inference_mode():
            graph(x)
        flops = counter.get_total_flops()
        mp = side * side / 1e6
        candidates: dict[str, callable] = {}

        def eager(graph=graph, x=x):
            with torch.inference_mode():
                return graph(x)

        candidates["eager PyTorch fp32"] = eager
        if native_bf16("cpu"):

            def eager_bf16(graph=graph, x=x):
                with torch.inference_mode(), autocast("cpu", "bf16"):
                    return graph(x)

            candidates["eager PyTorch bf16"] = eager_bf16
        compiled = torch.compile(graph, dynamic=False)

        def inductor(compiled=compiled, x=x):
            with torch.inference_mode():
                return compiled(x)

        started = time.perf_counter()
        inductor()
        compile_s = time.perf_counter() - started
        candidates[f"torch.compile fp32 (compiled in {compile_s:.0f} s)"] = inductor
        try:
            import onnxruntime as ort

            path = Path(f"/tmp/rescale-bench-{wid}-{direction}.onnx")
            torch.onnx.export(graph, (x,), str(path), dynamo=False, opset_version=17, input_names=["x"])
            options = ort.SessionOptions()
            options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            array = x.numpy()
            candidates["ONNX Runtime fp32"] = lambda s=session, a=array: torch.from_numpy(s.run(None, {"x": a})[0])
        except ImportError:
            pass
        for precision, engine in converted.items():
            inputs = [x] if direction == "down" else [x[:, :3]] + ([x[:, 3:]] if x.shape[1] > 3 else [])
            graph_name = "encode" if direction == "down" else "decode"
            candidates[f"OpenVINO {precision}"] = lambda e=engine, n=graph_name, i=inputs: e._run(n, i)[0]
        for label, fn in candidates.items():
            seconds = best_of(fn)
            out = fn()
            out = out if isinstance(out, torch.Tensor) else torch.as_tensor(out)
            if direction == "up" or model.config.alpha is False:
                diff = (out.float() - reference).abs().max().item() * 255
            else:
                diff = (out[:, :3].float() - reference[:, :3]).abs().max().item() * 255
            rows.append(
                f"| network alone, {side}^2 | {direction} | {label} | {seconds / mp:.2f} | "
                f"{flops / seconds / peak:.0%} | {diff:.3f} |"
            )
            print(rows[-1], flush=True)
    return rows


def pipeline_rows(registry, engines, wid, image, peak, flops_per_px) -> list[str]:
    """The product's tiled pipeline on one photo: before (eager, legacy tiles) and now (engine, measured tiles)."""
    model, entry = registry.model(wid), registry.get(wid)
    mp = image.shape[0] * image.shape[1] / 1e6
    rows = []
    now_engine, now_tiling = engines.engine(wid), engines.tiling(wid)
    down_before = down_now = None
    for label, engine, tiling, legacy in (
        ("before: eager fp32, legacy 192-px tiles + 24 px", make_engine(model, key=wid, backend="torch"), LEGACY, True),
        (
            f"now: {type(now_engine).__name__}, tiles <= {now_tiling.tile} px + {now_tiling.overlap} px",
            now_engine,
            now_tiling,
            False,
        ),
    ):
        with legacy_tiles() if legacy else nullcontext():
            down_s = best_of(lambda e=engine, t=tiling: pipeline.downscale_image(e, image, t), 1)
            down = pipeline.downscale_image(engine, image, tiling)
            up_s = best_of(lambda e=engine, t=tiling, d=down: pipeline.upscale_image(e, d, t), 1)
        if legacy:
            down_before = down
        else:
            down_now = down
        for direction, seconds in (("down", down_s), ("up", up_s)):
            fl = flops_per_px[direction] * mp * 1e6
            rows.append(
                f"| tiled pipeline, {image.shape[1]}x{image.shape[0]} | {direction} | {label} | "
                f"{seconds / mp:.2f} | {fl / seconds / peak:.0%} | |"
            )
            print(rows[-1], flush=True)
    diff = int(np.abs(down_before.rgb.astype(int) - down_now.rgb).max())
    print(f"  LR now against before: at most {diff} codes apart ({entry.label} x{entry.config.scale})")
    return rows


def http_seconds_per_mp(
    url: str, body: bytes, lr_body: bytes, params: dict, mp: float, concurrency: int, requests: int
):
    """(downscale, upscale) seconds per HR megapixel of throughput: wall time over megapixels served."""
    import httpx

    results = {}
    for direction, path, payload, name in (("down", "/downscale", body, "x.png"), ("up", "/upscale", lr_body, "x.png")):

        def one(_, path=path, payload=payload, name=name):
            with httpx.Client(timeout=600) as client:
                r = client.post(
                    f"{url}{path}",
                    files={"image": (name, payload, "image/png")},
                    params=params if path == "/downscale" else {},
                )
                r.raise_for_status()
                return r.content

        one(0)  # warm-up
        started = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(one, range(requests)))
        results[direction] = (time.perf_counter() - started) / (mp * requests)
    return results


def png(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, "PNG", compress_level=1)
    return buf.getvalue()


@contextmanager
def busy_process(enabled: bool):
    """A second process spinning on one core, as a neighbour on a shared machine would."""
    if not enabled:
        yield
        return
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield
    finally:
        proc.kill()
        proc.wait()


def service_params(entry) -> dict[str, str]:
    """The /downscale query that picks this model."""
    mode = "alpha" if entry.config.alpha else "metadata" if entry.config.metadata else "plain"
    return {"mode": mode, "model": entry.config.base, "scale": str(entry.config.scale)}


def service_rows(engines, entry, crop: np.ndarray, flops: dict, peak: float, args) -> None:
    """The service over HTTP on loopback, before (eager, legacy-size tiles) and now (defaults), idle and with a
    busy process beside it; throughput in s/MP (wall time over megapixels served)."""
    from models import files

    wid, variant, scale = entry.weights_id, entry.config.variant, entry.config.scale
    mp = crop.shape[0] * crop.shape[1] / 1e6
    down = pipeline.downscale_image(engines.engine(wid), crop, engines.tiling(wid))
    lr_body = files.encode(down, variant=variant, scale=scale, weights_id=wid, format="png")
    params = service_params(entry)
    legacy = {"RESCALE_BACKEND": "torch", "RESCALE_TILE_LR": "240", "RESCALE_TILE_OVERLAP_LR": "24"}
    for label, env in (("before: eager fp32, 240-px tiles + 24 px", legacy), ("now: defaults", {})):
        with serving({**env, "RESCALE_TORCH_THREADS": str(args.threads)}) as url:
            for busy in (False, True) if "busy" not in args.skip else (False,):
                for concurrency in (1, 4) if busy else (1,):
                    with busy_process(busy):
                        res = http_seconds_per_mp(url, png(crop), lr_body, params, mp, concurrency, args.requests)
                    for direction, seconds in res.items():
                        how = f"{label}; concurrency {concurrency}" + ("; a busy process beside it" if busy else "")
                        share = flops[direction] * 1e6 / seconds / peak
                        print(
                            f"| service over HTTP, {crop.shape[1]}^2 PNG | {direction} | {how} | "
                            f"{seconds:.2f} | {share:.0%} | |"
                        )


def twelve_megapixels(engines, entry, photo: np.ndarray) -> None:
    """The photo resized to 4000x3000 through the service (defaults); the work tiling adds at 12 MP; and the
    product's tiles against whole-image work, timed on 3000x2000 (whole 12 MP images ran out of 24 GB here)."""
    import httpx

    big = np.asarray(Image.fromarray(photo).resize((4000, 3000), Image.BICUBIC))
    s, m = entry.config.scale, entry.config.size_multiple
    params = service_params(entry)
    with serving({}) as url, httpx.Client(base_url=url, timeout=600) as client:
        started = time.perf_counter()
        lr = client.post("/downscale", params=params, files={"image": ("big.png", png(big), "image/png")})
        lr.raise_for_status()
        down_s = time.perf_counter() - started
        started = time.perf_counter()
        hr = client.post("/upscale", files={"image": ("lr.png", lr.content, "image/png")})
        hr.raise_for_status()
        up_s = time.perf_counter() - started
    print(
        f"12 MP through the service (defaults, deadline 120 s): /downscale {down_s:.1f} s ({len(lr.content):,} bytes), "
        f"/upscale {up_s:.1f} s ({len(hr.content):,} bytes)",
        flush=True,
    )
    wid = entry.weights_id
    engine, tiling = engines.engine(wid), engines.tiling(wid)
    ratio = work_ratio((-(-3000 // m) * m // s, -(-4000 // m) * m // s), tiling, m // s)
    times = {}
    six = np.ascontiguousarray(big[:2000, :3000])
    del big
    pipeline.upscale_image(engine, pipeline.downscale_image(engine, six, tiling), tiling)  # the first big input
    # costs OpenVINO about 1.5 s once (buffers grow): paid here, outside both timings
    for label, t in (("tiled", tiling), ("whole", Tiling())):
        started = time.perf_counter()
        down = pipeline.downscale_image(engine, six, t)
        times[("down", label)] = time.perf_counter() - started
        started = time.perf_counter()
        pipeline.upscale_image(engine, down, t)
        times[("up", label)] = time.perf_counter() - started
        del down
    print(
        f"tiles of at most {tiling.tile}^2 LR px with {tiling.overlap} px of context: work ratio {ratio:.3f} at 12 MP; "
        "at 6 MP (3000x2000) "
        + ", ".join(
            f"{d} {times[(d, 'tiled')]:.1f} s tiled against {times[(d, 'whole')]:.1f} s whole "
            f"({times[(d, 'tiled')] / times[(d, 'whole')] - 1:+.0%})"
            for d in ("down", "up")
        ),
        flush=True,
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--image", required=True)
    p.add_argument("--crop", type=int, default=864, help="HR crop side for the pipeline and the service")
    p.add_argument("--models", nargs="+", default=["irn-a-x4", "irn-a-x2"], help="variant-xS of shipped models")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--network-side", type=int, default=512)
    p.add_argument("--skip", nargs="*", default=[], choices=["network", "pipeline", "service", "twelve", "busy"])
    p.add_argument("--requests", type=int, default=4)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    registry = Registry()
    engines = EngineSet(registry, threads=args.threads)
    peak = matmul_peak()
    print(
        f"{cpu_name()}, {args.threads} threads, native bf16: {native_bf16('cpu')}; "
        f"fp32 matmul peak {peak / 1e9:.0f} GFLOP/s"
    )
    photo = load_rgb(args.image)
    h, w = photo.shape[:2]
    c = min(args.crop, h, w)
    crop = photo[(h - c) // 2 : (h - c) // 2 + c, (w - c) // 2 : (w - c) // 2 + c]
    for name in args.models:
        variant, scale = name.rsplit("-x", 1)
        entry = registry.find(variant, int(scale))
        wid, model = entry.weights_id, registry.model(entry.weights_id)
        flops = {}
        side = 128 * entry.config.size_multiple // entry.config.scale
        hr = torch.rand(1, 3, side, side)
        with torch.inference_mode():
            counter = FlopCounterMode(display=False)
            with counter:
                encoded = model.encode(hr)
            flops["down"] = counter.get_total_flops() / side**2
            counter = FlopCounterMode(display=False)
            with counter:
                model.decode(encoded)
            flops["up"] = counter.get_total_flops() / side**2
        print(
            f"\n## {entry.label} x{entry.config.scale} ({wid}): {flops['down'] / 1e3:.0f} kFLOP per HR pixel down, "
            f"{flops['up'] / 1e3:.0f} k up; floor at the peak "
            f"{flops['down'] / peak * 1e6:.2f} / {flops['up'] / peak * 1e6:.2f} s/MP"
        )
        print("| path | direction | how | s/MP | % of fp32 peak | max diff vs eager fp32 (codes) |")
        print("|---|---|---|---|---|---|")
        if "network" not in args.skip:
            network_rows(model, wid, args.network_side, args.threads, peak)
        if "pipeline" not in args.skip:
            pipeline_rows(registry, engines, wid, crop, peak, flops)
        if "service" not in args.skip:
            service_rows(engines, entry, crop, flops, peak, args)
        if "twelve" not in args.skip:
            twelve_megapixels(engines, entry, photo)
    print(json.dumps({"threads": args.threads, "peak_gflops": round(peak / 1e9)}))


if __name__ == "__main__":
    main()
