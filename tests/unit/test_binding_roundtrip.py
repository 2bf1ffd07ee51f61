"""Property tests: every valid event survives every binding, mode and format.

"Survives" means ``canonical_attributes()`` and ``data`` come back unchanged: a
binary-mode hop turns typed extensions into their canonical strings, which is all
a protocol header can carry. The Avro format keeps the types too, so there the
event comes back equal.

A fuzz property then feeds every ``from_message`` arbitrary messages: the only
exception allowed out is ``InvalidEvent``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import event as outcome
from hypothesis import strategies as st
from strategies import events

from routing.bindings import Mode, amqp, kafka, mqtt, nats
from routing.bindings.amqp import AmqpMessage
from routing.bindings.kafka import KafkaMessage
from routing.bindings.mqtt import MqttMessage
from routing.bindings.nats import NatsMessage
from routing.errors import InvalidEvent
from routing.event import CloudEvent
from routing.formats import EventFormat
from routing.formats import avro as avro_format
from routing.formats import json as json_format

PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
JSON, AVRO = EventFormat.JSON, EventFormat.AVRO
STRUCTURED = Mode.STRUCTURED


@dataclass(frozen=True)
class Codec:
    """One way of carrying an event: a binding, a mode, a format."""

    name: str
    to_message: Callable[[CloudEvent], Any]
    from_message: Callable[[Any], CloudEvent | None]
    fmt: EventFormat | None = None  # structured-mode format, None for binary mode

    def __repr__(self) -> str:
        return self.name


def _codecs() -> list[Codec]:
    codecs: list[Codec] = []
    for binding in (kafka, amqp, nats):
        name = binding.__name__.rsplit(".", 1)[-1]
        codecs.append(
            Codec(f"{name}-binary", lambda e, b=binding: b.to_message(e), binding.from_message)
        )
        for fmt in (JSON, AVRO):
            codecs.append(
                Codec(
                    f"{name}-{fmt}",
                    lambda e, b=binding, f=fmt: b.to_message(e, STRUCTURED, fmt=f),
                    binding.from_message,
                    fmt,
                )
            )
    codecs.append(Codec("mqtt5-binary", lambda e: mqtt.to_message(e), mqtt.from_message))
    for fmt in (JSON, AVRO):
        codecs.append(
            Codec(
                f"mqtt5-{fmt}",
                lambda e, f=fmt: mqtt.to_message(e, STRUCTURED, fmt=f),
                mqtt.from_message,
                fmt,
            )
        )
    codecs.append(
        Codec(
            "mqtt311-json",
            lambda e: mqtt.to_message(e, STRUCTURED, protocol_version=4),
            mqtt.from_message,
            JSON,
        )
    )
    return codecs


CODECS = _codecs()


def hop(codec: Codec, event: CloudEvent) -> CloudEvent:
    decoded = codec.from_message(codec.to_message(event))
    assert decoded is not None, f"{codec.name}: the message did not read as a CloudEvent"
    return decoded


def assert_same(got: CloudEvent, sent: CloudEvent) -> None:
    assert got.canonical_attributes() == sent.canonical_attributes()
    assert got.data == sent.data


def test_every_binding_mode_and_format_is_covered() -> None:
    assert len(CODECS) == 13  # 4 bindings x (binary + JSON + Avro), + MQTT 3.1.1 JSON


@PROPERTY
@given(event=events())
def test_one_hop_keeps_the_event(event: CloudEvent) -> None:
    for codec in CODECS:
        got = hop(codec, event)
        assert got.canonical_attributes() == event.canonical_attributes(), codec
        assert got.data == event.data, codec
        if codec.fmt is AVRO:
            assert dict(got.attributes()) == dict(event.attributes()), codec  # types kept


@PROPERTY
@given(event=events())
def test_two_hops_keep_the_event(event: CloudEvent) -> None:
    for first in CODECS:
        middle = hop(first, event)
        for second in CODECS:
            got = hop(second, middle)
            assert got.canonical_attributes() == event.canonical_attributes(), (first, second)
            assert got.data == event.data, (first, second)


RICH = CloudEvent(
    id="evt-1 €",
    source="urn:meshgate:test/ü",
    type="com.example.rich",
    datacontenttype="application/json; charset=utf-8",
    dataschema="https://example.com/schema.json",
    subject='a "quoted" 100% subject 😀',
    time="2026-11-26T10:00:00.123456789+05:30",
    extensions={"count": -7, "flag": False, "blob": b"\x00\xff", "note": "", "partitionkey": "k"},
    data=b'{"n":[1,2.5,"x"]}',
)


@pytest.mark.parametrize("second", CODECS, ids=repr)
@pytest.mark.parametrize("first", CODECS, ids=repr)
def test_every_chain_of_two_carries_a_rich_event(first: Codec, second: Codec) -> None:
    assert_same(hop(second, hop(first, RICH)), RICH)


# -- fuzz: from_message raises nothing but InvalidEvent ---------------------------------

_SAMPLES = [
    RICH,
    RICH.replace(data=None, extensions={}),
    RICH.replace(datacontenttype="text/plain"),
]
_ENCODED = [encode(e) for e in _SAMPLES for encode in (json_format.encode, avro_format.encode)]
_ATTR_NAMES = ["specversion", "id", "source", "type", "time", "datacontenttype", "x", "Bad", ""]
_CONTENT_TYPES = st.sampled_from(
    [
        "application/cloudevents+json",
        "APPLICATION/CLOUDEVENTS+AVRO",
        "application/cloudevents-batch+json",
        "application/cloudevents+xml",
        "application/json",
    ]
)
_VALUES = st.one_of(
    st.sampled_from(["1.0", "0.3", "", "2020-01-01T18:31Z", "2020-01-01T00:00:00Z", "%", "%C0%A0"]),
    st.text(max_size=12),
)
_PAYLOADS = st.one_of(
    st.binary(max_size=64),
    st.sampled_from(
        [
            b"",
            b"{}",
            b"null",
            b'{"specversion":"1.0"}',
            b'{"specversion":"1.0","id":"1","source":"s","type":"t","data":1,"data_base64":"AA=="}',
            b'{"specversion":null,"id":"1"}',
            b"[1,2]",
        ]
    ),
    # whole and truncated event-format payloads, to get past the first checks
    st.sampled_from(_ENCODED),
    st.builds(
        lambda raw, cut: raw[: cut % (len(raw) + 1)], st.sampled_from(_ENCODED), st.integers(0)
    ),
)


def _replace(pairs: tuple[tuple[str, Any], ...], index: int, value: Any) -> tuple[Any, ...]:
    """``pairs`` with the value of entry ``index`` (modulo length) replaced."""
    i = index % len(pairs)
    return (*pairs[:i], (pairs[i][0], value), *pairs[i + 1 :])


def _mutants(binding: Any, field: str, values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Valid binary-mode messages of ``binding`` with one header value replaced."""

    def mutate(message: Any, index: int, value: Any) -> Any:
        headers = getattr(message, field)
        pairs = tuple(headers.items()) if isinstance(headers, dict) else headers
        changed = _replace(pairs, index, value)
        return replace(message, **{field: dict(changed) if isinstance(headers, dict) else changed})

    return st.builds(
        mutate, st.sampled_from([binding.to_message(e) for e in _SAMPLES]), st.integers(0), values
    )


def _prefixed(prefixes: list[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.builds(lambda p, n: p + n, st.sampled_from(prefixes), st.sampled_from(_ATTR_NAMES)),
        st.text(max_size=10),
    )


kafka_messages = _mutants(kafka, "headers", _VALUES.map(str.encode)) | st.builds(
    KafkaMessage,
    key=st.none() | st.binary(max_size=8),
    value=st.none() | _PAYLOADS,
    headers=st.lists(
        st.tuples(
            _prefixed(["ce_", "content-type", "Content-Type"]),
            st.one_of(
                _VALUES.map(str.encode), st.binary(max_size=8), _CONTENT_TYPES.map(str.encode)
            ),
        ),
        max_size=8,
    ).map(tuple),
)
amqp_messages = _mutants(amqp, "headers", _VALUES | st.integers()) | st.builds(
    AmqpMessage,
    body=_PAYLOADS,
    content_type=st.none() | _CONTENT_TYPES | st.text(max_size=8),
    headers=st.dictionaries(
        _prefixed(["ce-", "cloudEvents_", "cloudEvents:"]),
        st.one_of(
            _VALUES,
            st.binary(max_size=8),
            st.integers(),
            st.booleans(),
            st.none(),
            st.floats(),
            st.datetimes(),
            st.lists(st.integers(), max_size=2),
        ),
        max_size=8,
    ),
)
mqtt_messages = _mutants(mqtt, "user_properties", _VALUES) | st.builds(
    MqttMessage,
    payload=_PAYLOADS,
    content_type=st.none() | _CONTENT_TYPES | st.text(max_size=8),
    user_properties=st.lists(st.tuples(_prefixed(["", "ce-"]), _VALUES), max_size=8).map(tuple),
    protocol_version=st.sampled_from([4, 5]),
)
nats_messages = _mutants(nats, "headers", _VALUES) | st.builds(
    NatsMessage,
    data=_PAYLOADS,
    headers=st.none()
    | st.dictionaries(
        _prefixed(["ce-", "CE-", "Content-Type", "content-type"]),
        _VALUES | _CONTENT_TYPES | st.text(alphabet='%"\\abcdefABCDEF0123456789 ', max_size=10),
        max_size=8,
    ),
)


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("binding", "messages"),
    [(kafka, kafka_messages), (amqp, amqp_messages), (mqtt, mqtt_messages), (nats, nats_messages)],
    ids=["kafka", "amqp", "mqtt", "nats"],
)
@PROPERTY
@given(data=st.data())
def test_from_message_raises_only_invalid_event(binding: Any, messages: Any, data: Any) -> None:
    message = data.draw(messages)
    try:
        event = binding.from_message(message)
    except InvalidEvent as exc:
        assert str(exc).startswith("invalid CloudEvent: ")
        outcome(f"InvalidEvent: {exc.attribute.split()[0]}")
    else:
        assert event is None or isinstance(event, CloudEvent)
        outcome("not a CloudEvent" if event is None else "a CloudEvent")
