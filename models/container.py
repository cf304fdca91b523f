"""Downscaled images as PNG files that say what made them.

Layout (format 1): an 8-bit RGB PNG, or RGBA for -A whose alpha is the 4th LR channel
(codes 1..254, never fully transparent or opaque), with one zTXt chunk keyed
`rescale` holding JSON:

    {"format": 1, "variant": "irn-m", "scale": 4, "weights_id": "<16 hex>",
     "hr_size": [H, W], "lr_size": [h, w],
     "code": {"shape": [4, h/4, w/4], "zlib_b64": "..."}}   # -M only

The upscaler needs nothing else: the variant, scale and weights come from the header.
"""

import base64
import io
import json
import zlib
from dataclasses import dataclass

import numpy as np
from PIL import Image, PngImagePlugin

from models.pipeline import Downscaled

FORMAT_VERSION = 1
CHUNK_KEY = "rescale"


class ContainerError(ValueError):
    """A file that is not a valid downscaled image of this format."""


@dataclass
class Header:
    variant: str
    scale: int
    weights_id: str
    hr_size: tuple[int, int]


def write_png(downscaled: Downscaled, header: Header) -> bytes:
    meta = {
        "format": FORMAT_VERSION,
        "variant": header.variant,
        "scale": header.scale,
        "weights_id": header.weights_id,
        "hr_size": list(downscaled.hr_size),
        "lr_size": list(downscaled.lr_size),
    }
    if downscaled.code is not None:
        code = np.ascontiguousarray(downscaled.code, dtype=np.uint8)
        meta["code"] = {
            "shape": list(code.shape),
            "zlib_b64": base64.b64encode(zlib.compress(code.tobytes(), 9)).decode(),
        }
    if downscaled.alpha is not None:
        image = Image.fromarray(np.dstack([downscaled.rgb, downscaled.alpha]), mode="RGBA")
    else:
        image = Image.fromarray(downscaled.rgb, mode="RGB")
    info = PngImagePlugin.PngInfo()
    info.add_text(CHUNK_KEY, json.dumps(meta, separators=(",", ":")), zip=True)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info, compress_level=6)
    return buffer.getvalue()


def read_png(data: bytes) -> tuple[Downscaled, Header]:
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            text = image.text.get(CHUNK_KEY) if hasattr(image, "text") else None
            pixels = np.array(image.convert("RGBA" if image.mode in ("RGBA", "LA") else "RGB"))
    except (OSError, SyntaxError, ValueError) as exc:
        raise ContainerError(f"not a readable PNG: {exc}") from exc
    if text is None:
        raise ContainerError(f"no '{CHUNK_KEY}' chunk: this image was not made by `rescale downscale`")
    try:
        meta = json.loads(text)
        if meta["format"] > FORMAT_VERSION:
            raise ContainerError(f"format {meta['format']} is newer than this reader ({FORMAT_VERSION})")
        header = Header(meta["variant"], int(meta["scale"]), meta["weights_id"], tuple(meta["hr_size"]))
        code = None
        if "code" in meta:
            raw = zlib.decompress(base64.b64decode(meta["code"]["zlib_b64"], validate=True))
            code = np.frombuffer(raw, dtype=np.uint8).reshape(meta["code"]["shape"])
    except (KeyError, TypeError, ValueError, zlib.error) as exc:
        raise ContainerError(f"bad '{CHUNK_KEY}' header: {exc}") from exc
    alpha = pixels[..., 3].copy() if pixels.shape[-1] == 4 else None
    return Downscaled(rgb=pixels[..., :3].copy(), hr_size=header.hr_size, alpha=alpha, code=code), header
