"""Rate against distortion through real Pillow codecs: the rows without a model, the table and the plot.

A point is (bits per HR pixel of the stored file, PSNR-Y of what comes back). The references are
the bicubic thumbnail (Pillow's bicubic LR saved in the codec, upscaled bicubic) and the HR
itself saved in the codec ("keep the original instead"); every model row whose LR is RGB is
measured through the same codecs (tables in evaluate.py).
"""

import io
import re
from pathlib import Path

import numpy as np
from PIL import Image

from models.evaluation.bicubic import bicubic_thumbnail

LOSSY_FORMATS = ("jpeg", "webp", "avif")
DEFAULT_LOSSY = (("jpeg", 50), ("jpeg", 75), ("jpeg", 90), ("jpeg", 95), ("webp", 75), ("webp", 90))
_ROW = re.compile(r"^(?P<family>.+?) \((?P<format>jpeg|webp|avif) q(?P<quality>\d+)\)$")


def parse_codec(text: str) -> tuple[str, int]:
    """'jpeg:90' -> ('jpeg', 90)."""
    fmt, _, quality = text.partition(":")
    if fmt not in LOSSY_FORMATS or not quality.isdigit() or not 1 <= int(quality) <= 100:
        raise ValueError(
            f"a lossy codec is FORMAT:QUALITY with FORMAT jpeg, webp or avif and QUALITY 1..100, got {text!r}"
        )
    return fmt, int(quality)


def lossy_bytes(image: np.ndarray, fmt: str, quality: int) -> bytes:
    """What Pillow writes for this codec (JPEG and AVIF: their default 4:2:0; AVIF: libavif's speed 6), no
    metadata."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=fmt.upper(), quality=quality)
    return buffer.getvalue()


def read_rgb(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB")).copy()


def lossy_copy(image: np.ndarray, fmt: str, quality: int) -> tuple[np.ndarray, int]:
    """The image through the codec, and the stored size."""
    data = lossy_bytes(image, fmt, quality)
    return read_rgb(data), len(data)


def lossy_thumbnail(hr: np.ndarray, scale: int, fmt: str, quality: int) -> tuple[np.ndarray, int]:
    """The bicubic thumbnail saved in the codec and read back, and the stored size."""
    return lossy_copy(bicubic_thumbnail(hr, scale), fmt, quality)


def bicubic_lossy_round_trip(hr: np.ndarray, scale: int, fmt: str, quality: int) -> tuple[np.ndarray, int]:
    """The bicubic thumbnail saved in the codec, upscaled bicubic (H, W multiples of `scale`)."""
    h, w = hr.shape[:2]
    lr_back, size = lossy_thumbnail(hr, scale, fmt, quality)
    return np.asarray(Image.fromarray(lr_back).resize((w, h), Image.Resampling.BICUBIC)), size


def split_row_name(method: str) -> tuple[str, tuple[str, int] | None]:
    """'IRN-JPEG (jpeg q90)' -> ('IRN-JPEG', ('jpeg', 90)); a lossless row's name -> (name, None)."""
    match = _ROW.match(method)
    return (method, None) if match is None else (match["family"], (match["format"], int(match["quality"])))


def rd_points(rows: list[dict], set_name: str) -> dict[tuple[int, str, str], list[tuple[int, float, float]]]:
    """(scale, family, format) -> [(quality, bits per HR pixel, PSNR-Y)] from the lossy rows of `rows`."""
    curves: dict[tuple[int, str, str], list[tuple[int, float, float]]] = {}
    for (scale, family, fmt, quality), summary in _lossy_summaries(rows, set_name).items():
        if summary["bytes_per_px"] is not None:
            curves.setdefault((scale, family, fmt), []).append((quality, 8 * summary["bytes_per_px"], summary["psnr"]))
    return {k: sorted(v) for k, v in curves.items()}


def _lossy_summaries(rows: list[dict], set_name: str) -> dict[tuple[int, str, str, int], dict]:
    """(scale, family, format, quality) -> the set's summary, for the undamaged lossy rows."""
    out = {}
    for row in rows:
        match = _ROW.match(row["method"])
        summary = row["sets"].get(set_name)
        if match is None or row.get("damage") or summary is None or summary["psnr"] is None:
            continue
        out[(row["scale"], match["family"], match["format"], int(match["quality"]))] = summary
    return out


def _per_photo_gain_map(own: dict, base: dict) -> dict[str, float]:
    """Photo -> PSNR-Y gain over `base`, on each photo both rows hold."""
    held = sorted(set(own["per_image"]) & set(base["per_image"]))
    return {k: own["per_image"][k] - base["per_image"][k] for k in held}


def _per_photo_gains(own: dict, base: dict) -> list[float]:
    return list(_per_photo_gain_map(own, base).values())


def _gain(own: dict, base: dict) -> tuple[float, str]:
    """Gain in PSNR-Y over `base`; where `own` holds fewer photos (a file format refused some), on its photos."""
    if not own.get("refused"):
        return own["psnr"] - base["psnr"], ""
    gains = _per_photo_gains(own, base)
    return sum(gains) / len(gains), f", {len(gains)} of {own['images']} photos"


def rd_table(rows: list[dict], set_name: str) -> str:
    """Per scale and codec: each family's PSNR-Y @ bits per HR pixel, and the gain over the bicubic thumbnail
    (on the same photos, where a format refused some)."""
    summaries = _lossy_summaries(rows, set_name)
    scales = sorted({k[0] for k in summaries})
    families = sorted({k[1] for k in summaries}, key=lambda f: (f != "Bicubic", f == "Original", f))
    head = "| Scale | Codec | " + " | ".join(f"{f}: PSNR-Y @ bits/px (vs bicubic)" for f in families) + " |"
    lines = [head, "|---|---|" + "---|" * len(families)]
    for scale in scales:
        codecs = sorted({(k[2], k[3]) for k in summaries if k[0] == scale})
        for fmt, quality in codecs:
            base = summaries.get((scale, "Bicubic", fmt, quality))
            cells = []
            for family in families:
                own = summaries.get((scale, family, fmt, quality))
                if own is None or own["bytes_per_px"] is None:
                    cells.append("—")
                    continue
                note = ""
                if family != "Bicubic" and base is not None:
                    gain, held = _gain(own, base)
                    note = f" ({gain:+.2f}{held})"
                cells.append(f"{own['psnr']:.2f} @ {8 * own['bytes_per_px']:.3f}{note}")
            lines.append(f"| x{scale} | {fmt} q{quality} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


CODEC_LINES = {"jpeg": "-", "webp": "--", "avif": ":"}


def rd_plot(rows: list[dict], set_name: str, path: Path) -> Path | None:
    """PSNR-Y against bits per HR pixel, one curve per family and codec, a panel per scale."""
    curves = rd_points(rows, set_name)
    if not curves:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scales = sorted({k[0] for k in curves})
    colours = {family: f"C{i % 10}" for i, family in enumerate(sorted({k[1] for k in curves}))}  # one per family
    fig, axes = plt.subplots(1, len(scales), figsize=(6.4 * len(scales), 4.8), squeeze=False, dpi=110)
    for ax, scale in zip(axes[0], scales, strict=True):
        for (s, family, fmt), points in sorted(curves.items()):
            if s != scale:
                continue
            _, bits, psnr = zip(*points, strict=True)
            style = CODEC_LINES[fmt]
            ax.plot(bits, psnr, style, color=colours[family], marker="o", markersize=3, label=f"{family} {fmt}")
        ax.set_xscale("log")
        ax.set_xlabel("bits per HR pixel (stored file)")
        ax.set_ylabel("PSNR-Y (dB)")
        ax.set_title(f"x{scale} on {set_name}: real Pillow JPEG (solid), WebP (dashed), AVIF (dotted)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


# PSNR-Y gain over the bicubic thumbnail at the same JPEG quality that the compression-aware models are held
# to: (scale, quality) -> dB; at q95 the bar is the lossless-trained model of the same base at q95 instead
GAIN_FLOORS = {(4, 90): 2.5, (2, 90): 3.5, (4, 75): 1.5, (2, 75): 1.5}
FLOOR_AGAINST_LOSSLESS = 95


def floor_table(rows: list[dict], set_name: str) -> str:
    """Each compression-aware model (a family ending in -JPEG) against its floor through real Pillow JPEG: the
    mean gain, and per photo the smallest gain and how many photos are above bicubic (codecs differ per photo)."""
    summaries = _lossy_summaries(rows, set_name)
    lines = [
        "| Scale | JPEG | Model | PSNR-Y (dB) | against | gain (dB) | floor (dB) | met "
        "| per photo: smallest gain, above |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    families = sorted({k[1] for k in summaries if k[1].endswith("-JPEG")})
    for scale in (2, 4):
        for quality in (75, 90, FLOOR_AGAINST_LOSSLESS):
            for family in families:
                own = summaries.get((scale, family, "jpeg", quality))
                if quality == FLOOR_AGAINST_LOSSLESS:
                    reference, floor = family.removesuffix("-JPEG"), 0.0
                else:
                    reference, floor = "Bicubic", GAIN_FLOORS.get((scale, quality))
                other = summaries.get((scale, reference, "jpeg", quality))
                if own is None or other is None or floor is None:
                    continue
                gain, held = _gain(own, other)
                per_photo = _per_photo_gains(own, other)
                above = sum(g > 0 for g in per_photo)
                lines.append(
                    f"| x{scale} | q{quality} | {family} | {own['psnr']:.2f} | {reference} {other['psnr']:.2f} | "
                    f"{gain:+.2f}{held} | {floor:+.2f} | {'yes' if gain >= floor else 'no'} | "
                    f"{min(per_photo):+.2f}, {above} of {len(per_photo)} |"
                )
    return "\n".join(lines)


def codec_gain_table(rows: list[dict], set_name: str, fmt: str) -> str:
    """Each model through the codec `fmt` against the bicubic thumbnail saved in it at the same quality: PSNR-Y @
    bits per HR pixel of both, the mean gain, and per photo the smallest and largest gain and how many gain."""
    summaries = _lossy_summaries(rows, set_name)
    lines = [
        "| Scale | Codec | Model | PSNR-Y @ bits/px | Bicubic PSNR-Y @ bits/px | gain (dB) "
        "| per photo: smallest, largest gain | photos that gain |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for scale, family, codec, quality in sorted(summaries):
        base = summaries.get((scale, "Bicubic", codec, quality))
        if codec != fmt or family in ("Bicubic", "Original") or base is None:
            continue
        own = summaries[(scale, family, codec, quality)]
        gains = _per_photo_gains(own, base)
        if not gains:
            continue
        gain, held = _gain(own, base)
        lines.append(
            f"| x{scale} | {fmt} q{quality} | {family} | {own['psnr']:.2f} @ {8 * own['bytes_per_px']:.3f} | "
            f"{base['psnr']:.2f} @ {8 * base['bytes_per_px']:.3f} | {gain:+.2f}{held} | "
            f"{min(gains):+.2f}, {max(gains):+.2f} | {sum(g > 0 for g in gains)} of {len(gains)} |"
        )
    return "\n".join(lines)


def per_photo_gain_table(rows: list[dict], set_name: str, family: str, codecs: list[str]) -> str:
    """The gain in PSNR-Y of `family` over the bicubic thumbnail in the same codec, photo by photo: a column per
    scale and codec (e.g. jpeg q90 beside avif q90), the mean and the count of photos that gain below."""
    summaries = _lossy_summaries(rows, set_name)
    columns = [
        (scale, codec, quality)
        for scale, fam, codec, quality in sorted(summaries)
        if fam == family and codec in codecs and (scale, "Bicubic", codec, quality) in summaries
    ]
    if not columns:
        return ""
    gains = {
        (scale, codec, quality): _per_photo_gain_map(
            summaries[(scale, family, codec, quality)], summaries[(scale, "Bicubic", codec, quality)]
        )
        for scale, codec, quality in columns
    }
    photos = sorted({photo for per_photo in gains.values() for photo in per_photo})
    head = "| Photo | " + " | ".join(f"x{s} {c} q{q}" for s, c, q in columns) + " |"
    lines = [head, "|---|" + "---|" * len(columns)]
    for photo in photos:
        cells = [f"{gains[c][photo]:+.2f}" if photo in gains[c] else "—" for c in columns]
        lines.append(f"| {photo} | " + " | ".join(cells) + " |")
    means = [f"{sum(gains[c].values()) / len(gains[c]):+.2f}" for c in columns]
    counts = [f"{sum(g > 0 for g in gains[c].values())} of {len(gains[c])}" for c in columns]
    lines += ["| mean | " + " | ".join(means) + " |", "| photos that gain | " + " | ".join(counts) + " |"]
    return "\n".join(lines)
