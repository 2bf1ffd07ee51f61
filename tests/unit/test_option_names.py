"""One spelling for durations and in-flight bounds (docs/decisions/0006-option-names.md):
the built-in options follow it, and the old spellings still load with a warning."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
from pydantic import BaseModel

from connectors.amqp.config import AmqpOptions, AmqpSource, AmqpTarget
from connectors.kafka.config import KafkaOptions, KafkaSource, KafkaTarget
from connectors.mqtt.config import MqttOptions, MqttSource, MqttTarget
from connectors.nats.config import NatsOptions, NatsSource, NatsTarget
from gateway import config as config_module
from gateway.config import GatewaySection, RouteSection, load_config
from gateway.errors import ConfigError

MODELS: list[type[BaseModel]] = [
    KafkaOptions, KafkaSource, KafkaTarget, AmqpOptions, AmqpSource, AmqpTarget,
    MqttOptions, MqttSource, MqttTarget, NatsOptions, NatsSource, NatsTarget,
    GatewaySection, RouteSection,
]  # fmt: skip

# Names that are durations whatever their suffix says.
_DURATION = re.compile(r"(timeout|interval|wait|expiry|keepalive|heartbeat|jitter|linger|_ms|_s)$")


def _fields(model: type[BaseModel], seen: set[type[BaseModel]]) -> list[tuple[str, str]]:
    out = []
    for name, field in model.model_fields.items():
        out.append((f"{model.__name__}.{name}", field.description or ""))
        nested = field.annotation
        for candidate in (nested, *getattr(nested, "__args__", ())):
            model_type = isinstance(candidate, type) and issubclass(candidate, BaseModel)
            if model_type and candidate not in seen:
                seen.add(candidate)
                out.extend(_fields(candidate, seen))
    return out


def test_durations_are_seconds_named_seconds_and_one_in_flight_spelling() -> None:
    seen: set[type[BaseModel]] = set()
    fields = [f for model in MODELS for f in _fields(model, seen)]
    assert len(fields) > 100  # the walk sees the models' options
    wrong = [
        name
        for name, _ in fields
        if _DURATION.search(name.rsplit(".", 1)[1]) and not name.endswith("_seconds")
    ]
    assert not wrong, f"durations not named ..._seconds: {wrong}"
    assert not [name for name, _ in fields if "inflight" in name]


CONFIG = """\
gateway: {{id: g, state_dir: '{state}'}}
connectors:
  k: {{type: kafka, bootstrap_servers: "127.0.0.1:1", linger_ms: 5, health_interval_s: 2}}
  m: {{type: mqtt, host: 127.0.0.1, port: 1, protocol: 5, max_inflight: 7, keepalive: 30}}
routes:
  - name: r
    from: {{connector: k, topics: [t], group_id: g, session_timeout_ms: 6000}}
    to: [{{connector: m, topic: out, message_expiry: 9}}]
"""


def test_old_spellings_load_converted_and_warn_once_with_their_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(config_module, "_WARNED", set())
    path = tmp_path / "gateway.yaml"
    path.write_text(CONFIG.format(state=tmp_path / "state"))
    with caplog.at_level(logging.WARNING, logger="meshgate.config"):
        config = load_config(path)
        load_config(path)  # a reload: no second round of warnings
    kafka = config.connectors["k"][1]
    mqtt = config.connectors["m"][1]
    assert isinstance(kafka, KafkaOptions) and isinstance(mqtt, MqttOptions)
    assert kafka.linger_seconds == 0.005 and kafka.health_interval_seconds == 2
    assert mqtt.max_in_flight == 7 and mqtt.keepalive_seconds == 30
    (route,) = config.table.routes
    assert route.source.session_timeout_seconds == 6.0
    assert route.targets[0].options.message_expiry_seconds == 9
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 6, lines
    assert lines[0] == (
        f"{path}:3:54: connectors.k.linger_ms: option 'linger_ms' is deprecated: write "
        "'linger_seconds' (in seconds: the old value / 1000)"
    )
    assert any("routes[0].from.session_timeout_ms" in line for line in lines)


def test_both_spellings_of_one_option_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    text = CONFIG.format(state=tmp_path / "state")
    path.write_text(text.replace("linger_ms: 5", "linger_ms: 5, linger_seconds: 0.005"))
    with pytest.raises(ConfigError, match="'linger_ms' and 'linger_seconds' are one option"):
        load_config(path)


def test_the_schema_shows_only_the_new_names() -> None:
    properties = MqttOptions.model_json_schema()["properties"]
    assert "max_in_flight" in properties and "max_inflight" not in properties


def test_a_quoted_old_millisecond_value_is_converted_too() -> None:
    """``request_timeout_ms: "30000"`` (quoted in YAML) is 30 s, not 30,000 s."""
    from connectors.renamed import _scaled

    assert _scaled("30000", 0.001) == 30.0
    assert _scaled(30000, 0.001) == 30.0
    assert _scaled("soon", 0.001) == "soon"  # left to the option's own validation
    assert _scaled(True, 0.001) is True
    assert _scaled("5", 1.0) == "5"
