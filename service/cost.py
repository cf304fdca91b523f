"""What a request's model work costs on this device, measured at start-up.

The pixel limit alone is no cost limit on a CPU: a 16 MP image that passes it can need
minutes of model time. Each model's seconds per HR pixel are measured once per direction
on a small probe (which overestimates the per-pixel cost of large tiles), and a request
whose estimate is over its deadline is refused before it is queued, so nothing accepted
is bound to run past the deadline.
"""

import time
from dataclasses import dataclass

import torch

from models.precision import autocast
from models.registry import Registry
from service.errors import ServiceError

PROBE_LR = 32  # LR pixels per side of the probe
TILING_MARGIN = 1.3  # tiles recompute their context


def _best_seconds(fn, arg, device: torch.device, runs: int = 2) -> float:
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        fn(arg)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - started)
    return best


@dataclass(frozen=True)
class CostModel:
    seconds_per_pixel: dict[tuple[str, str], float]  # (weights id, "encode"/"decode") -> seconds per HR pixel

    @classmethod
    def measure(cls, registry: Registry, device: torch.device, precision: str = "fp32") -> "CostModel":
        out = {}
        for wid, entry in registry.entries.items():
            model = registry.model(wid, device)
            side = PROBE_LR * entry.config.size_multiple
            hr = torch.rand(1, 3, side, side, device=device)
            with torch.inference_mode(), autocast(device, precision):
                encoded = model.encode(hr)  # also the warm-up
                out[(wid, "encode")] = _best_seconds(model.encode, hr, device) / (side * side)
                out[(wid, "decode")] = _best_seconds(model.decode, encoded, device) / (side * side)
        return cls(out)

    def estimate_s(self, weights_id: str, op: str, hr_pixels: int) -> float:
        return self.seconds_per_pixel[(weights_id, op)] * hr_pixels * TILING_MARGIN

    def check(self, weights_id: str, op: str, hr_size: tuple[int, int], budget_s: float) -> None:
        """413 `too_much_work` when the model time alone would pass the request's deadline."""
        h, w = hr_size
        seconds = self.estimate_s(weights_id, op, h * w)
        if seconds > budget_s:
            most = budget_s / self.estimate_s(weights_id, op, 1_000_000)
            raise ServiceError(
                413,
                "too_much_work",
                f"a {w}x{h} image needs about {seconds:.0f} s of model time on this device, over the "
                f"{budget_s:.0f} s deadline; send at most {most:.1f} megapixels",
            )
