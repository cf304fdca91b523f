"""The z predictor of the compression-aware models: z = 0 until trained, the -M code wins where a file carries
one, saved and rebuilt from the config, tiled and converted like the rest of the model."""

import numpy as np
import pytest
import torch

from models.checkpoint import load_model, save_model
from models.inference.engines import make_engine
from models.inference.pipeline import downscale_image, upscale_image
from models.inference.tiles import Tiling
from models.networks.latent_predictor import LatentPredictor, PredictorConfig
from models.rescaler import Encoded, Rescaler
from tests.conftest import perturbed, tiny_config


def with_predictor(variant: str = "irn", scale: int = 2) -> tuple[Rescaler, Rescaler]:
    """(the model without a predictor, the same weights with an untrained one)"""
    base = perturbed(Rescaler(tiny_config(variant, scale)), std=0.01, seed=1)
    model = Rescaler(tiny_config(variant, scale, predictor_layers=3, predictor_hidden=8))
    missing = model.load_state_dict(base.state_dict(), strict=False).missing_keys
    assert missing and all(k.startswith("predictor.") for k in missing)
    return base, model


def test_an_untrained_predictor_is_z_zero():
    out = LatentPredictor(PredictorConfig(lr_channels=3, z_channels=9, layers=4, hidden=8))(torch.rand(2, 3, 10, 12))
    assert out.shape == (2, 9, 10, 12) and not out.any()
    base, model = with_predictor()
    encoded = base.encode(torch.rand(1, 3, 32, 32))
    assert torch.equal(model.decode(encoded), base.decode(encoded))
    perturbed(model.predictor, std=0.05, seed=3)
    assert not torch.allclose(model.decode(encoded), base.decode(encoded))


def test_an_m_file_uses_its_code_and_the_predictor_only_without_it():
    base, model = with_predictor("irn-m", 2)
    perturbed(model.predictor, std=0.05, seed=3)
    encoded = base.encode(torch.rand(1, 3, 32, 32))
    assert torch.equal(model.decode(encoded), base.decode(encoded))  # the code wins
    stripped = Encoded(rgb=encoded.rgb)
    assert not torch.allclose(model.decode(stripped), base.decode(stripped))


def test_sizes_are_checked():
    with pytest.raises(ValueError, match="layers must be >= 2, got 1"):
        PredictorConfig(lr_channels=3, z_channels=9, layers=1)
    with pytest.raises(ValueError, match="lr_channels and z_channels must be >= 1, got 3, 0"):
        PredictorConfig(lr_channels=3, z_channels=0)


def test_the_predictor_is_saved_rebuilt_tiled_and_converted(tmp_path, photo):
    _, model = with_predictor("irn", 2)
    perturbed(model.predictor, std=0.02, seed=4)
    save_model(model, tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert loaded.config.predictor_layers == 3 and loaded.predictor is not None
    down = downscale_image(loaded, photo)
    whole = upscale_image(loaded, down).astype(int)
    tiled = upscale_image(loaded, down, Tiling(tile=40, overlap=12)).astype(int)
    assert np.abs(whole - tiled).max() <= 1  # the predictor's context fits in the tiles' overlap
    pytest.importorskip("openvino")
    engine = make_engine(loaded, key="predictor", backend="openvino", cache_dir=tmp_path / "cache")
    assert np.abs(upscale_image(engine, down).astype(int) - whole).max() <= 1
