"""Real tools from Debian's packages read our files as what they claim to be (.ci/run installs them)."""

import json
import subprocess

import pytest

from tests.external_tools import tool
from tests.test_files import encode


def run(*cmd: str) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=60).stdout


def test_imagemagick_sees_8_bit_srgba(tmp_path):
    path = tmp_path / "a.png"
    path.write_bytes(encode("irn-a"))
    out = run(tool("identify"), "-format", "%[channels] %z %[colorspace] %[type]", str(path))
    assert out.split() == ["srgba", "8", "sRGB", "TrueColorAlpha"]


@pytest.mark.parametrize("variant", ["irn", "irn-a", "irn-m"])
def test_pngcheck_finds_the_pngs_valid(tmp_path, variant):
    path = tmp_path / "f.png"
    path.write_bytes(encode(variant))
    out = run(tool("pngcheck"), "-v", str(path))
    assert "No errors detected" in out and "zTXt" in out


@pytest.mark.parametrize(
    ("fmt", "tag"), [("png", "Rescale"), ("jpeg", "UserComment"), ("webp", "UserComment"), ("avif", "UserComment")]
)
def test_exiftool_lists_the_metadata_fields(tmp_path, fmt, tag):
    path = tmp_path / f"m.{fmt}"
    path.write_bytes(encode("irn-m", fmt))
    meta = json.loads(run(tool("exiftool"), "-j", str(path)))[0]
    header = json.loads(meta[tag])
    assert header["variant"] == "irn-m" and header["scale"] == 2 and header["code"]["shape"] == [4, 6, 8]
    if fmt != "png":
        assert meta["Software"] == "rescale"


def test_imagemagick_decodes_the_avif_at_its_lr_size(tmp_path):
    path = tmp_path / "m.avif"
    path.write_bytes(encode("irn-m", "avif"))
    out = run(tool("identify"), "-format", "%w %h %z", str(path))  # decoded by libheif, its HEIC coder
    assert out.split() == ["32", "24", "8"]
    meta = json.loads(run(tool("exiftool"), "-j", str(path)))[0]
    assert (meta["FileType"], meta["MIMEType"], meta["MajorBrand"]) == (
        "AVIF",
        "image/avif",
        "AV1 Image File Format (.AVIF)",
    )
