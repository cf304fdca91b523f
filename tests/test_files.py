import json
import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from models import files
from models.files.containers import write_png
from models.files.downscaled import Downscaled
from models.files.errors import (
    ChecksumError,
    CorruptFileError,
    FileFormatError,
    HeaderError,
    ImageTooLargeError,
    LatentError,
    MetadataTooLargeError,
    NewerFormatError,
    TruncatedFileError,
    UnsupportedFormatError,
)
from models.files.header import Header, dump_header

WID = "0123456789abcdef"


def make_downscaled(variant: str, lr=(24, 32), scale=2, seed=0) -> Downscaled:
    rng = np.random.default_rng(seed)
    h, w = lr
    yy, xx = np.mgrid[0:h, 0:w]
    rgb = np.stack([(yy * 7 + xx * 3) % 256, (xx * 5) % 256, (yy * 11) % 256], -1).astype(np.uint8)
    return Downscaled(
        rgb=rgb,
        hr_size=(h * scale - 1, w * scale - 1) if not variant.endswith("-m") else (h * scale - 5, w * scale),
        alpha=rng.integers(1, 255, (h, w), dtype=np.uint8) if variant.endswith("-a") else None,
        code=rng.integers(100, 140, (4, h // 4, w // 4), dtype=np.uint8) if variant.endswith("-m") else None,
    )


def encode(variant="irn-m", fmt="png", **kw) -> bytes:
    return files.encode(make_downscaled(variant, **kw), variant=variant, scale=2, weights_id=WID, format=fmt)


def png_chunks(data: bytes) -> list[tuple[int, bytes, bytes]]:
    """(offset, type, body) of every chunk."""
    out, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        out.append((pos, data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]))
        pos += 12 + length
    return out


def with_header_text(variant: str, mutate) -> bytes:
    """A PNG whose header JSON went through `mutate(dict)`."""
    d = make_downscaled(variant)
    header = Header(variant, 2, WID, d.hr_size, d.lr_size, files.header.crc32(d.rgb))
    meta = json.loads(dump_header(header, d.code))
    mutate(meta)
    return write_png(d.rgb, d.alpha, json.dumps(meta))


# -- round trips -----------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["irn", "irn-a", "irn-m", "dlv-irn-a", "dlv-irn-m"])
def test_png_round_trip_is_byte_exact(variant):
    original = make_downscaled(variant)
    data = files.encode(original, variant=variant, scale=2, weights_id=WID)
    decoded = files.decode(data)
    assert decoded.format == "png" and decoded.degraded == ()
    assert decoded.header.variant == variant and decoded.header.weights_id == WID
    assert decoded.header.hr_size == original.hr_size and decoded.header.lr_size == (24, 32)
    assert np.array_equal(decoded.rgb, original.rgb)
    for name in ("alpha", "code"):
        a, b = getattr(decoded, name), getattr(original, name)
        assert (a is None and b is None) or np.array_equal(a, b)
    again = decoded.downscaled()
    assert files.encode(again, variant=variant, scale=2, weights_id=WID) == data


@pytest.mark.parametrize("fmt", ["jpeg", "webp", "avif"])
def test_lossy_formats_carry_the_code_exactly(fmt):
    original = make_downscaled("irn-m")
    data = files.encode(original, variant="irn-m", scale=2, weights_id=WID, format=fmt, quality=95)
    decoded = files.decode(data)
    assert decoded.format == fmt and decoded.degraded == ()
    assert np.array_equal(decoded.code, original.code)
    assert decoded.header.rgb_crc32 is None  # lossy pixels carry no checksum
    assert np.abs(decoded.rgb.astype(int) - original.rgb).mean() < 6


def test_alpha_files_need_png():
    with pytest.raises(ValueError, match="irn-a keeps its 4th channel in the alpha channel: use format png, not jpeg"):
        encode("irn-a", "jpeg")


def test_alpha_png_is_straight_rgba_with_codes_inside_1_254(tmp_path):
    path = tmp_path / "a.png"
    path.write_bytes(encode("irn-a"))
    with Image.open(path) as im:
        assert im.mode == "RGBA"
        pixels = np.array(im)
    assert np.array_equal(pixels[..., :3], make_downscaled("irn-a").rgb)  # not premultiplied
    assert 1 <= pixels[..., 3].min() and pixels[..., 3].max() <= 254


def test_large_png_header_is_split_over_several_chunks():
    d = make_downscaled("irn-m", lr=(2048, 1024))
    d.code = np.random.default_rng(1).integers(0, 256, d.code.shape, dtype=np.uint8)  # incompressible: 512 KiB
    data = files.encode(d, variant="irn-m", scale=2, weights_id=WID)
    keys = [body.split(b"\0")[0] for _, kind, body in png_chunks(data) if kind == b"zTXt"]
    assert keys[:2] == [b"rescale", b"rescale/1"]
    assert np.array_equal(files.decode(data).code, d.code)


def test_jpeg_refuses_metadata_over_64_kb_but_webp_takes_it():
    d = make_downscaled("irn-m", lr=(512, 512))
    d.code = np.random.default_rng(1).integers(0, 256, d.code.shape, dtype=np.uint8)  # 64 KiB, incompressible
    with pytest.raises(MetadataTooLargeError, match=r"a JPEG APP1 segment holds 65,533; use format png, webp or avif"):
        files.encode(d, variant="irn-m", scale=2, weights_id=WID, format="jpeg")
    data = files.encode(d, variant="irn-m", scale=2, weights_id=WID, format="webp")
    assert np.array_equal(files.decode(data).code, d.code)


# -- graceful degradation ----------------------------------------------------------------------


def test_plain_image_is_flagged_not_refused(tmp_path):
    path = tmp_path / "plain.jpg"
    Image.fromarray(make_downscaled("irn").rgb).save(path)
    decoded = files.decode(path.read_bytes())
    assert decoded.header is None and decoded.degraded == ("metadata_missing",)
    assert decoded.downscaled(scale=4).hr_size == (96, 128)
    with pytest.raises(ValueError, match="a file without a header needs an explicit scale"):
        decoded.downscaled()


def test_dropped_alpha_is_flagged_and_neutral(tmp_path):
    data = encode("irn-a")
    with Image.open(__import__("io").BytesIO(data)) as im:
        text = im.text["rescale"]
        rgb = np.array(im.convert("RGB"))
    decoded = files.decode(write_png(rgb, None, text))
    assert decoded.degraded == ("alpha_missing",)
    assert (decoded.alpha == 128).all()


def test_opaque_alpha_is_flagged_as_flattened():
    d = make_downscaled("irn-a")
    data = encode("irn-a")
    text = files.decode(data).header
    meta = dump_header(text, None)
    decoded = files.decode(write_png(d.rgb, np.full_like(d.alpha, 255), meta))
    assert decoded.degraded == ("alpha_flattened",)


# -- strict reading -----------------------------------------------------------------------------


def test_unsupported_formats():
    with pytest.raises(UnsupportedFormatError, match="not a PNG, JPEG, WebP or AVIF file"):
        files.decode(b"GIF89a" + b"\0" * 100)


def test_truncated_files():
    data = encode("irn")
    idat = next(off for off, kind, _ in png_chunks(data) if kind == b"IDAT")
    with pytest.raises(TruncatedFileError):
        files.decode(data[: idat + 30])
    jpeg = encode("irn-m", "jpeg")
    with pytest.raises((TruncatedFileError, CorruptFileError)):
        files.decode(jpeg[: len(jpeg) // 2])


def test_wrong_chunk_length_and_crc_are_corrupt():
    data = bytearray(encode("irn"))
    off = next(off for off, kind, _ in png_chunks(bytes(data)) if kind == b"zTXt")
    bad_crc = bytearray(data)
    bad_crc[off + 10] ^= 0xFF
    with pytest.raises(CorruptFileError):
        files.decode(bytes(bad_crc))
    bad_len = bytearray(data)
    bad_len[off : off + 4] = struct.pack(">I", 0x7FFFFFF0)
    with pytest.raises((CorruptFileError, TruncatedFileError)):
        files.decode(bytes(bad_len))


def test_absurd_image_size_is_refused_before_decoding():
    data = bytearray(encode("irn"))
    ihdr = bytearray(struct.pack(">II", 100_000, 100_000)) + data[16 + 8 : 16 + 13]
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + bytes(ihdr)))
    with pytest.raises(ImageTooLargeError, match="100000x100000|10000000000 pixels"):
        files.decode(bytes(data))


@pytest.mark.parametrize(
    ("mutate", "error", "message"),
    [
        (lambda m: m.update(format=2), NewerFormatError, "file format 2 is newer than this reader"),
        (lambda m: m.update(hr_size=[10**6, 10**6]), ImageTooLargeError, "declared original size"),
        (lambda m: m.update(hr_size=[100, 30]), HeaderError, "original height 100 does not fit an LR height of 24"),
        (lambda m: m.update(variant="srgan"), HeaderError, "header field 'variant' must be one of"),
        (lambda m: m.update(weights_id="xyz"), HeaderError, "'weights_id' must be 16 lowercase hex digits"),
        (lambda m: m.update(lr_size=[20, 32]), HeaderError, "does not fit"),
        (lambda m: m["code"].update(shape=[4, 5, 8]), LatentError, r"code shape \[4, 5, 8\] does not match"),
        (lambda m: m["code"].update(data="!!notbase64"), LatentError, "code is not valid base64"),
        (lambda m: m["code"].update(data="aGVsbG8="), LatentError, "code is not valid zlib data"),
        (lambda m: m["code"].update(crc32=1), ChecksumError, "code CRC-32"),
        (lambda m: m.pop("code"), LatentError, "irn-m header carries no 'code'"),
        (lambda m: m.update(rgb_crc32=1), ChecksumError, "the LR pixels changed after downscaling"),
    ],
)
def test_header_errors(mutate, error, message):
    with pytest.raises(error, match=message):
        files.decode(with_header_text("irn-m", mutate))


def test_zip_bomb_in_the_code_is_not_inflated():
    def bomb(meta):
        meta["code"]["data"] = __import__("base64").b64encode(zlib.compress(b"\0" * (256 << 10))).decode()

    with pytest.raises(LatentError, match=r"code inflates to 193\+ bytes, expected 192"):
        files.decode(with_header_text("irn-m", bomb))


def test_not_json_header():
    d = make_downscaled("irn")
    with pytest.raises(HeaderError, match="header is not valid JSON"):
        files.decode(write_png(d.rgb, None, "{not json"))


# -- fuzzing --------------------------------------------------------------------------------------

SEEDS = {fmt: encode("irn-m", fmt, lr=(16, 16)) for fmt in ("png", "jpeg", "webp", "avif")}
SEEDS["png-a"] = encode("irn-a", lr=(16, 16))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.sampled_from(sorted(SEEDS)),
    edits=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), max_size=8),
    cut=st.one_of(st.none(), st.floats(0, 1)),
)
def test_fuzzed_files_fail_cleanly(seed, edits, cut):
    data = bytearray(SEEDS[seed])
    for where, value in edits:
        data[int(where * len(data))] = value
    if cut is not None:
        data = data[: int(cut * len(data))]
    try:
        decoded = files.decode(bytes(data), max_pixels=1 << 20)
    except FileFormatError:
        return
    assert decoded.rgb.dtype == np.uint8 and decoded.rgb.ndim == 3


@settings(max_examples=300, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=12), c, max_size=6),
    )
)
def test_fuzzed_headers_fail_cleanly(value):
    d = make_downscaled("irn")
    try:
        files.decode(write_png(d.rgb, None, json.dumps(value)))
    except FileFormatError:
        pass
