"""A target's ``headers:`` never make a message meshgate's own decoder rejects.

Regressions (issue 13, finding 3): a Kafka target with ``headers: {Content-Type:
text/plain}`` wrote a record with two content-type headers, which the Kafka decoder
rejects ("appears twice with different values"); an MQTT 5 target with ``headers:
{source: x}`` wrote a second ``source`` user property, which the MQTT decoder rejects.
Each binding has one rule for the native names that clash (``header_clash`` next to
the binding); the config refuses them with file:line, and the one merge
(``merge_headers``) keeps the binding's headers should a clashing name reach it.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from connectors.amqp import AmqpConnector, AmqpOptions, AmqpTarget
from connectors.kafka import KafkaConnector, KafkaOptions, KafkaTarget
from connectors.memory import MemoryConnector, MemoryOptions, MemoryTarget
from connectors.mqtt import MqttConnector, MqttOptions, MqttTarget
from connectors.nats import NatsConnector, NatsOptions, NatsTarget
from gateway.config import load_config
from gateway.errors import ConfigError
from routing.bindings import Mode, amqp, kafka, mqtt, nats
from routing.event import CloudEvent

EVENT = CloudEvent(
    id="e1",
    source="urn:test",
    type="com.example.t",
    datacontenttype="application/json",
    data=b'{"n":1}',
)


def kafka_roundtrip(headers: dict[str, str], mode: Mode = Mode.BINARY) -> CloudEvent | None:
    connector = KafkaConnector("k", KafkaOptions(type="kafka", bootstrap_servers="127.0.0.1:1"))
    target = KafkaTarget(connector="k", topic="t", mode=mode, headers=headers)
    return kafka.from_message(connector.encode(target, EVENT))


def mqtt_roundtrip(headers: dict[str, str], mode: Mode = Mode.BINARY) -> CloudEvent | None:
    options = MqttOptions(type="mqtt", url="mqtt://127.0.0.1:1", protocol=5, client_id="c")
    target = MqttTarget(connector="m", topic="t", mode=mode, headers=headers)
    return mqtt.from_message(MqttConnector("m", options).encode(target, EVENT))


def nats_roundtrip(headers: dict[str, str], mode: Mode = Mode.BINARY) -> CloudEvent | None:
    connector = NatsConnector("n", NatsOptions(type="nats", servers=["nats://127.0.0.1:1"]))
    target = NatsTarget(connector="n", subject="t", mode=mode, headers=headers)
    return nats.from_message(connector.encode(target, EVENT))


def amqp_roundtrip(headers: dict[str, str], mode: Mode = Mode.BINARY) -> CloudEvent | None:
    connector = AmqpConnector("a", AmqpOptions(type="amqp", url="amqp://127.0.0.1:1/"))
    target = AmqpTarget(connector="a", exchange="x", routing_key="k", mode=mode, headers=headers)
    return amqp.from_message(connector.encode(target, EVENT))


# -- the two reproduced bugs, below config validation (a plugin, a test, a direct call) --


@pytest.mark.parametrize("name", ["Content-Type", "content-type", "CONTENT-TYPE"])
@pytest.mark.parametrize("mode", [Mode.BINARY, Mode.STRUCTURED])
def test_kafka_content_type_header_does_not_break_the_record(name: str, mode: Mode) -> None:
    assert kafka_roundtrip({name: "text/plain"}, mode) == EVENT


@pytest.mark.parametrize("name", ["source", "type", "id", "region", "ce-source"])
def test_mqtt5_attribute_named_user_property_does_not_break_the_message(name: str) -> None:
    assert mqtt_roundtrip({name: "x"}) == EVENT


@pytest.mark.parametrize("name", ["content-type", "CE-SOURCE", "nats-msg-id"])
@pytest.mark.parametrize("mode", [Mode.BINARY, Mode.STRUCTURED])
def test_nats_header_in_another_case_does_not_break_the_message(name: str, mode: Mode) -> None:
    assert nats_roundtrip({name: "x"}, mode) == EVENT


@pytest.mark.parametrize("name", ["ce-source", "cloudEvents_source", "cloudEvents:source"])
def test_amqp_attribute_header_does_not_break_the_message(name: str) -> None:
    assert amqp_roundtrip({name: "x"}) == EVENT


def test_non_clashing_headers_travel_beside_the_event() -> None:
    connector = KafkaConnector("k", KafkaOptions(type="kafka", bootstrap_servers="127.0.0.1:1"))
    target = KafkaTarget(connector="k", topic="t", headers={"x-request-id": "r1"})
    record = connector.encode(target, EVENT)
    assert ("x-request-id", b"r1") in record.headers
    options = MqttOptions(type="mqtt", url="mqtt://127.0.0.1:1", protocol=5, client_id="c")
    message = MqttConnector("m", options).encode(
        MqttTarget(connector="m", topic="t", headers={"Source": "x"}), EVENT
    )
    assert ("Source", "x") in message.user_properties  # not an attribute name: kept
    assert mqtt.from_message(message) == EVENT


def test_memory_connector_follows_the_nats_rule() -> None:
    connector = MemoryConnector("mem", MemoryOptions(type="memory"))
    target = MemoryTarget(connector="mem", topic="t", mode=Mode.STRUCTURED)
    message = connector.encode(target.model_copy(update={"headers": {"content-type": "x"}}), EVENT)
    assert nats.from_message(message) == EVENT


# -- one rule per binding ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "name", "clashes"),
    [
        (kafka.header_clash, "content-type", True),
        (kafka.header_clash, "Content-Type", True),
        (kafka.header_clash, "ce_source", True),
        (kafka.header_clash, "CE_source", True),
        (kafka.header_clash, "source", False),  # Kafka attributes are ce_-prefixed
        (kafka.header_clash, "x-request-id", False),
        (amqp.header_clash, "ce-id", True),
        (amqp.header_clash, "cloudEvents_id", True),
        (amqp.header_clash, "cloudevents:id", True),
        (amqp.header_clash, "content-type", False),  # a property on AMQP, not a header
        (amqp.header_clash, "source", False),
        (mqtt.header_clash, "source", True),
        (mqtt.header_clash, "region", True),  # any attribute name reads as an attribute
        (mqtt.header_clash, "ce-region", True),
        (mqtt.header_clash, "Source", False),  # exact names: capitals are no attribute
        (mqtt.header_clash, "x-request-id", False),
        (mqtt.header_clash, "content-type", False),  # Content Type is a property on MQTT 5
        (nats.header_clash, "Ce-Id", True),
        (nats.header_clash, "content-type", True),
        (nats.header_clash, "Nats-Msg-Id", True),
        (nats.header_clash, "NATS-MSG-ID", True),
        (nats.header_clash, "source", False),
        (nats.header_clash, "x-request-id", False),
    ],
)
def test_binding_rule(rule: Any, name: str, clashes: bool) -> None:
    assert (rule(name) is not None) is clashes


def test_merge_keeps_own_headers_first_and_drops_clashes() -> None:
    from routing.bindings import merge_headers

    own = [("ce_id", b"1"), ("content-type", b"application/json")]
    custom = [("Content-Type", b"text/plain"), ("x-a", b"a")]
    merged = merge_headers(own, custom, same=str.lower)
    assert merged == [*own, ("x-a", b"a")]
    assert merge_headers(own, custom, refused=kafka.header_clash) == [*own, ("x-a", b"a")]


# -- a clash is a config error with file:line and what was expected -------------------


def config_problems(tmp_path: Path, connectors: str, target: str) -> list[str]:
    path = tmp_path / "gw.yaml"
    text = f"""\
        gateway: {{id: edge-1}}
        connectors:
          {connectors}
          mem: {{type: memory}}
        routes:
          - name: r1
            from: {{connector: mem, topic: in}}
            to:
              - {target}
        """
    path.write_text(textwrap.dedent(text))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return [str(p).replace(str(path), "gw.yaml") for p in caught.value.problems]


@pytest.mark.parametrize(
    ("connector", "target", "header", "why"),
    [
        (  # the Kafka bug: two content-type headers
            'k: {type: kafka, bootstrap_servers: "127.0.0.1:9092"}',
            "{connector: k, topic: out, headers: {Content-Type: text/plain}}",
            "Content-Type",
            "content-type",
        ),
        (  # the MQTT 5 bug: a second 'source' user property
            'm: {type: mqtt, url: "mqtt://127.0.0.1:1883", protocol: 5}',
            "{connector: m, topic: out, headers: {source: x}}",
            "source",
            "attribute",
        ),
    ],
    ids=["kafka", "mqtt5"],
)
def test_clash_is_a_config_error_at_the_header_line(
    tmp_path: Path, connector: str, target: str, header: str, why: str
) -> None:
    (problem,) = config_problems(tmp_path, connector, target)
    assert problem.startswith("gw.yaml:9:")
    assert f"routes[0].to[0].headers.{header}" in problem
    assert why in problem and "expected" in problem


@pytest.mark.parametrize(
    ("connector", "target"),
    [
        ('n: {type: nats, servers: ["nats://127.0.0.1:4222"]}', "{connector: n, subject: o}"),
        ("mem2: {type: memory}", "{connector: mem2, topic: o}"),
    ],
)
def test_nats_rule_is_case_insensitive_in_config(
    tmp_path: Path, connector: str, target: str
) -> None:
    clashing = target.replace("}", ", headers: {Nats-Msg-Id: x, CE-Foo: y}}")
    found = config_problems(tmp_path, connector, clashing)
    assert len(found) == 2, found
    assert any("Nats-Msg-Id" in p for p in found) and any("CE-Foo" in p for p in found)


def test_amqp_content_type_header_is_allowed(tmp_path: Path) -> None:
    path = tmp_path / "gw.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            gateway: {id: edge-1}
            connectors:
              a: {type: amqp, url: "amqp://guest:guest@127.0.0.1:5672/"}
            routes:
              - name: r1
                from: {connector: a, queue: q}
                to:
                  - {connector: a, exchange: x, routing_key: k, headers: {content-type: t}}
            """
        )
    )
    (route,) = load_config(path).table.routes
    assert route.targets[0].options.headers == {"content-type": "t"}
