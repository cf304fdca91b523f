"""`rescale pool`: a training pool of photographs built from pinned Debian packages.

The packages, versions, files and licences live in `pool_sources.toml`. Every file taken is decoded,
shrunk by an integer factor (Lanczos) to at most `MAX_PIXELS`, stored as an RGB PNG and listed in
`SOURCES.csv` beside it. Files that are too small, flat graphics, grey, an exact or near duplicate of an
earlier photo, or a near duplicate of any evaluation photo are left out and counted. The same pinned
packages give the same files.
"""

import argparse
import csv
import fnmatch
import hashlib
import io
import re
import shutil
import tempfile
import time
import tomllib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image, ImageOps

from models.files.images import list_images, load_rgb
from models.training import debian_packages
from models.training.near_duplicates import Match, NearDuplicateIndex, fingerprint
from models.training.qt_resources import resource_files

DEFAULT_SOURCES = Path(__file__).with_name("pool_sources.toml")
SOURCES_CSV = "SOURCES.csv"
MAX_PIXELS = 2_100_000  # the stored size, as in ../shared/data (2560x1600 wallpapers become 1280x800)
MIN_SIDE = 256
MIN_DISTINCT_COLOURS = 4096  # photos of 256x256 and more have tens of thousands; flat graphics a few hundred
MAX_FLAT_BLOCKS = 0.6  # share of 4x4 blocks of one exact colour; the smoothest bokeh photo here has 0.47
MIN_COLOURFULNESS = 1.5  # see colourfulness(): greyscale and sepia photos have about 0
BUNDLE_SUFFIX = ".rcc"

UNREADABLE = "unreadable"
TOO_SMALL = "too small"
NOT_A_PHOTO = "not a photo"
GREY = "grey"
DUPLICATE = "duplicate"
NEAR_DUPLICATE = "near-duplicate in pool"
NEAR_EVAL = "near-duplicate of eval"
SKIP_REASONS = (UNREADABLE, TOO_SMALL, NOT_A_PHOTO, GREY, DUPLICATE, NEAR_DUPLICATE, NEAR_EVAL)


@dataclass(frozen=True)
class Source:
    """Files of one package version under one licence."""

    package: str
    version: str
    licence: str
    files: tuple[str, ...]
    exclude: tuple[str, ...] = ()


@dataclass(frozen=True)
class PoolEntry:
    """One row of SOURCES.csv."""

    file: str
    debian_package: str
    version: str
    path_in_package: str
    original_size: str
    stored_size: str
    licence: str
    source_sha256: str


SOURCES_COLUMNS = tuple(f.name for f in fields(PoolEntry))


def _check_pattern(pattern: str, where: str) -> str:
    segments = pattern.split("/")
    if pattern.startswith("/") or any(s in ("", ".", "..", "**") for s in segments):
        raise ValueError(f"{where}: {pattern!r} must be a relative path without empty, '.', '..' or '**' segments")
    return pattern


def load_sources(path: Path) -> list[Source]:
    """The [[source]] tables of a pool sources file, `folder` joined to their paths."""
    with open(path, "rb") as f:
        tables = tomllib.load(f).get("source", [])
    if not tables:
        raise ValueError(f"{path} has no [[source]] tables")
    sources = []
    for number, table in enumerate(tables, start=1):
        where = f"{path}, source {number}"
        unknown = set(table) - {"package", "version", "licence", "folder", "files", "exclude"}
        if unknown:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
        missing = [key for key in ("package", "version", "licence", "files") if not table.get(key)]
        if missing:
            raise ValueError(f"{where}: {', '.join(missing)} missing or empty")
        folder = table.get("folder", "").strip("/")

        def joined(patterns: list[str], where: str = where, folder: str = folder) -> tuple[str, ...]:
            return tuple(_check_pattern(f"{folder}/{p}" if folder else p, where) for p in patterns)

        sources.append(
            Source(
                package=table["package"],
                version=table["version"],
                licence=table["licence"],
                files=joined(table["files"]),
                exclude=joined(table.get("exclude", [])),
            )
        )
    return sources


def matched_segments(pattern: str, path: str) -> list[str] | None:
    """The path segments the pattern's wildcard segments matched ([] without wildcards); None: no match."""
    pattern_parts, path_parts = pattern.split("/"), path.split("/")
    if len(pattern_parts) != len(path_parts):
        return None
    if not all(fnmatch.fnmatchcase(part, glob) for part, glob in zip(path_parts, pattern_parts, strict=True)):
        return None
    return [part for part, glob in zip(path_parts, pattern_parts, strict=True) if any(c in glob for c in "*?[")]


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-.")


def output_name(package: str, path: str, matched: list[str]) -> str:
    """`<package>[-<bundle>]-<what the wildcards matched, else the file's stem>.png`, lower case."""
    parts = [package]
    bundles = [segment for segment in path.split("/")[:-1] if segment.endswith(BUNDLE_SUFFIX)]
    if bundles:
        parts.append(PurePosixPath(bundles[0]).stem)
    file_name = path.rsplit("/", 1)[-1]
    if matched and matched[-1] == file_name:
        matched = [*matched[:-1], PurePosixPath(file_name).stem]
    parts.extend(matched or [PurePosixPath(file_name).stem])
    return "-".join(_slug(p) for p in parts) + ".png"


def _split_at_bundle(pattern: str) -> tuple[str, str | None]:
    """(pattern of the file on disk, pattern of a file inside its Qt resource bundle, if any)."""
    segments = pattern.split("/")
    for i, segment in enumerate(segments[:-1]):
        if segment.endswith(BUNDLE_SUFFIX):
            return "/".join(segments[: i + 1]), "/".join(segments[i + 1 :])
    return pattern, None


def package_files(root: Path, source: Source) -> Iterator[tuple[str, list[str], bytes]]:
    """(path in the package, segments its wildcards matched, contents) of the source's files, sorted by path."""
    on_disk = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    found: dict[str, tuple[list[str], Callable[[], bytes]]] = {}
    bundles: dict[str, list[tuple[str, bytes]]] = {}
    for pattern in source.files:
        outer, inner = _split_at_bundle(pattern)
        for path in on_disk:
            outer_matched = matched_segments(outer, path)
            if outer_matched is None:
                continue
            if inner is None:
                found.setdefault(path, (outer_matched, (root / path).read_bytes))
                continue
            if path not in bundles:
                bundles[path] = list(resource_files((root / path).read_bytes()))
            for member, contents in bundles[path]:
                inner_matched = matched_segments(inner, member)
                if inner_matched is not None:
                    found.setdefault(f"{path}/{member}", (outer_matched + inner_matched, lambda c=contents: c))
    for path in sorted(found):
        if not any(matched_segments(pattern, path) is not None for pattern in source.exclude):
            matched, read = found[path]
            yield path, matched, read()


def shrink(image: Image.Image, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Shrunk by the smallest integer factor that brings it to max_pixels (right/bottom cut to a multiple)."""
    width, height = image.size
    factor = 1
    while (width // factor) * (height // factor) > max_pixels:
        factor += 1
    if factor == 1:
        return image
    kept = image.crop((0, 0, width // factor * factor, height // factor * factor))
    return kept.resize((width // factor, height // factor), Image.LANCZOS, reducing_gap=3.0)


def colourfulness(image: np.ndarray) -> float:
    """The spread of the chroma (Cb, Cr, 8-bit units) that a straight line in luma does not explain.

    About 0 for greyscale and for tinted monochrome (sepia: chroma grows with brightness); 2.4 and
    more for the colour photos of the shipped sources.
    """
    sample = np.ascontiguousarray(image[::2, ::2])  # a quarter of the pixels estimate a spread as well
    ycc = np.asarray(Image.fromarray(sample).convert("YCbCr"), dtype=np.float64).reshape(-1, 3)
    luma = np.stack([ycc[:, 0], np.ones(len(ycc))], axis=1)
    residuals = [ycc[:, c] - luma @ np.linalg.lstsq(luma, ycc[:, c], rcond=None)[0] for c in (1, 2)]
    return float(np.hypot(*(r.std() for r in residuals)))


def flat_block_share(image: np.ndarray, block: int = 4) -> float:
    """The share of block x block tiles that are one exact colour (drawings, renders, padding)."""
    height, width = (image.shape[0] // block) * block, (image.shape[1] // block) * block
    tiles = image[:height, :width].reshape(height // block, block, width // block, block, 3)
    return float(np.mean((tiles.max(axis=(1, 3)) == tiles.min(axis=(1, 3))).all(axis=-1)))


def distinct_colours(image: np.ndarray) -> int:
    rgb = image.astype(np.uint32)
    return len(np.unique((rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]))


def photo_rejection(image: np.ndarray) -> str | None:
    """Why an (H, W, 3) uint8 image is no training photo (TOO_SMALL, NOT_A_PHOTO, GREY), or None."""
    if min(image.shape[:2]) < MIN_SIDE:
        return TOO_SMALL
    if flat_block_share(image) > MAX_FLAT_BLOCKS:
        return NOT_A_PHOTO
    if colourfulness(image) < MIN_COLOURFULNESS:  # before the colour count: grey has at most 256 colours
        return GREY
    if distinct_colours(image) < MIN_DISTINCT_COLOURS:
        return NOT_A_PHOTO
    return None


def decode_photo(data: bytes) -> tuple[np.ndarray | None, tuple[int, int], str | None]:
    """(stored RGB pixels or None, original (width, height), why it is not taken or None)."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            size = im.size
            if im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info:
                if im.convert("RGBA").getchannel("A").getextrema()[0] < 255:
                    return None, size, NOT_A_PHOTO  # a cut-out: a photo has no transparent pixels
            rgb = ImageOps.exif_transpose(im).convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None, (0, 0), UNREADABLE
    pixels = np.asarray(shrink(rgb))
    return pixels, size, photo_rejection(pixels)


def write_sources_csv(path: Path, entries: list[PoolEntry]) -> None:
    """SOURCES.csv: one row per stored photo, sorted by file name."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(SOURCES_COLUMNS)
        for entry in sorted(entries, key=lambda e: e.file):
            writer.writerow([getattr(entry, column) for column in SOURCES_COLUMNS])


def read_sources_csv(path: Path) -> list[PoolEntry]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if rows and tuple(rows[0]) != SOURCES_COLUMNS:
        raise ValueError(f"{path}: columns {tuple(rows[0])}, expected {SOURCES_COLUMNS}")
    return [PoolEntry(**row) for row in rows]


def _figures(match: Match) -> str:
    return f"hash {match.hash_distance} bits apart, thumbnail PSNR {match.psnr:.1f} dB"


def _size(width: int, height: int) -> str:
    return f"{width}x{height}"


@dataclass
class PoolSummary:
    out: Path
    packages: dict[str, str] = field(default_factory=dict)  # package -> version
    seen: Counter = field(default_factory=Counter)  # files matched, per package
    taken: Counter = field(default_factory=Counter)  # photos stored, per package
    skipped: Counter = field(default_factory=Counter)  # per reason
    megapixels: float = 0.0
    eval_photos: int = 0
    closest_to_eval: tuple[str, str, Match] | None = None  # the taken photo nearest to any eval photo
    seconds: float = 0.0

    def lines(self) -> list[str]:
        out = [f"{'package':<30} {'version':<40} {'files':>5} {'taken':>5}"]
        out += [f"{p:<30} {v:<40} {self.seen[p]:>5} {self.taken[p]:>5}" for p, v in sorted(self.packages.items())]
        out.append(
            f"{len(self.packages)} packages: {sum(self.seen.values())} files seen, {sum(self.taken.values())} "
            f"photos taken ({self.megapixels:.1f} MP) in {self.out}, {self.seconds:.0f} s"
        )
        out.append("skipped: " + ", ".join(f"{reason} {self.skipped[reason]}" for reason in SKIP_REASONS))
        check = f"near-duplicate check against {self.eval_photos} eval photos: {self.skipped[NEAR_EVAL]} dropped"
        if self.closest_to_eval is not None:
            name, other, match = self.closest_to_eval
            check += f"; closest kept pair {name} ~ {other} ({_figures(match)})"
        return [*out, check]


def _repeated(
    digest: str,
    taken_digests: dict[str, str],
    near_eval: tuple[str, Match] | None,
    near_pool: tuple[str, Match] | None,
) -> tuple[str | None, str]:
    """(DUPLICATE, NEAR_EVAL, NEAR_DUPLICATE or None, which photo it repeats) for a photo that passed the filter."""
    if digest in taken_digests:
        return DUPLICATE, f" of {taken_digests[digest]}"
    if near_eval is not None and near_eval[1].is_near_duplicate:
        return NEAR_EVAL, f" {near_eval[0]} ({_figures(near_eval[1])})"
    if near_pool is not None and near_pool[1].is_near_duplicate:
        return NEAR_DUPLICATE, f" of {near_pool[0]} ({_figures(near_pool[1])})"
    return None, ""


def _check_replaceable(out: Path) -> None:
    """A new pool may replace an earlier pool or an empty folder, never another kind of folder."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} is a file, not a pool folder to replace")
    if out.is_dir() and any(out.iterdir()) and not (out / SOURCES_CSV).is_file():
        raise ValueError(f"{out} is not empty and holds no {SOURCES_CSV}: not a pool folder to replace")


def _replace_folder(staging: Path, out: Path) -> None:
    _check_replaceable(out)
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)


def build_pool(
    sources: list[Source],
    out: Path,
    eval_dirs: list[Path],
    debs: Path | None = None,
    log: Callable[[str], None] = print,
) -> PoolSummary:
    """Download, select and store the photos of `sources` in `out`, with SOURCES.csv; what was done."""
    started = time.monotonic()
    _check_replaceable(out)
    summary = PoolSummary(out=out)
    eval_index = NearDuplicateIndex()
    for folder in eval_dirs:
        for path in list_images(folder):
            eval_index.add(path.name, fingerprint(load_rgb(path)))
    summary.eval_photos = len(eval_index)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    pool_index, entries, pixel_digests, names = NearDuplicateIndex(), [], {}, {}
    with tempfile.TemporaryDirectory(prefix="rescale-pool-") as work:
        unpacked: dict[tuple[str, str], Path] = {}
        for source in sources:
            key = (source.package, source.version)
            if key not in unpacked:
                log(f"{source.package}={source.version}")
                deb = debian_packages.download(*key, debs or Path(work) / "debs")
                unpacked[key] = debian_packages.unpack(deb, Path(work) / "files" / f"{len(unpacked)}")
                summary.packages[source.package] = source.version
            for path, matched, data in package_files(unpacked[key], source):
                name = output_name(source.package, path, matched)
                if name in names:
                    raise ValueError(f"{source.package}:/{path} and {names[name]} would both be stored as {name}")
                names[name] = f"{source.package}:/{path}"
                summary.seen[source.package] += 1
                pixels, size, reason = decode_photo(data)
                detail = ""
                if reason is None:
                    digest = hashlib.sha256(pixels.tobytes() + str(pixels.shape).encode()).hexdigest()
                    print_ = fingerprint(pixels)
                    near_eval = eval_index.closest(print_)
                    reason, detail = _repeated(digest, pixel_digests, near_eval, pool_index.closest(print_))
                if reason is not None:
                    summary.skipped[reason] += 1
                    log(f"  skip {source.package}:/{path}: {reason}{detail}")
                    continue
                if near_eval is not None and (
                    summary.closest_to_eval is None or near_eval[1].psnr > summary.closest_to_eval[2].psnr
                ):
                    summary.closest_to_eval = (name, near_eval[0], near_eval[1])
                pixel_digests[digest] = name
                pool_index.add(name, print_)
                Image.fromarray(pixels).save(staging / name, format="PNG")
                height, width = pixels.shape[:2]
                summary.taken[source.package] += 1
                summary.megapixels += width * height / 1e6
                entries.append(
                    PoolEntry(
                        file=name,
                        debian_package=source.package,
                        version=source.version,
                        path_in_package=f"/{path}",
                        original_size=_size(*size),
                        stored_size=_size(width, height),
                        licence=source.licence,
                        source_sha256=hashlib.sha256(data).hexdigest(),
                    )
                )
    write_sources_csv(staging / SOURCES_CSV, entries)
    _replace_folder(staging, out)
    summary.seconds = time.monotonic() - started
    return summary


def add_pool_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--out", default="runs/pool", help="folder for the photos and SOURCES.csv; an earlier pool is replaced"
    )
    p.add_argument("--sources", type=Path, default=DEFAULT_SOURCES, help="the pinned packages and their files")
    p.add_argument(
        "--eval",
        nargs="+",
        default=["../shared/data/eval"],
        help="folders of evaluation photos: a pool photo that nearly duplicates one of them is dropped",
    )
    p.add_argument(
        "--debs",
        type=Path,
        default=None,
        help="keep the downloaded .deb files here and reuse them (default: a temporary folder, removed at the end)",
    )


def run_pool(args: argparse.Namespace, log: Callable[[str], None] = print) -> PoolSummary:
    evaluation = [Path(folder) for folder in args.eval]
    summary = build_pool(load_sources(args.sources), Path(args.out), eval_dirs=evaluation, debs=args.debs, log=log)
    for line in summary.lines():
        log(line)
    return summary
