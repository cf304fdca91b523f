"""The product's pipeline on uint8 images: pad, downscale to what a file carries, upscale, crop.

Sizes that are not a multiple of the model's `size_multiple` (the scale, or 4 x scale
for -M whose code is 1/4 of the LR size) are padded at the bottom and right by
mirroring (edge-repeat where the image is smaller than the pad), so the LR covers the
padded size; upscaling crops the HR back to the original size recorded with the LR.
"""

from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from models.images import to_tensor, to_uint8_image
from models.quantize import from_uint8, to_uint8
from models.rescaler import Encoded, Rescaler


@dataclass
class Downscaled:
    rgb: np.ndarray  # (h, w, 3) uint8
    hr_size: tuple[int, int]  # (H, W) before padding
    alpha: np.ndarray | None = None  # (h, w) uint8 codes in 1..254, -A
    code: np.ndarray | None = None  # (4, h/4, w/4) uint8, -M

    @property
    def lr_size(self) -> tuple[int, int]:
        return self.rgb.shape[0], self.rgb.shape[1]


def padding_for(size: tuple[int, int], multiple: int) -> tuple[int, int]:
    return (-size[0]) % multiple, (-size[1]) % multiple


def pad_bottom_right(x: torch.Tensor, pad_h: int, pad_w: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, H + pad_h, W + pad_w), mirrored where possible."""
    if not pad_h and not pad_w:
        return x
    h, w = x.shape[-2:]
    mode = "reflect" if pad_h < h and pad_w < w else "replicate"
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode)


def downscale_image(model: Rescaler, image: np.ndarray) -> Downscaled:
    """(H, W, 3) uint8 -> what a file carries."""
    device = next(model.parameters()).device
    hr = to_tensor(image).to(device)  # (1, 3, H, W)
    pad_h, pad_w = padding_for(image.shape[:2], model.config.size_multiple)
    encoded = model.encode(pad_bottom_right(hr, pad_h, pad_w))
    return Downscaled(
        rgb=to_uint8_image(encoded.rgb),
        hr_size=(image.shape[0], image.shape[1]),
        alpha=None if encoded.alpha is None else to_uint8(encoded.alpha[0, 0]).cpu().numpy(),
        code=None if encoded.code is None else to_uint8(encoded.code[0]).cpu().numpy(),
    )


def upscale_image(model: Rescaler, downscaled: Downscaled) -> np.ndarray:
    """What a file carries -> (H, W, 3) uint8 at the original size."""
    device = next(model.parameters()).device
    s, m = model.config.scale, model.config.size_multiple
    (h, w), (H, W) = downscaled.lr_size, downscaled.hr_size
    if not (h * s - m < H <= h * s and w * s - m < W <= w * s):
        raise ValueError(f"original size {H}x{W} does not fit an LR of {h}x{w} at x{s}")
    encoded = Encoded(rgb=to_tensor(downscaled.rgb).to(device))
    if downscaled.alpha is not None:
        encoded.alpha = from_uint8(torch.from_numpy(downscaled.alpha)).to(device)[None, None]
    if downscaled.code is not None:
        encoded.code = from_uint8(torch.from_numpy(downscaled.code)).to(device)[None]
    hr = model.decode(encoded)
    return to_uint8_image(hr[..., :H, :W])
