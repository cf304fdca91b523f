"""A differentiable stand-in for what Pillow's JPEG encoder and decoder do to an 8-bit RGB LR.

The simulator is kornia's differentiable JPEG (Reich et al., WACV 2024): YCbCr as JPEG
defines it, 4:2:0 chroma subsampling (Pillow's default), 8x8 DCT, the IJG tables scaled by
quality, a polynomial surrogate for rounding, clamping to 8 bits. It differs from libjpeg
in its chroma filters, so with `real_forward` the value a training step sees is Pillow's
real round trip and only the gradient comes from the simulator: training then sees
exactly the artefacts the product's files get (tests/test_lossy_codec.py measures both).
"""

import io
from dataclasses import dataclass

import numpy as np
import torch
from kornia.enhance import jpeg_codec_differentiable
from PIL import Image
from torch import nn

from models.networks.quantize import to_uint8

QUALITY_MIN, QUALITY_MAX = 1, 100


@dataclass(frozen=True)
class LossyCodecConfig:
    quality_min: int = 50
    quality_max: int = 95
    real_forward: bool = True

    def __post_init__(self) -> None:
        if not QUALITY_MIN <= self.quality_min <= self.quality_max <= QUALITY_MAX:
            raise ValueError(
                f"need {QUALITY_MIN} <= quality_min <= quality_max <= {QUALITY_MAX}, "
                f"got {self.quality_min}..{self.quality_max}"
            )


def pillow_jpeg(rgb: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    """Pillow's real JPEG round trip (default 4:2:0) of each image of (B, 3, h, w) in [0, 1]."""
    out = []
    for image, q in zip(to_uint8(rgb.detach().float().cpu()), quality.tolist(), strict=True):
        buffer = io.BytesIO()
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(buffer, format="JPEG", quality=int(q))
        buffer.seek(0)
        with Image.open(buffer) as decoded:
            out.append(torch.from_numpy(np.asarray(decoded.convert("RGB")).copy()).permute(2, 0, 1))
    return torch.stack(out).to(rgb.device, torch.float32) / 255.0


def simulated_jpeg(rgb: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    """kornia's differentiable JPEG of (B, 3, h, w) in [0, 1] at per-image qualities (B,)."""
    return jpeg_codec_differentiable(rgb.float(), quality.to(rgb.device, torch.float32))


class LossyCodec(nn.Module):
    """forward(rgb, quality=None) -> the decoded JPEG, with gradients to rgb; a quality per image is drawn
    uniformly from the configured range when none is given."""

    def __init__(self, config: LossyCodecConfig) -> None:
        super().__init__()
        self.config = config

    def draw_quality(self, batch: int) -> torch.Tensor:
        return torch.randint(self.config.quality_min, self.config.quality_max + 1, (batch,)).float()

    def forward(self, rgb: torch.Tensor, quality: torch.Tensor | None = None) -> torch.Tensor:
        if quality is None:
            quality = self.draw_quality(rgb.shape[0])
        if self.config.real_forward and not rgb.requires_grad:
            return pillow_jpeg(rgb, quality)  # nothing to differentiate (a frozen network): the real codec alone
        simulated = simulated_jpeg(rgb, quality)
        if not self.config.real_forward:
            return simulated
        return simulated + (pillow_jpeg(rgb, quality) - simulated).detach()
