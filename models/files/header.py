"""The `rescale` header: JSON that says what made a file, and the -M code it carries.

    {"format": 1, "variant": "irn-m", "scale": 4, "weights_id": "<16 hex>",
     "hr_size": [H, W], "lr_size": [h, w], "padding": [lr_h*s - H, lr_w*s - W],
     "rgb_crc32": 123, "alpha_crc32": 456,                  # lossless containers only
     "code": {"shape": [4, h/4, w/4], "dtype": "uint8", "compression": "zlib",
              "crc32": 789, "data": "<base64>"}}            # -M only

Parsing validates every field before anything is allocated from it.
"""

import base64
import binascii
import json
import re
import zlib
from dataclasses import dataclass

import numpy as np

from models.files.errors import (
    ChecksumError,
    HeaderError,
    ImageTooLargeError,
    LatentError,
    NewerFormatError,
    WeightsMismatchError,
)
from models.networks.latent_codec import CODE_CHANNELS, CODE_REDUCTION
from models.networks.rescaler import VARIANTS, lr_lengths

FORMAT_VERSION = 1
WEIGHTS_ID = re.compile(r"^[0-9a-f]{16}$")
HEADER_FIELDS_CHARS = 1024  # everything but the code's data, with room to spare


def max_header_chars(lr_height: int, lr_width: int) -> int:
    """The longest header an LR of this size can carry: an -M code (4 x ceil(h/4) x ceil(w/4) bytes) deflated
    at zlib's worst case (stored blocks) and base64'd, plus the other fields."""
    code = CODE_CHANNELS * -(-lr_height // CODE_REDUCTION) * -(-lr_width // CODE_REDUCTION)
    deflated = code + code // 1000 + 64
    return 4 * -(-deflated // 3) + HEADER_FIELDS_CHARS


@dataclass(frozen=True)
class Header:
    variant: str
    scale: int
    weights_id: str
    hr_size: tuple[int, int]
    lr_size: tuple[int, int]
    rgb_crc32: int | None = None
    alpha_crc32: int | None = None

    @property
    def padding(self) -> tuple[int, int]:
        return self.lr_size[0] * self.scale - self.hr_size[0], self.lr_size[1] * self.scale - self.hr_size[1]


def size_multiple(variant: str, scale: int) -> int:
    return scale * (CODE_REDUCTION if variant.endswith("-m") else 1)


def crc32(array: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def dump_header(header: Header, code: np.ndarray | None) -> str:
    meta: dict = {
        "format": FORMAT_VERSION,
        "variant": header.variant,
        "scale": header.scale,
        "weights_id": header.weights_id,
        "hr_size": list(header.hr_size),
        "lr_size": list(header.lr_size),
        "padding": list(header.padding),
    }
    if header.rgb_crc32 is not None:
        meta["rgb_crc32"] = header.rgb_crc32
    if header.alpha_crc32 is not None:
        meta["alpha_crc32"] = header.alpha_crc32
    if code is not None:
        raw = np.ascontiguousarray(code, dtype=np.uint8)
        meta["code"] = {
            "shape": list(raw.shape),
            "dtype": "uint8",
            "compression": "zlib",
            "crc32": zlib.crc32(raw.tobytes()),
            "data": base64.b64encode(zlib.compress(raw.tobytes(), 9)).decode("ascii"),
        }
    return json.dumps(meta, separators=(",", ":"))


def _int(meta: dict, key: str, lo: int = 0, hi: int = 2**32 - 1) -> int:
    value = meta.get(key)
    if type(value) is not int or not lo <= value <= hi:
        raise HeaderError(f"header field '{key}' must be an integer in {lo}..{hi}, got {value!r}")
    return value


def _size(meta: dict, key: str) -> tuple[int, int]:
    value = meta.get(key)
    if not isinstance(value, list) or len(value) != 2 or any(type(v) is not int or v < 1 for v in value):
        raise HeaderError(f"header field '{key}' must be [height, width] of positive integers, got {value!r}")
    return value[0], value[1]


def parse_header(
    text: str, *, max_pixels: int, image_size: tuple[int, int] | None = None
) -> tuple[Header, np.ndarray | None]:
    """Validate the header and decode the -M code; `max_pixels` bounds the declared HR size, and the size of
    the image that carries it (h, w) bounds its length before any parsing."""
    limit = max_header_chars(*image_size) if image_size is not None else max_header_chars(1, max_pixels)
    if len(text) > limit:
        raise HeaderError(
            f"header of {len(text):,} characters is over the {limit:,} that an image of this size can need"
        )
    try:
        meta = json.loads(text)
    except (ValueError, RecursionError) as exc:  # ValueError: bad JSON, or an integer of > 4,300 digits
        raise HeaderError(f"header is not valid JSON: {exc}") from exc
    if not isinstance(meta, dict):
        raise HeaderError("header must be a JSON object")
    version = _int(meta, "format", 1, 2**31)
    if version > FORMAT_VERSION:
        raise NewerFormatError(
            f"file format {version} is newer than this reader (format {FORMAT_VERSION}); upgrade rescale"
        )
    variant, scale, wid = meta.get("variant"), meta.get("scale"), meta.get("weights_id")
    if variant not in VARIANTS:
        raise HeaderError(f"header field 'variant' must be one of {', '.join(VARIANTS)}, got {variant!r}")
    if scale not in (2, 4) or type(scale) is not int:
        raise HeaderError(f"header field 'scale' must be 2 or 4, got {scale!r}")
    if not isinstance(wid, str) or not WEIGHTS_ID.match(wid):
        raise HeaderError(f"header field 'weights_id' must be 16 lowercase hex digits, got {wid!r}")
    hr, lr = _size(meta, "hr_size"), _size(meta, "lr_size")
    if hr[0] * hr[1] > max_pixels:
        raise ImageTooLargeError(f"declared original size {hr[1]}x{hr[0]} is over the {max_pixels:,}-pixel limit")
    for axis, name in ((0, "height"), (1, "width")):
        allowed = lr_lengths(hr[axis], scale, size_multiple(variant, scale))
        if lr[axis] not in allowed:
            raise HeaderError(
                f"original {name} {hr[axis]} does not fit an LR {name} of {lr[axis]} at x{scale} "
                f"(expected {allowed[0]})"
            )
    header = Header(
        variant=variant,
        scale=scale,
        weights_id=wid,
        hr_size=hr,
        lr_size=lr,
        rgb_crc32=_int(meta, "rgb_crc32") if "rgb_crc32" in meta else None,
        alpha_crc32=_int(meta, "alpha_crc32") if "alpha_crc32" in meta else None,
    )
    if "padding" in meta and meta["padding"] != list(header.padding):
        raise HeaderError(f"header padding {meta['padding']!r} disagrees with its sizes ({list(header.padding)})")
    code = meta.get("code")
    if variant.endswith("-m"):
        if code is None:
            raise LatentError(f"{variant} header carries no 'code'")
        return header, _parse_code(code, lr)
    if code is not None:
        raise HeaderError(f"{variant} files carry no 'code', but this header has one")
    return header, None


def check_weights(header: Header, variant: str, scale: int) -> None:
    """The weights a header names must be of the variant and scale it declares (it decides the inverse)."""
    if (header.variant, header.scale) != (variant, scale):
        raise WeightsMismatchError(
            f"the header says {header.variant} x{header.scale} but its weights {header.weights_id} are "
            f"{variant} x{scale}"
        )


def _parse_code(code: object, lr: tuple[int, int]) -> np.ndarray:
    if not isinstance(code, dict):
        raise LatentError("header field 'code' must be an object")
    expected = [CODE_CHANNELS, -(-lr[0] // CODE_REDUCTION), -(-lr[1] // CODE_REDUCTION)]
    if code.get("shape") != expected:
        raise LatentError(f"code shape {code.get('shape')!r} does not match the LR: expected {expected}")
    if code.get("dtype") != "uint8" or code.get("compression") != "zlib":
        raise LatentError(f"unsupported code encoding {code.get('dtype')!r}/{code.get('compression')!r}")
    data = code.get("data")
    if not isinstance(data, str):
        raise LatentError("code 'data' must be a base64 string")
    n = expected[0] * expected[1] * expected[2]
    try:
        compressed = base64.b64decode(data, validate=True)
        inflater = zlib.decompressobj()
        raw = inflater.decompress(compressed, n + 1)  # never inflate past what the shape allows
    except (binascii.Error, ValueError) as exc:
        raise LatentError(f"code is not valid base64: {exc}") from exc
    except zlib.error as exc:
        raise LatentError(f"code is not valid zlib data: {exc}") from exc
    if len(raw) != n or not inflater.eof:
        raise LatentError(f"code inflates to {len(raw)}{'+' if len(raw) > n else ''} bytes, expected {n}")
    stored = _int(code, "crc32")
    if zlib.crc32(raw) != stored:
        raise ChecksumError(f"code CRC-32 {zlib.crc32(raw):08x} does not match the stored {stored:08x}")
    return np.frombuffer(raw, dtype=np.uint8).reshape(expected).copy()
