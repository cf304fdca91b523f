"""What a request's model work costs on this device, and the refusal of what cannot finish in time.

The pixel limit alone is no cost limit on a CPU: a 16 MP image that passes it can need
minutes of model time. Each model's FLOPs per HR pixel are counted once per direction at
start-up (torch.utils.flop_counter, on a small input: cheap), and the device's FLOP rate is
learnt from the batches the workers actually run (the best of the recent ones, so a busy
moment does not refuse work that an idle device can do). A request whose model time at that
rate would pass its deadline is refused before it is queued; until a first batch has run,
nothing is refused on cost (the deadline still holds).
"""

import threading
from collections import deque
from dataclasses import dataclass, field

import torch
from torch.utils.flop_counter import FlopCounterMode

from models.registry import Registry
from service.errors import ServiceError

PROBE_LR = 16  # LR pixels per side of the input whose FLOPs are counted (FLOPs per pixel do not depend on size)
TILING_MARGIN = 1.3  # tiles recompute their context
RECENT_BATCHES = 64


def _counted(fn, arg) -> tuple[object, int]:
    """fn(arg) and the FLOPs it took."""
    with FlopCounterMode(display=False) as counter:
        result = fn(arg)
    return result, counter.get_total_flops()


@dataclass
class CostModel:
    flops_per_pixel: dict[tuple[str, str], float]  # (weights id, "encode"/"decode") -> FLOPs per HR pixel
    _rates: deque = field(default_factory=lambda: deque(maxlen=RECENT_BATCHES))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def count(cls, registry: Registry, device: torch.device) -> "CostModel":
        flops: dict[tuple[str, str], float] = {}
        with torch.inference_mode():
            for wid, entry in registry.entries.items():
                model = registry.model(wid, device)
                side = PROBE_LR * entry.config.size_multiple
                hr = torch.rand(1, 3, side, side, device=device)
                encoded, encode_flops = _counted(model.encode, hr)
                _, decode_flops = _counted(model.decode, encoded)
                flops[(wid, "encode")] = encode_flops / (side * side)
                flops[(wid, "decode")] = decode_flops / (side * side)
        return cls(flops)

    def observe(self, weights_id: str, op: str, hr_pixels: int, seconds: float) -> None:
        """A batch the workers ran: its FLOP rate joins the recent ones."""
        per_pixel = self.flops_per_pixel.get((weights_id, op))
        if per_pixel and seconds > 0:
            with self._lock:
                self._rates.append(per_pixel * hr_pixels / seconds)

    @property
    def flops_per_second(self) -> float | None:
        with self._lock:
            return max(self._rates) if self._rates else None

    def estimate_s(self, weights_id: str, op: str, hr_pixels: int) -> float | None:
        rate = self.flops_per_second
        if rate is None:
            return None
        return self.flops_per_pixel[(weights_id, op)] * hr_pixels / rate * TILING_MARGIN

    def check(self, weights_id: str, op: str, hr_size: tuple[int, int], budget_s: float) -> None:
        """413 `too_much_work` when the model time alone would pass the request's deadline."""
        h, w = hr_size
        seconds = self.estimate_s(weights_id, op, h * w)
        if seconds is not None and seconds > budget_s:
            most = budget_s / self.estimate_s(weights_id, op, 1_000_000)
            raise ServiceError(
                413,
                "too_much_work",
                f"a {w}x{h} image needs about {seconds:.0f} s of model time on this device, over the "
                f"{budget_s:.0f} s deadline; send at most {most:.1f} megapixels",
            )
