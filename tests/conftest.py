import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from models.networks.rescaler import ModelConfig, Rescaler
from models.store.checkpoint import save_model

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

torch.set_num_threads(1)
# Eager PyTorch for the CLI and the servers that tests start, unless a test asks for OpenVINO: a graph takes
# seconds to export and convert, once per weights, and most tests make weights of their own. OpenVINO's graphs
# are tested in test_engines.py and served by the session's `url` server.
os.environ["RESCALE_BACKEND"] = "torch"


def tiny_config(variant: str = "irn", scale: int = 2, **overrides) -> ModelConfig:
    """One InvBlock per level: every part of the network is there, and an OpenVINO conversion (whose time grows
    with the graph) costs half what two blocks cost."""
    return ModelConfig(
        variant=variant, scale=scale, **({"blocks_per_level": 1, "growth": 4, "codec_hidden": 8} | overrides)
    )


def perturbed(model: torch.nn.Module, std: float = 0.02, seed: int = 0) -> torch.nn.Module:
    """Blocks start as the identity; noise makes every subnet matter."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * std)
    return model


@pytest.fixture
def photo() -> np.ndarray:
    """A 90x70 textured crop of a real eval photo (sizes off the scale multiples on purpose)."""
    path = SHARED_DATA / "eval" / "sheep.png"
    if not path.is_file():
        pytest.skip(f"{path} not present")
    with Image.open(path) as im:
        return np.array(im.convert("RGB"))[480:570, 840:910]


@pytest.fixture
def model_folder(tmp_path):
    """Save a small perturbed model of a given variant/scale and return its folder."""

    def make(variant: str = "irn-a", scale: int = 2, **overrides) -> Path:
        model = perturbed(Rescaler(tiny_config(variant, scale, **overrides)), std=0.005)
        if model.codec is not None:  # an untrained decoder would add noise; start it at z_hat = 0
            torch.nn.init.zeros_(model.codec.decoder[-1].weight)
            torch.nn.init.zeros_(model.codec.decoder[-1].bias)
        folder = tmp_path / "-".join([f"{variant}-x{scale}", *(f"{k}{v}" for k, v in overrides.items())])
        save_model(model, folder)
        return folder

    return make


@pytest.fixture(scope="session")
def weights(tmp_path_factory):
    """Small models the service tests serve: irn, irn-a, irn-m at x2 and irn-a at x4."""
    root = tmp_path_factory.mktemp("weights")
    folders = {}
    for variant, scale in [("irn", 2), ("irn-a", 2), ("irn-m", 2), ("irn-a", 4)]:
        model = perturbed(Rescaler(tiny_config(variant, scale)), std=0.005)
        if model.codec is not None:
            torch.nn.init.zeros_(model.codec.decoder[-1].weight)
            torch.nn.init.zeros_(model.codec.decoder[-1].bias)
        folders[f"{variant}-x{scale}"] = save_model(model, root / f"{variant}-x{scale}").parent
    return folders


@pytest.fixture(scope="session")
def graph_cache(tmp_path_factory) -> Path:
    """One OpenVINO graph cache for the session: each small model is converted once, by whichever test needs it
    first (`torch.export` takes seconds a graph), then read back."""
    return tmp_path_factory.mktemp("graphs")


@pytest.fixture(scope="session")
def url(weights, graph_cache):
    """A real uvicorn server on loopback, on the engine the CPU serves with (OpenVINO)."""
    from tests.service_helpers import running_server, settings_for

    with running_server(settings_for(weights, backend="openvino", compile_cache_dir=graph_cache)) as base:
        yield base


@pytest.fixture
def client(url):
    import httpx

    with httpx.Client(base_url=url, timeout=60) as c:
        yield c


LOSSY_TRAINING = {"training": {"lossy_codec": {"quality_min": 50, "quality_max": 95, "real_forward": True}}}


@pytest.fixture(scope="session")
def folders(tmp_path_factory) -> dict:
    """Lossless-trained irn, irn-m and irn-a x2, and compression-aware irn and irn-m x2 (other weights): what the
    format tests serve."""
    root = tmp_path_factory.mktemp("lossy-weights")
    out = {}
    for name, variant, seed, extra in [
        ("irn", "irn", 0, None),
        ("irn-jpeg", "irn", 1, LOSSY_TRAINING),
        ("irn-a", "irn-a", 2, None),
        ("irn-m", "irn-m", 3, None),
        ("irn-m-jpeg", "irn-m", 4, LOSSY_TRAINING),
    ]:
        model = perturbed(Rescaler(tiny_config(variant, 2)), std=0.005, seed=seed)
        out[name] = save_model(model, root / name, extra=extra).parent
    return out
