"""`routes check --message` for every source kind: the connector builds the native message
(``Connector.dry_run_delivery``) and only the routes whose source receives it are reported."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from connectors.base import Connector
from connectors.errors import MessageSpecError
from gateway.cli import main
from gateway.config import GatewayConfig, load_config
from gateway.dryrun import check_event, check_message, format_reports

CONFIG = """\
gateway: {id: g}
connectors:
  k: {type: kafka, bootstrap_servers: "127.0.0.1:1"}
  n: {type: nats, servers: ["nats://127.0.0.1:1"]}
  m: {type: mqtt, host: 127.0.0.1, port: 1, protocol: 5}
  a: {type: amqp, url: "amqp://guest:guest@127.0.0.1:1/"}
  mem: {type: memory}
routes:
  - name: from-kafka
    from: {connector: k, topics: [orders], group_id: gw}
    ingress: {type: t.kafka, source: "kafka://{topic}"}
    to: [{connector: n, subject: "k.{key}", jetstream: false}]
  - name: from-kafka-pattern
    from: {connector: k, pattern: "audit\\\\..*", group_id: gw}
    ingress: {type: t.audit, source: "kafka://{topic}"}
    to: [{connector: n, subject: audit, jetstream: false}]
  - name: from-mqtt
    from: {connector: m, topic: "plant/+/t"}
    ingress: {type: t.mqtt, source: "mqtt://{topic}"}
    to: [{connector: n, subject: "m.{topic[1]}", jetstream: false}]
  - name: from-nats
    from: {connector: n, subject: "orders.>"}
    ingress: {type: t.nats, source: "nats://{topic}"}
    to: [{connector: k, topic: "n.{topic[1]}"}]
  - name: from-queue
    from: {connector: a, queue: work}
    ingress: {type: t.amqp, source: "amqp://work"}
    to: [{connector: k, topic: from-queue}]
  - name: from-binding
    from: {connector: a, queue: events, bind: [{exchange: ex, binding_key: "plant.*"}]}
    ingress: {type: t.bound, source: "amqp://events/{topic}"}
    to: [{connector: k, topic: "bound.{topic[1]}"}]
  - name: from-memory
    from: {connector: mem, topic: inbox}
    ingress: {type: t.mem, source: "mem://inbox"}
    to: [{connector: k, topic: mem}]
"""


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> GatewayConfig:
    path = tmp_path_factory.mktemp("rc") / "c.yaml"
    path.write_text(CONFIG)
    return load_config(path)


def routes(config: GatewayConfig, **spec: Any) -> dict[str, Any]:
    return {r.route: r for r in check_message(config, {"payload": "{}", **spec})}


def test_kafka_topic_and_pattern(config: GatewayConfig) -> None:
    (report,) = routes(config, connector="k", topic="orders", key="o-7").values()
    assert report.route == "from-kafka"
    assert report.outputs[0][0] == "n subject=k.o-7 jetstream=false"
    assert list(routes(config, connector="k", topic="audit.x")) == ["from-kafka-pattern"]
    assert routes(config, connector="k", topic="other") == {}


def test_mqtt_topic_filter(config: GatewayConfig) -> None:
    (report,) = routes(config, connector="m", topic="plant/l1/t").values()
    assert report.route == "from-mqtt" and report.outputs[0][0] == "n subject=m.l1 jetstream=false"
    assert routes(config, connector="m", address="plant/l1/x") == {}


def test_nats_subject(config: GatewayConfig) -> None:
    (report,) = routes(config, connector="n", subject="orders.eu").values()
    assert report.outputs[0][0] == "k topic=n.eu"


def test_amqp_queue(config: GatewayConfig) -> None:
    (report,) = routes(config, connector="a", queue="work").values()
    assert report.route == "from-queue" and report.matched
    assert report.outputs[0][0] == "k topic=from-queue"
    # The default exchange routes by queue name.
    assert list(routes(config, connector="a", routing_key="work")) == ["from-queue"]
    assert routes(config, connector="a", queue="nobody") == {}


def test_amqp_exchange_and_routing_key(config: GatewayConfig) -> None:
    (report,) = routes(config, connector="a", exchange="ex", routing_key="plant.l2").values()
    assert report.route == "from-binding" and report.outputs[0][0] == "k topic=bound.l2"
    assert routes(config, connector="a", exchange="ex", routing_key="other.l2") == {}
    assert list(routes(config, connector="a", queue="events")) == ["from-binding"]


def test_amqp_needs_an_address_and_no_separator_leaks(config: GatewayConfig) -> None:
    with pytest.raises(MessageSpecError, match="needs `queue`, or `exchange` and `routing_key`"):
        routes(config, connector="a", exchange="ex")


def test_memory_topic(config: GatewayConfig) -> None:
    assert list(routes(config, connector="mem", topic="inbox")) == ["from-memory"]


def test_plugin_without_the_hook_is_told_to_use_event() -> None:
    class Plugin(Connector[Any, Any, Any]):  # only what the hook default needs
        pass

    options = type("O", (), {"type": "acme"})()
    with pytest.raises(MessageSpecError, match=r"'acme' cannot build a native message.*--event"):
        Plugin.dry_run_delivery(options, None)  # type: ignore[arg-type]


def test_event_does_not_show_source_dependent_routes_as_match(config: GatewayConfig) -> None:
    event = b'{"specversion":"1.0","id":"1","source":"s","type":"t"}'
    lines = list(format_reports(check_event(config, event)))
    assert "route from-queue: MATCH" in lines
    assert (
        "route from-mqtt: the filter matches; its targets need the source message "
        "({topic[1]}): check it with --message" in lines
    )
    assert not any("ERROR" in line for line in lines)


def test_rejected_clause_has_balanced_parentheses(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        CONFIG.replace(
            "    ingress: {type: t.amqp",
            "    filter: \"(type = 'x' OR type = 'y') AND (source = 's')\"\n"
            "    ingress: {type: t.amqp",
        )
    )
    (report,) = check_message(load_config(path), {"connector": "a", "queue": "work"})
    assert report.reason == "filter clause `type = 'x' OR type = 'y'` is not true"


def test_cli_amqp_queue_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "c.yaml").write_text(CONFIG)
    (tmp_path / "m.json").write_text('{"connector": "a", "queue": "work", "payload": "hi"}')
    code = main(
        ["routes", "check", str(tmp_path / "c.yaml"), "--message", str(tmp_path / "m.json")]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert out.splitlines()[:3] == [
        "route from-queue: MATCH",
        "  -> k topic=from-queue",
        "     value: hi",
    ]
