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

from models.store.checkpoint import CONFIG_FILE
from models.store.publish import read_manifest
from models.store.registry import MANIFEST, RETIRED, SHIPPED, resolve_folder


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
    reading: str = "fit"  # where the slope comes from, as the tables name it

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
    folder = resolve_folder(folder)
    shipped = {m["name"]: m for m in read_manifest()["models"] + read_manifest(RETIRED / MANIFEST.name)["models"]}
    if folder.parent.name in (SHIPPED.name, RETIRED.name) and folder.name in shipped:
        return sum(pixels_seen(stage) for stage in stages(shipped[folder.name]["training"]))
    training = json.loads((folder / CONFIG_FILE).read_text())["training"]
    start = training.get("config", {}).get("init_from")
    return pixels_seen(training) + (hr_pixels_trained(start) if start else 0.0)


def fit_log_linear(points: list[Point], reading: str = "fit") -> Fit:
    """Least squares of gain on log10(HR pixels) over the points marked for the fit."""
    used = [p for p in points if p.fitted]
    if len({p.hr_pixels for p in used}) < 2:
        raise ValueError(f"a fit needs points at two pixel counts at least, got {len(used)}")
    xs = [math.log10(p.hr_pixels) for p in used]
    ys = [p.gain for p in used]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)
    return Fit(intercept=my - slope * mx, per_decade=slope, points=len(used), reading=reading)


def through(point: Point, per_decade: float, reading: str) -> Fit:
    """A line of a given slope through one point: a curve with one cycle end, priced at another's slopes."""
    return Fit(point.gain - per_decade * math.log10(point.hr_pixels), per_decade, 1, reading)


def cycle_ends(points: list[Point]) -> list[Point]:
    return sorted((p for p in points if p.fitted), key=lambda p: p.hr_pixels)


def readings(name: str, curves: dict, root: Path) -> list[Fit]:
    """The slopes a curve is priced at: the fit over its cycle ends and, where there are three or more, the line
    through the last two (where a curve bends, the nearer reading); a curve with one cycle end borrows the
    slopes of the curve it names in `slope_from`."""
    curve = curves[name]
    ends = cycle_ends(curve_points(curve, root))
    if "slope_from" in curve:
        if not ends:
            raise ValueError(f"{name}: a curve priced at another's slopes needs a cycle end (a point with fit)")
        borrowed = readings(curve["slope_from"], curves, root)
        return [through(ends[-1], f.per_decade, f"{f.reading} of {curve['slope_from']}") for f in borrowed]
    fits = [fit_log_linear(ends, reading=f"fit over {len(ends)} cycle ends")]
    if len(ends) >= 3:
        fits.append(fit_log_linear(ends[-2:], reading="the last two cycle ends"))
    return fits


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


def _pixels(n: float) -> str:
    if n >= 1e15:
        return f"{n:.1e}"
    return f"{n / 1e12:,.1f} T" if n >= 1e12 else f"{n / 1e9:,.1f} G"


def _cost(cost: dict) -> str:
    if math.isinf(cost["hr_pixels"]):
        return "never: the line does not rise"
    hours = cost["cpu_hours"]
    spent = f"{hours / 8766:,.0f} CPU-years" if hours >= 1e5 else f"{hours:,.0f} CPU-h"
    return f"{_pixels(cost['hr_pixels'])} HR pixels: {_pixels(cost['more_hr_pixels'])} more, {spent}"


def markdown(curves: dict, root: Path) -> str:
    lines = []
    for name, curve in curves.items():
        points = curve_points(curve, root)
        fits = readings(name, curves, root)
        ends = cycle_ends(points)
        trained, best = ends[-1].hr_pixels, max(p.gain for p in ends)
        lines += [f"**{name}** ({curve['measured']})", "", "| weights | HR pixels | gain over bicubic | in the fit |"]
        lines += ["|---|---|---|---|"]
        for p in sorted(points, key=lambda p: p.hr_pixels):
            fitted = "yes" if p.fitted else "no"
            lines.append(f"| {p.label} | {p.hr_pixels / 1e6:,.0f} M | {p.gain:+.2f} dB | {fitted} |")
        slopes = "; ".join(f"{f.reading}: {f.per_decade:+.2f} dB" for f in fits)
        lines += ["", f"Per tenfold HR pixels, {slopes}. From the {trained / 1e9:,.2f} G trained:", ""]
        lines += ["| to reach | " + " | ".join(f"at {f.per_decade:+.2f} dB/decade" for f in fits) + " |"]
        lines += ["|---" * (len(fits) + 1) + "|"]
        for target in curve["targets"]:
            if best >= target["gain"]:
                costs = [f"reached: {best:+.2f} dB measured"] * len(fits)
            else:
                costs = [_cost(price(f, target["gain"], curve["rate_px_per_cpu_s"], trained)) for f in fits]
            lines.append(f"| {target['name']} ({target['gain']:+.2f} dB) | " + " | ".join(costs) + " |")
        rate = f"{curve['rate_px_per_cpu_s'] / 1e3:,.1f} k HR px per CPU-second"
        lines += ["", f"CPU-hours at {rate} ({curve['rate_source']}).", ""]
    return "\n".join(lines)


def plot(curves: dict, root: Path, path: Path) -> Path:
    from models.evaluation.plots import plt, save_figure  # matplotlib (Agg) only when a figure is asked for

    columns = 2 if len(curves) > 2 else len(curves)
    rows = math.ceil(len(curves) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(6 * columns, 4.2 * rows), dpi=110, squeeze=False)
    for ax, (name, curve) in zip(axes.flat, curves.items(), strict=False):  # a spare panel stays empty
        points = curve_points(curve, root)
        fits = readings(name, curves, root)
        highest = max(t["gain"] for t in curve["targets"])
        far = min(max(min(f.pixels_for(highest) for f in fits), max(p.hr_pixels for p in points)) * 1.5, 1e13)
        xs = [min(p.hr_pixels for p in points) / 1.5, far]
        for fit, style in zip(fits, ("--", ":"), strict=False):
            label = f"{fit.reading}: {fit.per_decade:+.2f} dB/decade"
            ax.plot(xs, [fit.gain_at(x) for x in xs], style, color="grey", label=label)
        for fitted, marker, label in ((True, "o", "cycle ends"), (False, "x", "not fitted (see the table)")):
            chosen = [p for p in points if p.fitted is fitted]
            if chosen:
                ax.plot([p.hr_pixels for p in chosen], [p.gain for p in chosen], marker, label=label)
        for target, color in zip(curve["targets"], ("tab:orange", "tab:red"), strict=False):
            ax.axhline(target["gain"], color=color, linewidth=1, label=target["name"])
        ax.set_xscale("log")
        ax.set_xlabel("HR pixels trained")
        ax.set_ylabel("PSNR-Y gain over bicubic (dB)")
        ax.set_title(name)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(curves) :]:
        ax.set_visible(False)
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
