"""The CPU serving image as k8s/ runs it: UID 10001, read-only root, /tmp a tmpfs."""

import io
import os
import shutil
import subprocess
import sys
import threading

import httpx
import numpy as np
import pytest
from PIL import Image

from models.store.publish import read_manifest
from tests.conftest import ROOT, SHARED_DATA
from tests.containers.conftest import READ_ONLY, SERVING_IMAGE, docker, serving, weights_dirs

pytestmark = pytest.mark.containers  # make test-containers


def photo_png(width: int, height: int) -> bytes:
    """A crop of a real photo (cliff.png, 1296x864) as PNG bytes."""
    with Image.open(SHARED_DATA / "eval" / "cliff.png") as im:
        crop = im.convert("RGB").crop((100, 50, 100 + width, 50 + height))
    buffer = io.BytesIO()
    crop.save(buffer, format="PNG")
    return buffer.getvalue()


def pixels(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im).astype(np.int16)


@pytest.fixture(scope="module")
def replica():
    with serving(*READ_ONLY) as (base, container, ready_s):
        print(f"\nready {ready_s:.1f} s after docker run")
        yield base, container


def resident_mb(container: str) -> float:
    status = docker("exec", container, "cat", "/proc/1/status").stdout
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS"))) / 1024


def test_the_replica_runs_as_uid_10001_and_idles_small(replica):
    base, container = replica
    assert docker("exec", container, "id", "-u").stdout.strip() == "10001"
    assert docker("inspect", "-f", "{{.HostConfig.ReadonlyRootfs}}", container).stdout.strip() == "true"
    spec = "import importlib.util; print(importlib.util.find_spec('openvino_telemetry'))"
    assert docker("exec", container, "python", "-c", spec).stdout.strip() == "None"  # conversions call out nowhere
    models = httpx.get(f"{base}/v1/models", timeout=10).json()
    shipped = read_manifest()["models"]  # every shipped model answers (superseded ones read old files), none built yet
    assert sorted(m["weights_id"] for m in models["models"]) == sorted(m["weights_id"] for m in shipped)
    rss = resident_mb(container)
    print(f"idle RSS {rss:.0f} MB with {len(models['models'])} models available")
    assert rss < 1536, f"an idle replica holds {rss:.0f} MB"


def test_a_round_trip_matches_the_cli_of_the_same_image_byte_for_byte(replica, tmp_path):
    base, container = replica
    photo = photo_png(320, 240)
    small = httpx.post(f"{base}/downscale?scale=2&mode=alpha", files={"image": photo}, timeout=120)
    assert small.status_code == 200, small.text
    restored = httpx.post(f"{base}/upscale", files={"image": small.content}, timeout=120)
    assert restored.status_code == 200, restored.text
    assert restored.headers["X-Rescale-Original-Size"] == "320x240"

    work = tmp_path / "work"
    work.mkdir()
    os.chmod(work, 0o777)  # written by UID 10001 in the container
    (work / "photo.png").write_bytes(photo)
    cli = ["run", "--rm", *READ_ONLY, "-v", f"{work}:/work", "--entrypoint", "rescale", SERVING_IMAGE]
    docker(*cli, "downscale", "/work/photo.png", "/work/small.png", "--scale", "2", "--variant", "irn-a", timeout=300)
    docker(*cli, "upscale", "/work/small.png", "/work/restored.png", timeout=300)
    assert (work / "small.png").read_bytes() == small.content  # the file, byte for byte
    assert np.array_equal(pixels((work / "restored.png").read_bytes()), pixels(restored.content))  # PNG levels differ
    # the CLI outside the container: another OpenVINO build may differ, by one code at most
    local = tmp_path / "local.png"
    subprocess.run(
        [sys.executable, "-m", "models", "downscale", str(work / "photo.png"), str(local), "--scale", "2"]
        + ["--variant", "irn-a"],
        check=True,
        capture_output=True,
        cwd=ROOT,
        timeout=300,
    )
    assert np.abs(pixels(local.read_bytes()) - pixels(small.content)).max() <= 1
    assert docker("diff", container).stdout.strip() == ""  # nothing written outside /tmp


def test_docker_stop_answers_every_accepted_request():
    photo = photo_png(512, 384)
    with serving(*READ_ONLY, env={"RESCALE_DRAIN_TIMEOUT_S": "90"}) as (base, container, _):
        results: list[httpx.Response | Exception] = []

        def send() -> None:
            try:
                results.append(httpx.post(f"{base}/downscale?scale=4", files={"image": photo}, timeout=180))
            except httpx.HTTPError as exc:
                results.append(exc)

        threads = [threading.Thread(target=send) for _ in range(4)]
        for thread in threads:
            thread.start()
        metrics = ""
        for _ in range(100):  # every request accepted: four in the service's hands
            metrics = httpx.get(f"{base}/metrics", timeout=5).text
            if 'rescale_requests_in_flight{endpoint="/downscale"} 4.0' in metrics:
                break
            threading.Event().wait(0.1)
        else:
            pytest.fail(f"the requests never were in flight together: {metrics[-1500:]}")
        docker("stop", "-t", "100", container, timeout=150)  # SIGTERM, the grace k8s/ gives
        for thread in threads:
            thread.join(200)
        assert [r.status_code if isinstance(r, httpx.Response) else repr(r) for r in results] == [200] * 4
        for response in results:
            assert pixels(response.content).shape == (96, 128, 4)
        assert docker("inspect", "-f", "{{.State.ExitCode}}", container).stdout.strip() == "0"


def run_to_exit(*options: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    env_args = [a for k, v in env.items() for a in ("-e", f"{k}={v}")]
    return docker(
        "run", "--rm", "--network", "host", *READ_ONLY, *env_args, *options, SERVING_IMAGE, timeout=120, check=False
    )


def unreadable_weights(tmp_path) -> str:
    folder = tmp_path / "irn-x2"
    shutil.copytree(ROOT / "models" / "weights" / "irn-x2", folder)
    os.chmod(folder / "model.safetensors", 0o000)  # not for UID 10001
    return str(folder)


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        (
            "missing cache",
            "the graph cache /var/cache/rescale does not exist and cannot be made (Read-only file system)",
        ),
        ("read-only cache without graphs", "the graph cache /cache is read-only and lacks the converted graphs of"),
        ("missing weights", "/weights/irn-x2 must hold model.safetensors and config.json"),
        ("unreadable weights", "Permission denied"),
    ],
)
def test_a_replica_that_cannot_serve_exits_at_once_with_one_line(case, reason, tmp_path):
    options, env = [], {"RESCALE_PORT": "18999"}
    if case == "missing cache":
        env["RESCALE_COMPILE_CACHE_DIR"] = "/var/cache/rescale"
    elif case == "read-only cache without graphs":
        (tmp_path / "cache").mkdir()
        options += ["-v", f"{tmp_path / 'cache'}:/cache:ro"]
        env["RESCALE_COMPILE_CACHE_DIR"] = "/cache"
    elif case == "missing weights":
        env |= {"RESCALE_WEIGHTS_DIRS": weights_dirs("/weights/irn-x2"), "RESCALE_INCLUDE_SHIPPED_WEIGHTS": "false"}
    else:
        options += ["-v", f"{unreadable_weights(tmp_path)}:/weights/irn-x2:ro"]
        env |= {"RESCALE_WEIGHTS_DIRS": weights_dirs("/weights/irn-x2"), "RESCALE_INCLUDE_SHIPPED_WEIGHTS": "false"}
    result = run_to_exit(*options, env=env)
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 2, output
    assert len(output.splitlines()) == 1 and output.startswith("rescale serve: "), output
    assert reason in output
