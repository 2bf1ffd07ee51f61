"""Capabilities are per source and target (issue 13, finding 4): a core NATS source no
longer reports JetStream's acknowledgements, an MQTT QoS 0 target no confirmation;
``meshgate validate`` marks them, the runtime logs them, the generated docs list them."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from connectors.kafka import KafkaConnector, KafkaOptions, KafkaSource
from connectors.mqtt import MqttConnector, MqttOptions, MqttSource, MqttTarget
from connectors.nats import NatsConnector, NatsOptions, NatsSource, NatsTarget
from gateway.cli import main
from gateway.schema import option_tables

NATS = NatsOptions(type="nats")
MQTT5 = MqttOptions(type="mqtt", host="h", protocol=5)


def test_core_nats_source_does_not_acknowledge_jetstream_does() -> None:
    core = NatsSource(connector="n", subject="a")
    durable = NatsSource.model_validate(
        {"connector": "n", "subject": "a", "jetstream": {"durable": "d"}}
    )
    assert not NatsConnector.source_capabilities(NATS, core).acknowledgements
    assert NatsConnector.source_capabilities(NATS, durable).acknowledgements


def test_core_nats_target_is_not_confirmed() -> None:
    target = NatsTarget.model_validate({"connector": "n", "subject": "a", "jetstream": False})
    assert not NatsConnector.target_capabilities(NATS, target).confirmed_publish
    assert NatsConnector.target_capabilities(
        NATS, target.model_copy(update={"jetstream": True})
    ).confirmed_publish


def test_mqtt_qos0_and_protocol_4() -> None:
    qos0 = MqttSource(connector="m", topic="t", qos=0)
    assert not MqttConnector.source_capabilities(MQTT5, qos0).acknowledgements
    target = MqttTarget.model_validate({"connector": "m", "topic": "t", "qos": 0})
    assert not MqttConnector.target_capabilities(MQTT5, target).confirmed_publish
    four = MQTT5.model_copy(update={"protocol": 4})
    assert not MqttConnector.source_capabilities(four, qos0.model_copy(update={"qos": 1})).headers


def test_default_is_the_class_capabilities() -> None:
    options = KafkaOptions(type="kafka", bootstrap_servers="127.0.0.1:1")
    source = KafkaSource.model_validate({"connector": "k", "topics": ["t"], "group_id": "g"})
    assert KafkaConnector.source_capabilities(options, source) == KafkaConnector.capabilities


CONFIG = """\
gateway: {id: g}
connectors:
  n: {type: nats, servers: ["nats://127.0.0.1:1"]}
  k: {type: kafka, bootstrap_servers: "127.0.0.1:1"}
routes:
  - name: core-in
    from: {connector: n, subject: "a.>"}
    to:
      - {connector: k, topic: t}
      - {connector: n, subject: b, jetstream: false}
"""


def test_validate_marks_at_most_once_ends(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(CONFIG)
    assert main(["validate", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    row = next(line for line in lines if line.startswith("core-in"))
    assert "[at-most-once]" in row.split("  k topic=t")[0]  # the FROM cell
    assert row.rstrip().endswith("k topic=t")  # Kafka: confirmed
    assert any(line.strip() == "n subject=b jetstream=false [at-most-once]" for line in lines)


async def test_runtime_logs_the_guarantees_at_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from gateway.config import load_config
    from gateway.pipeline import Pipeline
    from gateway.runtime import Gateway

    path = tmp_path / "c.yaml"
    path.write_text(CONFIG)
    gateway = Gateway(load_config(path))
    (group,) = gateway.config.table.groups
    pipeline = Pipeline(gateway, group)
    with caplog.at_level(logging.INFO, logger="meshgate"):
        pipeline._log_guarantees()
    (line,) = [r.getMessage() for r in caplog.records if "read n:" in r.getMessage()]
    assert line.startswith("routes core-in read n: 'a.>' (core)")
    assert "at-most-once: the source does not acknowledge" in line
    assert "route core-in: n subject=b jetstream=false is not confirmed" in line


def test_generated_docs_list_capabilities_per_kind() -> None:
    text = option_tables("nats")
    assert "| source | core NATS (no `jetstream:`) | **no** (at-most-once) | - |" in text
    assert "| target | `jetstream: false` | - | **no** (at-most-once) |" in text
