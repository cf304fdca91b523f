"""Random training patches with flips/rotations, skipping patches with too little texture."""

import copy
from collections import Counter
from pathlib import Path

import torch
from PIL import Image

from models.files.images import list_images, load_rgb, rgb_to_y

UNREADABLE = "unreadable"
SMALLER_THAN_PATCH = "smaller than the patch"


class PatchSampler:
    """Draws (B, 3, P, P) batches from photos held in memory as uint8.

    Many training photos are soft (sky, bokeh): a patch whose luma standard deviation is
    under `min_texture` is redrawn, up to `max_tries` times (a grey or blank image too: it stays in).
    Files that cannot give a patch (unreadable, truncated, not an image, smaller than a patch) are
    left out, listed in `unusable` and counted once at start-up: one bad file in a pool folder must
    not stop a long run.
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
        self.images: list[torch.Tensor] = []
        self.unusable: dict[Path, str] = {}
        paths = [path for folder in folders for path in list_images(folder)]
        for path in paths:
            try:
                image = load_rgb(path)
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
                self.unusable[path] = UNREADABLE
                continue
            if min(image.shape[:2]) < patch:
                self.unusable[path] = SMALLER_THAN_PATCH
                continue
            self.images.append(torch.from_numpy(image).permute(2, 0, 1).contiguous())  # (3, H, W) uint8
        if not self.images:
            raise ValueError(f"none of the {len(paths)} image files in {folders} can give {patch}^2 patches")
        if self.unusable:
            counts = Counter(self.unusable.values())
            print(
                f"patches: skipped {len(self.unusable)} of {len(paths)} image files "
                f"({', '.join(f'{n} {reason}' for reason, n in sorted(counts.items()))}), "
                f"e.g. {next(iter(self.unusable))}"
            )
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
