import pytest
import torch

from models.latent_codec import LatentCodec, LatentCodecConfig
from models.quantize import from_uint8, quantize_alpha, quantize_unit, to_uint8


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
