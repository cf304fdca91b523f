"""Device choice: CUDA when present (this process's GPU under torchrun), else the CPU; what the CPU is."""

import os
import platform

import torch


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but no CUDA device is available")
    return device


def cpu_info(field: str) -> str | None:
    """The first value of a /proc/cpuinfo field ("model name", "flags"), None where there is none."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.split(":", 1)[0].strip() == field:
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_name() -> str:
    return cpu_info("model name") or platform.processor() or platform.machine()
