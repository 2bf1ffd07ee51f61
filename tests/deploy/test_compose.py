"""compose/: the full stack, checked without a Docker engine.

- docker-compose.yml validates against the Compose Specification schema (vendored in
  tests/schemas/) and its pieces fit: bind mounts exist, the gateway gets the image's
  config path, dependencies it waits for have health checks, the gateway's route
  file is valid and names only compose services, Prometheus scrapes the gateway's
  admin port, Grafana's provisioned data source and dashboard folder match;
- the Grafana dashboard is well formed and the metric names its queries use are
  exactly those listed in compose/grafana/dashboard-metrics.txt;
- that every listed name is served by a running gateway's ``/metrics`` is checked
  by ``test_dashboard_metrics_exist``, which needs ``meshgate run --admin`` (the
  admin server and metrics) and skips until that is there.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from gateway.asyncapi import build_document, load_mesh
from gateway.config import load_config
from tests.brokers import NATS_PORT, NATS_URL, require_port, unique_name
from tests.deploy.dockerfile import ROOT, load
from tests.deploy.schemas import (
    assert_valid_asyncapi,
    asyncapi_validator,
    compose_validator,
    schema_errors,
)

COMPOSE = ROOT / "compose"
DASHBOARD = COMPOSE / "grafana" / "dashboards" / "meshgate.json"
METRIC_LIST = COMPOSE / "grafana" / "dashboard-metrics.txt"
BROKERS = {"kafka", "rabbitmq", "mosquitto", "nats"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((COMPOSE / "docker-compose.yml").read_text())
    return loaded


def test_compose_file_matches_the_compose_spec(compose: dict[str, Any]) -> None:
    errors = schema_errors(compose_validator(), compose)
    assert not errors, errors


def test_compose_services_fit(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert BROKERS | {"meshgate", "prometheus", "grafana", "jaeger"} <= set(services)
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (COMPOSE / source).exists(), f"{name}: {source} does not exist"
        depends = service.get("depends_on") or {}
        if isinstance(depends, list):  # short form: started, not healthy
            depends = {name: {"condition": "service_started"} for name in depends}
        for dependency, condition in depends.items():
            if condition["condition"] == "service_healthy":
                assert "healthcheck" in services[dependency], f"{dependency}: no healthcheck"
    gateway = services["meshgate"]
    assert (COMPOSE / gateway["build"]["context"] / gateway["build"]["dockerfile"]).exists()
    command = load()[-1].all("CMD")[-1].exec_form()
    assert command is not None
    config_path = command[-1]
    assert f"./gateway.yaml:{config_path}:ro" in gateway["volumes"]
    assert any(v.endswith(":/var/lib/meshgate") for v in gateway["volumes"])
    admin_port = command[command.index("--admin") + 1].rsplit(":", 1)[1]
    assert f"127.0.0.1:{admin_port}:{admin_port}" in gateway["ports"]
    assert set(gateway["depends_on"]) == BROKERS
    # Prometheus scrapes the gateway's admin port.
    prometheus = yaml.safe_load((COMPOSE / "prometheus" / "prometheus.yml").read_text())
    (job,) = prometheus["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    assert job["static_configs"][0]["targets"] == [f"meshgate:{admin_port}"]
    # Traces go to a service of the stack.
    endpoint = gateway["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"]
    assert re.match(r"http://(jaeger|otel-collector):43(17|18)$", endpoint)


def test_compose_route_file(
    compose: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = COMPOSE / "gateway.yaml"
    config = load_config(path)
    services = set(compose["services"])
    for name, (_cls, options) in config.connectors.items():
        dumped = options.model_dump(mode="json")
        addresses = [dumped.get("url"), *(dumped.get("servers") or [])]
        addresses += [f"//{a}" for a in dumped.get("bootstrap_servers") or []]
        hosts = {urlsplit(a).hostname for a in addresses if a}
        assert hosts and hosts <= services, f"connector {name}: {hosts} are not services"
    assert_valid_asyncapi(asyncapi_validator(), build_document(load_mesh([str(path)])))


def test_grafana_provisioning_matches_the_dashboard(compose: dict[str, Any]) -> None:
    grafana = compose["services"]["grafana"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in grafana["volumes"]}
    provisioning = COMPOSE / mounts["/etc/grafana/provisioning"].removeprefix("./")
    sources = yaml.safe_load((provisioning / "datasources" / "prometheus.yaml").read_text())
    uids = {s["uid"]: s for s in sources["datasources"]}
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "meshgate.yaml").read_text())[
        "providers"
    ]
    folder = mounts[provider["options"]["path"]]
    assert (COMPOSE / folder / DASHBOARD.name).exists()
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert uids["prometheus"]["url"] == "http://prometheus:9090"
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    for panel in panels:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] in uids, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["expr"].count("(") == target["expr"].count(")"), target["expr"]


# -- the dashboard's metric names --------------------------------------------------------

_PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
    "bool", "offset", "le",
}  # fmt: skip


def metric_names(expr: str) -> set[str]:
    """Metric family names a PromQL expression reads (histogram suffixes removed)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # label values
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", text)  # grouping labels
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges
    names = set()
    for match in re.finditer(r"(?<![\w$.])([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\()?", text):
        name, call = match.group(1), match.group(2)
        if call or name in _PROMQL_WORDS:
            continue
        names.add(re.sub(r"_(bucket|sum|count)$", "", name) if name.endswith("_bucket") else name)
    return names


def dashboard_metric_names() -> set[str]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    names: set[str] = set()
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            names |= metric_names(target["expr"])
    for variable in dashboard["templating"]["list"]:
        query = variable["query"]["query"] if isinstance(variable["query"], dict) else ""
        found = re.fullmatch(r"label_values\((\w+),\s*\w+\)", query)
        if found:
            names.add(found.group(1))
    return names


def listed_metric_names() -> list[str]:
    lines = METRIC_LIST.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_metric_name_parser() -> None:
    assert metric_names(
        'histogram_quantile(0.99, sum by (route, le) (rate(a_seconds_bucket{route=~"$r"}'
        "[$__rate_interval])))"
    ) == {"a_seconds"}
    assert metric_names("min by (connector) (up_gauge) == 0") == {"up_gauge"}
    assert metric_names('sum(increase(x_total{outcome=~"a|b"}[$__range]))') == {"x_total"}


def test_dashboard_metric_list_is_complete() -> None:
    listed = listed_metric_names()
    assert listed == sorted(set(listed)), "keep dashboard-metrics.txt sorted, no repeats"
    assert dashboard_metric_names() == set(listed)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.mark.integration
def test_dashboard_metrics_exist(tmp_path: Path) -> None:
    """Each name of dashboard-metrics.txt in a running gateway's /metrics (after traffic)."""
    cli = [sys.executable, "-m", "gateway.cli"]
    require_port("NATS", NATS_PORT)
    import asyncio

    import nats

    prefix, port = unique_name("metrics"), _free_port()
    config = tmp_path / "gateway.yaml"
    config.write_text(
        f"""\
gateway: {{id: metrics-check, drain_timeout_seconds: 5}}
connectors:
  bus: {{type: nats, servers: ["{NATS_URL}"]}}
routes:
  - name: check
    from: {{connector: bus, subject: "{prefix}.in"}}
    to:
      - {{connector: bus, subject: "{prefix}.out", jetstream: false}}
""",
        encoding="utf-8",
    )
    process = subprocess.Popen(
        [*cli, "run", "--no-watch", "--admin", f"127.0.0.1:{port}", str(config)],
        cwd=ROOT,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"

    def get(path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(base + path, timeout=3) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, ""
        except OSError:
            return 0, ""

    async def traffic() -> None:
        client = await nats.connect(NATS_URL)
        try:
            subscription = await client.subscribe(f"{prefix}.out")
            headers = {"ce-specversion": "1.0", "ce-id": "m-1", "ce-source": "/t", "ce-type": "t"}
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                await client.publish(f"{prefix}.in", b"{}", headers=headers)
                try:
                    await subscription.next_msg(timeout=0.5)
                    return
                except TimeoutError:
                    continue
            raise AssertionError("no event came through the gateway")
        finally:
            await client.close()

    try:
        deadline = time.monotonic() + 30
        while get("/readyz")[0] != 200:
            assert time.monotonic() < deadline, "the gateway did not become ready"
            time.sleep(0.1)
        asyncio.run(traffic())
        status, text = get("/metrics")
        assert status == 200
    finally:
        process.terminate()
        process.wait(timeout=30)
    served = set()
    for line in text.splitlines():
        found = re.match(r"# TYPE (\S+) |([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]", line)
        if found:
            name = found.group(1) or found.group(2)
            served.add(name)
            served.add(re.sub(r"_(bucket|sum|count|created)$", "", name))
    missing = [name for name in listed_metric_names() if name not in served]
    assert not missing, f"not in /metrics: {missing}"


def test_traffic_script_starts() -> None:
    """compose/traffic.py imports what the image provides (nats-py, aiomqtt, meshgate)."""
    result = subprocess.run(
        [sys.executable, str(COMPOSE / "traffic.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "--nats" in result.stdout and "--mqtt" in result.stdout
