"""IRN's training objective (per-image sums averaged over the batch) plus eq. (2)'s codec MSE, and its
compression-aware form, whose reconstruction is computed from the LR after a (differentiable) JPEG."""

from dataclasses import asdict, dataclass, replace

import torch
from torch.nn import functional as F

from models.networks.quantize import quantize_unit
from models.networks.rescaler import Rescaler, TrainingOutputs
from models.training.lossy_codec import LossyCodec


@dataclass(frozen=True)
class LossWeights:
    reconstruction: float = 1.0  # lambda_1: Charbonnier (smooth L1) on the HR
    guidance: float | None = None  # lambda_2: L2 on the LR vs bicubic; None = scale^2
    distribution: float = 1.0  # lambda_3: sum(z^2)
    codec: float = 0.01  # lambda_4: squared error of the decoded z in units of z_scale (-M)
    lossless: float = 0.0  # compression-aware runs: weight of the reconstruction from the lossless LR

    def resolved(self, scale: int) -> "LossWeights":
        return replace(self, guidance=float(scale**2) if self.guidance is None else self.guidance)

    def to_dict(self) -> dict:
        return asdict(self)


def bicubic_downscale(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """Antialiased bicubic, the LR-guidance target."""
    return F.interpolate(hr, scale_factor=1 / scale, mode="bicubic", antialias=True, align_corners=False)


def _batch_sum(x: torch.Tensor) -> torch.Tensor:
    return x.sum() / x.shape[0]


def charbonnier(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    return _batch_sum(torch.sqrt((pred - target) ** 2 + eps))


def rescaling_loss(model: Rescaler, hr: torch.Tensor, weights: LossWeights) -> tuple[torch.Tensor, dict[str, float]]:
    w = weights.resolved(model.config.scale)
    out: TrainingOutputs = model.training_forward(hr)
    terms = {
        "rec": w.reconstruction * charbonnier(out.hr_rec, hr),
        "guide": w.guidance * _batch_sum((out.lr_rgb - bicubic_downscale(hr, model.config.scale)) ** 2),
        "dist": w.distribution * _batch_sum(out.z**2),
    }
    if out.z_hat is not None:
        terms["codec"] = w.codec * _batch_sum(model.codec.standardised_error(out.z_hat, out.z) ** 2)
    total = sum(terms.values())
    return total, {k: v.item() for k, v in terms.items()}


def compression_aware_loss(
    model: Rescaler, hr: torch.Tensor, weights: LossWeights, codec: LossyCodec
) -> tuple[torch.Tensor, dict[str, float]]:
    """The HR is reconstructed from the 8-bit LR after a JPEG at a quality drawn per image, so the network
    learns an LR whose information survives the codec; guidance and z terms as in IRN. z = 0, or for -M the
    decoded 8-bit code, which the file keeps losslessly in its EXIF: the codec then learns the z that best
    undoes the JPEG'd LR, not only the z of the clean one (the codec term of eq. 2 stays)."""
    if model.config.alpha:
        raise ValueError(f"compression-aware training needs an RGB LR (irn, irn-m, ...), not {model.config.variant}")
    w = weights.resolved(model.config.scale)
    lr, z = model.net.downscale(hr, model.sample_dlv_latent(hr))
    lr_q = quantize_unit(lr.float())
    z_hat = None if model.codec is None else model.codec.decode(quantize_unit(model.codec.encode(z)))
    terms = {
        "rec": w.reconstruction * charbonnier(model.net.upscale(model.restore(codec(lr_q)), z_hat), hr),
        "guide": w.guidance * _batch_sum((lr - bicubic_downscale(hr, model.config.scale)) ** 2),
        "dist": w.distribution * _batch_sum(z**2),
    }
    if z_hat is not None:
        terms["codec"] = w.codec * _batch_sum(model.codec.standardised_error(z_hat, z) ** 2)
    if w.lossless > 0:
        terms["rec_lossless"] = w.lossless * charbonnier(model.net.upscale(model.restore(lr_q), z_hat), hr)
    total = sum(terms.values())
    return total, {k: v.item() for k, v in terms.items()}


def codec_pretraining_loss(model: Rescaler, hr: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """-M stage 1: the codec alone learns to reproduce z of the (frozen) network, MSE in units of z_scale."""
    if model.codec is None:
        raise ValueError(f"{model.config.variant} has no latent codec to pre-train")
    with torch.no_grad():
        _, z = model.net.downscale(hr)
    z_hat = model.codec.decode(quantize_unit(model.codec.encode(z)))
    loss = model.codec.standardised_error(z_hat, z).pow(2).mean()
    return loss, {"codec_mse": loss.item()}


class RescalingObjective(torch.nn.Module):
    """Joint training, eq. (2): forward(hr) -> (loss, terms)."""

    def __init__(self, model: Rescaler, weights: LossWeights) -> None:
        super().__init__()
        self.model = model
        self.weights = weights

    def forward(self, hr: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        return rescaling_loss(self.model, hr, self.weights)


class CompressionAwareObjective(torch.nn.Module):
    """Training through a lossy codec: forward(hr) -> (loss, terms)."""

    def __init__(self, model: Rescaler, weights: LossWeights, codec: LossyCodec) -> None:
        super().__init__()
        self.model = model
        self.weights = weights
        self.codec = codec

    def forward(self, hr: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        return compression_aware_loss(self.model, hr, self.weights, self.codec)


class CodecPretrainingObjective(torch.nn.Module):
    """-M stage 1: forward(hr) -> (codec MSE, terms); only the codec's parameters are trained."""

    def __init__(self, model: Rescaler) -> None:
        super().__init__()
        self.model = model

    def forward(self, hr: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        return codec_pretraining_loss(self.model, hr)
