"""Deployment files, checked offline: no Docker engine or cluster runs here."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from service import metrics
from service.settings import Settings
from tests.conftest import ROOT
from tests.external_tools import tool

VENV_BIN = Path(sys.executable).parent
DOCKERFILES = sorted((ROOT / "docker").glob("Dockerfile.*"))
OVERLAYS = ["gpu", "cpu"]


def venv_tool(name: str) -> str:
    path = VENV_BIN / name
    if not path.exists():
        pytest.fail(f"{name} is a dev dependency (pip install -e '.[dev]')")
    return str(path)


def run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT)


def rendered(overlay: str) -> list[dict]:
    result = run(venv_tool("kubectl"), "kustomize", f"k8s/overlays/{overlay}")
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def by_kind(docs: list[dict], kind: str) -> dict:
    return next(d for d in docs if d["kind"] == kind)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint(dockerfile):
    result = run(venv_tool("hadolint"), str(dockerfile))
    assert result.returncode == 0, result.stdout + result.stderr


SERVING_DOCKERFILES = [p for p in DOCKERFILES if p.name not in ("Dockerfile.train", "Dockerfile.prometheus")]


@pytest.mark.parametrize("dockerfile", SERVING_DOCKERFILES, ids=lambda p: p.name)
def test_serving_images_run_as_non_root_with_a_healthcheck(dockerfile):
    text = dockerfile.read_text()
    assert "HEALTHCHECK" in text and "/healthz" in text
    assert re.search(r"^USER 10001$", text, re.M)
    assert text.count("FROM ") >= 2  # multi-stage


def test_dockerignore_keeps_data_and_checkpoints_out():
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", "runs", "data", "checkpoints", "models/retired"} <= set(ignored)


def test_compose_file_follows_the_compose_specification():
    result = run(venv_tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", "docker-compose.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    gpu = compose["services"]["rescale"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu == {"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}
    assert compose["services"]["rescale-cpu"]["profiles"] == ["cpu"]
    assert compose["services"]["train"]["profiles"] == ["train"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_rendered_overlays_match_kubernetes_schemas(overlay, tmp_path):
    result = run(venv_tool("kubectl"), "kustomize", f"k8s/overlays/{overlay}")
    assert result.returncode == 0, result.stderr
    manifest = tmp_path / f"{overlay}.yaml"
    manifest.write_text(result.stdout)
    check = run(venv_tool("kubernetes-validate"), "--strict", str(manifest))
    assert check.returncode == 0, check.stdout + check.stderr
    for resource in ("deployment/rescale", "horizontalpodautoscaler/rescale", "job/rescale-train", "service/rescale"):
        assert f"passed for resource {resource}" in check.stdout


def test_gpu_overlay_requests_whole_gpus_on_gpu_nodes():
    deployment = by_kind(rendered("gpu"), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    resources = pod["containers"][0]["resources"]
    assert resources["requests"]["nvidia.com/gpu"] == resources["limits"]["nvidia.com/gpu"] == 1
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"


def test_probes_and_graceful_termination_fit_the_service():
    docs = rendered("cpu")
    pod = by_kind(docs, "Deployment")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["startupProbe"]["httpGet"]["path"] == "/readyz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    drain = float(by_kind(docs, "ConfigMap")["data"]["RESCALE_DRAIN_TIMEOUT_S"])
    assert pod["terminationGracePeriodSeconds"] > drain + container["lifecycle"]["preStop"]["sleep"]["seconds"]
    monitor, service = by_kind(docs, "ServiceMonitor"), by_kind(docs, "Service")
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"] == "http"
    assert container["ports"][0]["name"] == "http"


def test_prometheus_rules_and_config():
    promtool = tool("promtool")
    assert run(promtool, "check", "rules", "docker/prometheus/alerts.yml").returncode == 0
    for profile, target in (("gpu", "rescale:8000"), ("cpu", "rescale-cpu:8000")):
        path = f"docker/prometheus/prometheus-{profile}.yml"
        config = run(promtool, "check", "config", path)
        assert config.returncode == 0, config.stdout + config.stderr
        scraped = yaml.safe_load((ROOT / path).read_text())["scrape_configs"][0]["static_configs"][0]["targets"]
        assert scraped == [target]  # only the running profile's service: the other would always be "down"
    alerts = yaml.safe_load((ROOT / "docker/prometheus/alerts.yml").read_text())
    rule = yaml.safe_load((ROOT / "k8s/base/prometheusrule.yaml").read_text())
    assert rule["spec"] == alerts
    assert {r["alert"] for r in alerts["groups"][0]["rules"]} == {
        "RescaleHighErrorRate",
        "RescaleHighP99Latency",
        "RescaleQueueSaturated",
        "RescaleTargetDown",
        "RescaleTargetAbsent",
    }
    by_name = {r["alert"]: r for r in alerts["groups"][0]["rules"]}
    assert by_name["RescaleTargetDown"]["expr"] == 'up{job="rescale"} == 0'
    assert by_name["RescaleTargetAbsent"]["expr"] == 'absent(up{job="rescale"})'
    assert "rescale_latency_objective_seconds" in by_name["RescaleHighP99Latency"]["expr"]


def test_grafana_has_no_anonymous_access_and_each_profile_its_own_prometheus():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert compose["grafana"]["environment"]["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert compose["prometheus"]["profiles"] == ["gpu"] and compose["prometheus-cpu"]["profiles"] == ["cpu"]
    assert "prometheus" in compose["prometheus-cpu"]["networks"]["default"]["aliases"]


def _exported_metric_names() -> set[str]:
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"], "gauge": [""]}
    return {family.name + suffix for family in metrics.REGISTRY.collect() for suffix in suffixes.get(family.type, [""])}


def test_dashboard_alerts_and_autoscaler_use_real_metrics():
    exported = _exported_metric_names()
    texts = [
        (ROOT / "docker/grafana/dashboards/rescale.json").read_text(),
        (ROOT / "docker/prometheus/alerts.yml").read_text(),
        (ROOT / "k8s/base/hpa.yaml").read_text(),
        (ROOT / "k8s/prometheus-adapter/rules.yaml").read_text(),
    ]
    used = {name for text in texts for name in re.findall(r"\brescale_[a-z_]+", text)}
    assert used and used <= exported, sorted(used - exported)


def _env_names_in_deployment_files() -> set[str]:
    names = set(re.findall(r"\b(RESCALE_[A-Z_]+)\b", (ROOT / "docker-compose.yml").read_text()))
    for path in (ROOT / "k8s").rglob("*.yaml"):
        names |= set(re.findall(r"\b(RESCALE_[A-Z_]+)\b", path.read_text()))
    for path in DOCKERFILES:
        names |= set(re.findall(r"\b(RESCALE_[A-Z_]+)\b", path.read_text()))
    return names


def test_every_environment_variable_is_a_real_setting():
    settings = {f"RESCALE_{name.upper()}" for name in Settings.model_fields}
    used = _env_names_in_deployment_files()
    assert used and used <= settings, sorted(used - settings)
