"""PSNR and SSIM on the BT.601 Y channel with `crop` border pixels removed (IRN's test protocol)."""

import math

import numpy as np
import torch
from torch.nn import functional as F


def _luma(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 1, H, W) float64 Y in [16, 235], not rounded."""
    rgb = torch.from_numpy(image.astype(np.float64))
    y = rgb @ torch.tensor([65.481, 128.553, 24.966], dtype=torch.float64) / 255.0 + 16.0
    return y[None, None]


def _cropped_pair(a: np.ndarray, b: np.ndarray, crop: int) -> tuple[torch.Tensor, torch.Tensor]:
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    ya, yb = _luma(a), _luma(b)
    if crop:
        ya, yb = ya[..., crop:-crop, crop:-crop], yb[..., crop:-crop, crop:-crop]
    return ya, yb


def psnr_y(a: np.ndarray, b: np.ndarray, crop: int) -> float:
    ya, yb = _cropped_pair(a, b, crop)
    mse = float(((ya - yb) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def _gaussian_blur(x: torch.Tensor, size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Valid-region 2-D Gaussian filter, applied as two 1-D passes (the window is separable)."""
    t = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(t**2) / (2 * sigma**2))
    g = g / g.sum()
    return F.conv2d(F.conv2d(x, g.view(1, 1, size, 1)), g.view(1, 1, 1, size))


def ssim_y(a: np.ndarray, b: np.ndarray, crop: int) -> float:
    """SSIM with an 11x11 Gaussian window (sigma 1.5) over the valid region, as in MATLAB's ssim."""
    ya, yb = _cropped_pair(a, b, crop)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu_a, mu_b = _gaussian_blur(ya), _gaussian_blur(yb)
    var_a = _gaussian_blur(ya * ya) - mu_a**2
    var_b = _gaussian_blur(yb * yb) - mu_b**2
    cov = _gaussian_blur(ya * yb) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(ssim_map.mean())
