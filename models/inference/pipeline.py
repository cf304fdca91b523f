"""The product's pipeline on uint8 images: pad, downscale to what a file carries, upscale, crop.

Sizes that are not a multiple of the model's `size_multiple` (the scale, or 4 x scale
for -M whose code is 1/4 of the LR size) are padded at the bottom and right by
mirroring (edge-repeat where the image is smaller than the pad). The LR a file carries is
always ceil(H / s) x ceil(W / s), a thumbnail of known size: for -M the LR of the padded
rows and columns is dropped (the code keeps its grid of ceil(h / 4) x ceil(w / 4) cells) and
upscaling mirrors the LR back to the code's grid before the inverse. Upscaling crops the HR
to the original size recorded with the LR.

Large images go through in equal tiles so memory stays bounded (models/inference/tiles.py):
each tile is at most `tile` LR pixels a side and carries `overlap` LR pixels of context
around the core it keeps. Each direction is planned as a list of same-kind model inputs
plus an `assemble` function, so a caller (the service's batcher) can run the inputs however
it likes.
"""

from collections.abc import Callable

import numpy as np
import torch
from torch.nn import functional as F

from models.files.downscaled import Downscaled
from models.files.images import to_tensor, to_uint8_image
from models.inference.engines import Engine, TorchEngine
from models.inference.tiles import WHOLE_IMAGE, Tiling, plan_tiles
from models.networks.latent_codec import CODE_REDUCTION
from models.networks.quantize import from_uint8, to_uint8
from models.networks.rescaler import Encoded, ModelConfig, Rescaler, lr_lengths


def padding_for(size: tuple[int, int], multiple: int) -> tuple[int, int]:
    return (-size[0]) % multiple, (-size[1]) % multiple


def pad_bottom_right(x: torch.Tensor, pad_h: int, pad_w: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, H + pad_h, W + pad_w), mirrored where possible."""
    if not pad_h and not pad_w:
        return x
    h, w = x.shape[-2:]
    mode = "reflect" if pad_h < h and pad_w < w else "replicate"
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode)


def _align(config: ModelConfig) -> int:
    return CODE_REDUCTION if config.metadata else 1


def plan_downscale(
    config: ModelConfig, image: np.ndarray, tiling: Tiling = WHOLE_IMAGE
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
        eh, ew = -(-image.shape[0] // s), -(-image.shape[1] // s)  # the thumbnail: ceil(H / s) x ceil(W / s)
        out.rgb = np.ascontiguousarray(out.rgb[:eh, :ew])
        if out.alpha is not None:
            out.alpha = np.ascontiguousarray(out.alpha[:eh, :ew])
        return out

    return inputs, assemble


def plan_upscale(
    config: ModelConfig, downscaled: Downscaled, tiling: Tiling = WHOLE_IMAGE
) -> tuple[list[Encoded], Callable[[list[torch.Tensor]], np.ndarray]]:
    """What a file carries -> inputs for `model.decode`, and how to assemble the HR (H, W, 3) uint8."""
    s, m = config.scale, config.size_multiple
    (h, w), (H, W) = downscaled.lr_size, downscaled.hr_size
    if h not in lr_lengths(H, s, m) or w not in lr_lengths(W, s, m):
        raise ValueError(f"original size {H}x{W} does not fit an LR of {h}x{w} at x{s}")
    if config.alpha and downscaled.alpha is None:
        raise ValueError(f"{config.variant} needs the alpha channel")
    pad_h, pad_w = (p // s for p in padding_for((h * s, w * s), m))  # -M: the LR mirrored out to the code's grid
    h, w = h + pad_h, w + pad_w
    rgb = pad_bottom_right(to_tensor(downscaled.rgb), pad_h, pad_w)
    alpha = None
    if downscaled.alpha is not None:
        alpha = pad_bottom_right(from_uint8(torch.from_numpy(downscaled.alpha))[None, None], pad_h, pad_w)
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


def _engine(model: Engine | Rescaler) -> Engine:
    return TorchEngine(model) if isinstance(model, Rescaler) else model


def downscale_image(model: Engine | Rescaler, image: np.ndarray, tiling: Tiling = WHOLE_IMAGE) -> Downscaled:
    """(H, W, 3) uint8 -> what a file carries, computed here one tile at a time."""
    engine = _engine(model)
    inputs, assemble = plan_downscale(engine.config, image, tiling)
    return assemble([engine.encode(x) for x in inputs])


def upscale_image(model: Engine | Rescaler, downscaled: Downscaled, tiling: Tiling = WHOLE_IMAGE) -> np.ndarray:
    """What a file carries -> (H, W, 3) uint8 at the original size."""
    engine = _engine(model)
    inputs, assemble = plan_upscale(engine.config, downscaled, tiling)
    return assemble([engine.decode(e).cpu() for e in inputs])
