"""Service throughput and latency, batching on and off, side by side in one run.

    python bench/service.py --weights runs/irn-a-x2 --image ../shared/data/eval/sheep.png --scale 2

For each setting (batching off = max batch 1; on = max batch 8 with a 20 ms window) it
starts `rescale serve` on a loopback port, sends `--requests` downscale requests at
concurrency 1, 4 and 16, and prints megapixels/s, p50/p99 latency, the mean batch size
(from /metrics) and the share of client latency spent outside the network: decoding,
encoding and HTTP (latency minus Server-Timing's `queue` and `model`).
"""

import argparse
import io
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
from PIL import Image


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(weights: list[str], batch: int, wait_ms: float, threads: int | None) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {
        **os.environ,
        "RESCALE_WEIGHTS_DIRS": json.dumps(weights),
        "RESCALE_MAX_BATCH_SIZE": str(batch),
        "RESCALE_MAX_BATCH_WAIT_MS": str(wait_ms),
        "RESCALE_MAX_QUEUE": "512",
        "RESCALE_LOG_LEVEL": "warning",
    }
    if threads:
        env["RESCALE_TORCH_THREADS"] = str(threads)
    proc = subprocess.Popen(
        [sys.executable, "-m", "models", "serve", "--host", "127.0.0.1", "--port", str(port)], env=env
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("service did not become ready")


def metric(text: str, name: str) -> float:
    return sum(float(v) for v in re.findall(rf"^{name}(?:{{[^}}]*}})? ([\d.e+-]+)$", text, re.M))


def load(url: str, body: bytes, params: dict, concurrency: int, requests: int) -> dict:
    def one(_: int) -> tuple[float, float]:
        """Client latency, and the part of it spent waiting for or inside the network."""
        with httpx.Client(timeout=600) as client:
            start = time.perf_counter()
            r = client.post(f"{url}/downscale", files={"image": ("x.png", body, "image/png")}, params=params)
            r.raise_for_status()
            timing = dict(re.findall(r"(\w+);dur=([\d.]+)", r.headers["server-timing"]))
            latency = time.perf_counter() - start
            in_network = (float(timing.get("model", 0)) + float(timing.get("queue", 0))) / 1000
            return latency, in_network

    before = httpx.get(f"{url}/metrics").text
    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(one, range(requests)))
    wall = time.perf_counter() - start
    after = httpx.get(f"{url}/metrics").text
    batches = metric(after, "rescale_batch_size_count") - metric(before, "rescale_batch_size_count")
    inputs = metric(after, "rescale_batch_size_sum") - metric(before, "rescale_batch_size_sum")
    latencies = sorted(r[0] for r in results)
    return {
        "wall": wall,
        "p50": statistics.median(latencies),
        "p99": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
        "batch": inputs / max(batches, 1),
        "outside": 1 - sum(r[1] for r in results) / sum(r[0] for r in results),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--weights", nargs="+", required=True)
    p.add_argument("--image", required=True)
    p.add_argument("--crop", type=int, default=256, help="HR side of the square test image")
    p.add_argument("--scale", type=int, default=2)
    p.add_argument("--mode", default="alpha")
    p.add_argument("--requests", type=int, default=32)
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    p.add_argument("--threads", type=int, default=None, help="torch threads of the service")
    args = p.parse_args()
    image = Image.open(args.image).convert("RGB")
    w, h = image.size
    c = min(args.crop, w, h)
    image = image.crop(((w - c) // 2, (h - c) // 2, (w - c) // 2 + c, (h - c) // 2 + c))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    body, megapixels = buffer.getvalue(), c * c / 1e6
    params = {"scale": args.scale, "mode": args.mode}
    print(f"downscale x{args.scale} mode={args.mode}, {c}x{c} PNG, {args.requests} requests per cell")
    print("batching  conc  MP/s    p50 s   p99 s   mean batch  outside network")
    for label, batch, wait_ms in (("off", 1, 0.0), ("on", 8, 20.0)):
        proc, url = start(args.weights, batch, wait_ms, args.threads)
        try:
            load(url, body, params, 1, 2)  # warm-up
            for conc in args.concurrency:
                r = load(url, body, params, conc, args.requests)
                mps = args.requests * megapixels / r["wall"]
                print(
                    f"{label:<9} {conc:>4}  {mps:6.3f}  {r['p50']:6.3f}  {r['p99']:6.3f}  "
                    f"{r['batch']:10.2f}  {r['outside']:14.1%}"
                )
        finally:
            proc.terminate()
            proc.wait(30)


if __name__ == "__main__":
    main()
