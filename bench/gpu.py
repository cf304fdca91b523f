"""On a CUDA machine: per-direction latency of a 1920x1080 photo at x4 and x2, and the service's MP/s.

    python bench/gpu.py --image ../shared/data/eval/cliff.png

Latency of the network alone (the shipped IRN-A at each scale, whole image, synchronised,
best of several) in fp32, fp16 and bf16 autocast, channels_last, and torch.compile
("max-autotune", then "reduce-overhead", which captures CUDA graphs); each against fp32's output
(max difference in 8-bit codes). Then the service over HTTP on loopback at concurrency 1, 4
and 16 with batching off (max batch 1) and on (max batch 8, 20 ms window). The published IRN
takes about 520 ms a direction for 1080p x4 on a P100; the aim is under 50 ms.
"""

import argparse
import io
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from loopback import serving  # bench/, beside this script
from PIL import Image

from models.files.images import load_rgb
from models.store.registry import Registry

WIDTH, HEIGHT = 1920, 1080


def latency_ms(fn, repeats: int = 10) -> float:
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best * 1000


def network_latencies(model, hr: torch.Tensor) -> None:
    with torch.inference_mode():
        reference_lr = model.net.downscale(hr)[0]
        reference_hr = model.net.upscale(reference_lr)

    def runner(direction, dtype=None, memory_format=torch.contiguous_format, compiled=None):
        x = (hr if direction == "down" else reference_lr).contiguous(memory_format=memory_format)
        fn = compiled or (model.net.downscale if direction == "down" else model.net.upscale)

        def run():
            with (
                torch.inference_mode(),
                torch.autocast("cuda", dtype=dtype or torch.float32, enabled=dtype is not None),
            ):
                out = fn(x)
            return out[0] if isinstance(out, tuple) else out

        return run

    setups = {
        "fp32": {},
        "fp16 autocast": {"dtype": torch.float16},
        "bf16 autocast": {"dtype": torch.bfloat16},
        "fp16, channels_last": {"dtype": torch.float16, "memory_format": torch.channels_last},
    }
    for direction in ("down", "up"):
        reference = reference_lr if direction == "down" else reference_hr
        rows = dict(setups)
        for mode in ("max-autotune", "reduce-overhead"):
            fn = model.net.downscale if direction == "down" else model.net.upscale
            rows[f"fp16, torch.compile {mode}"] = {"dtype": torch.float16, "compiled": torch.compile(fn, mode=mode)}
        for label, options in rows.items():
            try:
                run = runner(direction, **options)
                ms = latency_ms(run)
                diff = (run().float() - reference).abs().max().item() * 255
                print(f"| {direction} | {label} | {ms:.1f} ms | {diff:.2f} |", flush=True)
            except Exception as exc:  # noqa: BLE001 - a setting this GPU or build lacks: say so, go on
                print(f"| {direction} | {label} | failed: {type(exc).__name__}: {exc} | |", flush=True)


def service_throughput(body: bytes, scale: int, requests: int) -> None:
    import httpx

    mp = WIDTH * HEIGHT / 1e6
    for label, batch in (("batching off", "1"), ("batching on", "8")):
        env = {"RESCALE_MAX_BATCH_SIZE": batch, "RESCALE_MAX_BATCH_WAIT_MS": "20", "RESCALE_MAX_QUEUE": "512"}
        with serving(env) as url:
            for concurrency in (1, 4, 16):

                def one(_):
                    with httpx.Client(timeout=600) as client:
                        r = client.post(
                            f"{url}/downscale",
                            files={"image": ("x.png", body, "image/png")},
                            params={"scale": scale, "variant": "irn-a"},
                        )
                        r.raise_for_status()

                one(0)
                start = time.perf_counter()
                with ThreadPoolExecutor(concurrency) as pool:
                    list(pool.map(one, range(requests)))
                rate = mp * requests / (time.perf_counter() - start)
                print(f"| service x{scale} | {label} | concurrency {concurrency} | {rate:.1f} MP/s |", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--image", required=True)
    p.add_argument("--requests", type=int, default=32)
    p.add_argument("--skip-service", action="store_true")
    args = p.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device here: this benchmark runs on a GPU machine (bench/speed.py is the CPU one)")
        return
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}")
    photo = np.asarray(Image.fromarray(load_rgb(args.image)).resize((WIDTH, HEIGHT), Image.BICUBIC))
    registry = Registry()
    for scale in (4, 2):
        entry = registry.find("irn-a", scale)
        model = registry.model(entry.weights_id, "cuda").float().eval()
        hr = torch.from_numpy(photo).permute(2, 0, 1)[None].float().div(255).cuda()
        print(
            f"\n## {entry.label} x{scale}, {WIDTH}x{HEIGHT}\n| direction | how | latency | max diff vs fp32 (codes) |"
        )
        print("|---|---|---|---|")
        network_latencies(model, hr)
    if not args.skip_service:
        buf = io.BytesIO()
        Image.fromarray(photo).save(buf, "PNG", compress_level=1)
        print("\n| path | batching | concurrency | throughput |\n|---|---|---|---|")
        for scale in (4, 2):
            service_throughput(buf.getvalue(), scale, args.requests)


if __name__ == "__main__":
    main()
