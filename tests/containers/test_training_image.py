"""End to end through containers: train a few steps, publish the run, serve what was published."""

import json
import os
import shutil

import httpx
import pytest

from tests.conftest import SHARED_DATA
from tests.containers.conftest import READ_ONLY, TRAINING_IMAGE, docker, serving, weights_dirs
from tests.containers.test_serving_image import photo_png

pytestmark = pytest.mark.containers  # make test-containers


def test_a_run_trained_in_the_training_image_is_published_and_served(tmp_path):
    data, runs, weights = tmp_path / "data", tmp_path / "runs", tmp_path / "weights"
    data.mkdir()
    for photo in sorted((SHARED_DATA / "train").glob("*.png"))[:2]:
        shutil.copy(photo, data)
    for folder in (runs, weights):
        folder.mkdir()
        os.chmod(folder, 0o777)  # written by UID 10001 in the containers

    train = ["--nproc_per_node=1", "-m", "models", "train", "--variant", "irn", "--scale", "2"]
    train += ["--blocks-per-level", "1", "--growth", "8", "--steps", "3", "--batch-size", "2", "--patch", "32"]
    train += ["--train-dirs", "/data", "--out", "/runs/tiny-x2", "--threads", "1"]
    volumes = ["-v", f"{data}:/data:ro", "-v", f"{runs}:/runs"]
    docker("run", "--rm", "--network", "host", *volumes, TRAINING_IMAGE, *train, timeout=600)
    checkpoint = json.loads((runs / "tiny-x2" / "checkpoint" / "checkpoint.json").read_text())
    assert checkpoint["step"] == 3

    publish = ["--entrypoint", "rescale", TRAINING_IMAGE, "publish", "/runs/tiny-x2", "--name", "tiny-x2"]
    docker("run", "--rm", "-v", f"{runs}:/runs:ro", "-v", f"{weights}:/weights", *publish, "--into", "/weights")
    manifest = json.loads((weights / "manifest.json").read_text())
    weights_id = manifest["models"][0]["weights_id"]

    env = {
        "RESCALE_WEIGHTS_DIRS": weights_dirs("/weights/tiny-x2"),
        "RESCALE_INCLUDE_SHIPPED_WEIGHTS": "false",
        "RESCALE_COMPILE_CACHE_DIR": "/tmp/graphs",  # a new model's graphs: converted on first use, kept in /tmp
    }
    with serving(*READ_ONLY, "-v", f"{weights}:/weights:ro", env=env) as (base, _, _):
        assert [m["weights_id"] for m in httpx.get(f"{base}/v1/models", timeout=10).json()["models"]] == [weights_id]
        small = httpx.post(f"{base}/downscale?scale=2&mode=plain", files={"image": photo_png(64, 48)}, timeout=300)
        assert small.status_code == 200, small.text
        assert small.headers["X-Rescale-Weights-Id"] == weights_id
        restored = httpx.post(f"{base}/upscale", files={"image": small.content}, timeout=300)
        assert restored.status_code == 200, restored.text
        assert restored.headers["X-Rescale-Original-Size"] == "64x48"
