"""Seconds per training step (forward, 8-bit LR, inverse, losses, backward, Adam) for given sizes.

python bench/train_step.py --variant irn --scale 4 --batch 16 --patch 144 --threads 2 --steps 3
python bench/train_step.py --variant irn-a --scale 2 --threads 1 --precision fp32 bf16   # side by side
python bench/train_step.py --variant irn --scale 4 --blocks-per-level 4 --batch 4 --patch 96 --threads 1 \
    --precision bf16 --objective lossless jpeg --restorer-layers 8   # the codec layer's cost, side by side
"""

import argparse
import time

import torch

from models.inference.devices import pick_device
from models.inference.precision import PRECISIONS, autocast
from models.rescaler import ModelConfig, Rescaler
from models.training.losses import LossWeights, compression_aware_loss, rescaling_loss
from models.training.lossy_codec import LossyCodec, LossyCodecConfig


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--variant", default="irn")
    p.add_argument("--scale", type=int, default=2)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--patch", type=int, default=64)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--blocks-per-level", type=int, default=8)
    p.add_argument("--growth", type=int, default=32)
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", nargs="+", choices=PRECISIONS, default=["fp32"], help="bf16: autocast")
    p.add_argument(
        "--objective",
        nargs="+",
        choices=("lossless", "jpeg"),
        default=["lossless"],
        help="jpeg: the compression-aware loss through the differentiable JPEG (Pillow values in the forward)",
    )
    p.add_argument("--restorer-layers", type=int, default=0, help="an LR restorer (compression-aware models)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    config = ModelConfig(
        variant=args.variant,
        scale=args.scale,
        blocks_per_level=args.blocks_per_level,
        growth=args.growth,
        restorer_layers=args.restorer_layers,
    )
    params = sum(p.numel() for p in Rescaler(config).parameters())
    for objective in args.objective:
        for precision in args.precision:
            seconds = step_time(config, args, device, precision, objective)
            print(
                f"{args.variant} x{args.scale} {params:,} params, batch {args.batch} x {args.patch}^2, "
                f"{torch.get_num_threads()} threads, {device}, {precision}, {objective} objective: "
                f"{seconds:.2f} s/step (mean of {args.steps})"
            )


def step_time(
    config: ModelConfig, args: argparse.Namespace, device: torch.device, precision: str, objective: str = "lossless"
) -> float:
    torch.manual_seed(0)
    model = Rescaler(config).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-4)
    hr = torch.rand(args.batch, 3, args.patch, args.patch, device=device)
    codec = LossyCodec(LossyCodecConfig())
    times = []
    for step in range(args.steps + 1):  # the first step warms up and is not counted
        start = time.perf_counter()
        with autocast(device, precision):
            if objective == "jpeg":
                loss, _ = compression_aware_loss(model, hr, LossWeights(), codec)
            else:
                loss, _ = rescaling_loss(model, hr, LossWeights())
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10)
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if step:
            times.append(time.perf_counter() - start)
    return sum(times) / len(times)


if __name__ == "__main__":
    main()
