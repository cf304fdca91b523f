"""What a downscale produces and a file carries: the LR pixels, the HR size, and -A's alpha or -M's code."""

from dataclasses import dataclass

import numpy as np


@dataclass
class Downscaled:
    rgb: np.ndarray  # (h, w, 3) uint8
    hr_size: tuple[int, int]  # (H, W) before padding
    alpha: np.ndarray | None = None  # (h, w) uint8 codes in 1..254, -A
    code: np.ndarray | None = None  # (4, h/4, w/4) uint8, -M

    @property
    def lr_size(self) -> tuple[int, int]:
        return self.rgb.shape[0], self.rgb.shape[1]
