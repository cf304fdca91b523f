"""A real uvicorn server on loopback, serving small models."""

import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager

import httpx
import numpy as np
import uvicorn
from fastapi import FastAPI
from PIL import Image

from service.main import create_app
from service.settings import Settings
from tests.conftest import ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def rescale_serve(**env: str):
    """`python -m models serve` in a process of its own on a loopback port, serving the shipped x2 IRN alone
    (RESCALE_* overrides in `env`); yields (base URL, process) once /readyz answers 200. Its stdout and
    stderr come merged in `process.stdout`."""
    port = free_port()
    variables = os.environ | {
        "RESCALE_WEIGHTS_DIRS": json.dumps([str(ROOT / "models" / "weights" / "irn-x2")]),
        "RESCALE_INCLUDE_SHIPPED_WEIGHTS": "false",
        "RESCALE_TORCH_THREADS": "1",
        **env,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "models", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=variables,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.2)
    else:
        process.kill()
        raise RuntimeError(f"rescale serve did not start: {process.communicate()[0][-2000:]}")
    try:
        yield base, process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@contextmanager
def running_server(settings: Settings):
    with running_app(create_app(settings)) as base:
        yield base


@contextmanager
def running_app(app: FastAPI):
    """`app` (create_app's, with a test's own routes added) served on a loopback port; yields its base URL."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 300  # the first start with the shipped models converts their graphs (~1 min)
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


TILE, OVERLAP = 64, 8


def png_bytes(image: np.ndarray, **save) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", **save)
    return buffer.getvalue()


def settings_for(weights: dict, **overrides) -> Settings:
    """Small limits and tiles so the tests exercise them on small images."""
    values = dict(
        weights_dirs=list(weights.values()),
        include_shipped_weights=False,
        max_pixels=400_000,
        max_upload_bytes=3_000_000,
        tile_lr=TILE,
        tile_overlap_lr=OVERLAP,
        max_batch_wait_ms=20,
        torch_threads=1,
    )
    values.update(overrides)
    return Settings(**values)
