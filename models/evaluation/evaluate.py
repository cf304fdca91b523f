"""`rescale eval`: the paper's Table 3 on folders of HR images, through the product's files.

Every learned row goes HR -> downscale -> file bytes -> read -> upscale with z = 0
(or the decoded -M code) -> PSNR/SSIM on BT.601 Y with `scale` border pixels cropped.
Images are first cropped to a multiple of the scale, so the bicubic row (Pillow's
antialiased bicubic down, 8-bit, bicubic up) sees exactly the same pixels.

With lossy codecs (`--lossy jpeg:90 ...`) every model whose LR is RGB gets a row per
codec through real Pillow JPEG/WebP files, and so do the bicubic thumbnail (its LR saved
in that codec) and the HR itself saved in it ("keep the original instead").

`srmd=True` adds what a user would pick instead: the same thumbnail (lossless and through each codec)
upscaled by SRMD, a learned super-resolution (models/evaluation/srmd.py); `crop` measures every row on
the centre crop of each photo, which SRMD on a CPU needs.
"""

import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from models import files
from models.evaluation import srmd as srmd_baseline
from models.evaluation.bicubic import bicubic_round_trip, bicubic_thumbnail, centre_crop, modcrop
from models.evaluation.metrics import psnr_y, ssim_y
from models.evaluation.pools import ImageSet
from models.evaluation.rate_distortion import bicubic_lossy_round_trip, lossy_copy
from models.files.containers import png_header_text, write_png
from models.files.downscaled import Downscaled
from models.files.errors import MetadataTooLargeError
from models.files.images import load_rgb
from models.inference.engine_set import EngineSet
from models.inference.engines import Engine, default_cache_dir
from models.inference.pipeline import downscale_image, upscale_image
from models.networks.rescaler import VARIANTS, Rescaler
from models.store.registry import Entry, Registry


@dataclass
class Score:
    psnr: list[float] = field(default_factory=list)
    ssim: list[float] = field(default_factory=list)
    bytes_per_px: list[float] = field(default_factory=list)
    refused: int = 0  # images the format cannot hold (e.g. a -M code over JPEG's APP1 limit)
    per_image: dict[str, float] = field(default_factory=dict)  # PSNR-Y by file stem: codecs differ per photo
    lr_psnr: list[float] = field(default_factory=list)  # the LR against the bicubic thumbnail (a model's own row)

    def add(
        self, hr: np.ndarray, out: np.ndarray, crop: int, stored_bytes: int | None = None, name: str | None = None
    ) -> None:
        self.psnr.append(psnr_y(hr, out, crop))
        if name is not None:
            self.per_image[name] = round(self.psnr[-1], 3)
        self.ssim.append(ssim_y(hr, out, crop))
        if stored_bytes is not None:
            self.bytes_per_px.append(stored_bytes / (hr.shape[0] * hr.shape[1]))

    def summary(self) -> dict:
        return {
            "psnr": float(np.mean(self.psnr)) if self.psnr else None,
            "ssim": float(np.mean(self.ssim)) if self.ssim else None,
            "bytes_per_px": float(np.mean(self.bytes_per_px)) if self.bytes_per_px else None,
            "images": len(self.psnr) + self.refused,
            "refused": self.refused,
            "per_image": self.per_image,
            **(
                {"lr_psnr": float(np.mean(self.lr_psnr)), "lr_psnr_min": float(np.min(self.lr_psnr))}
                if self.lr_psnr
                else {}
            ),
        }


DAMAGES = ("strip-metadata", "drop-alpha")


@dataclass(frozen=True)
class Method:
    """One table row: bicubic (entry None), or a model through a file format, optionally damaged; or the
    HR itself saved in a lossy format (`original`); or the bicubic thumbnail upscaled by SRMD (`srmd`)."""

    entry: Entry | None
    format: str = "png"
    quality: int = 95
    damage: str | None = None
    original: bool = False
    srmd: bool = False

    @property
    def is_own_file(self) -> bool:
        """A model's lossless file, undamaged: the row that also reports its LR as a thumbnail."""
        return self.entry is not None and self.format == "png" and self.damage is None

    @property
    def family(self) -> str:
        if self.entry is not None:
            return self.entry.label
        return "Original" if self.original else srmd_baseline.SRMD_FAMILY if self.srmd else "Bicubic"

    @property
    def name(self) -> str:
        name = self.family
        if self.format != "png":
            name += f" ({self.format} q{self.quality})"
        return name + (f" [{self.damage}]" if self.damage else "")


def damage_file(data: bytes, damage: str) -> bytes:
    """What a CDN or an image tool does to a PNG: strip its metadata, or drop its alpha."""
    with Image.open(io.BytesIO(data)) as image:
        pixels = np.array(image)
        text = png_header_text(image) or ""
    if damage == "strip-metadata":
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="PNG")
        return buffer.getvalue()
    if damage == "drop-alpha":
        return write_png(pixels[..., :3], None, text)
    raise ValueError(f"damage must be one of {', '.join(DAMAGES)}, got {damage!r}")


def reference_round_trip(
    hr: np.ndarray, scale: int, method: Method, srmd: srmd_baseline.SrmdUpscaler | None = None
) -> tuple[np.ndarray, int, int | None]:
    """(output, crop, stored bytes) of a row without a model: bicubic, its LR in a lossy file, the HR in one,
    or that LR upscaled by SRMD."""
    if method.srmd:
        out, size = (srmd or srmd_baseline.SrmdUpscaler()).round_trip(hr, scale, method.format, method.quality)
        return out, scale, size
    if method.original:
        out, size = lossy_copy(hr, method.format, method.quality)
        return out, scale, size
    if method.format == "png":
        return bicubic_round_trip(hr, scale), scale, None
    out, size = bicubic_lossy_round_trip(hr, scale, method.format, method.quality)
    return out, scale, size


def round_trip_file(
    model: Engine | Rescaler,
    entry: Entry,
    image: np.ndarray,
    method: Method | None = None,
    downscaled: Downscaled | None = None,
) -> tuple[np.ndarray, int]:
    """The product's path for one image: returns the upscaled HR and the stored file size.

    `downscaled` (from `downscale_image(model, image)`) lets several methods share one forward pass.
    """
    method = method or Method(entry)
    data = files.encode(
        downscaled if downscaled is not None else downscale_image(model, image),
        variant=entry.config.variant,
        scale=entry.config.scale,
        weights_id=entry.weights_id,
        format=method.format,
        quality=method.quality,
    )
    size = len(data)
    if method.damage:
        data = damage_file(data, method.damage)
    decoded = files.decode(data).downscaled(entry.config.scale)
    return upscale_image(model, decoded)[: image.shape[0], : image.shape[1]], size


def methods_for(
    entry: Entry,
    formats: list[str],
    damaged: bool,
    lossy: list[tuple[str, int]] | None = None,
    lossy_variants: list[str] | None = None,
) -> list[Method]:
    """Lossy-format rows: `formats` at q95 for -M, and each of `lossy` for the `lossy_variants` (default irn:
    the lossless-trained plain model and the compression-aware ones; -A needs PNG)."""
    out = []
    for fmt in formats:
        if fmt == "png" or entry.config.metadata:
            out.append(Method(entry, format=fmt))
    if entry.config.variant in (lossy_variants or ["irn"]):
        out += [Method(entry, format=f, quality=q) for f, q in lossy or [] if Method(entry, f, q) not in out]
    if damaged and entry.config.metadata:
        out.append(Method(entry, damage="strip-metadata"))
    if damaged and entry.config.alpha:
        out.append(Method(entry, damage="drop-alpha"))
    return out


def load_hr(path: Path, scale: int, crop: int | None = None) -> np.ndarray:
    """A photo as every row sees it: cropped to a multiple of the scale, or its centre crop x crop pixels."""
    image = load_rgb(path)
    return modcrop(image, scale) if crop is None else centre_crop(image, crop)


def reference_methods(lossy: list[tuple[str, int]] | None, srmd: bool) -> list[Method]:
    """The rows without a model of ours: bicubic (and its thumbnail in each codec), the HR in each codec, and
    with `srmd` the same thumbnails upscaled by SRMD."""
    codecs = lossy or []
    out = [Method(None)] + [Method(None, f, q) for f, q in codecs]
    out += [Method(None, f, q, original=True) for f, q in codecs]
    if srmd:
        out += [Method(None, srmd=True)] + [Method(None, f, q, srmd=True) for f, q in codecs]
    return out


Reusable = dict[tuple[str, int, str | None], dict[str, dict]]


def load_reusable(paths: list[Path]) -> Reusable:
    """Rows of earlier `results.json` files, keyed by (method, scale, weights id): set name -> summary.

    The weights id names the exact weights, so a row measured once stands until the weights change.
    """
    reusable: Reusable = {}
    for path in paths:
        for row in json.loads(Path(path).read_text()):
            reusable.setdefault((row["method"], row["scale"], row["weights_id"]), {}).update(row["sets"])
    return reusable


def _reused(reusable: Reusable, method: Method, scale: int, set_name: str, images: int) -> dict | None:
    weights_id = None if method.entry is None else method.entry.weights_id
    summary = reusable.get((method.name, scale, weights_id), {}).get(set_name)
    if summary is None or summary["images"] != images or (method.is_own_file and "lr_psnr" not in summary):
        return None  # rows measured before the thumbnail figure existed are measured again
    return summary


def evaluate(
    *,
    sets: list[ImageSet],
    entries: list[Entry],
    registry: Registry,
    scales: list[int],
    device: torch.device,
    limit: int | None = None,
    formats: list[str] | None = None,
    damaged: bool = False,
    lossy: list[tuple[str, int]] | None = None,
    lossy_variants: list[str] | None = None,
    reusable: Reusable | None = None,
    backend: str = "auto",
    srmd: bool = False,
    crop: int | None = None,
    log=print,
    on_rows=None,
) -> list[dict]:
    """Rows of Table 3; `on_rows(rows)` gets the rows so far after each model, so a caller can save them.

    Each model runs on the product's engine (OpenVINO on the CPU; `backend` torch: eager, no graphs to convert for
    weights seen once, like a run's snapshots), on whole images, or on the centre `crop` x `crop` pixels of each
    (name the sets after the crop: `pools.centre_crops`). `srmd` adds the SRMD rows where the package and a Vulkan
    device are present, and one log line saying why not elsewhere."""
    if crop is not None and any(crop % scale for scale in scales):
        raise ValueError(f"--crop {crop} must be a multiple of every scale ({', '.join(map(str, scales))})")
    upscaler = None
    if srmd:
        reason = srmd_baseline.unavailable_reason()
        if reason is None:
            upscaler = srmd_baseline.SrmdUpscaler()
        else:
            log(f"SRMD rows skipped: {reason}")
    rows: list[dict] = []
    engines = EngineSet(registry, backend=backend, cache_dir=default_cache_dir())
    for scale in scales:
        groups: list[tuple[Entry | None, list[Method]]] = [(None, reference_methods(lossy, upscaler is not None))]
        groups += [
            (e, methods_for(e, formats or ["png"], damaged, lossy, lossy_variants))
            for e in entries
            if e.config.scale == scale
        ]
        for entry, methods in groups:
            summaries: dict[str, list[dict]] = {}
            for image_set in sets:
                paths = image_set.paths[:limit]
                known = [_reused(reusable or {}, m, scale, image_set.name, len(paths)) for m in methods]
                if all(k is not None for k in known):
                    summaries[image_set.name] = known
                    continue
                model = None if entry is None else engines.engine(entry.weights_id, device)
                todo = [(m, Score()) for m, k in zip(methods, known, strict=True) if k is None]
                for path in paths:
                    hr = load_hr(path, scale, crop)
                    if model is None:
                        for method, score in todo:
                            score.add(hr, *reference_round_trip(hr, scale, method, upscaler), name=Path(path).stem)
                        continue
                    downscaled = downscale_image(model, hr)  # one forward pass for all of this model's rows
                    for method, score in todo:
                        if method.is_own_file:
                            score.lr_psnr.append(psnr_y(bicubic_thumbnail(hr, scale), downscaled.rgb, 0))
                        try:
                            out, size = round_trip_file(model, entry, hr, method, downscaled)
                        except MetadataTooLargeError:  # the product refuses this file too: counted, not averaged
                            score.refused += 1
                            continue
                        score.add(hr, out, scale, size, name=Path(path).stem)
                measured = iter(score.summary() for _, score in todo)
                summaries[image_set.name] = [k if k is not None else next(measured) for k in known]
            for i, method in enumerate(methods):
                row = {
                    "method": method.name,
                    "scale": scale,
                    "format": None if entry is None else method.format,
                    "damage": method.damage,
                    "weights_id": None if entry is None else entry.weights_id,
                    "sets": {name: per_method[i] for name, per_method in summaries.items()},
                }
                for name, s in row["sets"].items():
                    figures = "refused" if s["psnr"] is None else f"{s['psnr']:.2f} dB / {s['ssim']:.4f}"
                    if s.get("refused"):
                        figures += f" ({s['refused']} of {s['images']} refused)"
                    if s.get("lr_psnr") is not None:
                        figures += f", LR {s['lr_psnr']:.2f} dB from the bicubic thumbnail"
                    log(f"x{scale} {method.name:<28} {name:<12} {figures}")
                rows.append(row)
            if on_rows is not None:
                on_rows(rows)
    return rows


def markdown_table(rows: list[dict], names: list[str]) -> str:
    """Table 3: a row per method, PSNR / SSIM (gain over bicubic) and bytes per HR pixel per image set."""
    bicubic = {(r["scale"], n): r["sets"][n]["psnr"] for r in rows if r["method"] == "Bicubic" for n in names}
    head = "| Method | Scale | " + " | ".join(f"{n}: PSNR / SSIM (vs bicubic) | {n}: bytes/px" for n in names) + " |"
    lines = [head, "|---|---|" + "---|---|" * len(names)]
    for row in rows:
        cells = []
        for n in names:
            s = row["sets"][n]
            base = bicubic.get((row["scale"], n))
            bpp = "—" if s["bytes_per_px"] is None else f"{s['bytes_per_px']:.3f}"
            refused = s.get("refused", 0)
            if refused and refused == s["images"]:  # no PSNR at all
                cells += [f"all {refused} refused (code too large for the format)", bpp]
                continue
            if refused:  # an average over other images than bicubic's: no gain, the count instead
                gain = f" ({s['images'] - refused} of {s['images']}; {refused} refused: code too large)"
            else:
                gain = "" if row["method"] == "Bicubic" or base is None else f" ({s['psnr'] - base:+.2f})"
            cells += [f"{s['psnr']:.2f} / {s['ssim']:.4f}{gain}", bpp]
        lines.append(f"| {row['method']} | {row['scale']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_tables(rows: list[dict], names: list[str], out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    md, js = out / "results.md", out / "results.json"
    md.write_text(
        "# Rescaling results\n\nPSNR (dB) / SSIM on BT.601 Y, `scale` border pixels cropped, through the saved "
        "files with z = 0; bytes/px = stored file bytes per HR pixel.\n\n" + markdown_table(rows, names) + "\n"
    )
    js.write_text(json.dumps(rows, indent=2) + "\n")
    return md, js


def figure(
    *,
    image_path: Path,
    entries: list[Entry],
    registry: Registry,
    scales: list[int],
    device: torch.device,
    out: Path,
    crop: int = 96,
) -> Path:
    """A Fig.-2-style panel: the same HR crop, bicubic and each variant, labelled with PSNR-Y."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels_by_scale = []
    for scale in scales:
        hr = modcrop(load_rgb(image_path), scale)
        outs = [("HR", hr), ("Bicubic", bicubic_round_trip(hr, scale))]
        for e in (e for e in entries if e.config.scale == scale):
            outs.append((e.config.variant.upper(), round_trip_file(registry.model(e.weights_id, device), e, hr)[0]))
        panels_by_scale.append((scale, hr, outs))
    cols = max(len(p[2]) for p in panels_by_scale)
    fig, axes = plt.subplots(len(scales), cols, figsize=(2.4 * cols, 2.7 * len(scales)), squeeze=False, dpi=120)
    for r, (scale, hr, outs) in enumerate(panels_by_scale):
        h, w = hr.shape[:2]
        top, left = (h - crop) // 2, (w - crop) // 2
        for c in range(cols):
            ax = axes[r][c]
            ax.axis("off")
            if c >= len(outs):
                continue
            name, img = outs[c]
            label = name if name == "HR" else f"{name} x{scale}\n{psnr_y(hr, img, scale):.2f} dB"
            ax.imshow(img[top : top + crop, left : left + crop], interpolation="nearest")
            ax.set_title(label, fontsize=8)
    fig.suptitle(f"{image_path.name}: centre {crop}x{crop} crop, PSNR-Y of the whole image", fontsize=9)
    fig.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    path = out / "figure.png"
    fig.savefig(path)
    plt.close(fig)
    return path


def select_entries(registry: Registry, variants: list[str] | None, scales: list[int]) -> list[Entry]:
    """The weights that make new files (superseded ones keep the figures the manifest recorded for them)."""
    wanted = variants or list(VARIANTS)
    entries = [
        e
        for e in registry.entries.values()
        if e.config.variant in wanted and e.config.scale in scales and e.superseded_by is None
    ]
    order = {v: i for i, v in enumerate(VARIANTS)}
    return sorted(entries, key=lambda e: (e.config.scale, order[e.config.variant]))
