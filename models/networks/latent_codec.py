"""The -M autoencoder: z (B, Cz, h, w) <-> a 4-channel code (B, 4, h/4, w/4) kept in metadata.

The encoder ends in a sigmoid so the code is quantised to 8 bits on [0, 1] exactly as
the file stores it. Max-pooling halves the size after each of the first two convs.

IRN's distribution loss leaves z tiny (RMS ~0.002), which would keep the sigmoid at 0.5
and the 8-bit code at 2-3 values. So the codec works on z divided by `z_scale`, a
per-channel RMS measured on the trained network before the codec is trained
(`calibrate`) and stored with the weights.
"""

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

CODE_CHANNELS = 4
CODE_REDUCTION = 4  # the code is 1/4 of the LR height and width


@dataclass(frozen=True)
class LatentCodecConfig:
    z_channels: int
    layers: int = 4
    hidden: int = 64

    def __post_init__(self) -> None:
        if self.z_channels < 1:
            raise ValueError(f"z_channels must be >= 1, got {self.z_channels}")
        if self.layers not in (2, 4):
            raise ValueError(f"layers must be 2 or 4, got {self.layers}")
        if self.hidden < 1:
            raise ValueError(f"hidden must be >= 1, got {self.hidden}")

    def to_dict(self) -> dict:
        return asdict(self)


class LatentCodec(nn.Module):
    def __init__(self, config: LatentCodecConfig) -> None:
        super().__init__()
        self.config = config
        n, h = config.layers, config.hidden
        self.encoder = nn.ModuleList(
            nn.Conv2d(config.z_channels if i == 0 else h, CODE_CHANNELS if i == n - 1 else h, 3, padding=1)
            for i in range(n)
        )
        self.decoder = nn.ModuleList(
            nn.Conv2d(CODE_CHANNELS if i == 0 else h, config.z_channels if i == n - 1 else h, 3, padding=1)
            for i in range(n)
        )
        self.register_buffer("z_scale", torch.ones(config.z_channels))  # (Cz,)

    def _scale(self) -> torch.Tensor:
        return self.z_scale.view(1, -1, 1, 1)

    @torch.no_grad()
    def calibrate(self, z: torch.Tensor) -> None:
        """Set z_scale to the per-channel RMS of z (B, Cz, h, w) from the network the codec serves."""
        self.z_scale.copy_(z.float().pow(2).mean(dim=(0, 2, 3)).sqrt().clamp_min(1e-8))

    def standardised_error(self, z_hat: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """(z_hat - z) in units of z_scale: what the codec's MSE is measured on."""
        return (z_hat - z) / self._scale()

    def encode(self, z: torch.Tensor) -> torch.Tensor:
        """(B, Cz, h, w) -> code in (0, 1), (B, 4, h/4, w/4)."""
        if z.shape[-2] % CODE_REDUCTION or z.shape[-1] % CODE_REDUCTION:
            raise ValueError(f"z height and width must be multiples of {CODE_REDUCTION}, got {tuple(z.shape[-2:])}")
        x = z / self._scale()
        last = len(self.encoder) - 1
        for i, conv in enumerate(self.encoder):
            x = conv(x)
            if i < last:
                x = F.leaky_relu(x, 0.2)
            if i < 2:
                x = F.max_pool2d(x, 2)
        return torch.sigmoid(x)

    def decode(self, code: torch.Tensor) -> torch.Tensor:
        """(B, 4, h/4, w/4) -> z estimate (B, Cz, h, w)."""
        x = code
        n = len(self.decoder)
        for i, conv in enumerate(self.decoder):
            if i >= n - 2:
                x = F.interpolate(x, scale_factor=2, mode="nearest")
            x = conv(x)
            if i < n - 1:
                x = F.leaky_relu(x, 0.2)
        return x * self._scale()
