"""The engines: OpenVINO gives what eager PyTorch gives (within one 8-bit code), shipped models tile within
one code of whole-image work at their measured context, and precision is chosen by what the device has."""

import multiprocessing.process

import numpy as np
import pytest
import torch

from models.inference import precision
from models.inference.engine_set import EngineSet
from models.inference.engines import TorchEngine, engine_key, make_engine
from models.inference.openvino_engine import OpenVINOEngine, graph_cache_path
from models.inference.pipeline import downscale_image, upscale_image
from models.inference.precision import resolve_precision
from models.inference.tiles import Tiling
from models.store.checkpoint import load_model
from models.store.registry import Registry, weights_id
from tests.conftest import SHARED_DATA

pytest.importorskip("openvino")


def codes_apart(a: np.ndarray | None, b: np.ndarray | None) -> int:
    return 0 if a is None else int(np.abs(a.astype(int) - b.astype(int)).max())


def file_contents_apart(a, b) -> int:
    return max(codes_apart(getattr(a, k), getattr(b, k)) for k in ("rgb", "alpha", "code"))


# every kind of shipped network: IRN, -A, -M, DLV with -M, and the compression-aware IRN with its LR restorer
@pytest.mark.parametrize(
    ("variant", "scale", "restorer_layers"),
    [("irn", 2, 0), ("irn-a", 4, 0), ("irn-m", 2, 0), ("dlv-irn-m", 4, 0), ("irn", 2, 2)],
)
def test_openvino_matches_eager_fp32_within_one_code(
    model_folder, weights, photo, graph_cache, variant, scale, restorer_layers
):
    # the session server's weights where it serves this kind: their graphs are converted once, here or there
    served = weights.get(f"{variant}-x{scale}") if not restorer_layers else None
    folder = served or model_folder(variant, scale, restorer_layers=restorer_layers)
    model, key = load_model(folder), engine_key(weights_id(folder))
    engine = make_engine(model, key=key, backend="openvino", cache_dir=graph_cache)
    assert isinstance(engine, OpenVINOEngine)
    eager, converted = downscale_image(model, photo), downscale_image(engine, photo)
    assert file_contents_apart(eager, converted) <= 1
    assert codes_apart(upscale_image(model, eager), upscale_image(engine, eager)) <= 1
    if model.config.metadata:  # a -M file whose code was stripped: the graph without the code input
        eager.code = None
        assert codes_apart(upscale_image(model, eager), upscale_image(engine, eager)) <= 1
    # a second engine reads the converted graphs from the cache instead of converting again
    names = OpenVINOEngine.graph_names(model.config)  # encode, decode (and decode with the code)
    assert len(names) == (3 if model.config.metadata else 2)
    paths = [graph_cache_path(graph_cache, key, name) for name in names]
    written = [(p.stat().st_mtime_ns, p.with_suffix(".bin").stat().st_mtime_ns) for p in paths]
    again = make_engine(model, key=key, backend="openvino", cache_dir=graph_cache)
    assert file_contents_apart(downscale_image(again, photo), converted) == 0
    assert [(p.stat().st_mtime_ns, p.with_suffix(".bin").stat().st_mtime_ns) for p in paths] == written


def test_a_torn_cache_file_is_converted_again(weights, photo, graph_cache, tmp_path, monkeypatch):
    folder = weights["irn-x2"]
    model, key = load_model(folder), engine_key(weights_id(folder))
    make_engine(model, key=key, backend="openvino", cache_dir=graph_cache).warm()  # the session's graphs
    cache = tmp_path / "cache"
    for name in OpenVINOEngine.graph_names(model.config):  # copied, then the encoder's cut short
        path = graph_cache_path(graph_cache, key, name)
        for part in (path, path.with_suffix(".bin")):
            copy = graph_cache_path(cache, key, name).with_suffix(part.suffix)
            copy.parent.mkdir(parents=True, exist_ok=True)
            copy.write_bytes(part.read_bytes())
    torn = graph_cache_path(cache, key, "encode")
    torn.write_text("<net")
    started = []  # OpenVINO's telemetry package, where installed, sends each event from a process of its own
    monkeypatch.setattr(multiprocessing.process.BaseProcess, "start", lambda process: started.append(process))
    engine = make_engine(model, key=key, backend="openvino", cache_dir=cache)
    assert file_contents_apart(downscale_image(engine, photo), downscale_image(model, photo)) <= 1
    assert torn.read_text() != "<net"  # converted again, and cached again
    assert started == []  # the conversion called out nowhere


def test_shipped_models_tile_within_one_code_of_the_whole_image_at_their_measured_context():
    """On a photo the contexts were not measured on. Eager PyTorch: the context is the network's, whichever engine
    runs it (OpenVINO's graphs match eager within one code: test_openvino_matches_eager_fp32_within_one_code)."""
    path = SHARED_DATA / "eval" / "ocean_waves.png"
    if not path.is_file():
        pytest.skip(f"{path} not present")
    from models.files.images import load_rgb

    image = load_rgb(path)[200:328, 300:460]  # LR 64 x 80 at x2, 32 x 40 at x4: seams both ways
    registry = Registry()
    engines_ = EngineSet(registry, backend="torch")
    for wid, entry in registry.entries.items():
        engine, tiling = engines_.engine(wid), engines_.tiling(wid)
        small = Tiling(tile=2 * tiling.overlap + 24, overlap=tiling.overlap)  # many seams on a small image
        whole, tiled = downscale_image(engine, image), downscale_image(engine, image, small)
        assert file_contents_apart(whole, tiled) <= 1, entry.label
        assert codes_apart(upscale_image(engine, whole), upscale_image(engine, whole, small)) <= 1, entry.label


def test_bf16_only_where_the_device_computes_it(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(precision, "native_bf16", lambda device: False)
    assert resolve_precision("bf16", cpu) == "fp32" and resolve_precision("auto", cpu) == "fp32"
    monkeypatch.setattr(precision, "native_bf16", lambda device: True)
    assert resolve_precision("bf16", cpu) == "bf16" and resolve_precision("auto", cpu) == "bf16"
    assert resolve_precision("fp32", cpu) == "fp32"
    with pytest.raises(ValueError, match="precision must be fp32, bf16 or auto; got 'fp16'"):
        resolve_precision("fp16", cpu)


def test_backend_choice(model_folder):
    model = load_model(model_folder("irn", 2))
    assert isinstance(make_engine(model, key="k", backend="torch"), TorchEngine)
    assert isinstance(make_engine(model, key="k", backend="auto"), OpenVINOEngine)  # the CPU, openvino installed
    with pytest.raises(ValueError, match="backend must be one of auto, torch, openvino; got 'onnx'"):
        make_engine(model, key="k", backend="onnx")


def test_the_signature_in_etags_names_the_engine_its_precision_and_the_tiles(model_folder):
    """Backends and tilings agree within one code, not bit for bit: a strong ETag must change with them."""
    registry = Registry([model_folder("irn", 2)], include_shipped=False)
    (wid,) = registry.entries
    converted = EngineSet(registry, tile_lr=64, overlap_lr=8)
    converted.engine(wid)
    eager = EngineSet(registry, backend="torch", tile_lr=64, overlap_lr=6)
    eager.engine(wid)
    assert converted.signature(wid) == "OpenVINOEngine-fp32-64-8"
    assert eager.signature(wid) == "TorchEngine-fp32-64-6"
