"""The compose file and the Kubernetes manifests, checked against their schemas offline.

No Docker engine or cluster runs here, so the files are validated instead: docker-compose.yml
against the Compose Specification's JSON Schema (as vendored by check-jsonschema), every
manifest in deploy/k8s against the Kubernetes schemas of kubernetes-validate (strict: an
unknown field is an error), and both against what memstream itself accepts (roles, settings).
"""

from __future__ import annotations

from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml
from check_jsonschema.builtin_schemas import get_builtin_schema

from memstream.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
K8S_VERSION = "1.33.0"
ROLES = {"model", "sink", "match", "api", "all"}


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_file_follows_the_compose_specification() -> None:
    schema = get_builtin_schema("vendor.compose-spec")
    jsonschema.validate(_compose(), schema)


def test_a_broken_compose_file_is_caught() -> None:
    """The check can fail: a service with an unknown key is refused."""
    compose = _compose()
    compose["services"]["model"]["replica"] = 2
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(compose, get_builtin_schema("vendor.compose-spec"))


def _env_names(env: dict[str, str]) -> set[str]:
    return {k for k in env if k.startswith("MEMSTREAM_")}


def _known_settings() -> set[str]:
    return {f"MEMSTREAM_{name.upper()}" for name in Settings.model_fields}


def test_compose_services_run_real_roles_with_real_settings() -> None:
    compose = _compose()
    services = compose["services"]
    for name in ("model", "sink", "match", "api"):
        command = services[name]["command"]
        assert command[:2] == ["worker", "--role"] and command[2] in ROLES, command
    assert services["model"]["deploy"]["replicas"] >= 2
    for name, service in services.items():
        env = service.get("environment") or {}
        if isinstance(env, dict):
            unknown = _env_names(env) - _known_settings()
            assert not unknown, f"{name}: {unknown} are not memstream settings"


def _manifests() -> list[tuple[Path, dict]]:
    docs = []
    for path in sorted(K8S.rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs.append((path, doc))
    return docs


def test_every_kubernetes_manifest_is_valid() -> None:
    checked = 0
    for path, doc in _manifests():
        kind = doc["kind"]
        if kind == "Kustomization":
            listed = {K8S / r for r in doc["resources"]}
            assert all(p.is_file() for p in listed), f"{path}: a resource is missing"
            continue
        if doc["apiVersion"].startswith("keda.sh/"):
            # a CRD: no schema ships with Kubernetes; check what KEDA needs to act on
            spec = doc["spec"]
            assert spec["scaleTargetRef"]["name"] == "memstream-model"
            assert all(t["type"] == "kafka" for t in spec["triggers"])
            continue
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        checked += 1
    assert checked >= 8


def test_a_broken_manifest_is_caught() -> None:
    deployment = next(d for _, d in _manifests() if d["kind"] == "Deployment")
    deployment["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)


def test_manifests_run_real_roles_and_settings() -> None:
    docs = _manifests()
    roles = set()
    for _, doc in docs:
        if doc["kind"] == "Deployment":
            [container] = doc["spec"]["template"]["spec"]["containers"]
            args = container["args"]
            assert args[:2] == ["worker", "--role"] and args[2] in ROLES, args
            roles.add(args[2])
        if doc["kind"] == "ConfigMap":
            unknown = _env_names(doc["data"]) - _known_settings()
            assert not unknown, f"{unknown} are not memstream settings"
    assert roles == {"model", "sink", "match", "api"}


def test_the_grafana_dashboard_asks_only_for_metrics_memstream_exports() -> None:
    """deploy/grafana/memstream-dashboard.json: every metric a panel queries is one the
    code defines (a renamed metric would leave an empty panel)."""
    import json
    import re

    root = Path(__file__).resolve().parents[2]
    dashboard = json.loads((root / "deploy/grafana/memstream-dashboard.json").read_text())
    asked = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"memstream_[a-z_]+", target["expr"])
    }
    source = "\n".join(p.read_text() for p in (root / "memstream").rglob("*.py"))
    defined = set(re.findall(r"\"(memstream_[a-z_]+)\"", source))
    base = {re.sub(r"_(total|bucket|sum|count)$", "", n) for n in asked}
    unknown = {n for n in base if n not in defined and f"{n}_total" not in defined}
    assert asked and unknown == set()
