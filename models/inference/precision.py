"""Compute precision: `fp32`, or `bf16` = autocast of the subnets (Haar and the coupling sums stay fp32)."""

import torch

from models.inference.devices import cpu_info

PRECISIONS = ("fp32", "bf16")


def autocast(device: torch.device | str, precision: str) -> torch.autocast:
    """The context every forward pass runs in, for training, serving and the benchmarks alike."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    device_type = device.type if isinstance(device, torch.device) else torch.device(device).type
    return torch.autocast(device_type, dtype=torch.bfloat16, enabled=precision == "bf16")


def native_bf16(device: torch.device | str) -> bool:
    """Whether bf16 is computed in hardware here: AMX or AVX512-BF16 on a CPU, bf16 support on a GPU."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return bool(_cpu_flags() & {"amx_bf16", "avx512_bf16"})


def channels_last_pays(device: torch.device | str) -> bool:
    """Whether NHWC activations speed the bf16 training step here: on a GPU and on a CPU with AMX, where
    oneDNN's blocked kernels want NHWC. With AVX512 alone the same step is 1.09x faster in NCHW
    (docs/training.md)."""
    if torch.device(device).type == "cuda":
        return True
    return "amx_bf16" in _cpu_flags()


def _cpu_flags() -> set[str]:
    return set((cpu_info("flags") or "").split())
