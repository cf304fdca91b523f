"""A replica that starts in seconds on little memory: engines built on first use and bounded in number, a start-up
check that refuses to serve with one line, and the models named for preloading."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from models.inference.engine_set import EngineSet
from models.inference.engines import engine_key
from models.inference.openvino_engine import OpenVINOEngine, graph_cache_path
from models.store.registry import Registry
from service import preflight, warm
from service.runtime import preloaded
from service.settings import Settings
from tests.conftest import ROOT


@pytest.fixture
def registry(weights) -> Registry:
    return Registry([weights["irn-x2"], weights["irn-a-x2"], weights["irn-a-x4"]], include_shipped=False)


def test_engines_build_on_first_use_and_the_least_recently_used_is_dropped(registry):
    engines = EngineSet(registry, backend="torch", max_loaded=2)
    first, second, third = registry.entries
    assert engines.loaded == []
    built = engines.engine(first)
    assert engines.engine(first) is built  # kept while within the bound
    engines.engine(second)
    engines.engine(first)  # now the most recently used
    engines.engine(third)
    assert engines.loaded == [(first, "cpu"), (third, "cpu")]
    assert engines.evictions == 1
    assert engines.engine(second) is not None and engines.loaded == [(third, "cpu"), (second, "cpu")]


def test_engines_idle_for_long_are_dropped_and_kept_ones_stay(registry):
    engines = EngineSet(registry, backend="torch")
    first, second, _ = registry.entries
    engines.engine(first)
    engines.engine(second)
    assert engines.drop_idle(60) == []  # both just used
    assert engines.drop_idle(0, keep=frozenset({second})) == [(first, "cpu")]  # preloaded models stay
    assert engines.loaded == [(second, "cpu")]
    assert engines.engine(first) is not None  # and a dropped one builds again on its next use


def test_the_signature_of_a_result_is_known_before_its_engine_is_built(registry):
    """It is part of the ETag: the first request and later ones must agree."""
    engines = EngineSet(registry, max_loaded=1)
    wid = next(iter(registry.entries))
    before = engines.signature(wid)
    engines.engine(wid)
    assert engines.signature(wid) == before
    assert before.startswith("OpenVINOEngine-fp32-")


def test_a_bound_below_one_is_refused(registry):
    with pytest.raises(ValueError, match=r"max_loaded must be at least 1 \(or None: no bound\), got 0"):
        EngineSet(registry, max_loaded=0)


def test_preload_names_models_as_v1_models_lists_them(registry):
    assert preloaded(registry, []) == []
    assert preloaded(registry, ["all"]) == list(registry.entries)
    assert len(preloaded(registry, ["irn-a-x4", "irn-x2"])) == 2
    with pytest.raises(ValueError, match=r"RESCALE_PRELOAD names irn-x8; known: all, irn-a-x2, irn-a-x4, irn-x2"):
        preloaded(registry, ["irn-x8"])


def test_a_read_only_cache_must_hold_every_graph(registry, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    preflight.check_graph_cache(cache, registry)  # made when missing, writable: fine
    monkeypatch.setattr(preflight, "writable", lambda folder: False)
    with pytest.raises(OSError, match=r"the graph cache .* is read-only and lacks the converted graphs of irn x2"):
        preflight.check_graph_cache(cache, registry)
    for wid, entry in registry.entries.items():
        for name in OpenVINOEngine.graph_names(entry.config):
            graph_cache_path(cache, engine_key(wid), name).write_text("<net/>")
    preflight.check_graph_cache(cache, registry)  # complete: a read-only cache from the image build serves


def test_warm_fills_what_a_read_only_replica_of_the_same_settings_needs(weights, tmp_path, monkeypatch, capsys):
    """What an image build runs: the settings' models (here two, no shipped ones), one process each."""
    folders = [weights["irn-x2"], weights["irn-a-x2"]]
    monkeypatch.setenv("RESCALE_WEIGHTS_DIRS", json.dumps([str(f) for f in folders]))
    monkeypatch.setenv("RESCALE_INCLUDE_SHIPPED_WEIGHTS", "false")
    cache = tmp_path / "cache"
    warm.main(["--cache-dir", str(cache), "--jobs", "2"])
    assert f"2 models ready in {cache} (" in capsys.readouterr().out
    monkeypatch.setattr(preflight, "writable", lambda folder: False)
    preflight.check_graph_cache(cache, Registry(folders, include_shipped=False))  # every graph is there


def test_a_cache_that_cannot_be_made_is_refused(registry):
    with pytest.raises(OSError, match=r"the graph cache /proc/rescale does not exist and cannot be made"):
        preflight.check_graph_cache(Path("/proc/rescale"), registry)


@pytest.mark.parametrize(
    ("env", "reason"),
    [
        ({"RESCALE_WEIGHTS_DIRS": '["/nonexistent/irn-x2"]'}, "/nonexistent/irn-x2 must hold model.safetensors"),
        ({"RESCALE_PRELOAD": '["irn-x8"]'}, "RESCALE_PRELOAD names irn-x8"),
    ],
)
def test_serve_refuses_to_start_with_one_line(env, reason, weights, tmp_path):
    variables = {
        "RESCALE_WEIGHTS_DIRS": f'["{weights["irn-x2"]}"]',
        "RESCALE_INCLUDE_SHIPPED_WEIGHTS": "false",
        "RESCALE_COMPILE_CACHE_DIR": str(tmp_path / "cache"),
        "PATH": "/usr/bin:/bin",
        **env,
    }
    result = subprocess.run(
        [sys.executable, "-m", "models", "serve", "--port", "1"],
        env=variables,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().count("\n") == 0 and result.stderr.startswith("rescale serve: ")
    assert reason in result.stderr


def test_settings_default_to_a_lean_replica():
    settings = Settings()
    assert settings.preload == [] and settings.max_loaded_models == 4 and settings.unload_idle_s == 120
