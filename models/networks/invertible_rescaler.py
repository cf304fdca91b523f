"""IRN and DLV-IRN, each optionally with the -A alpha channel.

Downscaling maps an HR image to an LR image and a latent z; upscaling inverts the
network with z = 0 unless the true z (or a decoded estimate) is given.

-A (alpha pre-split, paper section 2.1): after the FIRST Haar level the mean of the 3C
high-frequency channels becomes a 4th low-pass channel and the first high-frequency
channel is dropped, so the channel count is unchanged. The mean is multiplied by a fixed
`alpha_gain` first: photo HF means have a std of ~0.006 (99.9th percentile 0.068), so
without it the sigmoid alpha sits at 0.5 +- 1 code and eq. (1) multiplies its 8-bit
rounding by 3C; with 64 the alpha spans the 8-bit range. At x4 the alpha is split at the
first level (H/2) and reaches the LR through the LL band of the second Haar level,
which puts it at channel C of the LR side there too. The alpha output goes through a
sigmoid; eq. (1) restores the dropped channel at the end of the inverse.

DLV (docs/dlv-irn.md): a downscaling latent u of `dlv_channels` channels is appended to
the high-frequency side after the first Haar level. It is sampled during training,
zero when downscaling in the product, and whatever the inverse returns for it is
discarded when upscaling.
"""

from dataclasses import asdict, dataclass

import torch
from torch import nn

from models.networks.coupling import AffineCoupling
from models.networks.haar import HaarDownsampling

SCALES = (2, 4)


@dataclass(frozen=True)
class RescalerConfig:
    scale: int = 4
    alpha: bool = False
    dlv_channels: int = 0
    blocks_per_level: int = 8
    growth: int = 32
    clamp: float = 1.0
    image_channels: int = 3
    alpha_gain: float = 64.0

    def __post_init__(self) -> None:
        if self.scale not in SCALES:
            raise ValueError(f"scale must be one of {SCALES}, got {self.scale}")
        if self.dlv_channels < 0:
            raise ValueError(f"dlv_channels must be >= 0, got {self.dlv_channels}")
        if self.blocks_per_level < 1:
            raise ValueError(f"blocks_per_level must be >= 1, got {self.blocks_per_level}")
        if self.growth < 1:
            raise ValueError(f"growth must be >= 1, got {self.growth}")
        if self.image_channels < 1:
            raise ValueError(f"image_channels must be >= 1, got {self.image_channels}")
        if not self.alpha_gain > 0:
            raise ValueError(f"alpha_gain must be > 0, got {self.alpha_gain}")

    @property
    def levels(self) -> int:
        return self.scale.bit_length() - 1

    @property
    def lr_channels(self) -> int:
        """Channels that a file carries: RGB, plus alpha for -A."""
        return self.image_channels + int(self.alpha)

    @property
    def total_channels(self) -> int:
        """Channels after the last Haar level, LR side and z together."""
        return (4 * self.image_channels + self.dlv_channels) * 4 ** (self.levels - 1)

    @property
    def z_channels(self) -> int:
        return self.total_channels - self.lr_channels

    def to_dict(self) -> dict:
        return asdict(self)


class InvertibleRescaler(nn.Module):
    def __init__(self, config: RescalerConfig) -> None:
        super().__init__()
        self.config = config
        c = config.image_channels
        self.haar = nn.ModuleList()
        self.levels = nn.ModuleList()
        channels = c
        for level in range(config.levels):
            self.haar.append(HaarDownsampling(channels))
            channels *= 4
            if level == 0:
                channels += config.dlv_channels
            self.levels.append(
                nn.ModuleList(
                    AffineCoupling(
                        channels=channels, split=config.lr_channels, growth=config.growth, clamp=config.clamp
                    )
                    for _ in range(config.blocks_per_level)
                )
            )

    # -- the -A / DLV rearrangement between the first Haar level and its blocks --------------

    def _pre_split(self, h: torch.Tensor, u: torch.Tensor | None) -> torch.Tensor:
        c = self.config.image_channels
        low, high = h[:, :c], h[:, c:]  # (B, C, ., .), (B, 3C, ., .)
        parts = [low]
        if self.config.alpha:
            alpha = self.config.alpha_gain * high.mean(dim=1, keepdim=True)
            parts += [alpha, high[:, 1:]]  # alpha, then 3C-1 channels
        else:
            parts.append(high)
        if self.config.dlv_channels:
            if u is None:
                u = h.new_zeros(h.shape[0], self.config.dlv_channels, *h.shape[2:])
            parts.append(u)
        return torch.cat(parts, dim=1)  # (B, 4C + D, H/2, W/2)

    def _post_merge(self, h: torch.Tensor) -> torch.Tensor:
        c = self.config.image_channels
        if self.config.alpha:
            low, alpha, high = h[:, :c], h[:, c : c + 1], h[:, c + 1 : 4 * c]
            dropped = 3 * c * alpha / self.config.alpha_gain - high.sum(dim=1, keepdim=True)  # eq. (1)
            return torch.cat([low, dropped, high], dim=1)  # (B, 4C, H/2, W/2)
        return h[:, : 4 * c]  # the DLV channels u_hat are discarded

    # -- both directions ---------------------------------------------------------------------

    def downscale(self, hr: torch.Tensor, u: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, H, W) -> LR (B, C[+1], H/s, W/s) with alpha in (0, 1), z (B, z_channels, H/s, W/s)."""
        h = hr
        for level, (haar, blocks) in enumerate(zip(self.haar, self.levels, strict=True)):
            h = haar(h)
            if level == 0:
                h = self._pre_split(h, u)
            for block in blocks:
                h = block(h)
        k = self.config.lr_channels
        lr, z = h[:, :k], h[:, k:]
        if self.config.alpha:
            c = self.config.image_channels
            lr = torch.cat([lr[:, :c], torch.sigmoid(lr[:, c:])], dim=1)
        return lr, z

    def upscale(self, lr: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        """LR (B, C[+1], h, w) and z (zero when None) -> HR (B, C, s*h, s*w)."""
        if lr.shape[1] != self.config.lr_channels:
            raise ValueError(f"expected an LR with {self.config.lr_channels} channels, got {lr.shape[1]}")
        if self.config.alpha:
            c = self.config.image_channels
            alpha = lr[:, c:]
            lr = torch.cat([lr[:, :c], torch.log(alpha) - torch.log1p(-alpha)], dim=1)  # logit, which OpenVINO lacks
        if z is None:
            z = lr.new_zeros(lr.shape[0], self.config.z_channels, *lr.shape[2:])
        h = torch.cat([lr, z], dim=1)  # (B, total_channels, h, w)
        for level in reversed(range(self.config.levels)):
            for block in reversed(self.levels[level]):
                h = block(h, rev=True)
            if level == 0:
                h = self._post_merge(h)
            h = self.haar[level](h, rev=True)
        return h

    def forward(self, x: torch.Tensor, rev: bool = False) -> tuple[torch.Tensor, torch.Tensor] | torch.Tensor:
        """Downscale an HR batch, or with rev=True upscale an LR batch with z = 0."""
        return self.upscale(x) if rev else self.downscale(x)
