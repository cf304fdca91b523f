"""8-bit rounding with a straight-through gradient: what training sees is what a file carries."""

import torch

LEVELS = 255
# Alpha codes stay in 1..254: no viewer or optimiser treats a pixel as fully transparent
# (and drops its RGB) or opaque, and the logit in the inverse stays finite.
ALPHA_MIN_CODE, ALPHA_MAX_CODE = 1, 254


def _straight_through(x: torch.Tensor, rounded: torch.Tensor) -> torch.Tensor:
    return x + (rounded - x).detach()


def quantize_unit(x: torch.Tensor) -> torch.Tensor:
    """RGB and -M latent codes: clamp to [0, 1], round to k/255."""
    return _straight_through(x, torch.round(x.clamp(0, 1) * LEVELS) / LEVELS)


def quantize_alpha(x: torch.Tensor) -> torch.Tensor:
    """Sigmoid alpha: round to k/255 with k in 1..254."""
    codes = torch.round(x * LEVELS).clamp(ALPHA_MIN_CODE, ALPHA_MAX_CODE)
    return _straight_through(x, codes / LEVELS)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """A tensor already on the k/255 grid (or close) as uint8 codes."""
    return torch.round(x.clamp(0, 1) * LEVELS).to(torch.uint8)


def from_uint8(codes: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return codes.to(dtype) / LEVELS
