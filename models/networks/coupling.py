"""Affine coupling blocks and their dense subnets (IRN's InvBlockExp)."""

import torch
from torch import nn


class DenseSubnet(nn.Module):
    """Five 3x3 convs with dense connections; the last conv is zero so a new block is the identity."""

    def __init__(self, *, in_channels: int, out_channels: int, growth: int = 32) -> None:
        super().__init__()
        if in_channels < 1 or out_channels < 1 or growth < 1:
            raise ValueError(
                f"DenseSubnet needs positive sizes, got in={in_channels} out={out_channels} growth={growth}"
            )
        self.convs = nn.ModuleList(nn.Conv2d(in_channels + i * growth, growth, 3, padding=1) for i in range(4))
        self.out = nn.Conv2d(in_channels + 4 * growth, out_channels, 3, padding=1)
        self.act = nn.LeakyReLU(0.2, inplace=True)
        for conv in self.convs:
            nn.init.xavier_normal_(conv.weight)
            conv.weight.data.mul_(0.1)
            nn.init.zeros_(conv.bias)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_autocast_enabled(x.device.type):
            x = x.to(torch.get_autocast_dtype(x.device.type))
        features = [x]
        for conv in self.convs:
            features.append(self.act(conv(torch.cat(features, dim=1))))
        return self.out(torch.cat(features, dim=1))


class AffineCoupling(nn.Module):
    """y1 = x1 + F(x2); y2 = x2 * exp(s(y1)) + G(y1), s = clamp * (2 sigmoid(H(y1)) - 1).

    x1 is the first `split` channels (the LR side), x2 the rest (the latent side).
    """

    def __init__(self, *, channels: int, split: int, growth: int = 32, clamp: float = 1.0) -> None:
        super().__init__()
        if not 0 < split < channels:
            raise ValueError(f"split must be in 1..{channels - 1} for {channels} channels, got {split}")
        if clamp <= 0:
            raise ValueError(f"clamp must be positive, got {clamp}")
        self.split = split
        self.clamp = clamp
        rest = channels - split
        self.f = DenseSubnet(in_channels=rest, out_channels=split, growth=growth)
        self.g = DenseSubnet(in_channels=split, out_channels=rest, growth=growth)
        self.h = DenseSubnet(in_channels=split, out_channels=rest, growth=growth)

    def _log_scale(self, y1: torch.Tensor) -> torch.Tensor:
        return self.clamp * (torch.sigmoid(self.h(y1)) * 2 - 1)

    def forward(self, x: torch.Tensor, rev: bool = False) -> torch.Tensor:
        x1, x2 = x[:, : self.split], x[:, self.split :]
        if not rev:
            y1 = x1 + self.f(x2)
            y2 = x2 * torch.exp(self._log_scale(y1)) + self.g(y1)
            return torch.cat([y1, y2], dim=1)
        y2 = (x2 - self.g(x1)) * torch.exp(-self._log_scale(x1))
        y1 = x1 - self.f(y2)
        return torch.cat([y1, y2], dim=1)
