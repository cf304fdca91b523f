"""`rescale train`: a TOML config file, overridden by flags, drives one resumable run.

Running the same command again resumes from `<out>/checkpoint/`. For -M variants the
codec is first pre-trained alone (MSE on z of the network, `<out>/codec-pretrain/`),
then everything is trained jointly with eq. (2).
"""

import argparse
import dataclasses
import os
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file

from models.evaluation.plots import plot_loss_curves
from models.inference.devices import cpu_name, pick_device
from models.inference.precision import channels_last_pays, native_bf16, resolve_precision
from models.networks.rescaler import ModelConfig, Rescaler
from models.store.checkpoint import WEIGHTS_FILE, load_matching, save_model, training_meta
from models.store.registry import resolve_folder
from models.training.losses import (
    CodecPretrainingObjective,
    CompressionAwareObjective,
    LossWeights,
    RescalingObjective,
)
from models.training.lossy_codec import LossyCodec, LossyCodecConfig
from models.training.patches import PatchSampler
from models.training.trainer import Trainer, TrainerConfig


@dataclass
class TrainConfig:
    variant: str = "irn"
    scale: int = 4
    train_dirs: list[str] = field(default_factory=lambda: ["../shared/data/train"])
    out: str = ""
    seed: int = 0
    # data
    patch: int = 64
    batch_size: int = 8
    min_texture: float = 0.04
    # optimisation
    steps: int = 2000
    stop_at: int | None = None
    lr: float = 2e-4
    lr_schedule: str = "cosine"
    lr_milestones: list[int] = field(default_factory=list)
    lr_gamma: float = 0.5
    warmup_steps: int = 0
    weight_decay: float = 1e-5
    grad_clip: float = 10.0
    checkpoint_every_s: float = 180.0
    # keep a loadable copy of the model at the first checkpoint past every N steps (<out>/snapshots/step-S):
    # the points of a learning curve; 0 keeps none
    snapshot_every: int = 0
    # bf16 (or auto): autocast where the hardware computes bf16 (about 2x faster steps on CPUs with AMX; see
    # bench/train_step.py), fp32 where it would be emulated; chosen again at each resumption
    precision: str = "fp32"
    # NHWC: the same sums; faster convolutions on a GPU or a CPU with AMX, slower without (bench/train_step.py).
    # Left out: chosen by the hardware a run (or its resumption) trains on
    channels_last: bool | None = None
    compile: bool = False  # torch.compile of the training step: for a GPU (models/configs/gpu/)
    compile_backend: str = "inductor"
    max_hours: float | None = None  # the run's time budget: it ends and saves once it has trained this long
    # loss weights (eq. 2); guidance None = scale^2
    w_reconstruction: float = 1.0
    w_guidance: float | None = None
    w_distribution: float = 1.0
    w_codec: float = 0.01  # on the standardised z: ~10^4 terms per patch, about the reconstruction term
    # compression-aware runs: the reconstruction is computed after a JPEG of the 8-bit LR at a quality
    # drawn per image from quality_min..quality_max (real Pillow values, simulator gradients unless
    # real_forward is false); w_lossless adds the reconstruction from the lossless LR
    lossy: bool = False
    quality_min: int = 50
    quality_max: int = 95
    real_forward: bool = True
    w_lossless: float = 0.0
    # -M stage 1
    codec_pretrain_steps: int = 500
    codec_pretrain_lr: float = 1e-3
    # -M stage 2 trains the codec only, against the HR, on a warm-started network left as it is
    freeze_network: bool = False
    # architecture
    blocks_per_level: int = 8
    growth: int = 32
    dlv_channels: int = 3
    dlv_sigma: float = 1.0
    alpha_gain: float = 64.0
    codec_layers: int = 4
    codec_hidden: int = 64
    restorer_layers: int = 0
    restorer_hidden: int = 64
    # warm start from a model folder (tensors with matching names and shapes)
    init_from: str | None = None
    device: str = "auto"
    threads: int | None = None

    def _shared(self, cls: type) -> dict:
        """This config's values for the fields it shares with `cls` (same names, same meaning)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(cls) if hasattr(self, f.name)}

    def model_config(self) -> ModelConfig:
        return ModelConfig(**self._shared(ModelConfig))

    def trainer_config(self, *, steps: int, lr: float, device: torch.device, **overrides) -> TrainerConfig:
        channels_last = channels_last_pays(device) if self.channels_last is None else self.channels_last
        precision = resolve_precision(self.precision, device)
        chosen = {"steps": steps, "lr": lr, "channels_last": channels_last, "precision": precision}
        shared = self._shared(TrainerConfig) | chosen | overrides
        return TrainerConfig(**shared | {"lr_milestones": tuple(self.lr_milestones)})

    def loss_weights(self) -> LossWeights:
        return LossWeights(
            reconstruction=self.w_reconstruction,
            guidance=self.w_guidance,
            distribution=self.w_distribution,
            codec=self.w_codec,
            lossless=self.w_lossless,
        )

    def lossy_codec_config(self) -> LossyCodecConfig:
        return LossyCodecConfig(
            quality_min=self.quality_min, quality_max=self.quality_max, real_forward=self.real_forward
        )

    @property
    def out_dir(self) -> Path:
        return Path(self.out or f"runs/{self.variant}-x{self.scale}")


def _parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered not in ("true", "false"):
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    return lowered == "true"


def _field_type(f: dataclasses.Field) -> tuple[type, str | None]:
    """(element type, nargs) for a TrainConfig field: bool, int, float, str, list[...] or X | None."""
    hint = f.type
    if typing.get_origin(hint) in (types.UnionType, typing.Union):
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if hint is bool:
        return _parse_bool, None  # bool("false") is True
    if typing.get_origin(hint) is list:
        return typing.get_args(hint)[0], "+"
    return hint, None


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="TOML file with any of the keys below (flags win)")
    for f in dataclasses.fields(TrainConfig):
        kind, nargs = _field_type(f)
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        flag = f"--{f.name.replace('_', '-')}"
        parser.add_argument(flag, dest=f.name, type=kind, nargs=nargs, default=None, help=f"(default: {default})")


def resolve_config(args: argparse.Namespace) -> TrainConfig:
    values: dict = {}
    if args.config is not None:
        values.update(tomllib.loads(args.config.read_text()))
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown keys in {args.config}: {', '.join(unknown)}")
    values.update({k: v for k, v in vars(args).items() if k in known and v is not None})
    config = TrainConfig(**values)
    model_config = config.model_config()  # fail early on a bad variant or size
    resolve_precision(config.precision, "cpu")  # fail early on a precision that is not one
    if config.freeze_network and not (model_config.metadata and config.init_from):
        raise ValueError(
            "freeze_network keeps a trained network as it is: it needs an -M variant and init_from, "
            f"got variant {config.variant!r} and init_from {config.init_from!r}"
        )
    if config.lossy:
        config.lossy_codec_config()
        if model_config.alpha:
            raise ValueError(
                f"lossy training needs an RGB LR (variant irn, irn-m, dlv-irn or dlv-irn-m), "
                f"got variant {config.variant!r}"
            )
    return config


def trained_in(trainer: Trainer) -> str:
    """The precisions the run's steps trained in, in the order its sittings used them ("bf16, fp32")."""
    used = [s["precision"] for s in trainer.sittings if s["to_step"] > s["from_step"]]
    return ", ".join(dict.fromkeys(used)) or trainer.config.precision


def _hardware(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_name()}, {torch.get_num_threads()} threads"


def _init_distributed() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    rank = torch.distributed.get_rank() if world > 1 else 0
    return rank, world


CALIBRATION_BATCHES = 8


def _calibrate_codec(model: Rescaler, config: TrainConfig, sampler: PatchSampler, device: torch.device) -> None:
    """z_scale from the (warm-started) network on training patches of a stream of their own."""
    sampler = sampler.with_seed(config.seed + 10_000)  # the same on every rank; training draws stay as they were
    model.to(device)
    with torch.no_grad():
        batches = (sampler.batch(config.batch_size).to(device) for _ in range(CALIBRATION_BATCHES))
        z = torch.cat([model.net.downscale(hr)[1] for hr in batches])  # (8B, Cz, P/s, P/s)
    model.codec.calibrate(z)
    print(f"codec z_scale: RMS of z per channel, {model.codec.z_scale.min():.2e} to {model.codec.z_scale.max():.2e}")


def snapshots(out: Path) -> list[Path]:
    """The model folders a run kept along the way, oldest first."""
    return sorted((out / "snapshots").glob("step-*"))


def run_training(config: TrainConfig) -> Path:
    if config.threads:
        torch.set_num_threads(config.threads)
    rank, world = _init_distributed()
    device = pick_device(config.device)
    if rank == 0 and config.precision == "bf16" and not native_bf16(device):
        print(f"bf16 asked for, but {device} has no native bf16 (AVX512-BF16 or AMX): training in fp32")
    torch.manual_seed(config.seed + rank)
    out = config.out_dir
    model = Rescaler(config.model_config())
    if config.init_from:
        taken = load_matching(model, load_file(str(resolve_folder(config.init_from) / WEIGHTS_FILE)))
        fresh = sorted(k for k in set(model.state_dict()) - set(taken) if k.startswith(("net.", "restorer.")))
        if config.freeze_network and fresh:
            # a frozen network must be the trained one, every tensor of it, not partly fresh blocks
            raise ValueError(
                f"freeze_network needs the whole network (and restorer) from {config.init_from}, but {len(fresh)} "
                f"of its tensors do not match there (e.g. {fresh[0]}); are blocks_per_level and scale the same?"
            )
        if rank == 0:
            print(f"warm start: {len(taken)} tensors from {config.init_from}")
    sampler = PatchSampler(
        folders=config.train_dirs, patch=config.patch, min_texture=config.min_texture, seed=config.seed + rank
    )
    joint_folder = out / "checkpoint"
    pretrain_folder = out / "codec-pretrain"
    joint_started = training_meta(joint_folder) is not None
    if model.codec is not None and not joint_started and training_meta(pretrain_folder) is None:
        _calibrate_codec(model, config, sampler, device)  # a resumed run restores z_scale with the weights
    pretrain_s = 0.0
    if model.codec is not None and config.codec_pretrain_steps > 0 and not joint_started:
        pretrain = Trainer(
            objective=CodecPretrainingObjective(model),
            parameters=list(model.codec.parameters()),
            batches=sampler,
            config=config.trainer_config(
                steps=config.codec_pretrain_steps,
                lr=config.codec_pretrain_lr,
                device=device,
                stop_at=None,
                max_hours=None,
            ),
            folder=pretrain_folder,
            device=device,
            description=f"{config.variant} x{config.scale} codec pre-training",
            hardware=_hardware(device),
        )
        pretrain.run()
    if (pretrained := training_meta(pretrain_folder)) is not None:
        pretrain_s = pretrained["elapsed_s"]  # from its checkpoint: a run resumed after pre-training still counts it

    def export(trainer: Trainer) -> None:
        """Keep <out> a loadable model folder at every checkpoint, not only at the end."""
        training = {
            "train_dirs": config.train_dirs,
            "steps": trainer.step,
            "codec_pretrain_steps": config.codec_pretrain_steps if model.codec is not None else 0,
            "batch_size": config.batch_size,
            "patch": config.patch,
            "world_size": world,
            "wall_time_s": round(trainer.elapsed_s + pretrain_s, 1),
            "hardware": _hardware(device),
            "precision": trained_in(trainer),  # bf16 resolved for each sitting's device
            "sittings": trainer.sittings,  # each start or resumption: its steps and what it trained in and on
            "torch": torch.__version__,
            "seed": config.seed,
            **({"lossy_codec": dataclasses.asdict(config.lossy_codec_config())} if config.lossy else {}),
            "skipped_steps": trainer.skipped_steps,
            "config": dataclasses.asdict(config),
        }
        save_model(model, out, extra={"training": training})
        if config.snapshot_every and trainer.step // config.snapshot_every > len(snapshots(out)):
            # fp16, as weights ship: the curve measures what would be published, at half the bytes kept
            snapshot = out / "snapshots" / f"step-{trainer.step:06d}"
            save_model(model, snapshot, dtype=torch.float16, extra={"training": training})
        if trainer.history:
            plot_loss_curves(trainer.history, out / "loss.png", f"{config.variant} x{config.scale}")

    if config.freeze_network:
        model.net.requires_grad_(False)  # -M then degrades to exactly its base when the code is stripped
        if model.restorer is not None:
            model.restorer.requires_grad_(False)
    if config.lossy:
        objective = CompressionAwareObjective(model, config.loss_weights(), LossyCodec(config.lossy_codec_config()))
    else:
        objective = RescalingObjective(model, config.loss_weights())
    trainer = Trainer(
        objective=objective,
        parameters=list(model.codec.parameters() if config.freeze_network else model.parameters()),
        batches=sampler,
        config=config.trainer_config(steps=config.steps, lr=config.lr, device=device),
        folder=joint_folder,
        device=device,
        description=f"{config.variant} x{config.scale}",
        on_save=export,
        hardware=_hardware(device),
    )
    trainer.run()
    if rank == 0:
        print(f"saved {out / WEIGHTS_FILE} after {trainer.step} steps ({trainer.elapsed_s + pretrain_s:.0f} s)")
    if world > 1:
        torch.distributed.barrier()  # rank 0 exports last: no rank tears gloo down while another still uses it
        torch.distributed.destroy_process_group()
    return out
