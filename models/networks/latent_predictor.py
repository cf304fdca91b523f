"""A CNN that guesses z from the decoded LR, for files that carry no -M code.

IRN upscales with z = 0, its mean under the distribution loss. But z is not independent of
the LR: on eval crops the x4 IRN-JPEG gave 35.66 dB from a q90 JPEG LR with z = 0 and 44.19 dB
with the true z, so what the JPEG'd LR leaves out is mostly in z, and part of it can be
inferred from the LR (edges and textures imply their high frequencies). This module predicts
it at LR resolution, so it costs a small fraction of the network, and the file stays a plain
RGB image. The last convolution starts at zero: an untrained predictor is z = 0, exactly IRN.
"""

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class PredictorConfig:
    lr_channels: int
    z_channels: int
    layers: int = 8
    hidden: int = 64

    def __post_init__(self) -> None:
        if self.lr_channels < 1 or self.z_channels < 1:
            raise ValueError(f"lr_channels and z_channels must be >= 1, got {self.lr_channels}, {self.z_channels}")
        if self.layers < 2:
            raise ValueError(f"layers must be >= 2, got {self.layers}")
        if self.hidden < 1:
            raise ValueError(f"hidden must be >= 1, got {self.hidden}")

    def to_dict(self) -> dict:
        return asdict(self)


class LatentPredictor(nn.Module):
    """(B, lr_channels, h, w) decoded LR -> z estimate (B, z_channels, h, w) (3x3 convolutions, LeakyReLU)."""

    def __init__(self, config: PredictorConfig) -> None:
        super().__init__()
        self.config = config
        widths = [config.lr_channels] + [config.hidden] * (config.layers - 1) + [config.z_channels]
        self.convs = nn.ModuleList(nn.Conv2d(a, b, 3, padding=1) for a, b in zip(widths, widths[1:], strict=False))
        self.act = nn.LeakyReLU(0.2)
        nn.init.zeros_(self.convs[-1].weight)
        nn.init.zeros_(self.convs[-1].bias)

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        x = lr
        for i, conv in enumerate(self.convs):
            x = conv(x)
            if i < len(self.convs) - 1:
                x = self.act(x)
        return x
