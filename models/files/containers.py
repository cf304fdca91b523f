"""Pixels + header text in PNG (zTXt chunks), JPEG, WebP and AVIF (EXIF UserComment: written with piexif into
JPEG/WebP, handed to Pillow's AVIF encoder as its EXIF item).

Readers check the declared pixel count before decoding anything, and turn every decoder
failure into a FileFormatError subclass.
"""

import io
import struct
import threading
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import piexif
import piexif.helper
from PIL import ExifTags, Image, PngImagePlugin

from models.files.errors import (
    CorruptFileError,
    FileFormatError,
    HeaderError,
    ImageTooLargeError,
    MetadataTooLargeError,
    NotRescaledError,
    TruncatedFileError,
    UnsupportedFormatError,
)
from models.files.header import max_header_chars

CHUNK_KEY = "rescale"
PNG_PART_CHARS = 512 << 10  # each zTXt chunk stays well under Pillow's 1 MiB MAX_TEXT_CHUNK
JPEG_MAX_EXIF = 65533  # APP1 payload: 65535 minus the 2-byte length field
SOFTWARE = b"rescale"
PILLOW_FORMATS = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP", "avif": "AVIF"}


def sniff(data: bytes) -> str:
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[4:8] == b"ftyp":
        return sniff_isobmff(data)
    raise UnsupportedFormatError("not a PNG, JPEG, WebP or AVIF file")


AVIF_BRANDS = (b"avif", b"avis")  # still image, image sequence; HEIC's are heic, heix, hevc, ... (HEVC, not AV1)


def sniff_isobmff(data: bytes) -> str:
    """AVIF is an ISO-BMFF file whose `ftyp` box names `avif` or `avis` as its major or a compatible brand
    (`mif1` alone is the HEIF container, which HEIC shares)."""
    (size,) = struct.unpack(">I", data[:4])
    if size > len(data):
        raise TruncatedFileError(f"truncated ISO-BMFF file: it ends inside its {size}-byte ftyp box")
    if size < 16 or size % 4:
        raise CorruptFileError(f"ISO-BMFF file with a broken ftyp box of {size} bytes")
    major, compatible = data[8:12], [data[i : i + 4] for i in range(16, size, 4)]
    if major in AVIF_BRANDS or any(brand in AVIF_BRANDS for brand in compatible):
        return "avif"
    brands = ", ".join(b.decode("latin-1") for b in [major, *compatible])
    raise UnsupportedFormatError(f"not a PNG, JPEG, WebP or AVIF file (an ISO-BMFF file of brands {brands}: HEIC?)")


# -- writing -------------------------------------------------------------------------------


def write_png(rgb: np.ndarray, alpha: np.ndarray | None, text: str) -> bytes:
    image = Image.fromarray(rgb, "RGB") if alpha is None else Image.fromarray(np.dstack([rgb, alpha]), "RGBA")
    info = PngImagePlugin.PngInfo()
    parts = [text[i : i + PNG_PART_CHARS] for i in range(0, len(text), PNG_PART_CHARS)] or [""]
    for i, part in enumerate(parts):
        info.add_text(CHUNK_KEY if i == 0 else f"{CHUNK_KEY}/{i}", part, zip=True)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info, compress_level=6)
    return buffer.getvalue()


def exif_bytes(text: str) -> bytes:
    return piexif.dump(
        {
            "0th": {piexif.ImageIFD.Software: SOFTWARE},
            "Exif": {piexif.ExifIFD.UserComment: piexif.helper.UserComment.dump(text, encoding="ascii")},
        }
    )


def write_lossy(rgb: np.ndarray, text: str, fmt: str, quality: int) -> bytes:
    """JPEG, WebP or AVIF with the header in EXIF; JPEG's single APP1 segment caps it at 64 KB. WebP's EXIF
    chunk and AVIF's EXIF item have 32-bit sizes, as has the TIFF structure inside: 4 GiB, far past the longest
    header (an -M code at the pixel limit is a few MB)."""
    exif = exif_bytes(text)
    if fmt == "jpeg" and len(exif) > JPEG_MAX_EXIF:
        raise MetadataTooLargeError(
            f"the header needs {len(exif):,} bytes of EXIF but a JPEG APP1 segment holds {JPEG_MAX_EXIF:,}; "
            "use format png, webp or avif, or a smaller image"
        )
    if fmt == "avif":  # an item of the file, not a segment piexif can splice in
        buffer = io.BytesIO()
        Image.fromarray(rgb, "RGB").save(buffer, format="AVIF", quality=quality, exif=exif)
        return buffer.getvalue()
    buffer = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buffer, format=PILLOW_FORMATS[fmt], quality=quality)
    out = io.BytesIO()
    piexif.insert(exif, buffer.getvalue(), out)
    return out.getvalue()


# -- reading -------------------------------------------------------------------------------


def png_header_text(image: Image.Image, *, before_pixels: bool = False) -> str | None:
    """The header text of a PNG, joined from its `rescale`, `rescale/1`, ... chunks; None if absent.

    `before_pixels`: only the chunks before the image data, without decoding it (Pillow's `text` loads the
    image to find chunks after it too)."""
    text = image.info if before_pixels else getattr(image, "text", {})
    if CHUNK_KEY not in text:
        return None
    parts, i = [text[CHUNK_KEY]], 1
    while f"{CHUNK_KEY}/{i}" in text:
        parts.append(text[f"{CHUNK_KEY}/{i}"])
        i += 1
    return "".join(parts)


USER_COMMENT_ASCII = b"ASCII\x00\x00\x00"  # the 8-byte character-code prefix of an EXIF UserComment


def _exif_text(image: Image.Image) -> str | None:
    """The header from EXIF, read with Pillow's reader: it skips entries whose declared size is larger
    than the data (piexif compiles a struct format as long as any declared count, and CPython caches it)."""
    raw = image.info.get("exif")
    if not raw:
        return None
    exif = Image.Exif()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Tag data larger than file": that entry is skipped
            exif.load(raw)
            software = exif.get(ExifTags.Base.Software)
            comment = exif.get_ifd(ExifTags.IFD.Exif).get(ExifTags.Base.UserComment)
    except (SyntaxError, ValueError, KeyError, IndexError, TypeError, struct.error, OSError) as exc:
        raise CorruptFileError(f"unreadable EXIF: {type(exc).__name__}: {exc}") from exc
    if software != SOFTWARE.decode() or comment is None:
        return None  # EXIF from elsewhere (a camera, an editor): not ours
    if not isinstance(comment, bytes) or not comment.startswith(USER_COMMENT_ASCII):
        raise CorruptFileError("the rescale header in EXIF must be an ASCII UserComment")
    try:
        return comment[len(USER_COMMENT_ASCII) :].decode("ascii")
    except UnicodeDecodeError as exc:
        raise CorruptFileError(f"the rescale header in EXIF is not ASCII: {exc}") from exc


@contextmanager
def decoder_errors(fmt: str) -> Iterator[None]:
    """Every way Pillow fails on a stream, as the FileFormatError that names it."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # e.g. EXIF entries larger than the file: skipped
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except FileFormatError:  # already says what is wrong
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLargeError(f"image is over the pixel limit: {exc}") from exc
    except Image.UnidentifiedImageError as exc:  # its message names a BytesIO object: say what it means
        raise CorruptFileError(f"cannot decode {fmt.upper()}: its structure is not a readable {fmt.upper()}") from exc
    except OSError as exc:
        if "truncated" in str(exc):
            raise TruncatedFileError(f"truncated {fmt.upper()}: {exc}") from exc
        raise CorruptFileError(f"cannot decode {fmt.upper()}: {exc}") from exc
    except (SyntaxError, ValueError, zlib.error, EOFError, struct.error) as exc:
        raise CorruptFileError(f"cannot decode {fmt.upper()}: {exc}") from exc
    except RuntimeError as exc:  # Pillow's AVIF plugin reports libavif's parse errors so
        raise CorruptFileError(f"cannot decode {fmt.upper()}: {exc}") from exc


def open_image(data: bytes, *, max_pixels: int) -> tuple[str, Image.Image]:
    """Sniff and open lazily; the pixel count comes from the header and is checked before any decoding.

    Call inside `decoder_errors(fmt)`; the caller decodes with `load()`.
    """
    fmt = sniff(data)
    if fmt == "avif":
        check_avif_boxes(data)  # libavif reads a cut-off file as unidentifiable: say what is wrong first
    image = Image.open(io.BytesIO(data), formats=[PILLOW_FORMATS[fmt]])
    width, height = image.size
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"image of {width}x{height} ({width * height:,} pixels) is over the {max_pixels:,}-pixel limit"
        )
    check_plausible(data, fmt, width, height)
    return fmt, image


# The fewest bytes a complete file of w x h pixels can have: JPEG codes at least one bit per 8x8 block
# of one component (a flat grey progressive JPEG at quality 1 takes 254 pixels per byte), and deflate
# expands at most 1032:1 the raw rows of at least one bit per pixel. WebP has no such floor (a flat
# lossless WebP is a few bytes), nor has AVIF; their cost is bounded by the pixel limit alone.
PIXELS_PER_BYTE_MAX = {"jpeg": 512, "png": 8 * 1032}


def check_plausible(data: bytes, fmt: str, width: int, height: int) -> None:
    """Refuse files that declare far more pixels than their data can hold, and JPEGs whose scan has no end
    marker: decoders fill what is missing, so such files cost the full decode and model time of their
    declared size for a few hundred bytes."""
    if fmt == "jpeg":
        last_scan = data.rfind(b"\xff\xda")
        if last_scan < 0 or data.find(b"\xff\xd9", last_scan) < 0:  # 0xFFD9 cannot occur inside scan data
            raise TruncatedFileError("truncated JPEG: the scan data ends before the end-of-image marker")
    ratio = PIXELS_PER_BYTE_MAX.get(fmt)
    if ratio is not None and len(data) * ratio < width * height:
        raise CorruptFileError(
            f"{len(data):,} bytes cannot hold a complete {width}x{height} {fmt.upper()} (at least "
            f"{-(-width * height // ratio):,} are needed): the file is truncated or crafted"
        )


def check_avif_boxes(data: bytes) -> None:
    """The top-level boxes (ftyp, meta, mdat, ...) must tile the file: a file cut short ends inside one."""
    offset = 0
    while offset < len(data):
        if len(data) - offset < 8:
            raise TruncatedFileError(
                f"truncated AVIF: the file ends {len(data) - offset} bytes into the box header at byte {offset:,}"
            )
        size, kind = struct.unpack(">I4s", data[offset : offset + 8])
        header = 8
        if size == 1:  # a 64-bit size follows the type
            if len(data) - offset < 16:
                raise TruncatedFileError(
                    f"truncated AVIF: the file ends {len(data) - offset} bytes into the box header at byte {offset:,}"
                )
            (size,) = struct.unpack(">Q", data[offset + 8 : offset + 16])
            header = 16
        elif size == 0:  # the box runs to the end of the file
            size = len(data) - offset
        name = kind.decode("latin-1")
        if size < header:
            raise CorruptFileError(f"corrupt AVIF: box {name!r} at byte {offset:,} declares {size} bytes")
        if offset + size > len(data):
            raise TruncatedFileError(
                f"truncated AVIF: box {name!r} at byte {offset:,} declares {size:,} bytes but the file ends "
                f"{len(data) - offset:,} bytes after its start"
            )
        offset += size


_PNG_TEXT_LIMIT = threading.Lock()


def _png_size(data: bytes) -> tuple[int, int] | None:
    """(h, w) from a PNG's IHDR, which comes first: known before any text chunk is inflated."""
    if len(data) < 24 or data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", data[16:24])
    return height, width


def _open_with_text_limit(data: bytes, *, max_pixels: int) -> Image.Image:
    """Open a PNG with Pillow's cap on inflated text set to the longest header its size can need (Pillow's
    default, 64 MB, let a 64 KB file cost seconds of inflating and parsing)."""
    size = _png_size(data)
    if size is None or size[0] * size[1] > max_pixels:
        return open_image(data, max_pixels=max_pixels)[1]  # refused or failed there, with its own message
    with _PNG_TEXT_LIMIT:  # the cap is a module global of Pillow's
        saved = PngImagePlugin.MAX_TEXT_MEMORY
        PngImagePlugin.MAX_TEXT_MEMORY = max_header_chars(*size)
        try:
            return open_image(data, max_pixels=max_pixels)[1]
        except ValueError as exc:
            if "Too much memory used in text chunks" in str(exc):
                raise HeaderError(
                    f"the text chunks are over the {max_header_chars(*size):,} characters that a header of a "
                    f"{size[1]}x{size[0]} image can need"
                ) from exc
            raise
        finally:
            PngImagePlugin.MAX_TEXT_MEMORY = saved


def read_image(
    data: bytes, *, max_pixels: int, missing_header: str | None = None
) -> tuple[str, np.ndarray, np.ndarray | None, str | None]:
    """-> (format, RGB (h, w, 3) uint8, alpha (h, w) uint8 or None, header text or None).

    `missing_header`: a file without header raises NotRescaledError with this message before any pixel is
    decoded (PNG text chunks before the image data, where ours are, and EXIF are read when it is opened)."""
    fmt = sniff(data)
    with decoder_errors(fmt):
        if fmt == "png":
            image = _open_with_text_limit(data, max_pixels=max_pixels)
        else:
            _, image = open_image(data, max_pixels=max_pixels)
        if missing_header is not None:
            opened = png_header_text(image, before_pixels=True) if fmt == "png" else _exif_text(image)
            if opened is None:
                raise NotRescaledError(missing_header)
        image.load()
    text = png_header_text(image) if fmt == "png" else _exif_text(image)
    has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    pixels = np.array(image.convert("RGBA" if has_alpha else "RGB"))
    alpha = pixels[..., 3].copy() if has_alpha else None
    return fmt, np.ascontiguousarray(pixels[..., :3]), alpha, text
