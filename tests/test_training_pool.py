"""The training pool from Debian packages (no network: packages are faked) and a PatchSampler on a dirty pool."""

import csv
import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from models.training import pool
from models.training.near_duplicates import NearDuplicateIndex, compare, fingerprint
from models.training.patches import SMALLER_THAN_PATCH, UNREADABLE, PatchSampler
from models.training.qt_resources import resource_files

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"  # read only; as in conftest.py
TRAIN = SHARED_DATA / "train"


def train_photo(name: str) -> np.ndarray:
    path = TRAIN / name
    if not path.is_file():
        pytest.skip(f"{path} not present")
    with Image.open(path) as im:
        return np.array(im.convert("RGB"))


def png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg_bytes(image: np.ndarray, quality: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def jpeg_copy(image: np.ndarray, quality: int) -> np.ndarray:
    return np.array(Image.open(io.BytesIO(jpeg_bytes(image, quality))).convert("RGB"))


def resized(image: np.ndarray, factor: float) -> np.ndarray:
    height, width = image.shape[:2]
    return np.array(Image.fromarray(image).resize((round(width * factor), round(height * factor)), Image.LANCZOS))


def crop_share(image: np.ndarray, left: float, top: float, right: float, bottom: float) -> np.ndarray:
    height, width = image.shape[:2]
    return image[round(top * height) : round((1 - bottom) * height), round(left * width) : round((1 - right) * width)]


# near duplicates


@pytest.fixture(scope="module")
def cups() -> np.ndarray:
    return train_photo("colorfulcups.png")


@pytest.mark.parametrize(
    "copy",
    [
        lambda im: jpeg_copy(im, 40),
        lambda im: resized(im, 0.5),
        lambda im: jpeg_copy(resized(im, 0.3), 75),
        lambda im: crop_share(im, 0.05, 0.03, 0, 0),
        lambda im: crop_share(im, 0.1, 0.1, 0.1, 0.1),
        lambda im: jpeg_copy(crop_share(resized(im, 0.7), 0, 0, 0.08, 0.04), 85),
        lambda im: im[:, ::-1],
    ],
    ids=["jpeg-40", "half-size", "small-jpeg", "cut-left-top", "cut-all-sides", "resized-cut-jpeg", "mirrored"],
)
def test_a_reencoded_resized_or_cropped_copy_is_a_near_duplicate(cups, copy):
    match = compare(fingerprint(cups), fingerprint(np.ascontiguousarray(copy(cups))))
    assert match.is_near_duplicate, match


@pytest.mark.parametrize("other", ["citrus-fruits.png", "darkesthour.png", "storm.png", "ladybird.png"])
def test_different_photos_are_not_near_duplicates(cups, other):
    match = compare(fingerprint(cups), fingerprint(train_photo(other)))
    assert not match.is_near_duplicate, match


def test_two_crops_of_one_photo_far_apart_are_different_pictures(cups):
    left, right = crop_share(cups, 0, 0, 0.5, 0), crop_share(cups, 0.5, 0, 0, 0)
    assert not compare(fingerprint(left), fingerprint(right)).is_near_duplicate


def test_the_index_names_the_photo_a_copy_comes_from(cups):
    index = NearDuplicateIndex()
    assert index.closest(fingerprint(cups)) is None
    for name in ("storm.png", "citrus-fruits.png"):
        index.add(name, fingerprint(train_photo(name)))
    index.add("cups", fingerprint(cups))
    name, match = index.closest(fingerprint(jpeg_copy(resized(cups, 0.5), 60)))
    assert name == "cups" and match.is_near_duplicate


def test_fingerprint_wants_rgb_uint8():
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
        fingerprint(np.zeros((64, 64), np.uint8))


# which files are training photos


def stripes(width: int = 640, height: int = 400) -> np.ndarray:
    """A flat graphic: a few bands of one exact colour each."""
    image = np.zeros((height, width, 3), np.uint8)
    for i, colour in enumerate([(200, 40, 40), (40, 160, 90), (30, 60, 200), (240, 220, 60)]):
        image[:, i * width // 4 : (i + 1) * width // 4] = colour
    return image


def test_a_colour_photo_is_taken(cups):
    assert pool.photo_rejection(np.asarray(pool.shrink(Image.fromarray(cups)))) is None


def test_flat_graphics_grey_and_small_images_are_rejected(cups):
    grey = np.repeat(np.array(Image.fromarray(cups).convert("L"))[..., None], 3, axis=2)
    sepia = (grey.astype(np.float32) * np.array([1.0, 0.85, 0.65])).astype(np.uint8)
    noisy_few_colours = np.random.default_rng(0).integers(0, 12, (300, 400, 3), dtype=np.uint8) * 20
    assert pool.photo_rejection(stripes()) == pool.NOT_A_PHOTO
    assert pool.photo_rejection(noisy_few_colours) == pool.NOT_A_PHOTO  # 1728 colours at most
    assert pool.photo_rejection(grey) == pool.GREY
    assert pool.photo_rejection(sepia) == pool.GREY
    assert pool.photo_rejection(cups[:200, :500]) == pool.TOO_SMALL


def test_decoding_refuses_cut_outs_and_garbage(cups):
    cups = np.ascontiguousarray(cups[:300, :400])
    cut_out = np.dstack([cups, np.full(cups.shape[:2], 255, np.uint8)])
    cut_out[:50, :50, 3] = 0
    pixels, size, reason = pool.decode_photo(png_bytes(cut_out))
    assert (pixels, reason) == (None, pool.NOT_A_PHOTO) and size == (cups.shape[1], cups.shape[0])
    assert pool.decode_photo(b"not an image")[2] == pool.UNREADABLE
    assert pool.decode_photo(png_bytes(cups)[:5000])[2] == pool.UNREADABLE  # truncated
    opaque = np.dstack([cups, np.full(cups.shape[:2], 255, np.uint8)])
    pixels, _, reason = pool.decode_photo(png_bytes(opaque))
    assert reason is None and np.array_equal(pixels, cups)


@pytest.mark.parametrize(
    ("size", "stored"),
    [
        ((2560, 1600), (1280, 800)),
        ((2561, 1601), (1280, 800)),
        ((1920, 1080), (1920, 1080)),
        ((3000, 2000), (1500, 1000)),
    ],
)
def test_large_photos_shrink_by_an_integer_factor_to_about_2_megapixels(size, stored):
    image = Image.new("RGB", size, (90, 120, 150))
    assert pool.shrink(image).size == stored
    assert stored[0] * stored[1] <= pool.MAX_PIXELS


# names, paths and the sources file


def test_output_names_come_from_what_the_wildcards_matched():
    pattern = "usr/share/wallpapers/*/contents/images/2560x1600.jpg"
    path = "usr/share/wallpapers/BytheWater/contents/images/2560x1600.jpg"
    matched = pool.matched_segments(pattern, path)
    assert matched == ["BytheWater"]
    assert (
        pool.output_name("plasma-workspace-wallpapers", path, matched) == "plasma-workspace-wallpapers-bythewater.png"
    )
    inside = "usr/share/gcompris-qt/rcc/explore_monuments.rcc/src/resource/usa/mountRushmore.webp"
    matched = pool.matched_segments("usr/share/gcompris-qt/rcc/explore_monuments.rcc/src/resource/*/*.webp", inside)
    assert (
        pool.output_name("gcompris-qt-data", inside, matched)
        == "gcompris-qt-data-explore-monuments-usa-mountrushmore.png"
    )
    plain = "usr/share/backgrounds/Picture_0B_by_freespace.jpg"
    assert pool.matched_segments(plain, plain) == []
    assert (
        pool.output_name("lomiri-wallpapers-16.04", plain, []) == "lomiri-wallpapers-16.04-picture-0b-by-freespace.png"
    )
    assert pool.matched_segments("usr/share/*.jpg", "usr/share/deeper/a.jpg") is None  # * stays in one segment


def test_the_shipped_sources_file_pins_every_package():
    sources = pool.load_sources(pool.DEFAULT_SOURCES)
    assert len({s.package for s in sources}) >= 5
    evaluation_packages = {"tuxpaint-data", "opencv-doc", "opencv-data", "scikit-image", "scikit-learn", "matplotlib"}
    for source in sources:
        assert source.version and source.licence and source.files
        assert source.package.removeprefix("python3-") not in evaluation_packages
    versions = {}
    for source in sources:
        assert versions.setdefault(source.package, source.version) == source.version  # one version per package


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('package = "a"\nversion = "1"\nlicence = "CC0-1.0"\nfiles = []', "files missing or empty"),
        ('package = "a"\nversion = "1"\nfiles = ["x.jpg"]', "licence missing or empty"),
        ('package = "a"\nversion = "1"\nlicence = "CC0-1.0"\nfiles = ["../x.jpg"]', "relative path"),
        ('package = "a"\nversion = "1"\nlicence = "CC0-1.0"\nfiles = ["x.jpg"]\nlicense = "MIT"', "unknown keys"),
    ],
)
def test_a_bad_sources_file_is_refused_with_a_reason(tmp_path, table, message):
    path = tmp_path / "sources.toml"
    path.write_text(f"[[source]]\n{table}\n")
    with pytest.raises(ValueError, match=message):
        pool.load_sources(path)


def test_sources_csv_has_the_shared_data_columns_then_the_licence(tmp_path):
    entries = [
        pool.PoolEntry("b.png", "pkg", "1:2-3", "/usr/share/b.jpg", "2560x1600", "1280x800", "GPL-2+", "ab" * 32),
        pool.PoolEntry("a.png", "pkg", "1:2-3", "/usr/share/a,b.jpg", "300x400", "300x400", "CC-BY-SA-4.0", "cd" * 32),
    ]
    pool.write_sources_csv(tmp_path / "SOURCES.csv", entries)
    with open(tmp_path / "SOURCES.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0][:6] == ["file", "debian_package", "version", "path_in_package", "original_size", "stored_size"]
    assert rows[0][6:] == ["licence", "source_sha256"]
    assert [row[0] for row in rows[1:]] == ["a.png", "b.png"]
    assert pool.read_sources_csv(tmp_path / "SOURCES.csv") == sorted(entries, key=lambda e: e.file)
    shared = SHARED_DATA / "SOURCES.csv"
    if shared.is_file():
        with open(shared, newline="") as f:
            assert next(csv.reader(f)) == rows[0][:6]


# Qt resource bundles


def rcc_bundle(files: dict[str, bytes], compressed: frozenset[str] = frozenset()) -> bytes:
    """A format-2 Qt resource bundle with files in folders one level deep: {"dir/name": contents}."""
    folders: dict[str, list[str]] = {}
    for path in files:
        folder, name = path.split("/")
        folders.setdefault(folder, []).append(name)
    names, data, nodes = bytearray(), bytearray(), []

    def name_at(text: str) -> int:
        at = len(names)
        names.extend(struct.pack(">HI", len(text), 0) + text.encode("utf-16-be"))
        return at

    def directory(name: int, count: int, first: int) -> bytes:
        return struct.pack(">IHIIQ", name, 0x02, count, first, 0)

    nodes.append(directory(0, len(folders), 1))
    next_child = 1 + len(folders)
    for folder, children in folders.items():
        nodes.append(directory(name_at(folder), len(children), next_child))
        next_child += len(children)
    for folder, children in folders.items():
        for child in children:
            path = f"{folder}/{child}"
            payload = files[path]
            if path in compressed:
                payload = struct.pack(">I", len(payload)) + zlib.compress(payload)
            nodes.append(struct.pack(">IHHHIQ", name_at(child), int(path in compressed), 0, 0, len(data), 0))
            data.extend(struct.pack(">I", len(payload)) + payload)
    tree = b"".join(nodes)
    header = 20
    return (
        b"qres"
        + struct.pack(">IIII", 2, header, header + len(tree), header + len(tree) + len(data))
        + tree
        + data
        + names
    )


def test_files_inside_a_qt_resource_bundle_are_read():
    files = {"img/a.webp": b"first", "img/b.webp": b"second" * 50, "snd/c.ogg": b"third"}
    assert dict(resource_files(rcc_bundle(files, compressed=frozenset({"img/b.webp"})))) == files
    with pytest.raises(ValueError, match="not a Qt resource bundle"):
        list(resource_files(b"PK\x03\x04" + bytes(40)))


# the whole build, with packages faked


@pytest.fixture
def fake_package(tmp_path, monkeypatch, cups):
    """An unpacked package: photos, a copy of one, a grey one, a drawing, a tiny one, an eval copy, a bundle."""
    root = tmp_path / "package"
    folder = root / "usr/share/backgrounds"
    folder.mkdir(parents=True)
    photos = {
        name: crop_share(train_photo(name), 0.2, 0.2, 0.2, 0.2) for name in ("citrus-fruits.png", "yellowflower.png")
    }
    small_cups = resized(cups, 0.35)
    (folder / "cups.png").write_bytes(png_bytes(small_cups))
    (folder / "cups2.jpg").write_bytes(jpeg_bytes(small_cups, 70))  # near duplicate of cups.png
    (folder / "citrus.png").write_bytes(png_bytes(photos["citrus-fruits.png"]))
    (folder / "citrus2.png").write_bytes(png_bytes(photos["citrus-fruits.png"]))  # exact duplicate
    (folder / "grey.png").write_bytes(png_bytes(np.repeat(small_cups[..., :1], 3, axis=2)))
    (folder / "drawing.png").write_bytes(png_bytes(stripes()))
    (folder / "tiny.png").write_bytes(png_bytes(small_cups[:100, :100]))
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff not really")
    (folder / "README.txt").write_text("not matched by the sources")
    ladybird = resized(train_photo("ladybird.png"), 0.35)
    (folder / "ladybird.jpg").write_bytes(jpeg_bytes(crop_share(ladybird, 0.04, 0, 0, 0.03), 80))
    bundle = rcc_bundle({"res/flower.webp": png_bytes(photos["yellowflower.png"]), "res/icon.txt": b"x"})
    (root / "usr/share/game.rcc").write_bytes(bundle)
    evaluation = tmp_path / "eval"
    evaluation.mkdir()
    Image.fromarray(ladybird).save(evaluation / "ladybird.png")
    monkeypatch.setattr(pool.debian_packages, "download", lambda package, version, folder: folder / "fake.deb")
    monkeypatch.setattr(pool.debian_packages, "unpack", lambda deb, folder: root)
    sources = [
        pool.Source("pkg", "1.0-1", "GPL-2+", ("usr/share/backgrounds/*",), ("usr/share/backgrounds/README.txt",)),
        pool.Source("pkg", "1.0-1", "CC0-1.0", ("usr/share/game.rcc/res/*.webp",)),
    ]
    return sources, evaluation


def test_the_pool_keeps_photos_and_counts_what_it_skips(tmp_path, fake_package):
    sources, evaluation = fake_package
    out = tmp_path / "pool"
    logged = []
    summary = pool.build_pool(sources, out, eval_dirs=[evaluation], log=logged.append)
    assert sorted(p.name for p in out.iterdir()) == [
        "SOURCES.csv",
        "pkg-citrus.png",
        "pkg-cups.png",
        "pkg-game-flower.png",
    ]
    assert dict(summary.skipped) == {
        pool.UNREADABLE: 1,
        pool.TOO_SMALL: 1,
        pool.NOT_A_PHOTO: 1,
        pool.GREY: 1,
        pool.DUPLICATE: 1,
        pool.NEAR_DUPLICATE: 1,
        pool.NEAR_EVAL: 1,
    }
    assert summary.seen["pkg"] == 10 and summary.taken["pkg"] == 3 and summary.eval_photos == 1
    assert any("ladybird.jpg: near-duplicate of eval ladybird.png" in line for line in logged)
    rows = {row.file: row for row in pool.read_sources_csv(out / "SOURCES.csv")}
    assert rows["pkg-game-flower.png"].path_in_package == "/usr/share/game.rcc/res/flower.webp"
    assert rows["pkg-game-flower.png"].licence == "CC0-1.0" and rows["pkg-cups.png"].licence == "GPL-2+"
    lines = summary.lines()
    assert "3 photos taken" in lines[-3] and "near-duplicate of eval 1" in lines[-2]


def test_a_second_build_gives_the_same_bytes(tmp_path, fake_package):
    sources, evaluation = fake_package
    first, second = tmp_path / "one", tmp_path / "two"
    for out in (first, second):
        pool.build_pool(sources, out, eval_dirs=[evaluation], log=lambda line: None)
    assert [p.name for p in sorted(first.iterdir())] == [p.name for p in sorted(second.iterdir())]
    assert all(p.read_bytes() == (second / p.name).read_bytes() for p in first.iterdir())
    pool.build_pool(sources, first, eval_dirs=[evaluation], log=lambda line: None)  # replaces its own pool


def test_a_folder_that_is_no_pool_is_not_replaced(tmp_path, fake_package):
    sources, evaluation = fake_package
    out = tmp_path / "precious"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not a pool folder"):
        pool.build_pool(sources, out, eval_dirs=[evaluation], log=lambda line: None)
    assert (out / "notes.txt").read_text() == "keep me"


def test_two_files_with_one_output_name_are_refused(tmp_path, fake_package):
    sources, evaluation = fake_package
    twice = [sources[0], pool.Source("pkg", "1.0-1", "MIT", ("usr/share/backgrounds/cups.png",))]
    with pytest.raises(ValueError, match="would both be stored as pkg-cups.png"):
        pool.build_pool(twice, tmp_path / "pool", eval_dirs=[evaluation], log=lambda line: None)


# the patch sampler on a pool folder with bad files


def test_patch_sampler_skips_files_it_cannot_use_and_counts_them(tmp_path, capsys, cups):
    clean, dirty = tmp_path / "clean", tmp_path / "dirty"
    clean.mkdir()
    dirty.mkdir()
    photo = png_bytes(cups[:300, :400])
    grey = Image.fromarray(cups[:200, :200]).convert("L")
    for folder in (clean, dirty):
        (folder / "b-photo.png").write_bytes(photo)
        grey.save(folder / "c-grey.png")  # greyscale and soft: read, its flat patches redrawn as before
    (dirty / "a-truncated.png").write_bytes(photo[: len(photo) // 2])
    (dirty / "d-text.png").write_text("not an image")
    (dirty / "e-empty.jpg").write_bytes(b"")
    Image.fromarray(cups[:20, :30]).save(dirty / "f-tiny.png")
    (dirty / "SOURCES.csv").write_text("file\n")  # not an image suffix: not even looked at

    sampler = PatchSampler(folders=[dirty], patch=32, seed=3)
    assert len(sampler.images) == 2
    assert sorted(sampler.unusable.values()) == [SMALLER_THAN_PATCH] + [UNREADABLE] * 3
    assert "patches: skipped 4 of 6 image files (1 smaller than the patch, 3 unreadable)" in capsys.readouterr().out

    reference = PatchSampler(folders=[clean], patch=32, seed=3)
    assert capsys.readouterr().out == ""  # nothing to report on a clean folder
    assert torch.equal(sampler.batch(8), reference.batch(8))  # bad files change nothing of the stream
    state = sampler.state()
    following = sampler.batch(4)
    sampler.load_state(state)
    assert torch.equal(sampler.batch(4), following)


def test_patch_sampler_refuses_a_folder_without_one_usable_image(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    Image.new("RGB", (16, 16)).save(tmp_path / "tiny.png")
    with pytest.raises(ValueError, match="none of the 2 image files"):
        PatchSampler(folders=[tmp_path], patch=32)


def test_rescale_pool_reads_a_sources_file_and_prints_the_summary(tmp_path, fake_package, capsys):
    from models.cli import main

    _, evaluation = fake_package
    sources = tmp_path / "sources.toml"
    sources.write_text(
        '[[source]]\npackage = "pkg"\nversion = "1.0-1"\nlicence = "GPL-2+"\nfolder = "usr/share"\n'
        'files = ["backgrounds/*"]\nexclude = ["backgrounds/README.txt"]\n'
    )
    out = tmp_path / "pool"
    assert main(["pool", "--out", str(out), "--sources", str(sources), "--eval", str(evaluation)]) == 0
    printed = capsys.readouterr().out
    assert "1 packages: 9 files seen, 2 photos taken" in printed
    assert "near-duplicate check against 1 eval photos: 1 dropped" in printed
    assert sorted(p.name for p in out.iterdir()) == ["SOURCES.csv", "pkg-citrus.png", "pkg-cups.png"]
