"""Random training patches with flips/rotations, skipping patches with too little texture."""

import copy
from pathlib import Path

import torch

from models.images import list_images, load_rgb, rgb_to_y


class PatchSampler:
    """Draws (B, 3, P, P) batches from photos held in memory as uint8.

    Many training photos are soft (sky, bokeh): a patch whose luma standard deviation is
    under `min_texture` is redrawn, up to `max_tries` times.
    """

    def __init__(
        self,
        *,
        folders: list[str | Path],
        patch: int,
        min_texture: float = 0.04,
        max_tries: int = 20,
        seed: int = 0,
    ) -> None:
        if patch < 8:
            raise ValueError(f"patch must be >= 8, got {patch}")
        self.images = [
            torch.from_numpy(load_rgb(path)).permute(2, 0, 1).contiguous()  # (3, H, W) uint8
            for folder in folders
            for path in list_images(folder)
        ]
        small = [tuple(im.shape[1:]) for im in self.images if min(im.shape[1:]) < patch]
        if small:
            raise ValueError(f"patch {patch} is larger than some training images, e.g. {small[0]}")
        self.patch = patch
        self.min_texture = min_texture
        self.max_tries = max_tries
        self.generator = torch.Generator().manual_seed(seed)
        self.drawn = 0
        self.skipped = 0

    def _randint(self, high: int) -> int:
        return int(torch.randint(high, (1,), generator=self.generator))

    def _draw(self) -> torch.Tensor:
        for _ in range(self.max_tries):
            image = self.images[self._randint(len(self.images))]
            _, h, w = image.shape
            top, left = self._randint(h - self.patch + 1), self._randint(w - self.patch + 1)
            crop = image[:, top : top + self.patch, left : left + self.patch].float() / 255.0
            self.drawn += 1
            if rgb_to_y(crop.unsqueeze(0)).std() >= self.min_texture:
                break
            self.skipped += 1
        if self._randint(2):
            crop = crop.flip(-1)
        return torch.rot90(crop, self._randint(4), dims=(-2, -1))

    def batch(self, size: int) -> torch.Tensor:
        return torch.stack([self._draw() for _ in range(size)])  # (B, 3, P, P)

    def with_seed(self, seed: int) -> "PatchSampler":
        """A patch stream of its own over the same decoded images (this one's stream is untouched)."""
        other = copy.copy(self)
        other.generator = torch.Generator().manual_seed(seed)
        other.drawn = other.skipped = 0
        return other

    def state(self) -> torch.Tensor:
        return self.generator.get_state()

    def load_state(self, state: torch.Tensor) -> None:
        self.generator.set_state(state)
