"""Invertible 2-D Haar transform with fixed filters (IRN's downsampling module)."""

import torch
from torch import nn
from torch.nn import functional as F


class HaarDownsampling(nn.Module):
    """(B, C, H, W) <-> (B, 4C, H/2, W/2), channels grouped by subband [LL, H, V, D].

    The LL band is the 2x2 mean, so channels 0..C-1 are a box-filtered image.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        if channels < 1:
            raise ValueError(f"channels must be >= 1, got {channels}")
        self.channels = channels
        bands = torch.tensor(
            [
                [[1.0, 1.0], [1.0, 1.0]],
                [[1.0, -1.0], [1.0, -1.0]],
                [[1.0, 1.0], [-1.0, -1.0]],
                [[1.0, -1.0], [-1.0, 1.0]],
            ]
        )
        # (4C, 1, 2, 2): four filters per input channel, applied as a grouped conv.
        self.register_buffer("weight", bands.unsqueeze(1).repeat(channels, 1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor, rev: bool = False) -> torch.Tensor:
        # Outside autocast: the image itself flows through here, only the subnets may run in bf16.
        with torch.autocast(x.device.type, enabled=False):
            return self._transform(x, rev)

    def _transform(self, x: torch.Tensor, rev: bool) -> torch.Tensor:
        c = self.channels
        if not rev:
            b, _, h, w = x.shape
            if h % 2 or w % 2:
                raise ValueError(f"Haar transform needs even height and width, got {h}x{w}")
            out = F.conv2d(x, self.weight.to(x.dtype), stride=2, groups=c) / 4.0  # (B, 4C, H/2, W/2)
            out = out.reshape(b, c, 4, h // 2, w // 2).transpose(1, 2)  # group by subband
            return out.reshape(b, 4 * c, h // 2, w // 2)
        b, _, h, w = x.shape
        out = x.reshape(b, 4, c, h, w).transpose(1, 2).reshape(b, 4 * c, h, w)
        # The filters are orthogonal with squared norm 4, so the transpose conv undoes the /4 above.
        return F.conv_transpose2d(out, self.weight.to(x.dtype), stride=2, groups=c)  # (B, C, 2H, 2W)
