"""Compute precision: `fp32`, or `bf16` = autocast of the subnets (Haar and the coupling sums stay fp32)."""

import torch

from models.inference.devices import cpu_info

PRECISIONS = ("fp32", "bf16")
AUTO = "auto"  # bf16 where the hardware computes it, fp32 elsewhere (as bf16 itself resolves)


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


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """fp32 stays fp32; bf16 and auto give bf16 only where the device computes it natively (AMX or
    AVX512-BF16 on a CPU, where it was 1.7-2x faster), fp32 elsewhere: oneDNN emulates bf16 without them, and
    the x4 IRN-A training step took 17x as long as in fp32 on an AVX2-only EPYC (docs/training.md). So a config
    written for one CPU still trains at full speed on another, chosen again at each resumption."""
    if precision == "fp32":
        return precision
    if precision not in ("bf16", AUTO):
        raise ValueError(f"precision must be fp32, bf16 or auto; got {precision!r}")
    return "bf16" if native_bf16(device) else "fp32"


def channels_last_pays(device: torch.device | str) -> bool:
    """Whether NHWC activations speed the bf16 training step here: on a GPU and on a CPU with AMX, where
    oneDNN's blocked kernels want NHWC. With AVX512 alone the same step is 1.09x faster in NCHW
    (docs/training.md)."""
    if torch.device(device).type == "cuda":
        return True
    return "amx_bf16" in _cpu_flags()


def _cpu_flags() -> set[str]:
    return set((cpu_info("flags") or "").split())
