"""Image <-> tensor helpers shared by training, evaluation, the CLI and the service."""

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


def list_images(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {folder}")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    return files


def load_rgb(path: str | Path) -> np.ndarray:
    """An image file as (H, W, 3) uint8, EXIF orientation applied."""
    with Image.open(path) as im:
        return np.array(ImageOps.exif_transpose(im).convert("RGB"))


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W, C) uint8 -> (1, C, H, W) float in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).unsqueeze(0).float() / 255.0


def to_uint8_image(x: torch.Tensor) -> np.ndarray:
    """(1, C, H, W) or (C, H, W) float in [0, 1] -> (H, W, C) uint8, rounded."""
    if x.dim() == 4:
        x = x[0]
    return torch.round(x.detach().float().clamp(0, 1) * 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def rgb_to_y(x: torch.Tensor) -> torch.Tensor:
    """BT.601 luma on [0, 1] RGB, (B, 3, H, W) -> (B, 1, H, W), in [16/255, 235/255]."""
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    return (65.481 * r + 128.553 * g + 24.966 * b + 16.0) / 255.0
