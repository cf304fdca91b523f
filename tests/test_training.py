import json
import tomllib

import pytest
import torch
from safetensors.torch import load_file

from models.cli import build_parser, main
from models.inference import precision
from models.networks.rescaler import Rescaler
from models.store.checkpoint import load_model, save_model
from models.training.losses import LossWeights, RescalingObjective, bicubic_downscale, rescaling_loss
from models.training.patches import PatchSampler
from models.training.run import resolve_config
from models.training.trainer import Trainer, TrainerConfig, learning_rate
from tests.conftest import ROOT, perturbed, tiny_config

CONFIGS = ROOT / "models" / "configs"


class FixedBatches:
    """Always the same batch: a loss that falls on it shows the optimiser works."""

    def __init__(self, batch: torch.Tensor) -> None:
        self._batch = batch

    def batch(self, size: int) -> torch.Tensor:
        return self._batch[:size]

    def state(self) -> torch.Tensor:
        return torch.zeros(1, dtype=torch.uint8)

    def load_state(self, state: torch.Tensor) -> None:
        pass


def smooth_batch(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(4, 3, 4, 4, generator=g)
    return torch.nn.functional.interpolate(coarse, size=16, mode="bilinear", align_corners=False)


@pytest.mark.parametrize(
    ("variant", "precision"),
    [("irn", "fp32"), ("irn-a", "fp32"), ("irn-m", "fp32"), ("dlv-irn-a", "fp32"), ("irn-a", "bf16")],
)
def test_twenty_steps_lower_the_loss(tmp_path, variant, precision):
    torch.manual_seed(0)
    model = Rescaler(tiny_config(variant, 2))
    weights = LossWeights()
    batch = smooth_batch()
    before, _ = rescaling_loss(model, batch, weights)
    trainer = Trainer(
        objective=RescalingObjective(model, weights),
        parameters=list(model.parameters()),
        batches=FixedBatches(batch),
        config=TrainerConfig(steps=20, batch_size=4, lr=1e-3, lr_schedule="constant", log_every=5, precision=precision),
        folder=tmp_path,
        device=torch.device("cpu"),
    )
    history = trainer.run()
    model.eval()
    after, _ = rescaling_loss(model, batch, weights)
    assert after.item() < 0.7 * before.item()
    assert [h["step"] for h in history] == [5, 10, 15, 20]


def test_loss_terms_follow_irn_weights():
    model = Rescaler(tiny_config("irn-m", 4))
    hr = smooth_batch()
    _, terms = rescaling_loss(model, hr, LossWeights())
    assert set(terms) == {"rec", "guide", "dist", "codec"}
    lr = torch.nn.functional.avg_pool2d(hr, 4)  # the identity network's LR is the box filter
    expected = 16 * ((lr - bicubic_downscale(hr, 4)) ** 2).sum() / hr.shape[0]  # weight scale^2, per-image sum
    assert terms["guide"] == pytest.approx(expected.item(), rel=1e-4)


def test_non_finite_gradients_are_skipped_then_abort(tmp_path):
    model = Rescaler(tiny_config("irn", 2))
    bad = torch.full((4, 3, 16, 16), float("nan"))
    trainer = Trainer(
        objective=RescalingObjective(model, LossWeights()),
        parameters=list(model.parameters()),
        batches=FixedBatches(bad),
        config=TrainerConfig(steps=5, batch_size=4, max_bad_steps=3),
        folder=tmp_path,
        device=torch.device("cpu"),
    )
    before = [p.clone() for p in model.parameters()]
    with pytest.raises(RuntimeError, match="4 steps in a row had a non-finite loss or gradient at step 0"):
        trainer.run()
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_learning_rate_schedules():
    cosine = TrainerConfig(steps=100, lr=1.0, min_lr_ratio=0.0, warmup_steps=10)
    assert learning_rate(0, cosine) == pytest.approx(0.1)
    assert learning_rate(10, cosine) == pytest.approx(1.0)
    assert learning_rate(100, cosine) == pytest.approx(0.0)
    step = TrainerConfig(steps=100, lr=1.0, lr_schedule="step", lr_milestones=(10, 20), lr_gamma=0.5)
    assert [learning_rate(s, step) for s in (9, 10, 20)] == [1.0, 0.5, 0.25]


def test_checkpoint_reloads_to_identical_outputs(tmp_path):
    model = perturbed(Rescaler(tiny_config("dlv-irn-m", 4))).eval()
    save_model(model, tmp_path)
    again = load_model(tmp_path)
    hr = torch.rand(1, 3, 32, 32)
    a, b = model.encode(hr), again.encode(hr)
    assert torch.equal(a.rgb, b.rgb) and torch.equal(a.code, b.code)
    assert torch.equal(model.decode(a), again.decode(b))
    assert json.loads((tmp_path / "config.json").read_text())["model"]["variant"] == "dlv-irn-m"


def test_fp16_weights_load_as_fp32(tmp_path):
    model = perturbed(Rescaler(tiny_config("irn", 2)))
    save_model(model, tmp_path, dtype=torch.float16)
    again = load_model(tmp_path)
    assert all(p.dtype == torch.float32 for p in again.parameters())


def test_patch_sampler_skips_flat_patches(tmp_path):
    import numpy as np
    from PIL import Image

    flat = np.full((64, 64, 3), 128, np.uint8)
    textured = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(flat).save(tmp_path / "flat.png")
    Image.fromarray(textured).save(tmp_path / "textured.png")
    sampler = PatchSampler(folders=[tmp_path], patch=16, min_texture=0.05, seed=0)
    batch = sampler.batch(16)
    assert batch.shape == (16, 3, 16, 16)
    assert all(patch.std() > 0.05 for patch in batch)
    assert sampler.skipped > 0


def test_a_reseeded_sampler_shares_the_images_but_not_the_stream(photo, tmp_path):
    from PIL import Image

    Image.fromarray(photo).save(tmp_path / "a.png")
    sampler, twin = (PatchSampler(folders=[tmp_path], patch=32, seed=0) for _ in range(2))
    other = sampler.with_seed(7)
    assert other.images is sampler.images
    assert torch.equal(other.batch(4), PatchSampler(folders=[tmp_path], patch=32, seed=7).batch(4))
    assert torch.equal(sampler.batch(4), twin.batch(4))  # drawing from the copy left this stream alone


def tiny_run_args(variant: str, photo, tmp_path, steps: int) -> list[str]:
    """`rescale train` flags for a one-block model on one photo, written to tmp_path/run."""
    from PIL import Image

    data = tmp_path / "photos"
    if not data.is_dir():
        data.mkdir()
        Image.fromarray(photo).save(data / "a.png")
    sizes = ["--blocks-per-level", "1", "--growth", "4", "--codec-hidden", "8", "--patch", "32", "--batch-size", "2"]
    run = ["--steps", str(steps), "--out", str(tmp_path / "run"), "--train-dirs", str(data)]
    return ["train", "--variant", variant, "--scale", "2", *sizes, *run]


def test_train_command_resumes_and_exports(tmp_path, photo, capsys):
    out_dir = tmp_path / "run"
    assert main([*tiny_run_args("irn-m", photo, tmp_path, 3), "--codec-pretrain-steps", "2"]) == 0
    assert (out_dir / "loss.png").is_file() and (out_dir / "model.safetensors").is_file()
    assert "codec z_scale" in capsys.readouterr().out
    z_scale = load_file(str(out_dir / "model.safetensors"))["codec.z_scale"]
    assert z_scale.shape == (9,) and not torch.allclose(z_scale, torch.ones(9))
    assert main([*tiny_run_args("irn-m", photo, tmp_path, 5), "--codec-pretrain-steps", "2"]) == 0
    out = capsys.readouterr().out
    assert "resumed at step 3" in out and "codec z_scale" not in out  # calibrated once, restored on resume
    training = json.loads((out_dir / "config.json").read_text())["training"]
    assert training["steps"] == 5 and training["codec_pretrain_steps"] == 2
    pretrain_s = json.loads((out_dir / "codec-pretrain" / "checkpoint.json").read_text())["elapsed_s"]
    joint_s = json.loads((out_dir / "checkpoint" / "checkpoint.json").read_text())["elapsed_s"]
    assert training["wall_time_s"] == round(joint_s + pretrain_s, 1)  # the resumed run keeps the pre-training time


def test_a_frozen_network_m_run_trains_the_codec_only(tmp_path, photo, capsys):
    """-M on a kept base: its network is the base's to the bit, so a stripped file upscales as the base does."""
    base_dir, m_dir = tmp_path / "base", tmp_path / "m"
    base_dir.mkdir(), m_dir.mkdir()
    assert main([*tiny_run_args("irn", photo, base_dir, 2), "--threads", "1"]) == 0
    m_args = [*tiny_run_args("irn-m", photo, m_dir, 3), "--codec-pretrain-steps", "1", "--threads", "1"]
    m_args += ["--init-from", str(base_dir / "run"), "--freeze-network", "true"]
    assert main([*m_args, "--stop-at", "1"]) == 0
    early = load_model(m_dir / "run").state_dict()
    assert main(m_args) == 0
    base, m = load_model(base_dir / "run").state_dict(), load_model(m_dir / "run").state_dict()
    assert all(torch.equal(base[k], m[k]) for k in base)
    codec = [k for k in m if k.startswith("codec.") and k.endswith("weight")]
    assert all(not torch.equal(early[k], m[k]) for k in codec)  # steps 2 and 3 moved the codec only
    other_size = [*m_args, "--blocks-per-level", "2", "--out", str(tmp_path / "m2")]  # the base has 1 per level
    assert main(other_size) == 2
    assert "freeze_network needs the whole network (and restorer) from" in capsys.readouterr().err
    with pytest.raises(ValueError, match="freeze_network keeps a trained network as it is: it needs an -M variant"):
        resolve_config(build_parser().parse_args(["train", "--variant", "irn-m", "--freeze-network", "true"]))
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--freeze-network", "yes"])


def test_a_compression_aware_m_run_trains_its_codec_through_the_jpeg(tmp_path, photo, capsys):
    """IRN-M-JPEG: a compression-aware base (network and restorer) kept to the bit, a codec trained through
    Pillow's JPEG of the LR; a file whose code was stripped then upscales exactly as the base does."""
    base_dir, m_dir = tmp_path / "base", tmp_path / "m"
    base_dir.mkdir(), m_dir.mkdir()
    lossy = ["--lossy", "true", "--quality-min", "60", "--quality-max", "90", "--restorer-layers", "2"]
    lossy += ["--restorer-hidden", "4", "--threads", "1"]
    assert main([*tiny_run_args("irn", photo, base_dir, 2), *lossy]) == 0
    m_args = [*tiny_run_args("irn-m", photo, m_dir, 3), *lossy, "--codec-pretrain-steps", "1"]
    m_args += ["--init-from", str(base_dir / "run"), "--freeze-network", "true"]
    assert main(m_args) == 0
    base, m = load_model(base_dir / "run").state_dict(), load_model(m_dir / "run").state_dict()
    assert any(k.startswith("restorer.") for k in base)
    assert all(torch.equal(base[k], m[k]) for k in base)
    history = json.loads((m_dir / "run" / "checkpoint" / "checkpoint.json").read_text())["history"]
    assert {"rec", "codec", "guide", "dist"} <= set(history[-1])
    training = json.loads((m_dir / "run" / "config.json").read_text())["training"]
    assert training["lossy_codec"] == {"quality_min": 60, "quality_max": 90, "real_forward": True}
    with pytest.raises(ValueError, match="lossy training needs an RGB LR .* got variant 'irn-a'"):
        resolve_config(build_parser().parse_args(["train", "--variant", "irn-a", "--lossy", "true"]))


def test_torchrun_trains_with_two_processes(tmp_path, photo):
    """DistributedDataParallel over gloo on the CPU: the same entry point as on a multi-GPU node."""
    import subprocess
    import sys

    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "models"]
    cmd = [*torchrun, *tiny_run_args("irn", photo, tmp_path, 3), "--threads", "1"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    # torchrun's own traceback comes last: show what the ranks printed before it as well
    assert result.returncode == 0, result.stderr.replace("\r", "\n")[-8000:]
    training = json.loads((tmp_path / "run" / "config.json").read_text())["training"]
    assert training["world_size"] == 2 and training["steps"] == 3


def test_a_run_stopped_early_and_resumed_equals_a_straight_run(tmp_path, photo):
    """What makes x4 warm starts and interrupted runs reproducible: same seed, same weights."""
    straight, split = tmp_path / "straight", tmp_path / "split"
    straight.mkdir(), split.mkdir()
    assert main([*tiny_run_args("irn-a", photo, straight, 4), "--threads", "1"]) == 0
    assert main([*tiny_run_args("irn-a", photo, split, 4), "--threads", "1", "--stop-at", "2"]) == 0
    assert json.loads((split / "run" / "config.json").read_text())["training"]["steps"] == 2
    assert main([*tiny_run_args("irn-a", photo, split, 4), "--threads", "1"]) == 0
    a, b = load_model(straight / "run").state_dict(), load_model(split / "run").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_each_sitting_of_a_run_records_its_steps_and_what_it_trained_in(tmp_path, photo, monkeypatch):
    """A run resumed on other hardware says so: its budget lists each start or resumption, with its precision."""
    from models.inference import precision as precisions
    from models.training.run import _hardware

    run = tiny_run_args("irn-a", photo, tmp_path, 5)
    assert main([*run, "--threads", "1", "--stop-at", "2"]) == 0
    monkeypatch.setattr(precisions, "cpu_info", lambda field: "fpu avx512f avx512_bf16" if field == "flags" else None)
    assert main([*run, "--threads", "1", "--precision", "bf16"]) == 0
    assert main([*run, "--threads", "1"]) == 0  # an ended run started again adds nothing
    training = json.loads((tmp_path / "run" / "config.json").read_text())["training"]
    sittings = training["sittings"]
    assert [(s["from_step"], s["to_step"], s["precision"]) for s in sittings] == [(0, 2, "fp32"), (2, 5, "bf16")]
    assert {s["hardware"] for s in sittings} == {_hardware(torch.device("cpu"))}
    assert all(s["elapsed_s"] > 0 for s in sittings) and training["precision"] == "fp32, bf16"
    checkpoint = json.loads((tmp_path / "run" / "checkpoint" / "checkpoint.json").read_text())
    assert sum(s["elapsed_s"] for s in sittings) == pytest.approx(checkpoint["elapsed_s"], abs=0.05)


def test_a_checkpoint_from_before_sittings_counts_its_steps_as_one(tmp_path, photo):
    run = tiny_run_args("irn-a", photo, tmp_path, 4)
    assert main([*run, "--threads", "1", "--stop-at", "2"]) == 0
    # the state as such a checkpoint holds it: inside its tensors' file, and in the JSON beside it
    from safetensors import safe_open
    from safetensors.torch import save_file

    from models.store.checkpoint import CHECKPOINT_TENSORS, STATE_KEY

    tensors_path = tmp_path / "run" / "checkpoint" / CHECKPOINT_TENSORS
    with safe_open(str(tensors_path), "pt") as f:
        state = json.loads(f.metadata()[STATE_KEY])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    del state["sittings"]
    save_file(tensors, str(tensors_path), metadata={STATE_KEY: json.dumps(state)})
    (tmp_path / "run" / "checkpoint" / "checkpoint.json").write_text(json.dumps(state))
    assert main([*run, "--threads", "1"]) == 0
    first, second = json.loads((tmp_path / "run" / "config.json").read_text())["training"]["sittings"]
    assert first == {
        "from_step": 0,
        "to_step": 2,
        "elapsed_s": round(state["elapsed_s"], 2),
        "precision": "fp32",
        "channels_last": False,
        "hardware": "not recorded (a checkpoint from before sittings were)",
    }
    assert (second["from_step"], second["to_step"]) == (2, 4)


def test_trainer_config_names_what_is_wrong():
    with pytest.raises(ValueError, match=r"stop_at must be in 0..steps \(10\), got 11"):
        TrainerConfig(steps=10, stop_at=11)
    with pytest.raises(ValueError, match="precision must be one of fp32, bf16; got 'fp16'"):
        TrainerConfig(steps=10, precision="fp16")


@pytest.mark.parametrize("config", sorted(CONFIGS.glob("*.toml")), ids=lambda p: p.stem)
def test_every_shipped_training_config_resolves(config):
    """The configs behind `make retrain`: known keys, a valid model, a seed written down, named like their run."""
    args = build_parser().parse_args(["train", "--config", str(config)])
    resolved = resolve_config(args)
    # a second cosine cycle takes another seed so that it draws new patches; every config names its own
    assert isinstance(tomllib.loads(config.read_text())["seed"], int)
    assert resolved.train_dirs in (["../shared/data/train"], ["runs/pool"])  # the pool: `rescale pool`
    assert resolved.out_dir.name == config.stem


def test_a_checkpoint_torn_between_its_two_files_resumes_at_the_step_of_its_weights(tmp_path, photo, capsys):
    """A run killed after the tensors were replaced and before the JSON beside them: the step is the tensors'."""
    assert main([*tiny_run_args("irn", photo, tmp_path, 2), "--threads", "1"]) == 0
    checkpoint = tmp_path / "run" / "checkpoint"
    stale = (checkpoint / "checkpoint.json").read_text()
    assert main([*tiny_run_args("irn", photo, tmp_path, 4), "--threads", "1", "--stop-at", "3"]) == 0
    (checkpoint / "checkpoint.json").write_text(stale)  # the JSON of step 2 beside the tensors of step 3
    capsys.readouterr()
    assert main([*tiny_run_args("irn", photo, tmp_path, 4), "--threads", "1"]) == 0
    assert "resumed at step 3" in capsys.readouterr().out


def test_snapshots_keep_the_points_of_a_learning_curve(tmp_path, photo):
    args = [*tiny_run_args("irn", photo, tmp_path, 4), "--threads", "1", "--snapshot-every", "2"]
    assert main([*args, "--checkpoint-every-s", "0"]) == 0  # a checkpoint after every step
    snapshots = sorted(p.name for p in (tmp_path / "run" / "snapshots").iterdir())
    assert snapshots == ["step-000002", "step-000004"]
    assert (
        json.loads((tmp_path / "run" / "snapshots" / "step-000002" / "config.json").read_text())["training"]["steps"]
        == 2
    )
    load_model(tmp_path / "run" / "snapshots" / "step-000002")


def test_channels_last_trains_the_same_sums(tmp_path, photo):
    """NHWC changes the memory layout only: the same run, weights equal to rounding."""
    runs = {}
    for layout in ("false", "true"):
        folder = tmp_path / layout
        folder.mkdir()
        assert main([*tiny_run_args("irn-a", photo, folder, 3), "--threads", "1", "--channels-last", layout]) == 0
        runs[layout] = load_model(folder / "run").state_dict()
    assert all(torch.allclose(runs["false"][k], runs["true"][k], atol=1e-5) for k in runs["false"])


@pytest.mark.parametrize(
    ("flags", "flag", "expected"),
    [
        ("fpu avx512f avx512_bf16 amx_bf16 amx_tile", None, True),  # Xeon with AMX: NHWC pays (1.38x)
        ("fpu avx512f avx512_bf16", None, False),  # AVX512 alone: NCHW is 1.09x faster
        ("fpu avx2", None, False),
        ("fpu avx512f avx512_bf16", "true", True),  # a config or flag that says it wins
        ("fpu avx512f avx512_bf16 amx_bf16", "false", False),
    ],
)
def test_channels_last_left_out_is_chosen_by_the_cpu(monkeypatch, flags, flag, expected):
    monkeypatch.setattr(precision, "cpu_info", lambda field: flags if field == "flags" else None)
    args = ["train", "--variant", "irn-a", "--scale", "2"] + (["--channels-last", flag] if flag else [])
    config = resolve_config(build_parser().parse_args(args))
    assert config.trainer_config(steps=10, lr=1e-4, device=torch.device("cpu")).channels_last is expected
    assert config.trainer_config(steps=10, lr=1e-4, device=torch.device("cuda")).channels_last is (flag != "false")


@pytest.mark.parametrize(
    ("flags", "requested", "expected"),
    [
        ("fpu avx512f avx512_bf16 amx_bf16", "auto", "bf16"),  # AMX
        ("fpu avx512f avx512_bf16", "auto", "bf16"),  # Zen 4: AVX512-BF16
        ("fpu avx2 fma", "auto", "fp32"),  # Zen 3: bf16 would be emulated
        ("fpu avx2 fma", "bf16", "fp32"),  # as the configs written on a Xeon say: fp32 here, with a warning
        ("fpu avx512f avx512_bf16", "fp32", "fp32"),
    ],
)
def test_bf16_trains_only_where_the_cpu_computes_it(monkeypatch, flags, requested, expected):
    monkeypatch.setattr(precision, "cpu_info", lambda field: flags if field == "flags" else None)
    args = ["train", "--variant", "irn-a", "--scale", "2", "--precision", requested]
    config = resolve_config(build_parser().parse_args(args))
    assert config.trainer_config(steps=10, lr=1e-4, device=torch.device("cpu")).precision == expected


def test_a_precision_that_is_not_one_is_refused_before_training():
    args = build_parser().parse_args(["train", "--variant", "irn-a", "--scale", "2", "--precision", "fp16"])
    with pytest.raises(ValueError, match="precision must be fp32, bf16 or auto; got 'fp16'"):
        resolve_config(args)


def test_a_bf16_run_on_a_cpu_without_it_says_it_trains_in_fp32(monkeypatch, tmp_path, capsys, photo):
    monkeypatch.setattr(precision, "cpu_info", lambda field: "fpu avx2" if field == "flags" else None)
    assert main([*tiny_run_args("irn", photo, tmp_path, 1), "--precision", "bf16"]) == 0
    assert (
        "bf16 asked for, but cpu has no native bf16 (AVX512-BF16 or AMX): training in fp32" in capsys.readouterr().out
    )
    assert json.loads((tmp_path / "run" / "config.json").read_text())["training"]["precision"] == "fp32"
