"""AVIF files: the header in EXIF, brands told apart from HEIC, cut-off files refused, and the lossy path
through the service and the CLI (the compression-aware model, best effort for a stripped copy)."""

import io
import json
import struct

import httpx
import numpy as np
import pytest
from PIL import Image

from models import files
from models.cli import main
from models.files.containers import exif_bytes, write_lossy
from models.files.errors import CorruptFileError, ImageTooLargeError, TruncatedFileError, UnsupportedFormatError
from models.files.header import Header
from models.store.registry import weights_id
from tests.service_helpers import png_bytes, running_server, settings_for
from tests.test_files import WID, encode, make_downscaled
from tests.test_lossy_path import assert_best_effort_upscale, cli_setup  # noqa: F401 (cli_setup: a fixture)


def ftyp(major: bytes, *compatible: bytes) -> bytes:
    return struct.pack(">I", 16 + 4 * len(compatible)) + b"ftyp" + major + b"\0\0\0\0" + b"".join(compatible)


def with_ftyp(data: bytes, box: bytes) -> bytes:
    """The file with its ftyp box replaced (the other boxes are addressed from the start of `meta`'s items, so
    a box of the same length keeps the file readable)."""
    (size,) = struct.unpack(">I", data[:4])
    assert len(box) == size
    return box + data[size:]


def mdat(data: bytes) -> tuple[int, int]:
    """(offset, declared size) of the top-level mdat box."""
    offset = 0
    while data[offset + 4 : offset + 8] != b"mdat":
        offset += struct.unpack(">I", data[offset : offset + 4])[0]
    return offset, struct.unpack(">I", data[offset : offset + 4])[0]


# -- the file -------------------------------------------------------------------------------------


def test_avif_carries_the_header_and_code_in_exif():
    original = make_downscaled("irn-m")
    data = files.encode(original, variant="irn-m", scale=2, weights_id=WID, format="avif", quality=90)
    assert data[4:12] == b"ftypavif"
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "AVIF" and image.size == (32, 24) and image.mode == "RGB"
        exif = image.getexif()
        assert exif[0x0131] == "rescale"  # Software
        comment = exif.get_ifd(0x8769)[0x9286]  # UserComment
    header = json.loads(comment[8:].decode("ascii"))
    assert comment[:8] == b"ASCII\0\0\0"
    assert (header["variant"], header["scale"], header["weights_id"]) == ("irn-m", 2, WID)
    decoded = files.decode(data)
    assert decoded.format == "avif" and decoded.degraded == ()
    assert decoded.header == Header("irn-m", 2, WID, original.hr_size, (24, 32))
    assert np.array_equal(decoded.code, original.code)


def test_avif_holds_a_header_far_past_jpeg_64_kb():
    """The -M code of a 2048 x 2048 LR, incompressible: 1 MiB of code, 1.4 MB of header."""
    d = make_downscaled("irn-m", lr=(2048, 2048))
    d.code = np.random.default_rng(1).integers(0, 256, d.code.shape, dtype=np.uint8)
    data = files.encode(d, variant="irn-m", scale=2, weights_id=WID, format="avif", quality=50)
    assert len(data) > 1_400_000
    assert np.array_equal(files.decode(data).code, d.code)


@pytest.mark.parametrize(
    "box",
    [ftyp(b"avif", b"avif", b"mif1", b"miaf", b"MA1B"), ftyp(b"mif1", b"mif1", b"avif", b"miaf", b"MA1B")],
)
def test_avif_is_told_by_its_major_or_a_compatible_brand(box):
    data = with_ftyp(encode("irn", "avif"), box)
    assert files.decode(data).header.variant == "irn"


def test_heic_is_refused_before_decoding():
    data = with_ftyp(encode("irn", "avif"), ftyp(b"heic", b"mif1", b"heic", b"miaf", b"MiHB"))
    with pytest.raises(UnsupportedFormatError) as refused:
        files.decode(data)
    assert str(refused.value) == (
        "not a PNG, JPEG, WebP or AVIF file (an ISO-BMFF file of brands heic, mif1, heic, miaf, MiHB: HEIC?)"
    )


def test_a_cut_avif_is_truncated_wherever_it_is_cut():
    data = encode("irn-m", "avif")
    start, size = mdat(data)
    for cut in (len(data) - 1, start + 20, start + 8):
        with pytest.raises(TruncatedFileError) as cut_off:
            files.decode(data[:cut])
        assert str(cut_off.value) == (
            f"truncated AVIF: box 'mdat' at byte {start:,} declares {size:,} bytes but the file ends "
            f"{cut - start:,} bytes after its start"
        )
    with pytest.raises(TruncatedFileError) as cut_off:
        files.decode(data[: start + 4])
    assert str(cut_off.value) == f"truncated AVIF: the file ends 4 bytes into the box header at byte {start:,}"
    with pytest.raises(TruncatedFileError, match="truncated ISO-BMFF file: it ends inside its 32-byte ftyp box"):
        files.decode(data[:20])


def test_a_corrupt_avif_is_corrupt():
    data = bytearray(encode("irn", "avif"))
    meta = data.find(b"meta") - 4
    data[meta + 12 : meta + 40] = b"\xff" * 28  # the handler and item boxes
    with pytest.raises(CorruptFileError) as corrupt:
        files.decode(bytes(data))
    assert str(corrupt.value) == "cannot decode AVIF: its structure is not a readable AVIF"


def test_the_declared_size_is_checked_before_decoding():
    data = encode("irn", "avif")
    with pytest.raises(ImageTooLargeError, match=r"image of 32x24 \(768 pixels\) is over the 700-pixel limit"):
        files.decode(data, max_pixels=700)


def test_write_lossy_puts_the_exact_exif_in_the_avif():
    rgb = make_downscaled("irn").rgb
    with Image.open(io.BytesIO(write_lossy(rgb, '{"x":1}', "avif", 80))) as image:
        assert image.info["exif"] == exif_bytes('{"x":1}')  # piexif's bytes, "Exif\0\0" prefix and all


# -- the service ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client(folders):  # noqa: F811
    with running_server(settings_for(folders)) as base, httpx.Client(base_url=base, timeout=60) as c:
        yield c


def post(client, path, data, **params):
    return client.post(path, content=data, params=params, headers={"content-type": "application/octet-stream"})


def strip_to_avif(data: bytes) -> bytes:
    """What a CDN does: decode, re-encode as AVIF at its own quality, no EXIF."""
    with Image.open(io.BytesIO(data)) as image:
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, format="AVIF", quality=60)
    return buffer.getvalue()


@pytest.mark.parametrize(("mode", "made_by"), [("plain", "irn-jpeg"), ("metadata", "irn-m-jpeg")])
def test_avif_round_trip_through_the_service(client, folders, photo, mode, made_by):  # noqa: F811
    small = post(client, "/downscale", png_bytes(photo), scale=2, mode=mode, format="avif", quality=80)
    assert small.status_code == 200, small.text
    assert small.headers["content-type"] == "image/avif"
    wid = weights_id(folders[made_by])
    assert small.headers["x-rescale-weights-id"] == wid and small.headers["x-rescale-scale"] == "2"
    decoded = files.decode(small.content)
    variant = "irn" if mode == "plain" else "irn-m"
    assert decoded.header == Header(variant, 2, wid, (90, 70), (45, 35))
    big = post(client, "/upscale", small.content)
    assert big.status_code == 200, big.text
    assert big.headers["x-rescale-weights-id"] == wid and "x-rescale-degraded" not in big.headers
    with Image.open(io.BytesIO(big.content)) as image:
        assert image.format == "PNG" and image.size == (70, 90)


def test_an_avif_photo_is_taken_as_input(client, photo):
    buffer = io.BytesIO()
    Image.fromarray(photo).save(buffer, format="AVIF", quality=90)
    response = client.post(
        "/downscale", content=buffer.getvalue(), params={"scale": 2}, headers={"content-type": "image/avif"}
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png" and response.headers["x-rescale-original-size"] == "70x90"


def test_a_stripped_avif_takes_the_best_effort_path(client, folders, photo):  # noqa: F811
    small = post(client, "/downscale", png_bytes(photo), scale=2, format="avif", quality=80).content
    assert_best_effort_upscale(client, folders, strip_to_avif(small))


def test_a_truncated_or_heic_upload_gets_the_file_errors(client, photo):
    small = post(client, "/downscale", png_bytes(photo), scale=2, format="avif", quality=80).content
    start, size = mdat(small)
    cut = post(client, "/upscale", small[:-100])
    assert cut.status_code == 400
    assert cut.json() == {
        "code": "truncated_file",
        "message": f"truncated AVIF: box 'mdat' at byte {start:,} declares {size:,} bytes but the file ends "
        f"{len(small) - 100 - start:,} bytes after its start",
    }
    (ftyp_size,) = struct.unpack(">I", small[:4])
    heic = ftyp(b"heic", *[b"mif1", b"heic", b"miaf", b"MiHB", b"heix"][: (ftyp_size - 16) // 4])
    refused = post(client, "/downscale", with_ftyp(small, heic), scale=2)
    assert refused.status_code == 415 and refused.json()["code"] == "unsupported_format"


# -- the CLI --------------------------------------------------------------------------------------


def test_cli_writes_and_reads_avif_as_the_service_does(client, folders, photo, tmp_path, capsys):  # noqa: F811
    src, weights = cli_setup(folders, photo, tmp_path)
    out = tmp_path / "small.avif"
    assert main(["downscale", str(src), str(out), "--scale", "2", "--quality", "80", *weights]) == 0
    wid = weights_id(folders["irn-jpeg"])
    assert f"IRN-JPEG x2, avif, {out.stat().st_size} bytes, weights {wid}" in capsys.readouterr().out
    served = post(client, "/downscale", png_bytes(photo), scale=2, format="avif", quality=80)
    assert out.read_bytes() == served.content  # the same engines, tiles and encoder
    decoded = files.decode(out.read_bytes())
    assert (decoded.header.variant, decoded.header.scale, decoded.header.weights_id) == ("irn", 2, wid)
    big = tmp_path / "big.png"
    assert main(["upscale", str(out), str(big), *weights]) == 0
    assert f"{out} -> {big} 70x90 (irn x2)" in capsys.readouterr().out
    cdn = tmp_path / "cdn.avif"
    cdn.write_bytes(strip_to_avif(out.read_bytes()))
    assert main(["upscale", str(cdn), str(big), "--best-effort", "--scale", "2", *weights]) == 0
    assert "(irn x2, degraded: metadata_missing)" in capsys.readouterr().out


# -- rate against distortion through AVIF -----------------------------------------------------------


def test_eval_measures_the_models_through_avif(folders, photo, tmp_path):  # noqa: F811
    from models.evaluation.rate_distortion import bicubic_lossy_round_trip

    data = tmp_path / "set"
    data.mkdir()
    hr = photo[:88, :68]
    Image.fromarray(hr).save(data / "a.png")
    out = tmp_path / "eval"
    weights = ["--no-shipped", "--weights", str(folders["irn"]), str(folders["irn-jpeg"])]
    argv = ["eval", "--data", str(data), "--scales", "2", "--lossy", "jpeg:80", "avif:80", "--out", str(out)]
    assert main([*argv, *weights, "--report", str(tmp_path / "results.md")]) == 0
    rows = {r["method"]: r["sets"]["set"] for r in json.loads((out / "results.json").read_text())}
    size = bicubic_lossy_round_trip(hr, 2, "avif", 80)[1]
    assert rows["Bicubic (avif q80)"]["bytes_per_px"] == size / hr.shape[0] / hr.shape[1]
    own, base = rows["IRN-JPEG (avif q80)"], rows["Bicubic (avif q80)"]
    gain = own["psnr"] - base["psnr"]
    photo_gain = own["per_image"]["a"] - base["per_image"]["a"]  # per photo, from the rounded per-photo figures
    report = (tmp_path / "results.md").read_text()
    section = report.split("### Through AVIF: do the models trained through JPEG carry over? (set)")[1]
    assert (
        f"| x2 | avif q80 | IRN-JPEG | {own['psnr']:.2f} @ {8 * own['bytes_per_px']:.3f} | "
        f"{base['psnr']:.2f} @ {8 * base['bytes_per_px']:.3f} | {gain:+.2f} | {photo_gain:+.2f}, {photo_gain:+.2f} | "
        f"{int(photo_gain > 0)} of 1 |"
    ) in section
    jpeg_rows = rows["IRN-JPEG (jpeg q80)"]["per_image"], rows["Bicubic (jpeg q80)"]["per_image"]
    assert "| Photo | x2 avif q80 | x2 jpeg q80 |" in section
    assert f"| a | {photo_gain:+.2f} | {jpeg_rows[0]['a'] - jpeg_rows[1]['a']:+.2f} |" in section


def test_per_photo_gains_are_taken_on_the_photos_both_rows_hold():
    from models.evaluation.rate_distortion import codec_gain_table, per_photo_gain_table

    def row(method, per_image):
        psnr = sum(per_image.values()) / len(per_image)
        summary = {"psnr": psnr, "ssim": 0.9, "bytes_per_px": 0.01, "images": 3, "refused": 3 - len(per_image)}
        return {"method": method, "scale": 4, "damage": None, "sets": {"s": summary | {"per_image": per_image}}}

    rows = [
        row("Bicubic (avif q75)", {"a": 30.0, "b": 31.0, "c": 32.0}),
        row("IRN-JPEG (avif q75)", {"a": 30.5, "c": 31.75}),  # b refused
    ]
    assert codec_gain_table(rows, "s", "avif").splitlines()[2] == (
        "| x4 | avif q75 | IRN-JPEG | 31.12 @ 0.080 | 31.00 @ 0.080 | +0.12, 2 of 3 photos | -0.25, +0.50 | 1 of 2 |"
    )
    assert per_photo_gain_table(rows, "s", "IRN-JPEG", ["avif"]).splitlines() == [
        "| Photo | x4 avif q75 |",
        "|---|---|",
        "| a | +0.50 |",
        "| c | -0.25 |",
        "| mean | +0.12 |",
        "| photos that gain | 1 of 2 |",
    ]
