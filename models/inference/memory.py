"""How much memory a model's forward pass holds per HR pixel, and so how large its tiles can be.

The peak is counted, not guessed: every tensor an operator creates during one eager pass over a
small probe image is added while it is alive, and the largest total is kept. Activations grow
with the pixels, so the peak per HR pixel of the probe holds for any tile (weights aside).
"""

import math
import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from models.inference.tiles import DEFAULT_OVERLAP_LR, Tiling
from models.networks.rescaler import Encoded, Rescaler
from models.store.registry import Entry

PROBE_HR = 128


class _LiveTensorBytes(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self._seen: set[int] = set()

    def _release(self, key: int, size: int) -> None:
        self.live -= size
        self._seen.discard(key)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if not isinstance(t, torch.Tensor) or t._base is not None:
                continue  # views share their base's memory
            key = t.untyped_storage().data_ptr()
            if key in self._seen or not key:
                continue
            size = t.untyped_storage().nbytes()
            self._seen.add(key)
            self.live += size
            self.peak = max(self.peak, self.live)
            weakref.finalize(t, self._release, key, size)
        return out


def peak_bytes_per_hr_pixel(model: Rescaler) -> float:
    """The larger of the two directions' peaks of live tensors, over the HR pixels of the probe."""
    side = math.lcm(PROBE_HR, model.config.size_multiple)
    hr = torch.rand(1, 3, side, side, device=next(model.parameters()).device)
    peaks = []
    with torch.inference_mode():
        for direction in ("encode", "decode"):
            counter = _LiveTensorBytes()
            with counter:
                if direction == "encode":
                    encoded = model.encode(hr)
                else:
                    model.decode(Encoded(encoded.rgb, encoded.alpha, encoded.code))
            peaks.append(counter.peak)
    return max(peaks) / (side * side)


def largest_tile_lr(bytes_per_hr_pixel: float, scale: int, budget_bytes: int, multiple: int = 1) -> int:
    """The LR side of the largest square tile whose forward pass fits in `budget_bytes`."""
    hr_pixels = budget_bytes / bytes_per_hr_pixel
    side = int(math.isqrt(int(hr_pixels)) // scale)
    return max(multiple, side // multiple * multiple)


DEFAULT_TILE_MEMORY_MB = 2048  # one batch: the largest tile alone, or as many smaller inputs as fit
# The count above is of live tensors (about 300 B per HR pixel); what the process holds is more: its
# resident memory grew by 700-800 B per HR pixel under OpenVINO and about 500 under eager PyTorch
# (ru_maxrss over one 1024^2 input, batch 1 and 2), so tiles are sized for three times the count.
RESIDENT_OVER_COUNTED = 3.0


def tiling_for(
    entry: Entry,
    model: Rescaler,
    *,
    tile_lr: int | None = None,
    overlap_lr: int | None = None,
    memory_mb: int = DEFAULT_TILE_MEMORY_MB,
) -> Tiling:
    """The model's tiling: its measured context (DEFAULT_OVERLAP_LR when unmeasured) and the largest tile
    whose forward pass fits in `memory_mb`; explicit values win."""
    overlap = overlap_lr if overlap_lr is not None else entry.context_lr or DEFAULT_OVERLAP_LR
    if tile_lr is None:
        multiple = model.config.size_multiple // model.config.scale
        per_pixel = peak_bytes_per_hr_pixel(model) * RESIDENT_OVER_COUNTED
        tile_lr = largest_tile_lr(per_pixel, model.config.scale, memory_mb * 2**20, multiple)
    return Tiling(tile=max(tile_lr, 2 * overlap + 16) if tile_lr else 0, overlap=overlap)
