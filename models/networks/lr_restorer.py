"""A residual CNN that undoes lossy-codec damage to the LR before the inverse network sees it.

The invertible network's inverse expects the LR its forward pass made; after a JPEG or WebP
that LR has lost part of what it hides. Trained jointly with the network through a codec
(models/training/losses.py), the forward learns an LR whose hidden detail survives the codec
and this module learns to bring the decoded LR back towards it (the journal version of IRN
trains such a restoration network on top of a frozen IRN). The last convolution starts at
zero, so an untrained restorer is the identity.
"""

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class RestorerConfig:
    channels: int = 3
    layers: int = 8
    hidden: int = 64

    def __post_init__(self) -> None:
        if self.channels < 1:
            raise ValueError(f"channels must be >= 1, got {self.channels}")
        if self.layers < 2:
            raise ValueError(f"layers must be >= 2, got {self.layers}")
        if self.hidden < 1:
            raise ValueError(f"hidden must be >= 1, got {self.hidden}")

    def to_dict(self) -> dict:
        return asdict(self)


class LRRestorer(nn.Module):
    """(B, C, h, w) decoded LR -> the same plus a learned correction (3x3 convolutions, LeakyReLU)."""

    def __init__(self, config: RestorerConfig) -> None:
        super().__init__()
        self.config = config
        widths = [config.channels] + [config.hidden] * (config.layers - 1) + [config.channels]
        self.convs = nn.ModuleList(nn.Conv2d(a, b, 3, padding=1) for a, b in zip(widths, widths[1:], strict=False))
        self.act = nn.LeakyReLU(0.2)
        nn.init.zeros_(self.convs[-1].weight)
        nn.init.zeros_(self.convs[-1].bias)

    @property
    def receptive_radius(self) -> int:
        """LR pixels of context each output pixel depends on, per side."""
        return self.config.layers

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        x = lr
        for i, conv in enumerate(self.convs):
            x = conv(x)
            if i < len(self.convs) - 1:
                x = self.act(x)
        return lr + x
