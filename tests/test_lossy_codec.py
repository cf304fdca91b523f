"""The differentiable JPEG of compression-aware training, measured against Pillow's real codec."""

import numpy as np
import pytest
import torch
from PIL import Image

from models.training.lossy_codec import LossyCodec, LossyCodecConfig, pillow_jpeg, simulated_jpeg
from tests.conftest import SHARED_DATA

PHOTOS = ["sheep.png", "cliff.png", "mossy_bark.png", "jellyfish.png"]


@pytest.fixture(scope="module")
def crops() -> torch.Tensor:
    """Four 96x96 crops of real photos, on the 8-bit grid (what an LR file holds)."""
    out = []
    for name in PHOTOS:
        path = SHARED_DATA / "eval" / name
        if not path.is_file():
            pytest.skip(f"{path} not present")
        with Image.open(path) as im:
            rgb = np.array(im.convert("RGB"))
        h, w = rgb.shape[:2]
        out.append(torch.from_numpy(rgb[h // 2 : h // 2 + 96, w // 2 : w // 2 + 96].copy()).permute(2, 0, 1))
    return torch.stack(out).float() / 255


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / ((a - b) ** 2).mean()))


# measured on these crops: 42.7, 44.7, 48.5, 49.8 dB (Pillow against its input: 34.6, 37.8, 42.3, 45.4)
@pytest.mark.parametrize(("quality", "floor_db"), [(50, 42.0), (75, 43.0), (90, 45.0), (95, 46.0)])
def test_the_simulator_is_close_to_pillow(crops, quality, floor_db):
    q = torch.full((crops.shape[0],), float(quality))
    real = pillow_jpeg(crops, q)
    simulated = simulated_jpeg(crops, q)
    assert psnr(simulated, real) > floor_db
    # and the codec does change the image: the simulator is much closer to Pillow than to the input
    assert psnr(simulated, real) > psnr(real, crops) + 4


def test_with_real_forward_the_value_is_pillows_and_gradients_reach_the_lr(crops):
    lr = crops.clone().requires_grad_(True)
    codec = LossyCodec(LossyCodecConfig(quality_min=75, quality_max=75, real_forward=True))
    out = codec(lr)
    assert torch.allclose(out.detach(), pillow_jpeg(crops, torch.full((4,), 75.0)), atol=1e-6, rtol=0)
    (out * torch.randn_like(out)).sum().backward()
    assert lr.grad is not None and torch.isfinite(lr.grad).all() and lr.grad.abs().sum() > 0


def test_qualities_are_drawn_per_image_from_the_range():
    codec = LossyCodec(LossyCodecConfig(quality_min=50, quality_max=95))
    torch.manual_seed(0)
    q = torch.cat([codec.draw_quality(64) for _ in range(20)])
    assert q.min() == 50 and q.max() == 95 and len(q.unique()) == 46


@pytest.mark.parametrize(("lo", "hi"), [(0, 90), (50, 101), (90, 50)])
def test_quality_range_is_checked(lo, hi):
    with pytest.raises(ValueError, match=f"need 1 <= quality_min <= quality_max <= 100, got {lo}..{hi}"):
        LossyCodecConfig(quality_min=lo, quality_max=hi)


def test_without_a_gradient_to_pass_the_codec_is_pillows_alone(crops):
    """A frozen network's LR: the simulator has nothing to do, the value is Pillow's round trip."""
    codec = LossyCodec(LossyCodecConfig(quality_min=60, quality_max=60))
    out = codec(crops)
    assert not out.requires_grad
    assert torch.equal(out, pillow_jpeg(crops, torch.full((crops.shape[0],), 60.0)))


def test_an_m_models_code_learns_through_the_jpegd_lr(crops):
    """compression_aware_loss for -M on a frozen network: the reconstruction uses the decoded code, and the
    gradient reaches the codec's encoder and decoder only."""
    from models.networks.rescaler import Rescaler
    from models.training.losses import LossWeights, compression_aware_loss
    from tests.conftest import perturbed, tiny_config

    model = perturbed(Rescaler(tiny_config("irn-m", 2)), std=0.01, seed=0)
    model.net.requires_grad_(False)
    codec = LossyCodec(LossyCodecConfig(quality_min=75, quality_max=75))
    loss, terms = compression_aware_loss(model, crops[:2, :, :32, :32], LossWeights(), codec)
    loss.backward()
    assert {"rec", "guide", "dist", "codec"} == set(terms)
    for part in (model.codec.encoder[0], model.codec.decoder[-1]):
        assert part.weight.grad is not None and part.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.net.parameters())
    with pytest.raises(ValueError, match="compression-aware training needs an RGB LR .* not irn-a"):
        compression_aware_loss(Rescaler(tiny_config("irn-a", 2)), crops[:2, :, :32, :32], LossWeights(), codec)
