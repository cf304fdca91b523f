"""The LR restorer of the compression-aware models."""

import numpy as np
import pytest
import torch

from models.inference.pipeline import downscale_image, upscale_image
from models.inference.tiles import Tiling
from models.networks.lr_restorer import LRRestorer, RestorerConfig
from models.networks.rescaler import ModelConfig, Rescaler
from models.store.checkpoint import load_model, save_model
from tests.conftest import perturbed, tiny_config


def test_an_untrained_restorer_is_the_identity():
    lr = torch.rand(2, 3, 20, 24)
    assert torch.equal(LRRestorer(RestorerConfig(layers=4, hidden=8))(lr), lr)


def test_a_model_with_a_restorer_applies_it_before_the_inverse():
    torch.manual_seed(0)
    plain = perturbed(Rescaler(tiny_config("irn", 2)))
    restored = Rescaler(tiny_config("irn", 2, restorer_layers=3, restorer_hidden=8))
    restored.load_state_dict(plain.state_dict(), strict=False)
    hr = torch.rand(1, 3, 32, 32)
    encoded = plain.encode(hr)
    assert torch.equal(restored.decode(encoded), plain.decode(encoded))  # zero last conv: same output
    perturbed(restored.restorer, std=0.05, seed=3)
    assert not torch.allclose(restored.decode(encoded), plain.decode(encoded))


def test_the_restorer_is_saved_and_rebuilt_from_the_config(tmp_path, photo):
    model = perturbed(Rescaler(tiny_config("irn", 2, restorer_layers=3, restorer_hidden=8)))
    save_model(model, tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert loaded.config.restorer_layers == 3 and loaded.restorer is not None
    down = downscale_image(loaded, photo)
    whole = upscale_image(loaded, down).astype(int)
    tiled = upscale_image(loaded, down, Tiling(tile=40, overlap=12)).astype(int)
    assert np.abs(whole - tiled).max() <= 1  # the restorer's context fits in the tiles' overlap


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"variant": "irn-a", "restorer_layers": 4}, "an LR restorer works on an RGB LR, not on irn-a's alpha"),
        ({"variant": "irn", "restorer_layers": 1}, "layers must be >= 2, got 1"),
        ({"variant": "irn", "restorer_layers": 4, "restorer_hidden": 0}, "hidden must be >= 1, got 0"),
    ],
)
def test_restorer_config_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(**kwargs)
