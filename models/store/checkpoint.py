"""Weights as safetensors plus a JSON config; no pickles anywhere.

A model directory holds `model.safetensors` and `config.json` ({"model": ModelConfig, ...}).
Training checkpoints add the optimiser moments and RNG states as tensors and the
scalar state as JSON, so a run resumes bit for bit.
"""

import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from models.networks.rescaler import ModelConfig, Rescaler

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _atomic_write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def _atomic_save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    os.replace(tmp, path)


def save_model(
    model: Rescaler, folder: str | Path, *, dtype: torch.dtype = torch.float32, extra: dict | None = None
) -> Path:
    """Write model.safetensors + config.json; returns the weights path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.to(dtype) if v.is_floating_point() else v for k, v in model.state_dict().items()}
    weights = folder / WEIGHTS_FILE
    _atomic_save_tensors(weights, tensors, metadata={"model": json.dumps(model.config.to_dict())})
    _atomic_write_json(folder / CONFIG_FILE, {"model": model.config.to_dict(), **(extra or {})})
    return weights


def load_model(folder: str | Path, *, device: str | torch.device = "cpu") -> Rescaler:
    """Rebuild a model from config.json and load its weights (fp16 files are widened to fp32)."""
    folder = Path(folder)
    config_path, weights = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    if not config_path.is_file() or not weights.is_file():
        raise FileNotFoundError(f"{folder} must hold {CONFIG_FILE} and {WEIGHTS_FILE}")
    config = ModelConfig.from_dict(json.loads(config_path.read_text())["model"])
    model = Rescaler(config)
    state = {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(weights)).items()}
    model.load_state_dict(state)
    return model.to(device).eval()


def load_matching(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> list[str]:
    """Copy every tensor whose name and shape match (warm start, e.g. x4 level 1 from x2); returns them."""
    own = model.state_dict()
    taken = [k for k, v in state.items() if k in own and own[k].shape == v.shape]
    model.load_state_dict({**own, **{k: state[k].to(own[k].dtype) for k in taken}})
    return taken


# -- training checkpoints ------------------------------------------------------------------

CHECKPOINT_META = "checkpoint.json"
CHECKPOINT_TENSORS = "checkpoint.safetensors"
STATE_KEY = "training_state"


def save_training_state(
    folder: Path,
    *,
    module: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    rng: dict[str, torch.Tensor],
    state: dict,
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {f"module.{k}": v for k, v in module.state_dict().items()}
    optim = optimizer.state_dict()
    for idx, slots in optim["state"].items():
        for name, value in slots.items():
            tensors[f"optim.{idx}.{name}"] = value if torch.is_tensor(value) else torch.tensor(value)
    tensors.update({f"rng.{k}": v for k, v in rng.items()})
    meta = {**state, "param_groups": optim["param_groups"]}
    # the scalar state travels inside the tensors' file, so one atomic rename replaces the whole checkpoint: a run
    # killed between two writes never resumes new weights at an old step; the JSON beside it is for reading
    _atomic_save_tensors(folder / CHECKPOINT_TENSORS, tensors, metadata={STATE_KEY: json.dumps(meta)})
    _atomic_write_json(folder / CHECKPOINT_META, meta)


def _checkpoint_state(folder: Path) -> dict | None:
    """The scalar state of the checkpoint's tensors file (older checkpoints: the JSON beside it)."""
    tensor_path, meta_path = folder / CHECKPOINT_TENSORS, folder / CHECKPOINT_META
    if not tensor_path.is_file():
        return None
    with safe_open(str(tensor_path), "pt") as f:
        stored = (f.metadata() or {}).get(STATE_KEY)
    if stored is not None:
        return json.loads(stored)
    return json.loads(meta_path.read_text()) if meta_path.is_file() else None


def training_meta(folder: Path) -> dict | None:
    """The scalar state (step, elapsed_s, ...) of the checkpoint in folder, or None if there is none."""
    return _checkpoint_state(folder)


def load_training_state(
    folder: Path, *, module: torch.nn.Module, optimizer: torch.optim.Optimizer
) -> tuple[dict, dict[str, torch.Tensor]] | None:
    """Restore module and optimiser in place; returns (scalar state, rng tensors) or None if absent."""
    meta = _checkpoint_state(folder)
    if meta is None:
        return None
    tensors = load_file(str(folder / CHECKPOINT_TENSORS))
    module.load_state_dict({k[len("module.") :]: v for k, v in tensors.items() if k.startswith("module.")})
    slots: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            slots.setdefault(int(idx), {})[name] = value
    optimizer.load_state_dict({"state": slots, "param_groups": meta.pop("param_groups")})
    rng = {k[len("rng.") :]: v for k, v in tensors.items() if k.startswith("rng.")}
    return meta, rng
