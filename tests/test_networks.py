import pytest
import torch

from models.files.images import to_tensor
from models.networks.haar import HaarDownsampling
from models.networks.invertible_rescaler import InvertibleRescaler, RescalerConfig
from models.networks.quantize import quantize_alpha
from models.networks.rescaler import VARIANTS, ModelConfig, Rescaler
from tests.conftest import perturbed, tiny_config


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize(("scale", "expected"), [(2, 1_667_952), (4, 4_355_136)])
def test_published_irn_parameter_counts(scale, expected):
    assert count(Rescaler(ModelConfig(variant="irn", scale=scale))) == expected


def test_haar_is_orthogonal_and_invertible():
    haar = HaarDownsampling(3)
    x = torch.rand(2, 3, 8, 6)
    y = haar(x)
    assert y.shape == (2, 12, 4, 3)
    assert torch.allclose(y[:, :3], torch.nn.functional.avg_pool2d(x, 2), atol=1e-6)  # LL is the 2x2 mean
    assert torch.allclose(haar(y, rev=True), x, atol=1e-6)


def test_haar_rejects_odd_sizes():
    with pytest.raises(ValueError, match="even height and width, got 5x6"):
        HaarDownsampling(3)(torch.rand(1, 3, 5, 6))


@pytest.mark.parametrize("scale", [2, 4])
@pytest.mark.parametrize("variant", ["irn", "irn-a", "dlv-irn", "dlv-irn-a"])
def test_round_trip_with_true_z_restores_input(variant, scale):
    net = perturbed(Rescaler(tiny_config(variant, scale))).net
    # Photo-like detail: on full-range white noise -A's gained sigmoid saturates and fp32 loses the logit.
    hr = (0.5 + 0.05 * torch.randn(2, 3, 32, 48)).clamp(0, 1)
    u = net.config.dlv_channels and torch.randn(2, net.config.dlv_channels, 16, 24)
    lr, z = net.downscale(hr, u if net.config.dlv_channels else None)
    assert lr.shape == (2, 3 + variant.endswith("-a"), 32 // scale, 48 // scale)
    assert z.shape == (2, net.config.z_channels, 32 // scale, 48 // scale)
    assert (net.upscale(lr, z) - hr).abs().max() < 1e-5


@pytest.mark.parametrize("variant", ["irn", "irn-a"])
def test_bf16_autocast_runs_only_the_subnets_in_bf16(variant):
    """Training with precision bf16: the image path (Haar, coupling sums) stays fp32; the subnets'
    bf16 rounding leaves the inverse close (training inverts a quantised LR anyway), not exact;
    eq. (1) multiplies the alpha's error by 3C, hence the wider bound."""
    net = perturbed(Rescaler(tiny_config(variant, 4))).net
    hr = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        lr, z = net.downscale(hr)
        assert lr.dtype == z.dtype == torch.float32
        assert (net.upscale(lr, z) - hr).abs().max() < 5e-2
    exact_lr, _ = net.downscale(hr)
    assert 0 < (lr - exact_lr).abs().max() < 2e-2  # the subnets did run in bf16


def test_identity_initialisation_gives_the_box_filter_lr():
    net = InvertibleRescaler(RescalerConfig(scale=4, blocks_per_level=2, growth=4))
    hr = torch.rand(1, 3, 16, 16)
    lr, _ = net.downscale(hr)
    assert torch.allclose(lr, torch.nn.functional.avg_pool2d(hr, 4), atol=1e-6)


@pytest.mark.parametrize("scale", [2, 4])
def test_alpha_channel_starts_as_the_mean_of_the_high_frequencies(scale):
    net = InvertibleRescaler(RescalerConfig(scale=scale, alpha=True, blocks_per_level=1, growth=4))
    hr = torch.rand(1, 3, 16, 16)
    high = HaarDownsampling(3)(hr)[:, 3:]  # (1, 9, 8, 8)
    expected = net.config.alpha_gain * high.mean(dim=1, keepdim=True)
    if scale == 4:
        expected = torch.nn.functional.avg_pool2d(expected, 2)  # carried by the second level's LL band
    lr, _ = net.downscale(hr)
    assert torch.allclose(lr[:, 3:], torch.sigmoid(expected), atol=1e-6)


def test_alpha_gain_spreads_a_photos_alpha_over_the_8_bit_range(photo):
    # Photo HF means are ~0.006: at gain 1 the alpha is 0.5 +- 1 code and carries nothing.
    hr = to_tensor(photo[:64, :64])
    spread = {}
    for gain in (1.0, 64.0):
        net = InvertibleRescaler(RescalerConfig(scale=2, alpha=True, blocks_per_level=1, growth=4, alpha_gain=gain))
        lr, _ = net.downscale(hr)
        spread[gain] = quantize_alpha(lr[:, 3:]).mul(255).std().item()
    assert spread[1.0] < 2 and spread[64.0] > 10, spread


def test_equation_1_restores_the_dropped_channel():
    net = InvertibleRescaler(RescalerConfig(scale=2, alpha=True, blocks_per_level=1, growth=4))
    h = torch.randn(2, 12, 5, 5)
    split = net._pre_split(h, None)
    assert split.shape == h.shape
    assert torch.allclose(split[:, 3:4], net.config.alpha_gain * h[:, 3:].mean(dim=1, keepdim=True))
    assert torch.allclose(split[:, 4:], h[:, 4:])  # first high-frequency channel removed
    assert torch.allclose(net._post_merge(split), h, atol=1e-5)


def test_upscale_uses_zero_z_by_default():
    net = perturbed(Rescaler(tiny_config("irn", 2))).net
    lr = torch.rand(1, 3, 8, 8)
    zero = torch.zeros(1, net.config.z_channels, 8, 8)
    assert torch.equal(net.upscale(lr), net.upscale(lr, zero))
    assert torch.equal(net(lr, rev=True), net.upscale(lr))


def test_dlv_latent_enters_training_but_not_the_product():
    model = perturbed(Rescaler(tiny_config("dlv-irn", 2)))
    hr = torch.rand(2, 3, 16, 16)
    assert model.sample_dlv_latent(hr).shape == (2, 3, 8, 8)
    a, b = model.encode(hr), model.encode(hr)
    assert torch.equal(a.rgb, b.rgb)  # u = 0 when downscaling: files are reproducible


def test_every_variant_builds_and_decodes():
    for variant in VARIANTS:
        for scale in (2, 4):
            model = perturbed(Rescaler(tiny_config(variant, scale)), std=0.005)
            hr = torch.rand(1, 3, 64, 64)
            encoded = model.encode(hr)
            assert model.decode(encoded).shape == hr.shape
            assert (encoded.code is not None) == variant.endswith("-m")
            assert (encoded.alpha is not None) == variant.endswith("-a")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"variant": "srgan"}, "variant must be one of irn, irn-a, irn-m, dlv-irn, dlv-irn-a, dlv-irn-m; got 'srgan'"),
        ({"scale": 3}, r"scale must be one of \(2, 4\), got 3"),
        ({"variant": "dlv-irn", "dlv_channels": 0}, "dlv-irn needs dlv_channels >= 1, got 0"),
        ({"blocks_per_level": 0}, "blocks_per_level must be >= 1, got 0"),
        ({"variant": "irn-m", "codec_layers": 3}, "layers must be 2 or 4, got 3"),
    ],
)
def test_config_errors_are_precise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(**kwargs)


def test_encode_rejects_sizes_off_the_multiple():
    model = Rescaler(tiny_config("irn-m", 2))
    with pytest.raises(ValueError, match="irn-m x2 needs sizes that are multiples of 8"):
        model.encode(torch.rand(1, 3, 20, 16))
