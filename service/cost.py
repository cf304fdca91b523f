"""What a request's model work costs on this device, and the refusal of what cannot finish in time.

The pixel limit alone is no cost limit on a CPU: a 16 MP image that passes it can need
minutes of model time. Each model's FLOPs per HR pixel are counted once per direction on its
first request (torch.utils.flop_counter, on a small input: cheap), and the device's FLOP rate is
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

from models.store.registry import Registry
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
    registry: Registry
    device: torch.device
    # (weights id, "encode"/"decode") -> FLOPs per HR pixel, counted on a model's first request
    flops_per_pixel: dict[tuple[str, str], float] = field(default_factory=dict)
    _rates: deque = field(default_factory=lambda: deque(maxlen=RECENT_BATCHES))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, weights_id: str) -> None:
        """Count both directions of these weights once (a model's first request; a worker thread)."""
        if (weights_id, "encode") in self.flops_per_pixel:
            return
        entry = self.registry.get(weights_id)
        model = self.registry.model(weights_id, self.device)
        side = PROBE_LR * entry.config.size_multiple
        with torch.inference_mode():
            hr = torch.rand(1, 3, side, side, device=self.device)
            encoded, encode_flops = _counted(model.encode, hr)
            _, decode_flops = _counted(model.decode, encoded)
        with self._lock:
            self.flops_per_pixel[(weights_id, "decode")] = decode_flops / (side * side)
            self.flops_per_pixel[(weights_id, "encode")] = encode_flops / (side * side)

    def observe(self, weights_id: str, op: str, hr_pixels: int, seconds: float) -> None:
        """A batch the workers ran: its FLOP rate joins the recent ones."""
        self.count(weights_id)
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
        self.count(weights_id)
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
