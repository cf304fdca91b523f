"""A model-agnostic training loop: an objective module, a batch source, a checkpoint folder.

`objective(batch)` returns (loss, {term: float}). The loop clips gradients, skips steps
whose gradient is not finite, saves a resumable checkpoint every few minutes and at the
end, and runs under torchrun (DistributedDataParallel) when a process group is up.
"""

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import torch
from torch import nn
from tqdm import tqdm

from models.inference.precision import PRECISIONS, autocast
from models.store.checkpoint import load_training_state, save_training_state

SCHEDULES = ("cosine", "step", "constant")


class BatchSource(Protocol):
    def batch(self, size: int) -> torch.Tensor: ...
    def state(self) -> torch.Tensor: ...
    def load_state(self, state: torch.Tensor) -> None: ...


@dataclass(frozen=True)
class TrainerConfig:
    steps: int
    batch_size: int = 8
    lr: float = 2e-4
    lr_schedule: str = "cosine"
    lr_milestones: tuple[int, ...] = field(default_factory=tuple)
    lr_gamma: float = 0.5
    warmup_steps: int = 0
    min_lr_ratio: float = 0.02
    weight_decay: float = 1e-5
    grad_clip: float = 10.0
    checkpoint_every_s: float = 180.0
    log_every: int = 10
    max_bad_steps: int = 25
    stop_at: int | None = None  # end early at this step; the schedule still spans `steps` (x4 warm starts)
    precision: str = "fp32"  # weights and Adam stay fp32 either way
    # NHWC activations: oneDNN's convolutions skip their layout reorders (bench/train_step.py)
    channels_last: bool = False
    compile: bool = False  # torch.compile the objective: a GPU's recipe (on 2 CPU cores it did not pay)
    compile_backend: str = "inductor"
    max_hours: float | None = None  # a time budget: the run ends (and saves) once it has trained this long

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise ValueError(f"steps must be >= 0, got {self.steps}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.lr_schedule not in SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {', '.join(SCHEDULES)}; got {self.lr_schedule!r}")
        if self.grad_clip <= 0:
            raise ValueError(f"grad_clip must be positive, got {self.grad_clip}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {self.precision!r}")
        if self.stop_at is not None and not 0 <= self.stop_at <= self.steps:
            raise ValueError(f"stop_at must be in 0..steps ({self.steps}), got {self.stop_at}")
        if self.max_hours is not None and self.max_hours <= 0:
            raise ValueError(f"max_hours must be positive, got {self.max_hours}")

    @property
    def last_step(self) -> int:
        return self.steps if self.stop_at is None else self.stop_at

    def out_of_time(self, elapsed_s: float) -> bool:
        return self.max_hours is not None and elapsed_s >= self.max_hours * 3600

    def to_dict(self) -> dict:
        return asdict(self)


def learning_rate(step: int, config: TrainerConfig) -> float:
    """Linear warm-up, then cosine decay to min_lr_ratio, step decay at milestones, or constant."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    if config.lr_schedule == "step":
        return config.lr * config.lr_gamma ** sum(step >= m for m in config.lr_milestones)
    if config.lr_schedule == "cosine":
        span = max(config.steps - config.warmup_steps, 1)
        t = min((step - config.warmup_steps) / span, 1.0)
        floor = config.min_lr_ratio
        return config.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t)))
    return config.lr


def earlier_sitting(meta: dict) -> list[dict]:
    """What a checkpoint written before runs recorded their sittings says of the steps behind it: one sitting,
    in the precision and layout of the configuration that saved it (the last one, where there were several)."""
    if not meta["step"]:
        return []
    trainer = meta.get("trainer", {})
    return [
        {
            "from_step": 0,
            "to_step": meta["step"],
            "elapsed_s": round(meta["elapsed_s"], 2),
            "precision": trainer.get("precision"),
            "channels_last": trainer.get("channels_last"),
            "hardware": "not recorded (a checkpoint from before sittings were)",
        }
    ]


class Trainer:
    def __init__(
        self,
        *,
        objective: nn.Module,
        parameters: list[nn.Parameter],
        batches: BatchSource,
        config: TrainerConfig,
        folder: str | Path,
        device: torch.device,
        description: str = "train",
        on_save: Callable[["Trainer"], None] | None = None,
        hardware: str = "",
    ) -> None:
        self.objective = objective.to(device)
        if config.channels_last:
            self.objective.to(memory_format=torch.channels_last)
        self.parameters = parameters
        self.batches = batches
        self.config = config
        self.folder = Path(folder)
        self.device = device
        self.description = description
        self.on_save = on_save
        self.optimizer = torch.optim.Adam(
            parameters, lr=config.lr, betas=(0.9, 0.999), weight_decay=config.weight_decay
        )
        self.distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        self.rank = torch.distributed.get_rank() if self.distributed else 0
        self.step = 0
        self.elapsed_s = 0.0
        self.skipped_steps = 0
        self.history: list[dict] = []
        self.hardware = hardware
        # each start or resumption of the run: its steps, its time, and what it trained in and on
        self.sittings: list[dict] = []
        self._sitting: dict | None = None  # this one's: its steps and seconds are read off the run's at each save
        self._sitting_began_s = 0.0

    # -- checkpoints -----------------------------------------------------------------------

    def _state(self) -> dict:
        return {
            "step": self.step,
            "elapsed_s": self.elapsed_s,
            "skipped_steps": self.skipped_steps,
            "history": self.history,
            "sittings": self.sittings,
            "trainer": self.config.to_dict(),
            "patches_drawn": getattr(self.batches, "drawn", None),
            "patches_skipped": getattr(self.batches, "skipped", None),
        }

    def save(self) -> None:
        if self.rank != 0:
            return
        if self._sitting is not None:
            self._sitting.update(to_step=self.step, elapsed_s=round(self.elapsed_s - self._sitting_began_s, 2))
        rng = {"torch": torch.get_rng_state(), "batches": self.batches.state()}
        save_training_state(self.folder, module=self.objective, optimizer=self.optimizer, rng=rng, state=self._state())
        if self.on_save is not None:
            self.on_save(self)

    def resume(self) -> bool:
        restored = load_training_state(self.folder, module=self.objective, optimizer=self.optimizer)
        if restored is None:
            return False
        meta, rng = restored
        self.step, self.elapsed_s = meta["step"], meta["elapsed_s"]
        self.skipped_steps, self.history = meta["skipped_steps"], meta["history"]
        self.sittings = meta.get("sittings") or earlier_sitting(meta)
        torch.set_rng_state(rng["torch"])
        self.batches.load_state(rng["batches"])
        return True

    # -- the loop ----------------------------------------------------------------------------

    def _train_step(self, model: nn.Module) -> tuple[dict[str, float], float, bool]:
        lr = learning_rate(self.step, self.config)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        batch = self.batches.batch(self.config.batch_size).to(self.device)
        if self.config.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        with autocast(self.device, self.config.precision):
            loss, terms = model(batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()  # always, so DDP ranks stay in step; a NaN shows up in the norm below
        norm = torch.nn.utils.clip_grad_norm_(self.parameters, self.config.grad_clip)
        finite = bool(torch.isfinite(norm)) and math.isfinite(loss.item())
        if finite:
            self.optimizer.step()
        return {"loss": loss.item(), **terms, "grad_norm": norm.item(), "lr": lr}, lr, finite

    def _begin_sitting(self) -> dict:
        sitting = {
            "from_step": self.step,
            "to_step": self.step,
            "elapsed_s": 0.0,
            "precision": self.config.precision,
            "channels_last": self.config.channels_last,
            "hardware": self.hardware,
        }
        self.sittings.append(sitting)
        self._sitting, self._sitting_began_s = sitting, self.elapsed_s
        return sitting

    def run(self) -> list[dict]:
        if self.resume() and self.rank == 0:
            print(f"[{self.description}] resumed at step {self.step} from {self.folder}")
        sitting = self._begin_sitting()
        model: nn.Module = self.objective
        if self.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            model = nn.parallel.DistributedDataParallel(self.objective, device_ids=ids)
        model.train()
        if self.config.compile:
            model = torch.compile(model, backend=self.config.compile_backend)
        bar = tqdm(
            total=self.config.last_step,
            initial=self.step,
            desc=self.description,
            disable=self.rank != 0,
            dynamic_ncols=True,
        )
        last_save = time.monotonic()
        bad_in_a_row = 0
        window: list[dict] = []
        while self.step < self.config.last_step:
            if self.config.out_of_time(self.elapsed_s):
                if self.rank == 0:
                    print(f"[{self.description}] time budget of {self.config.max_hours} h spent at step {self.step}")
                break
            started = time.monotonic()
            record, _, finite = self._train_step(model)
            self.elapsed_s += time.monotonic() - started
            if not finite:
                self.skipped_steps += 1
                bad_in_a_row += 1
                if bad_in_a_row > self.config.max_bad_steps:
                    raise RuntimeError(
                        f"{bad_in_a_row} steps in a row had a non-finite loss or gradient at step {self.step}; "
                        f"lower the learning rate or resume from an earlier checkpoint"
                    )
                continue
            bad_in_a_row = 0
            self.step += 1
            window.append(record)
            bar.update(1)
            if self.step % self.config.log_every == 0 or self.step == self.config.last_step:
                mean = {k: sum(r[k] for r in window) / len(window) for k in window[0]}
                self.history.append({"step": self.step, "elapsed_s": round(self.elapsed_s, 2), **mean})
                bar.set_postfix({k: f"{v:.3g}" for k, v in mean.items() if k != "lr"})
                window = []
            if time.monotonic() - last_save > self.config.checkpoint_every_s:
                self.save()
                last_save = time.monotonic()
        bar.close()
        if self.step == sitting["from_step"]:  # an ended run started again: nothing to record
            self.sittings.remove(sitting)
            self._sitting = None
        self.save()
        return self.history
