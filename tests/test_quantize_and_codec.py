import pytest
import torch

from models.networks.latent_codec import LatentCodec, LatentCodecConfig
from models.networks.quantize import from_uint8, quantize_alpha, quantize_unit, to_uint8


def test_quantize_unit_rounds_to_8_bits_and_passes_gradients_straight():
    x = torch.tensor([-0.3, 0.0, 0.1234, 0.5, 1.2], requires_grad=True)
    q = quantize_unit(x)
    assert torch.allclose(q * 255, torch.round(q * 255))
    assert q.min() >= 0 and q.max() <= 1
    q.sum().backward()
    assert torch.equal(x.grad, torch.ones(5))


def test_alpha_codes_stay_strictly_inside_0_255():
    q = quantize_alpha(torch.tensor([0.0, 0.0001, 0.5, 0.9999, 1.0]))
    codes = to_uint8(q)
    assert codes.tolist() == [1, 1, 128, 254, 254]
    assert torch.isfinite(torch.logit(q)).all()


def test_uint8_codes_round_trip_exactly():
    codes = torch.arange(256, dtype=torch.uint8)
    assert torch.equal(to_uint8(from_uint8(codes)), codes)


@pytest.mark.parametrize("layers", [2, 4])
@pytest.mark.parametrize("z_channels", [9, 45])
def test_codec_shapes(layers, z_channels):
    codec = LatentCodec(LatentCodecConfig(z_channels=z_channels, layers=layers, hidden=8))
    z = torch.randn(2, z_channels, 16, 24)
    code = codec.encode(z)
    assert code.shape == (2, 4, 4, 6)
    assert 0 < code.min() and code.max() < 1
    assert codec.decode(code).shape == z.shape


def test_codec_rejects_sizes_that_do_not_pool():
    codec = LatentCodec(LatentCodecConfig(z_channels=9, layers=2, hidden=8))
    with pytest.raises(ValueError, match=r"multiples of 4, got \(10, 16\)"):
        codec.encode(torch.randn(1, 9, 10, 16))


def test_calibrated_codec_spreads_a_tiny_z_over_the_8_bit_code():
    # IRN's z has an RMS of ~0.002: without z_scale the sigmoid code sits at 0.5.
    torch.manual_seed(0)
    codec = LatentCodec(LatentCodecConfig(z_channels=9, layers=4, hidden=16))
    z = 0.002 * torch.randn(4, 9, 64, 64) * torch.linspace(0.5, 2, 9).view(1, 9, 1, 1)

    def spread() -> float:  # code std per channel away from the zero-padded border, in 8-bit steps
        return (codec.encode(z)[..., 3:-3, 3:-3] * 255).std(dim=(0, 2, 3)).mean().item()

    before = spread()
    codec.calibrate(z)
    assert torch.allclose(codec.z_scale, z.pow(2).mean(dim=(0, 2, 3)).sqrt())
    after = spread()
    assert before < 0.05 and after > 100 * before, (before, after)  # below one code step, then many
    assert torch.allclose(codec.standardised_error(z, torch.zeros_like(z)), z / codec.z_scale.view(1, 9, 1, 1))


def test_z_scale_is_saved_with_the_codec_weights():
    codec = LatentCodec(LatentCodecConfig(z_channels=9, layers=2, hidden=8))
    codec.calibrate(torch.full((1, 9, 4, 4), 0.003))
    restored = LatentCodec(LatentCodecConfig(z_channels=9, layers=2, hidden=8))
    restored.load_state_dict(codec.state_dict())
    assert torch.allclose(restored.z_scale, torch.full((9,), 0.003))
