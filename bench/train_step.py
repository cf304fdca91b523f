"""Training throughput: HR pixels per CPU-second of the training step, recipes side by side in one run.

Each recipe is one way to run the same step (forward, 8-bit LR, inverse, losses, backward, Adam) on real
training patches. The recipes run in interleaved rounds (A B C ... A B C ...), so whatever else the machine
does weighs on all of them alike; the figures are medians over rounds, and the ratios against `shipped` (the
step that trained the shipped models) are what to read.

python bench/train_step.py                                   # the x4 IRN-A recipe (4 blocks, 8 x 64^2)
python bench/train_step.py --recipe-of irn-jpeg-x4           # the x4 IRN-JPEG recipe (4 x 96^2, restorer, JPEG)
python bench/train_step.py --recipes shipped fast --loss-steps 300   # and the loss curves of both, same batches
python bench/train_step.py --recipes shipped bf16-features --roofline  # and their FLOP rate against large kernels'
python bench/train_step.py --recipes fp32 shipped --emulated  # what bf16 costs on a CPU that emulates it

HR pixels per CPU-second = HR pixels per step / (seconds per step x threads): a second thread that buys 1.5x
the wall-clock speed costs 0.75x per CPU-second, so two one-thread runs side by side beat one two-thread run.
"""

import argparse
import statistics
import time
import types
from dataclasses import dataclass

import torch

from models.inference.precision import autocast, native_bf16
from models.networks.coupling import DenseSubnet
from models.networks.rescaler import ModelConfig, Rescaler
from models.training.losses import CompressionAwareObjective, LossWeights, RescalingObjective
from models.training.lossy_codec import LossyCodec, LossyCodecConfig
from models.training.patches import PatchSampler


@dataclass(frozen=True)
class Recipe:
    precision: str = "bf16"
    bf16_features: bool = True  # the dense subnets concatenate bf16 features (False: fp32, as shipped)
    channels_last: bool = True
    compile: bool = False
    threads: int = 1


RECIPES = {
    "shipped": Recipe(bf16_features=False, channels_last=False),
    "fp32": Recipe(precision="fp32", channels_last=False),
    "bf16-features": Recipe(channels_last=False),
    "fast": Recipe(),  # bf16 features + channels_last: the recipe of this project's training now
    "fast-compiled": Recipe(compile=True),
    "fast-2-threads": Recipe(threads=2),
    "fp32-2-threads": Recipe(precision="fp32", channels_last=False, threads=2),  # where bf16 is not native
    "fp32-channels-last": Recipe(precision="fp32"),  # NHWC without bf16: does the layout pay on AVX2 alone?
}

# (variant, scale, blocks per level, batch, patch, restorer layers, objective): the shipped models' recipes
SHAPES = {
    "irn-a-x4": ("irn-a", 4, 4, 8, 64, 0, "lossless"),
    "irn-a-x2": ("irn-a", 2, 4, 8, 64, 0, "lossless"),
    "irn-jpeg-x4": ("irn", 4, 4, 4, 96, 8, "jpeg"),
    "irn-jpeg-x2": ("irn", 2, 8, 8, 64, 8, "jpeg"),
}


def shipped_subnet_forward(self: DenseSubnet, x: torch.Tensor) -> torch.Tensor:
    """The dense subnet as the shipped models trained: fp32 features, cast to bf16 by autocast at every conv."""
    features = [x]
    for conv in self.convs:
        features.append(self.act(conv(torch.cat(features, dim=1))))
    return self.out(torch.cat(features, dim=1))


class Step:
    """One recipe's model, optimiser and (compiled) objective, from the same initial weights as the others."""

    def __init__(self, recipe: Recipe, config: ModelConfig, objective: str, seed: int = 0) -> None:
        torch.manual_seed(seed)
        self.recipe = recipe
        self.model = Rescaler(config)
        if not recipe.bf16_features:
            for module in self.model.modules():
                if isinstance(module, DenseSubnet):
                    module.forward = types.MethodType(shipped_subnet_forward, module)
        if objective == "jpeg":
            self.objective = CompressionAwareObjective(self.model, LossWeights(), LossyCodec(LossyCodecConfig()))
        else:
            self.objective = RescalingObjective(self.model, LossWeights())
        if recipe.channels_last:
            self.objective.to(memory_format=torch.channels_last)
        self.forward = torch.compile(self.objective) if recipe.compile else self.objective
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=2e-4)

    def __call__(self, hr: torch.Tensor) -> float:
        torch.set_num_threads(self.recipe.threads)
        if self.recipe.channels_last:
            hr = hr.contiguous(memory_format=torch.channels_last)
        with autocast("cpu", self.recipe.precision):
            loss, _ = self.forward(hr)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 10)
        self.optimizer.step()
        return loss.item()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe-of", choices=sorted(SHAPES), default="irn-a-x4")
    p.add_argument("--recipes", nargs="+", choices=sorted(RECIPES), default=list(RECIPES))
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps-per-round", type=int, default=4)
    p.add_argument(
        "--loss-steps", type=int, default=0, help="then train each recipe this many steps on the same batches"
    )
    p.add_argument("--data", default="../shared/data/train")
    p.add_argument(
        "--roofline", action="store_true", help="and each recipe's FLOP rate against large kernels' on one thread"
    )
    p.add_argument(
        "--emulated",
        action="store_true",
        help="keep the bf16 recipes on a CPU without AVX512-BF16 or AMX, where oneDNN emulates bf16",
    )
    args = p.parse_args()
    variant, scale, blocks, batch, patch, restorer, objective = SHAPES[args.recipe_of]
    config = ModelConfig(variant=variant, scale=scale, blocks_per_level=blocks, restorer_layers=restorer)
    names = [n for n in args.recipes if RECIPES[n].precision != "bf16" or native_bf16("cpu") or args.emulated]
    sampler = PatchSampler(folders=[args.data], patch=patch, seed=0)
    steps = {}
    for name in names:
        started = time.perf_counter()
        steps[name] = Step(RECIPES[name], config, objective)
        steps[name](sampler.batch(batch))  # warm-up (and compilation) not counted
        steps[name](sampler.batch(batch))
        print(f"{name}: ready in {time.perf_counter() - started:.0f} s")
    seconds: dict[str, list[float]] = {n: [] for n in names}
    for _ in range(args.rounds):
        for name in names:
            hr = sampler.batch(batch)
            started = time.perf_counter()
            for _ in range(args.steps_per_round):
                steps[name](hr)
            seconds[name].append((time.perf_counter() - started) / args.steps_per_round)
    pixels = batch * patch * patch
    base = "shipped" if "shipped" in names else names[0]
    base_rate = pixels / statistics.median(seconds[base]) / RECIPES[base].threads
    print(f"\n{args.recipe_of}: {batch} x {patch}^2 HR per step ({pixels:,} px), {objective} objective, CPU")
    print("| recipe | threads | s/step | HR px per wall-second | HR px per CPU-second | vs shipped (CPU-second) |")
    print("|---|---|---|---|---|---|")
    for name in names:
        s = statistics.median(seconds[name])
        per_cpu = pixels / s / RECIPES[name].threads
        print(
            f"| {name} | {RECIPES[name].threads} | {s:.3f} | {pixels / s:,.0f} | {per_cpu:,.0f} | "
            f"{per_cpu / base_rate:.2f}x |"
        )
    if args.roofline:
        roofline(steps, seconds, sampler.batch(batch))
    if args.loss_steps:
        loss_curves(args, names, config, objective, batch, patch)


def step_flops(step: Step, hr: torch.Tensor) -> int:
    """FLOPs of one training step: every convolution and matmul, forward and backward (PyTorch's counter)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        step(hr)
    return counter.get_total_flops()


def kernel_rate(precision: str, run, flops: int, repeats: int = 5) -> float:
    """GFLOP/s of one thread on one kernel, the best of a few runs."""
    torch.set_num_threads(1)
    with autocast("cpu", precision), torch.no_grad():
        run()
        best = min(_timed(run) for _ in range(repeats))
    return flops / best / 1e9


def _timed(run) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def roofline(steps: dict[str, Step], seconds: dict[str, list[float]], hr: torch.Tensor) -> None:
    """How close each step runs to what this CPU's kernels reach on large, well-shaped work: a step near that
    rate can only get faster with less work per pixel or another kernel (AMX, a GPU), not a better step."""
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    x, conv = torch.randn(8, 64, 64, 64), torch.nn.Conv2d(64, 64, 3, padding=1)
    small_x, small = torch.randn(8, 35, 32, 32), torch.nn.Conv2d(35, 32, 3, padding=1)  # a dense subnet's
    print("\n| recipe | GFLOP per step | GFLOP/s per thread | of a 1024^3 matmul | of a 64->64 3x3 conv |")
    print("|---|---|---|---|---|")
    for name, step in steps.items():
        precision, threads = step.recipe.precision, step.recipe.threads
        matmul = kernel_rate(precision, lambda: torch.mm(a, b), 2 * 1024**3)
        large = kernel_rate(precision, lambda: conv(x), 2 * 8 * 64 * 64 * 64 * 64 * 9)
        flops = step_flops(step, hr)
        rate = flops / statistics.median(seconds[name]) / threads / 1e9
        print(
            f"| {name} | {flops / 1e9:.1f} | {rate:.1f} | {rate / matmul:.0%} ({matmul:.0f}) | "
            f"{rate / large:.0%} ({large:.0f}) |"
        )
    small_rate = kernel_rate("bf16", lambda: small(small_x), 2 * 8 * 35 * 32 * 32 * 32 * 9)
    print(f"a dense subnet's 35->32 3x3 conv on 8 x 32^2, bf16 forward: {small_rate:.0f} GFLOP/s per thread")


def loss_curves(args, names: list[str], config: ModelConfig, objective: str, batch: int, patch: int) -> None:
    """The same initial weights and the same batches for every recipe: the loss, in windows of 50 steps."""
    window = 50
    curves = {}
    for name in names:
        step = Step(RECIPES[name], config, objective, seed=1)
        sampler = PatchSampler(folders=[args.data], patch=patch, seed=1)
        torch.manual_seed(1)  # the JPEG qualities drawn
        losses = [step(sampler.batch(batch)) for _ in range(args.loss_steps)]
        curves[name] = [statistics.mean(losses[i : i + window]) for i in range(0, len(losses), window)]
    print(f"\nmean loss per {window} steps, same weights and batches:")
    for name, curve in curves.items():
        print(f"{name:>16}: " + " ".join(f"{v:8.2f}" for v in curve))
    base = curves[names[0]]
    for name in names[1:]:
        gap = max(abs(a - b) / b for a, b in zip(curves[name], base, strict=True))
        print(f"{name} against {names[0]}: largest relative gap of a window mean {gap:.2%}")


if __name__ == "__main__":
    main()
