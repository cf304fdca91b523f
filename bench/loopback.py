"""A `rescale serve` on a loopback port for the benchmarks, stopped when they are done."""

import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(env: dict[str, str]):
    import httpx

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "models", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env={**os.environ, "RESCALE_LOG_LEVEL": "warning", **env},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(1800):  # the first start converts the shipped models' graphs
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        else:
            raise RuntimeError("the service did not become ready")
        yield url
    finally:
        proc.terminate()
        proc.wait(60)
