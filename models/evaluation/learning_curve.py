"""The learning curve: PSNR-Y gain over bicubic on eval/ against the HR pixels a model was trained on, a
log-linear fit, and what the fit prices a target gain at (HR pixels, and CPU-hours at a measured rate).

    python -m models.evaluation.learning_curve docs/results/learning-curve.json --figure docs/results/learning-curve.png

The points file lists, per curve, the measured points (weights folder, PSNR-Y, bicubic PSNR-Y), which of
them the fit uses (the ends of cosine cycles: a snapshot in the middle of a cycle trains at a high learning
rate and lags), the target and the training rate in HR pixels per CPU-second. HR pixels are counted from the
weights' own records: steps x batch x patch^2 of every stage that led to them (config.json, the manifest).
"""

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path

from models.checkpoint import CONFIG_FILE
from models.publish import read_manifest


@dataclass(frozen=True)
class Point:
    label: str
    hr_pixels: float
    gain: float
    fitted: bool


@dataclass(frozen=True)
class Fit:
    intercept: float  # gain at 1 HR pixel (log10 = 0): only a parameter
    per_decade: float  # dB per tenfold HR pixels
    points: int

    def gain_at(self, hr_pixels: float) -> float:
        return self.intercept + self.per_decade * math.log10(hr_pixels)

    def pixels_for(self, gain: float) -> float:
        if self.per_decade <= 0:
            return math.inf
        return 10 ** ((gain - self.intercept) / self.per_decade)


def pixels_seen(training: dict) -> int:
    """HR pixels one training stage drew: steps x batch x patch^2."""
    return training.get("steps", 0) * training.get("batch_size", 0) * training.get("patch", 0) ** 2


def stages(training: dict) -> list[dict]:
    """This run and the runs it was warm-started from (a manifest entry's `earlier_stages`)."""
    return [training, *training.get("earlier_stages", [])]


def hr_pixels_trained(folder: str | Path) -> float:
    """Every stage's HR pixels up to these weights: a shipped model's from the manifest, a run's own steps plus
    those of the weights it started from."""
    folder = Path(folder)
    shipped = {m["name"]: m for m in read_manifest()["models"]}
    if folder.parent.name == "weights" and folder.name in shipped:
        return sum(pixels_seen(stage) for stage in stages(shipped[folder.name]["training"]))
    training = json.loads((folder / CONFIG_FILE).read_text())["training"]
    start = training.get("config", {}).get("init_from")
    return pixels_seen(training) + (hr_pixels_trained(start) if start else 0.0)


def fit_log_linear(points: list[Point]) -> Fit:
    """Least squares of gain on log10(HR pixels) over the points marked for the fit."""
    used = [p for p in points if p.fitted]
    if len({p.hr_pixels for p in used}) < 2:
        raise ValueError(f"a fit needs points at two pixel counts at least, got {len(used)}")
    xs = [math.log10(p.hr_pixels) for p in used]
    ys = [p.gain for p in used]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)
    return Fit(intercept=my - slope * mx, per_decade=slope, points=len(used))


def curve_points(curve: dict, root: Path) -> list[Point]:
    points = []
    for p in curve["points"]:
        pixels = p.get("hr_pixels") or hr_pixels_trained(root / p["weights"])
        points.append(Point(p["label"], pixels, p["psnr"] - p["bicubic"], p.get("fit", False)))
    return points


def price(fit: Fit, target: float, rate_px_per_cpu_s: float, trained: float) -> dict:
    """What the fit says the target gain costs: total HR pixels, and the CPU-hours beyond what was trained."""
    needed = fit.pixels_for(target)
    more = max(needed - trained, 0.0)
    return {"hr_pixels": needed, "more_hr_pixels": more, "cpu_hours": more / rate_px_per_cpu_s / 3600}


def markdown(curves: dict, root: Path) -> str:
    lines = []
    for name, curve in curves.items():
        points = curve_points(curve, root)
        fit = fit_log_linear(points)
        trained = max(p.hr_pixels for p in points)
        cost = price(fit, curve["target"], curve["rate_px_per_cpu_s"], trained)
        lines += [f"**{name}** ({curve['measured']})", "", "| weights | HR pixels | gain over bicubic | in the fit |"]
        lines += ["|---|---|---|---|"]
        for p in sorted(points, key=lambda p: p.hr_pixels):
            fitted = "yes" if p.fitted else "no"
            lines.append(f"| {p.label} | {p.hr_pixels / 1e6:,.0f} M | {p.gain:+.2f} dB | {fitted} |")
        lines += [
            "",
            f"Fit over {fit.points} points: {fit.per_decade:+.2f} dB per tenfold HR pixels. "
            f"To reach {curve['target_name']} ({curve['target']:+.2f} dB): {cost['hr_pixels'] / 1e9:,.1f} G HR pixels, "
            f"{cost['more_hr_pixels'] / 1e9:,.1f} G more than the {trained / 1e9:,.2f} G trained, "
            f"{cost['cpu_hours']:,.0f} CPU-hours at {curve['rate_px_per_cpu_s'] / 1e3:,.1f} k HR px per CPU-second.",
            "",
        ]
    return "\n".join(lines)


def plot(curves: dict, root: Path, path: Path) -> Path:
    from models.plots import plt, save_figure  # matplotlib (Agg) only when a figure is asked for

    fig, axes = plt.subplots(1, len(curves), figsize=(6 * len(curves), 4.2), dpi=110, squeeze=False)
    for ax, (name, curve) in zip(axes[0], curves.items(), strict=True):
        points = curve_points(curve, root)
        fit = fit_log_linear(points)
        far = max(fit.pixels_for(curve["target"]), max(p.hr_pixels for p in points)) * 1.5
        far = min(far, 1e13)
        xs = [min(p.hr_pixels for p in points) / 1.5, far]
        ax.plot(xs, [fit.gain_at(x) for x in xs], "--", color="grey", label=f"fit: {fit.per_decade:+.2f} dB/decade")
        for fitted, marker, label in ((True, "o", "cycle ends (fitted)"), (False, "x", "not fitted (see the table)")):
            chosen = [p for p in points if p.fitted is fitted]
            if chosen:
                ax.plot([p.hr_pixels for p in chosen], [p.gain for p in chosen], marker, label=label)
        ax.axhline(curve["target"], color="tab:red", linewidth=1, label=f"{curve['target_name']}")
        ax.set_xscale("log")
        ax.set_xlabel("HR pixels trained")
        ax.set_ylabel("PSNR-Y gain over bicubic (dB)")
        ax.set_title(name)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    return save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("points", type=Path, help="the curves' points (JSON)")
    parser.add_argument("--figure", type=Path, help="write the plot here (PNG)")
    args = parser.parse_args(argv)
    curves = json.loads(args.points.read_text())
    root = Path.cwd()
    print(markdown(curves, root))
    if args.figure:
        print(f"figure: {plot(curves, root, args.figure)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
