"""Near-duplicate photos: the same picture re-encoded, resized, slightly cropped or mirrored.

A fingerprint holds a 64-bit difference hash (dHash) and a small luma thumbnail of the whole photo, of its
mirror image, and of many crops of it (each side cut by up to 20 %, at either end or both). Two photos
match when the whole of one is close to some crop of the other: a hash within `MAX_HASH_DISTANCE` bits
proposes the pair, the PSNR of the two thumbnails confirms it (a hash alone also pairs different photos
of similar layout, e.g. two horizons).
"""

from dataclasses import dataclass

import numpy as np
from PIL import Image

MAX_HASH_DISTANCE = 12  # of 64 bits
# dB, on 32x32 luma thumbnails: different photos (the shipped pool, eval/) reach 21.4 at most; a copy re-encoded,
# resized or cut by up to 20 % per side scores 30 or more, one made 10 % brighter about 26
MIN_THUMBNAIL_PSNR = 24.0
WORKING_SIDE = 256  # every crop is taken from the photo shrunk to this longest side
THUMBNAIL_SIDE = 32
# (kept fraction of a side, where the kept part sits): anchors 0, 0.5, 1 = cut at the end, at both ends, at the start;
# steps of 2.5 % keep a crop's thumbnail within about 0.4 pixel of the view it is compared with
_KEPT = (0.975, 0.95, 0.925, 0.9, 0.875, 0.85, 0.825, 0.8)
_SIDE_CUTS = ((1.0, 0.5),) + tuple((kept, anchor) for kept in _KEPT for anchor in (0.0, 0.5, 1.0))


@dataclass(frozen=True)
class Fingerprint:
    hashes: np.ndarray  # (N,) uint64; [0] the whole photo, [1] its mirror image, then the crops
    thumbnails: np.ndarray  # (N, 32, 32) float32 luma


@dataclass(frozen=True)
class Match:
    hash_distance: int  # the fewest differing bits between the whole of one photo and a view of the other
    psnr: float  # the best thumbnail PSNR among views within MAX_HASH_DISTANCE (0 when there is none)

    @property
    def is_near_duplicate(self) -> bool:
        return self.hash_distance <= MAX_HASH_DISTANCE and self.psnr >= MIN_THUMBNAIL_PSNR


def difference_hash(luma: Image.Image) -> np.uint64:
    """64 bits: is each of 8x8 cells brighter than its right-hand neighbour (9x8 grid)?"""
    cells = np.asarray(luma.resize((9, 8), Image.BILINEAR, reducing_gap=2.0), dtype=np.int16)
    bits = (cells[:, 1:] > cells[:, :-1]).ravel()
    return np.packbits(bits).view(">u8").astype(np.uint64)[0]


def _views(luma: Image.Image) -> list[Image.Image]:
    width, height = luma.size
    views = [luma, luma.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    for kept_x, anchor_x in _SIDE_CUTS:
        for kept_y, anchor_y in _SIDE_CUTS:
            if kept_x == kept_y == 1.0:
                continue
            left = round((1 - kept_x) * width * anchor_x)
            top = round((1 - kept_y) * height * anchor_y)
            views.append(luma.crop((left, top, left + round(kept_x * width), top + round(kept_y * height))))
    return views


def fingerprint(image: np.ndarray) -> Fingerprint:
    """The fingerprint of an (H, W, 3) uint8 photo."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"fingerprint needs an (H, W, 3) uint8 image, got {image.shape} {image.dtype}")
    luma = Image.fromarray(image).convert("L")
    luma.thumbnail((WORKING_SIDE, WORKING_SIDE), Image.LANCZOS, reducing_gap=3.0)
    views = _views(luma)
    side = (THUMBNAIL_SIDE, THUMBNAIL_SIDE)
    return Fingerprint(
        hashes=np.array([difference_hash(v) for v in views], dtype=np.uint64),
        thumbnails=np.stack([np.asarray(v.resize(side, Image.BILINEAR, reducing_gap=2.0), np.float32) for v in views]),
    )


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def compare(a: Fingerprint, b: Fingerprint) -> Match:
    """How close the whole of either photo comes to any view (whole, mirrored, cropped) of the other."""
    # rows: (whole of a vs each view of b), then (whole of b vs each view of a)
    distances = np.concatenate(
        [np.bitwise_count(a.hashes[0] ^ b.hashes), np.bitwise_count(b.hashes[0] ^ a.hashes)]
    ).astype(int)
    pairs = [(a.thumbnails[0], view) for view in b.thumbnails] + [(b.thumbnails[0], view) for view in a.thumbnails]
    close = np.flatnonzero(distances <= MAX_HASH_DISTANCE)
    psnr = max((_psnr(*pairs[i]) for i in close), default=0.0)
    return Match(hash_distance=int(distances.min()), psnr=psnr)


class NearDuplicateIndex:
    """Named fingerprints; which of them a new photo nearly duplicates."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.fingerprints: list[Fingerprint] = []

    def __len__(self) -> int:
        return len(self.names)

    def add(self, name: str, print_: Fingerprint) -> None:
        self.names.append(name)
        self.fingerprints.append(print_)

    def closest(self, print_: Fingerprint) -> tuple[str, Match] | None:
        """The entry with the best match (near duplicates first, then the highest PSNR), None when empty."""
        matches = [(name, compare(print_, other)) for name, other in zip(self.names, self.fingerprints, strict=True)]
        if not matches:
            return None
        return max(matches, key=lambda item: (item[1].is_near_duplicate, item[1].psnr, -item[1].hash_distance))
