"""The product's pipeline on uint8 images: pad, downscale to what a file carries, upscale, crop.

Sizes that are not a multiple of the model's `size_multiple` (the scale, or 4 x scale
for -M whose code is 1/4 of the LR size) are padded at the bottom and right by
mirroring (edge-repeat where the image is smaller than the pad), so the LR covers the
padded size; upscaling crops the HR back to the original size recorded with the LR.

Large images go through in tiles so memory stays bounded: the LR grid is cut into
`tile` x `tile` cores, each processed with `overlap` LR pixels of context on every side
(clipped at the image border) and only its core kept. Each direction is planned as a
list of same-kind model inputs plus an `assemble` function, so a caller (the service's
batcher) can run the inputs however it likes.
"""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from models.images import to_tensor, to_uint8_image
from models.latent_codec import CODE_REDUCTION
from models.quantize import from_uint8, to_uint8
from models.rescaler import Encoded, ModelConfig, Rescaler


@dataclass
class Downscaled:
    rgb: np.ndarray  # (h, w, 3) uint8
    hr_size: tuple[int, int]  # (H, W) before padding
    alpha: np.ndarray | None = None  # (h, w) uint8 codes in 1..254, -A
    code: np.ndarray | None = None  # (4, h/4, w/4) uint8, -M

    @property
    def lr_size(self) -> tuple[int, int]:
        return self.rgb.shape[0], self.rgb.shape[1]


def padding_for(size: tuple[int, int], multiple: int) -> tuple[int, int]:
    return (-size[0]) % multiple, (-size[1]) % multiple


def pad_bottom_right(x: torch.Tensor, pad_h: int, pad_w: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, H + pad_h, W + pad_w), mirrored where possible."""
    if not pad_h and not pad_w:
        return x
    h, w = x.shape[-2:]
    mode = "reflect" if pad_h < h and pad_w < w else "replicate"
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode)


DEFAULT_TILE_LR = 192  # what the service and the CLI use: both give the same bytes
DEFAULT_OVERLAP_LR = 24


@dataclass(frozen=True)
class Tiling:
    tile: int = 0  # LR pixels per tile side; 0 = whole image
    overlap: int = DEFAULT_OVERLAP_LR  # LR pixels of context around each tile

    def __post_init__(self) -> None:
        if self.tile < 0 or self.overlap < 0:
            raise ValueError(f"tile and overlap must be >= 0, got {self.tile} and {self.overlap}")


@dataclass(frozen=True)
class Box:
    y0: int
    y1: int
    x0: int
    x1: int

    def scaled(self, k: int) -> "Box":
        return Box(self.y0 * k, self.y1 * k, self.x0 * k, self.x1 * k)

    def divided(self, k: int) -> "Box":
        return Box(self.y0 // k, self.y1 // k, self.x0 // k, self.x1 // k)

    def within(self, outer: "Box") -> "Box":
        """This box in the coordinates of `outer`."""
        return Box(self.y0 - outer.y0, self.y1 - outer.y0, self.x0 - outer.x0, self.x1 - outer.x0)


def _round_up(x: int, m: int) -> int:
    return -(-x // m) * m


def plan_tiles(lr_size: tuple[int, int], tiling: Tiling, align: int = 1) -> list[tuple[Box, Box]]:
    """(core, context) boxes in LR pixels; boxes start on multiples of `align`."""
    h, w = lr_size
    if not tiling.tile or (h <= tiling.tile and w <= tiling.tile):
        whole = Box(0, h, 0, w)
        return [(whole, whole)]
    t, o = max(align, tiling.tile // align * align), _round_up(tiling.overlap, align)
    tiles = []
    for y0 in range(0, h, t):
        for x0 in range(0, w, t):
            core = Box(y0, min(y0 + t, h), x0, min(x0 + t, w))
            context = Box(max(0, core.y0 - o), min(h, core.y1 + o), max(0, core.x0 - o), min(w, core.x1 + o))
            tiles.append((core, context))
    return tiles


def _align(config: ModelConfig) -> int:
    return CODE_REDUCTION if config.metadata else 1


def plan_downscale(
    config: ModelConfig, image: np.ndarray, tiling: Tiling = Tiling()
) -> tuple[list[torch.Tensor], Callable[[list[Encoded]], Downscaled]]:
    """(H, W, 3) uint8 -> HR inputs (1, 3, h, w) for `model.encode`, and how to assemble their outputs."""
    s = config.scale
    hr = pad_bottom_right(to_tensor(image), *padding_for(image.shape[:2], config.size_multiple))
    lr_size = (hr.shape[-2] // s, hr.shape[-1] // s)
    tiles = plan_tiles(lr_size, tiling, _align(config))
    inputs = [hr[..., c.y0 * s : c.y1 * s, c.x0 * s : c.x1 * s] for _, c in tiles]

    def assemble(outputs: list[Encoded]) -> Downscaled:
        h, w = lr_size
        out = Downscaled(rgb=np.empty((h, w, 3), np.uint8), hr_size=(image.shape[0], image.shape[1]))
        if config.alpha:
            out.alpha = np.empty((h, w), np.uint8)
        if config.metadata:
            out.code = np.empty((4, h // CODE_REDUCTION, w // CODE_REDUCTION), np.uint8)
        for (core, context), enc in zip(tiles, outputs, strict=True):
            r = core.within(context)
            out.rgb[core.y0 : core.y1, core.x0 : core.x1] = to_uint8_image(enc.rgb[..., r.y0 : r.y1, r.x0 : r.x1])
            if out.alpha is not None:
                alpha = to_uint8(enc.alpha[0, 0, r.y0 : r.y1, r.x0 : r.x1]).cpu().numpy()
                out.alpha[core.y0 : core.y1, core.x0 : core.x1] = alpha
            if out.code is not None:
                c, rc = core.divided(CODE_REDUCTION), r.divided(CODE_REDUCTION)
                out.code[:, c.y0 : c.y1, c.x0 : c.x1] = to_uint8(enc.code[0, :, rc.y0 : rc.y1, rc.x0 : rc.x1]).cpu()
        return out

    return inputs, assemble


def plan_upscale(
    config: ModelConfig, downscaled: Downscaled, tiling: Tiling = Tiling()
) -> tuple[list[Encoded], Callable[[list[torch.Tensor]], np.ndarray]]:
    """What a file carries -> inputs for `model.decode`, and how to assemble the HR (H, W, 3) uint8."""
    s, m = config.scale, config.size_multiple
    (h, w), (H, W) = downscaled.lr_size, downscaled.hr_size
    if not (h * s - m < H <= h * s and w * s - m < W <= w * s):
        raise ValueError(f"original size {H}x{W} does not fit an LR of {h}x{w} at x{s}")
    if config.alpha and downscaled.alpha is None:
        raise ValueError(f"{config.variant} needs the alpha channel")
    rgb = to_tensor(downscaled.rgb)
    alpha = None if downscaled.alpha is None else from_uint8(torch.from_numpy(downscaled.alpha))[None, None]
    code = None if downscaled.code is None else from_uint8(torch.from_numpy(downscaled.code))[None]
    tiles = plan_tiles((h, w), tiling, _align(config))
    inputs = []
    for _, c in tiles:
        q = c.divided(CODE_REDUCTION)
        inputs.append(
            Encoded(
                rgb=rgb[..., c.y0 : c.y1, c.x0 : c.x1],
                alpha=None if alpha is None or not config.alpha else alpha[..., c.y0 : c.y1, c.x0 : c.x1],
                code=None if code is None else code[..., q.y0 : q.y1, q.x0 : q.x1],
            )
        )

    def assemble(outputs: list[torch.Tensor]) -> np.ndarray:
        hr = np.empty((h * s, w * s, 3), np.uint8)
        for (core, context), out in zip(tiles, outputs, strict=True):
            c, r = core.scaled(s), core.within(context).scaled(s)
            hr[c.y0 : c.y1, c.x0 : c.x1] = to_uint8_image(out[..., r.y0 : r.y1, r.x0 : r.x1])
        return hr[:H, :W]

    return inputs, assemble


def _device(model: Rescaler) -> torch.device:
    return next(model.parameters()).device


def downscale_image(model: Rescaler, image: np.ndarray, tiling: Tiling = Tiling()) -> Downscaled:
    """(H, W, 3) uint8 -> what a file carries, computed here one tile at a time."""
    inputs, assemble = plan_downscale(model.config, image, tiling)
    return assemble([model.encode(x.to(_device(model))) for x in inputs])


def upscale_image(model: Rescaler, downscaled: Downscaled, tiling: Tiling = Tiling()) -> np.ndarray:
    """What a file carries -> (H, W, 3) uint8 at the original size."""
    inputs, assemble = plan_upscale(model.config, downscaled, tiling)
    device = _device(model)
    return assemble([model.decode(e.to(device)) for e in inputs])
