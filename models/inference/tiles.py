"""Cutting an LR grid into equal tiles, each with enough context that its core matches whole-image work.

Every tile of an image has the same size (so tiles batch together and a compiled graph sees one
shape), with an area of at most `tile` squared (the memory bound). Tiles are spread evenly from
edge to edge: neighbours overlap by at least twice the context, each keeps the middle of that
overlap as its core, and a tile at the border reaches the border instead of padding. The work
done is n * size per axis, against the length of the image: 1 + 2 * overlap * (n - 1) / length.
"""

import itertools
from dataclasses import dataclass

DEFAULT_OVERLAP_LR = 24  # for models without a measured context (models/inference/context.py)


@dataclass(frozen=True)
class Tiling:
    tile: int = 0  # the largest model input is tile x tile LR pixels (or an oblong of that area); 0 = whole image
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


def _split(length: int, n: int, o: int, align: int) -> list[Span] | None:
    """`n` equal windows from 0 to `length`, neighbours sharing at least 2 * o; None where n cannot do it."""
    if n == 1:
        return [(0, length, 0, length)]
    size = min(_round_up(-(-(length + 2 * o * (n - 1)) // n), align), length)
    starts = [i * (length - size) // (n - 1) // align * align for i in range(n)]
    if size <= 2 * o or any(b - a > size - 2 * o or b == a for a, b in itertools.pairwise(starts)):
        return None
    spans, core_start = [], 0
    for i, start in enumerate(starts):
        if i + 1 < n:
            shared = start + size - starts[i + 1]  # >= 2 * o
            core_end = starts[i + 1] + shared // 2 // align * align
        else:
            core_end = length
        spans.append((core_start, core_end, start, start + size))
        core_start = core_end
    return spans


def _check(length: int, align: int) -> None:
    if length % align:
        raise ValueError(f"a length of {length} is not a multiple of the alignment {align}")


def split_axis(length: int, tile: int, overlap: int, align: int = 1) -> list[Span]:
    """The fewest equal context windows of at most `tile` covering 0..length, starts on multiples of `align`."""
    if not tile or length <= tile:
        return [(0, length, 0, length)]
    _check(length, align)
    o, t = _round_up(overlap, align), tile // align * align
    if t <= 2 * o:
        raise ValueError(f"a tile of {tile} LR px leaves no core with {overlap} px of context at alignment {align}")
    for n in range(max(2, -(-(length - 2 * o) // (t - 2 * o))), length + 1):  # from the fewest that can fit
        spans = _split(length, n, o, align)
        if spans is not None and spans[0][3] - spans[0][2] <= t:
            return spans
    raise ValueError(f"cannot tile {length} LR px with {tile}-px tiles and {overlap} px of context")


def plan_tiles(lr_size: tuple[int, int], tiling: Tiling, align: int = 1) -> list[tuple[Box, Box]]:
    """(core, context) boxes in LR pixels, every context the same size; cores partition the grid.

    The memory bound is on a tile's area (`tile` squared), so tiles may be oblong: of the row splits,
    the one whose tiles (with the fewest columns that fit the area) compute the fewest pixels wins."""
    h, w = lr_size
    if not tiling.tile or h * w <= tiling.tile**2:
        return [(Box(0, h, 0, w), Box(0, h, 0, w))]
    _check(h, align)
    _check(w, align)
    o = _round_up(tiling.overlap, align)
    best: tuple[int, int, list[Span], list[Span]] | None = None
    for n in range(1, h // align + 1):
        rows = _split(h, n, o, align)
        if rows is None:
            continue
        height = rows[0][3] - rows[0][2]
        if best is not None and n * height * w >= best[0]:
            break  # more rows compute more whatever the columns: the best is found
        width = tiling.tile**2 // height
        if width // align * align <= 2 * o:
            continue  # rows this tall leave no room across: split them more
        cols = split_axis(w, width, tiling.overlap, align)
        work = len(rows) * height * len(cols) * (cols[0][3] - cols[0][2])
        if best is None or (work, len(rows) * len(cols)) < best[:2]:
            best = (work, len(rows) * len(cols), rows, cols)
    if best is None:
        raise ValueError(f"cannot tile {h}x{w} LR px in tiles of {tiling.tile}^2 with {tiling.overlap} px of context")
    _, _, rows, cols = best
    return [(Box(r[0], r[1], c[0], c[1]), Box(r[2], r[3], c[2], c[3])) for r in rows for c in cols]


def work_ratio(lr_size: tuple[int, int], tiling: Tiling, align: int = 1) -> float:
    """Pixels the model computes over pixels of the image: the cost of tiling (1.0 = none)."""
    return sum(context.area for _, context in plan_tiles(lr_size, tiling, align)) / (lr_size[0] * lr_size[1])


WHOLE_IMAGE = Tiling()
