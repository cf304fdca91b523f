"""Cutting an LR grid into equal tiles, each with enough context that its core matches whole-image work.

Every tile of an image has the same size (so tiles batch together and a compiled graph sees one
shape), no side larger than `tile`. Tiles are spread evenly from edge to edge: neighbours overlap
by at least twice the context, each keeps the middle of that overlap as its core, and a tile at the
border reaches the border instead of padding. The work done is n * size per axis, against the
length of the image: 1 + 2 * overlap * (n - 1) / length.
"""

import itertools
from dataclasses import dataclass


@dataclass(frozen=True)
class Tiling:
    tile: int = 0  # the largest model input side in LR pixels; 0 = whole image
    overlap: int = 24  # LR pixels of context a core needs on each side (per model: see models/inference/context.py)

    def __post_init__(self) -> None:
        if self.tile < 0 or self.overlap < 0:
            raise ValueError(f"tile and overlap must be >= 0, got {self.tile} and {self.overlap}")
        if self.tile and self.tile <= 2 * self.overlap:
            raise ValueError(f"a tile of {self.tile} LR px leaves no core with {self.overlap} px of context each side")


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

    @property
    def area(self) -> int:
        return (self.y1 - self.y0) * (self.x1 - self.x0)


def _round_up(x: int, m: int) -> int:
    return -(-x // m) * m


Span = tuple[int, int, int, int]  # core start, core end, context start, context end


def split_axis(length: int, tile: int, overlap: int, align: int = 1) -> list[Span]:
    """Equal context windows covering 0..length, starts on multiples of `align` (length must be one)."""
    if not tile or length <= tile:
        return [(0, length, 0, length)]
    if length % align:
        raise ValueError(f"a length of {length} is not a multiple of the alignment {align}")
    o, t = _round_up(overlap, align), tile // align * align
    if t <= 2 * o:
        raise ValueError(f"a tile of {tile} LR px leaves no core with {overlap} px of context at alignment {align}")
    for n in range(2, length + 1):
        size = min(_round_up(-(-(length + 2 * o * (n - 1)) // n), align), length)
        if size > t:
            continue
        starts = [i * (length - size) // (n - 1) // align * align for i in range(n)]
        if all(b - a <= size - 2 * o for a, b in itertools.pairwise(starts)):
            break
    spans, core_start = [], 0
    for i, start in enumerate(starts):
        if i + 1 < len(starts):
            shared = start + size - starts[i + 1]  # >= 2 * o
            core_end = starts[i + 1] + shared // 2 // align * align
        else:
            core_end = length
        spans.append((core_start, core_end, start, start + size))
        core_start = core_end
    return spans


def plan_tiles(lr_size: tuple[int, int], tiling: Tiling, align: int = 1) -> list[tuple[Box, Box]]:
    """(core, context) boxes in LR pixels, every context the same size; cores partition the grid."""
    rows = split_axis(lr_size[0], tiling.tile, tiling.overlap, align)
    cols = split_axis(lr_size[1], tiling.tile, tiling.overlap, align)
    return [(Box(r[0], r[1], c[0], c[1]), Box(r[2], r[3], c[2], c[3])) for r in rows for c in cols]


def work_ratio(lr_size: tuple[int, int], tiling: Tiling, align: int = 1) -> float:
    """Pixels the model computes over pixels of the image: the cost of tiling (1.0 = none)."""
    return sum(context.area for _, context in plan_tiles(lr_size, tiling, align)) / (lr_size[0] * lr_size[1])


WHOLE_IMAGE = Tiling()
