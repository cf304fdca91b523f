"""The weights in models/weights: what the manifest promises, and that they work through the product."""

import io

import numpy as np
import pytest
from PIL import Image

from models.evaluation.bicubic import bicubic_round_trip, modcrop
from models.evaluation.evaluate import Method, round_trip_file
from models.evaluation.metrics import psnr_y
from models.evaluation.rate_distortion import bicubic_lossy_round_trip
from models.evaluation.report import BASE_OF
from models.inference.pipeline import downscale_image
from models.store.checkpoint import sha256_file
from models.store.publish import read_manifest
from models.store.registry import RETIRED, SHIPPED, Registry
from models.store.retire import RECORD_KEYS, due, folder_bytes
from tests.conftest import ROOT
from tests.service_helpers import png_bytes, running_server

MANIFEST = read_manifest()["models"]
LOSSY = [m for m in MANIFEST if "lossy_codec" in m["training"]]  # compression-aware: judged through codecs
# the lossless models that make new files (a superseded one still reads the files it made)
BY_VARIANT = {(m["variant"], m["scale"]): m for m in MANIFEST if m not in LOSSY and "superseded_by" not in m}
BY_NAME = {m["name"]: m for m in MANIFEST}
MAX_SHIPPED_BYTES = 60_000_000


def test_manifest_lists_exactly_the_shipped_folders_and_their_hashes():
    folders = {p.parent.name for p in SHIPPED.glob("*/model.safetensors")}
    assert {m["name"] for m in MANIFEST} == folders
    for m in MANIFEST:
        assert sha256_file(SHIPPED / m["name"] / "model.safetensors") == m["sha256"]
        assert m["weights_id"] == m["sha256"][:16]
    assert folder_bytes(SHIPPED) < MAX_SHIPPED_BYTES


def test_every_retired_model_keeps_its_folder_its_entry_and_a_record():
    """What the shipped manifest says of a retired model matches its folder under models/retired and the full
    entry kept there; its successor is superseded too (or retired), and it is no longer in the shipped set."""
    records = read_manifest()["retired"]
    kept = {m["name"]: m for m in read_manifest(RETIRED / "manifest.json")["models"]}
    assert {r["name"] for r in records} == set(kept) == {p.parent.name for p in RETIRED.glob("*/model.safetensors")}
    for record in records:
        folder = ROOT / record["folder"]
        assert folder == RETIRED / record["name"] and sha256_file(folder / "model.safetensors") == record["sha256"]
        assert record == {k: kept[record["name"]][k] for k in RECORD_KEYS} | {"folder": record["folder"]}
        successor = BY_NAME.get(record["superseded_by"], kept.get(record["superseded_by"]))
        assert "superseded_by" in successor and record["name"] not in BY_NAME


def test_per_variant_and_scale_the_shipped_set_keeps_two_models_at_most():
    """The one that makes new files and the one it superseded: anything older is due to retire."""
    assert due() == []


@pytest.mark.parametrize("entry", MANIFEST, ids=[m["name"] for m in MANIFEST])
def test_every_model_records_its_budget_and_beats_bicubic(entry):
    training = entry["training"]
    # train/ or the pool `rescale pool` makes (never a package the eval photos come from): never eval/
    assert training["train_dirs"] in (["../shared/data/train"], ["runs/pool"])
    assert training["steps"] > 0 and training["wall_time_s"] > 0
    for stage in [training, *training["earlier_stages"]]:  # a warm start's runs are in the budget too
        assert isinstance(stage["seed"], int) and stage["steps"] > 0 and stage["wall_time_s"] > 0
    if entry in LOSSY:  # through every real codec measured, against the bicubic thumbnail in the same codec
        assert entry["eval_lossy"]
        for codec, sets in entry["eval_lossy"].items():
            figures = sets["eval"]
            assert figures["images"] == 19 and figures["psnr"] > figures["bicubic"]["psnr"], codec
        return
    figures = entry["eval"]["eval"]
    assert figures["images"] == 19 and figures["psnr"] > figures["bicubic"]["psnr"]


@pytest.mark.parametrize("scale, over_bicubic", [(2, 8.0), (4, 4.0)])
def test_shipped_irn_a_clears_the_quality_floor(scale, over_bicubic):
    """-A at least 1 dB over the shipped IRN it extends, and its floor over bicubic (eval/, through the files)."""
    irn_a = BY_VARIANT[("irn-a", scale)]["eval"]["eval"]
    irn = BY_VARIANT[("irn", scale)]["eval"]["eval"]
    assert irn_a["psnr"] >= irn["psnr"] + 1.0
    assert irn_a["psnr"] >= irn_a["bicubic"]["psnr"] + over_bicubic


def eval_figures(entry: dict) -> dict:
    """A model's eval/ figures as it is judged: through JPEG q90 for a compression-aware one, else lossless."""
    return entry["eval_lossy"]["jpeg q90"]["eval"] if entry in LOSSY else entry["eval"]["eval"]


@pytest.mark.parametrize(
    "old", [m for m in MANIFEST if "superseded_by" in m], ids=lambda m: f"{m['name']}->{m['superseded_by']}"
)
def test_a_model_that_supersedes_another_is_ahead_of_it_on_eval(old):
    """Ahead on the mean, and no eval/ photo more than 0.1 dB behind (docs/results.md names the ones behind)."""
    new = BY_NAME[old["superseded_by"]]
    assert (new["variant"], new["scale"]) == (old["variant"], old["scale"])
    before, after = eval_figures(old), eval_figures(new)
    assert after["psnr"] > before["psnr"]
    behind = {k: after["per_image"][k] - v for k, v in before["per_image"].items() if after["per_image"][k] < v}
    assert all(gap > -0.1 for gap in behind.values()), behind


def extended_models(variant: str) -> list[str]:
    """What the report measures a variant against (BASE_OF), and for a DLV-IRN variant its IRN counterpart too."""
    base = BASE_OF.get(variant.upper())
    counterpart = variant.removeprefix("dlv-").upper() if variant.startswith("dlv-") else None
    return sorted({m.lower() for m in (base, counterpart) if m})


@pytest.mark.parametrize(
    "entry", [m for m in MANIFEST if m not in LOSSY and extended_models(m["variant"])], ids=lambda m: m["name"]
)
def test_shipped_model_beats_every_shipped_model_it_extends(entry):
    """-M beats its base and a DLV-IRN variant ships only where it beats its IRN counterpart (eval/ PSNR-Y)."""
    for base in extended_models(entry["variant"]):
        if (base, entry["scale"]) in BY_VARIANT:
            assert entry["eval"]["eval"]["psnr"] > BY_VARIANT[(base, entry["scale"])]["eval"]["eval"]["psnr"], base


@pytest.fixture(scope="module")
def registry():
    return Registry()


@pytest.mark.parametrize("entry", MANIFEST, ids=[m["name"] for m in MANIFEST])
def test_shipped_model_beats_bicubic_on_a_photo_crop(registry, photo, entry):
    shipped = registry.get(entry["weights_id"])
    model = registry.model(shipped.weights_id)
    hr = modcrop(np.tile(photo, (2, 2, 1)), 4 * shipped.config.scale)
    scale = shipped.config.scale
    if shipped.lossy:  # its files are JPEG/WebP: against the bicubic thumbnail saved the same way
        out, size = round_trip_file(model, shipped, hr, Method(shipped, format="jpeg", quality=90))
        reference = bicubic_lossy_round_trip(hr, scale, "jpeg", 90)[0]
        margin = 0.0  # sheep is the eval photo it helps least at q90: +0.64 dB (x2), +0.14 (x4)
    else:
        out, size = round_trip_file(model, shipped, hr, Method(shipped))
        reference = bicubic_round_trip(hr, scale)
        margin = 0.5
    assert out.shape == hr.shape and size > 0
    assert psnr_y(hr, out, scale) > psnr_y(hr, reference, scale) + margin


@pytest.mark.parametrize("entry", [m for m in MANIFEST if m["variant"].endswith("-m")], ids=lambda m: m["name"])
def test_shipped_latent_code_carries_information(registry, photo, entry):
    """A collapsed codec (a near-constant code, a few dozen bytes after zlib) would be -M in name only."""
    shipped = registry.get(entry["weights_id"])
    hr = modcrop(np.tile(photo, (2, 2, 1)), 4 * shipped.config.scale)
    code = downscale_image(registry.model(shipped.weights_id), hr).code
    assert len(np.unique(code)) > 16 and code.std() > 4


@pytest.mark.parametrize("mode", ["plain", "alpha", "metadata"])
def test_requests_without_a_model_get_the_best_shipped_one(registry, mode):
    """The default is the DLV-IRN variant where one ships (each beats its IRN counterpart), else IRN's."""
    from service.catalogue import MODES, Catalogue

    catalogue = Catalogue(registry)
    for scale in (2, 4):
        dlv, irn = "dlv-irn" + MODES[mode], "irn" + MODES[mode]
        expected = dlv if (dlv, scale) in BY_VARIANT else irn
        assert catalogue.resolve(model=None, mode=mode, scale=scale).config.variant == expected
        assert catalogue.resolve(model="irn", mode=mode, scale=scale).config.variant == irn


def test_service_serves_the_shipped_metadata_models_as_jpeg(photo):
    """The -M path end to end on real weights: JPEG with the code in EXIF, back to the exact size."""
    import httpx

    from service.settings import Settings

    shipped_m = [(v, s) for (v, s) in BY_VARIANT if v.endswith("-m")]
    if not shipped_m:
        pytest.skip("no -M weights shipped")
    # each -M model by name, then the default, which is DLV-IRN-M where it ships
    requests = [(v.removesuffix("-m"), v, s) for v, s in shipped_m]
    for scale in sorted({s for _, s in shipped_m}):
        requests.append((None, "dlv-irn-m" if ("dlv-irn-m", scale) in BY_VARIANT else "irn-m", scale))
    settings = Settings(tile_lr=64, tile_overlap_lr=8, backend="torch")  # OpenVINO's graphs: tests/test_engines.py
    with running_server(settings) as url, httpx.Client(base_url=url, timeout=120) as c:
        for model, variant, scale in requests:
            params = {"scale": scale, "mode": "metadata", "format": "jpeg"} | ({"model": model} if model else {})
            down = c.post("/downscale", params=params, files={"image": ("a.png", png_bytes(photo), "image/png")})
            assert down.status_code == 200, down.text
            assert down.headers["x-rescale-variant"] == variant
            up = c.post("/upscale", content=down.content, headers={"content-type": "image/jpeg"})
            assert up.status_code == 200 and "x-rescale-degraded" not in up.headers
            assert Image.open(io.BytesIO(up.content)).size == (photo.shape[1], photo.shape[0])


def test_bf16_serving_keeps_the_quality_of_fp32(registry, photo, graph_cache):
    """RESCALE_PRECISION=bf16 on real weights: within 0.1 dB of the fp32 path on a photo crop. The x2 IRN-A: its
    graphs are the smallest shipped network's with a restored channel, so converting them costs the least."""
    import httpx

    from service.settings import Settings

    entry = registry.find("irn-a", 2)
    model = registry.model(entry.weights_id)
    hr = modcrop(np.tile(photo, (2, 2, 1)), 2)
    fp32, _ = round_trip_file(model, entry, hr, Method(entry))
    settings = Settings(  # bf16 as served, on OpenVINO
        precision="bf16", tile_lr=64, tile_overlap_lr=8, backend="openvino", compile_cache_dir=graph_cache
    )
    with running_server(settings) as url, httpx.Client(base_url=url, timeout=120) as c:
        params = {"scale": 2, "mode": "alpha"}
        down = c.post("/downscale", params=params, files={"image": ("a.png", png_bytes(hr), "image/png")})
        up = c.post("/upscale", content=down.content, headers={"content-type": "image/png"})
    bf16 = np.array(Image.open(io.BytesIO(up.content)))
    assert bf16.shape == hr.shape and not np.array_equal(bf16, fp32)
    assert abs(psnr_y(hr, bf16, 2) - psnr_y(hr, fp32, 2)) < 0.1
