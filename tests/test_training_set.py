"""Chained runs in the order their configs state (init_from), the GPU set run for a few steps on the CPU, and the
GPU recipe's parts (torch.compile, a time budget)."""

import os
import tomllib
from pathlib import Path

import pytest

from models.cli import main
from models.store.checkpoint import load_model
from models.training.chain import config_set, run_order, with_prerequisites
from tests.test_training import tiny_run_args

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "models" / "configs"
GPU = CONFIGS / "gpu"
SHIPPED = {"irn-x2", "irn-a-x2", "irn-m-x2", "irn-x4", "irn-a-x4", "irn-m-x4", "dlv-irn-x4", "dlv-irn-m-x4"}


def write(folder: Path, name: str, **values: str) -> Path:
    path = folder / f"{name}.toml"
    path.write_text("".join(f'{k} = "{v}"\n' for k, v in values.items()))
    return path


def test_a_run_comes_after_the_run_it_starts_from(tmp_path):
    m = write(tmp_path, "a-m", out="runs/m", init_from="runs/base")
    base = write(tmp_path, "z-base", out="runs/base", init_from="models/weights/irn-x2")
    jpeg = write(tmp_path, "b-jpeg", out="runs/jpeg", init_from="runs/base")
    alone = write(tmp_path, "c-alone", out="runs/alone")
    assert run_order([m, base, jpeg, alone]) == [base, m, jpeg, alone]
    assert with_prerequisites(m) == [base, m]
    assert with_prerequisites(alone) == [alone]


def test_loops_and_shared_outputs_are_refused(tmp_path):
    a = write(tmp_path, "a", out="runs/a", init_from="runs/b")
    b = write(tmp_path, "b", out="runs/b", init_from="runs/a")
    with pytest.raises(ValueError, match=r"start from each other in a loop: .*a\.toml -> .*b\.toml -> .*a\.toml"):
        run_order([a, b])
    c, d = write(tmp_path, "c", out="runs/c"), write(tmp_path, "d", out="runs/c")
    with pytest.raises(ValueError, match=r"c\.toml and .*d\.toml both train into runs/c"):
        run_order([c, d])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no .toml configs"):
        config_set(tmp_path / "empty")


def test_the_shipped_chains_keep_their_order():
    names = [c.stem for c in with_prerequisites(CONFIGS / "irn-m-x2-long.toml")]
    assert names == ["irn-x2", "irn-x2-long", "irn-m-x2-long"]
    names = [c.stem for c in with_prerequisites(CONFIGS / "irn-a-x4-small-long.toml")]
    assert names == ["irn-a-x2-small", "irn-a-x4-small", "irn-a-x4-small-long"]


def test_the_gpu_set_is_the_shipped_set_with_the_gpu_recipe():
    order = [c.stem for c in config_set(GPU)]
    assert set(order) == SHIPPED | {"irn-jpeg-x2", "irn-jpeg-x4"}
    for later, earlier in [("irn-m-x2", "irn-x2"), ("irn-jpeg-x4", "irn-x4"), ("dlv-irn-m-x4", "dlv-irn-x4")]:
        assert order.index(earlier) < order.index(later)
    for config in GPU.glob("*.toml"):
        values = tomllib.loads(config.read_text())
        assert values["out"] == f"runs/gpu/{config.stem}"
        assert (values["precision"], values["compile"], values["channels_last"]) == ("bf16", True, True)
        assert values["batch_size"] == 16 and values["patch"] == 144 and values["max_hours"] > 0


def test_the_gpu_set_trains_for_a_few_steps_on_the_cpu(tmp_path, photo, capsys, monkeypatch):
    """The same command a GPU runs, made tiny: every run in order, each -M and IRN-JPEG on this set's own base."""
    tiny = tiny_run_args("irn", photo, tmp_path, 2)
    photos = tiny[tiny.index("--train-dirs") + 1]
    monkeypatch.chdir(tmp_path)  # the set writes runs/gpu/... here
    small = ["--blocks-per-level", "1", "--growth", "4", "--codec-hidden", "8", "--restorer-hidden", "8"]
    steps = ["--steps", "2", "--codec-pretrain-steps", "1", "--warmup-steps", "0", "--threads", "1"]
    args = ["train-set", str(GPU), *small, *steps, "--patch", "64", "--batch-size", "1", "--train-dirs", photos]
    assert main([*args, "--compile", "false", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "runs, in order: dlv-irn-x4, dlv-irn-m-x4, irn-a-x2, irn-a-x4, irn-x2, irn-jpeg-x2," in out
    for name in SHIPPED | {"irn-jpeg-x2", "irn-jpeg-x4"}:
        model = load_model(tmp_path / "runs" / "gpu" / name)
        assert model.config.variant == tomllib.loads((GPU / f"{name}.toml").read_text())["variant"]
    assert "warm start" in out and os.path.isdir(tmp_path / "runs" / "gpu" / "irn-m-x4" / "codec-pretrain")
    assert main(["train-set", str(GPU), "--out", "elsewhere"]) == 2
    assert "--out and --init-from belong to each config, not to the whole set" in capsys.readouterr().err


def test_a_compiled_step_and_a_time_budget(tmp_path, photo, capsys):
    args = tiny_run_args("irn", photo, tmp_path, 3)
    assert main([*args, "--compile", "true", "--compile-backend", "aot_eager", "--threads", "1"]) == 0
    assert load_model(tmp_path / "run") is not None
    (tmp_path / "b").mkdir()
    budget = tiny_run_args("irn", photo, tmp_path / "b", 50)
    assert main([*budget, "--max-hours", "1e-9", "--threads", "1"]) == 0
    assert "time budget of 1e-09 h spent at step 1" in capsys.readouterr().out
