"""`format=auto`: the output format from the request's `Accept` header, as image CDNs choose it.

A format we prefer to the default (AVIF, WebP) is chosen only when the client names its media type: a
wildcard (`image/*`, `*/*`) says nothing about which new codecs a client decodes, so it stands for the
default format alone. Among the formats that can be chosen the highest q-value wins, ties going to the
order of preference; `q=0` excludes a format. When nothing that can be written is acceptable, or there is no
`Accept` header, the answer is the default format: never a 406, so no image is lost to a strict header.
"""

from dataclasses import dataclass

from models.files import MEDIA_TYPES

AUTO = "auto"


@dataclass(frozen=True)
class Choice:
    """The formats `format=auto` picks from, most preferred first, and the one a wildcard or no match gets."""

    preferred: tuple[str, ...]
    default: str


# plain: the thumbnail a CDN serves (JPEG is what every client shows); metadata: JPEG's 64 KB APP1 segment
# cannot hold the -M code of larger photos, so PNG is the default; alpha: the 4th channel needs PNG.
DOWNSCALE_CHOICES = {
    "plain": Choice(("avif", "webp", "jpeg"), "jpeg"),
    "metadata": Choice(("avif", "webp", "png"), "png"),
    "alpha": Choice(("png",), "png"),
}
UPSCALE_CHOICE = DOWNSCALE_CHOICES["plain"]  # an upscaled image is shown as a plain thumbnail is


def parse_accept(header: str) -> dict[str, float]:
    """media range (lowercase) -> q; a range given twice keeps its highest q, a malformed q drops the range."""
    ranges: dict[str, float] = {}
    for part in header.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        media = media.lower()
        if "/" not in media:
            continue
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value.strip())
                except ValueError:
                    q = -1.0
        if 0.0 <= q <= 1.0:
            ranges[media] = max(q, ranges.get(media, 0.0))
    return ranges


def quality_of(fmt: str, ranges: dict[str, float], *, wildcards: bool) -> float:
    """The q of the most specific range that names this format's media type (0 when none does)."""
    media = MEDIA_TYPES[fmt]
    for candidate in (media, "image/*", "*/*") if wildcards else (media,):
        if candidate in ranges:
            return ranges[candidate]
    return 0.0


def negotiate(accept: str | None, choice: Choice) -> str:
    """The format to write for this `Accept` header."""
    if not accept:
        return choice.default
    ranges = parse_accept(accept)
    scored = [
        (quality_of(fmt, ranges, wildcards=fmt == choice.default), -rank, fmt)
        for rank, fmt in enumerate(choice.preferred)
    ]
    q, _, best = max(scored)
    return best if q > 0 else choice.default
