"""Fuzzing the decoders the network reaches: only ``InvalidEvent`` escapes, nothing hangs.

``test_binding_roundtrip.py`` already fuzzes every binding's ``from_message`` with
arbitrary headers, content types and payloads drawn from whole or truncated
encodings. This module covers what that leaves out:

* the event formats on their own: arbitrary bytes, JSON values of every shape,
  JSON objects with arbitrary members, encodings with bytes flipped, inserted or cut,
  and Avro records written by fastavro itself with arbitrary attribute maps and data
  of every branch of the data union (nested maps and arrays included);
* structured-mode messages of every binding carrying such mutated encodings;
* the Avro nesting bomb that crashed the whole process with SIGSEGV (run in a child
  process, so a regression fails this test instead of killing the test run);
* the connectors' pure header-to-text mappings (Kafka header bytes, AMQP field-table
  values as pamqp decodes them);
* the ingress wrapper and the dead-letter builder: the path of every message that
  does not decode, which must always yield a valid dead letter.

Every property has a bounded number of examples and a per-example deadline.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import io
import subprocess
import sys
from datetime import timedelta
from typing import Any

import fastavro
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.headertext import BASE64_MARKER, header_bytes, header_text
from routing import formats
from routing.bindings import Mode, amqp, kafka, mqtt, nats
from routing.deadletter import dead_letter_event
from routing.errors import InvalidEvent, TemplateError
from routing.event import CloudEvent
from routing.formats import avro as avro_format
from routing.formats import json as json_format
from routing.ingress import IngressRules
from routing.templates import TemplateValues

FUZZ = settings(
    max_examples=300,
    deadline=timedelta(seconds=2),  # a decoder that hangs fails here, not in CI's timeout
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
pytestmark = pytest.mark.timeout(120)

SAMPLE = CloudEvent(
    id="evt-1",
    source="urn:fuzz",
    type="com.example.fuzz",
    subject="s",
    time="2026-11-26T10:00:00Z",
    datacontenttype="application/json",
    extensions={"n": 7, "flag": True, "blob": b"\x00\xff", "text": "x"},
    data=b'{"a":[1,2.5,"x",null]}',
)
ENCODED = [
    json_format.encode(SAMPLE),
    json_format.encode(SAMPLE.replace(data=b"\xff\x00", datacontenttype="image/png")),
    avro_format.encode(SAMPLE),
    avro_format.encode(SAMPLE.replace(data=None, extensions={})),
]
CONTENT_TYPES = [
    "application/cloudevents+json",
    "application/cloudevents+avro",
    "APPLICATION/CloudEvents+AVRO; charset=utf-8",
    " application/cloudevents+json ;x=y",
    "application/cloudevents-batch+json",
    "application/cloudevents+xml",
    "application/cloudevents",
]


@st.composite
def mutated(draw: st.DrawFn, sources: list[bytes] = ENCODED) -> bytes:
    """A valid encoding with a few bytes flipped, inserted, deleted, or cut off."""
    data = bytearray(draw(st.sampled_from(sources)))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "cut", "splice"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[at] ^= draw(st.integers(1, 255))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete" and data:
            del data[at]
        elif op == "cut":
            del data[at:]
        elif op == "splice":
            data[at:] = draw(st.sampled_from(sources))[at:]
    return bytes(data)


def only_invalid_event(decode: Any, *args: Any) -> CloudEvent | None:
    try:
        result = decode(*args)
    except InvalidEvent as exc:
        assert str(exc).startswith("invalid CloudEvent: ")
        return None
    assert result is None or isinstance(result, CloudEvent)
    return result


# -- event formats -----------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
attribute_maps = st.dictionaries(
    st.sampled_from(
        [
            "specversion",
            "id",
            "source",
            "type",
            "time",
            "datacontenttype",
            "dataschema",
            "subject",
            "data",
            "data_base64",
            "x",
            "Bad",
            "",
        ]
    )
    | st.text(max_size=6),
    st.sampled_from(["1.0", "0.3", "", "2020-01-01T18:31Z", "QUJD", "%%", "\x00"]) | json_values,
    max_size=10,
)


@FUZZ
@given(payload=st.binary(max_size=256) | mutated())
def test_json_and_avro_decode_arbitrary_bytes(payload: bytes) -> None:
    only_invalid_event(json_format.decode, payload)
    only_invalid_event(avro_format.decode, payload)


@FUZZ
@given(obj=json_values | attribute_maps)
def test_json_decode_any_json_value(obj: Any) -> None:
    try:
        payload = orjson.dumps(obj)
    except (orjson.JSONEncodeError, TypeError):  # NaN keys etc.: not JSON at all
        return
    only_invalid_event(json_format.decode, payload)


@FUZZ
@given(
    payload=st.binary(max_size=128) | mutated(),
    content_type=st.sampled_from(CONTENT_TYPES) | st.text(max_size=40),
)
def test_format_dispatch_by_content_type(payload: bytes, content_type: str) -> None:
    only_invalid_event(formats.decode, payload, content_type)


avro_attribute_values = (
    st.none()
    | st.booleans()
    | st.integers(-(2**31), 2**31 - 1)
    | st.text(max_size=12)
    | st.binary(max_size=8)
)
avro_data_leaves = st.none() | st.booleans() | st.floats() | st.text(max_size=8)


def _record(value: dict[str, Any]) -> dict[str, Any]:
    return {"value": value}


avro_nested = st.recursive(
    avro_data_leaves,
    lambda inner: (
        st.dictionaries(st.text(max_size=4), inner, max_size=3).map(_record)
        | st.lists(inner.map(lambda v: _record({"v": v})), max_size=3)
    ),
    max_leaves=10,
)
avro_data = (
    st.binary(max_size=16)
    | st.none()
    | st.booleans()
    | st.floats()
    | st.text(max_size=8)
    | st.dictionaries(st.text(max_size=4), avro_nested, max_size=3)
    | st.lists(
        st.dictionaries(st.text(max_size=4), avro_nested, max_size=3).map(_record), max_size=3
    )
)


def _mostly(value: str) -> st.SearchStrategy[Any]:
    """``value`` 5 times out of 6, else any attribute value."""
    return st.integers(0, 5).flatmap(lambda i: st.just(value) if i else avro_attribute_values)


avro_attributes = st.builds(
    lambda base, extra: {**extra, **base},
    st.fixed_dictionaries(
        {
            "specversion": _mostly("1.0"),
            "id": _mostly("e"),
            "source": _mostly("s"),
            "type": _mostly("t"),
        },
        optional={"time": _mostly("2020-01-01T00:00:00Z"), "datacontenttype": _mostly("a/b")},
    ),
    st.dictionaries(st.text(max_size=8), avro_attribute_values, max_size=4),
) | st.dictionaries(st.text(max_size=8), avro_attribute_values, max_size=6)


@FUZZ
@given(attributes=avro_attributes, data=avro_data)
def test_avro_decode_any_record_the_schema_allows(attributes: dict[str, Any], data: Any) -> None:
    out = io.BytesIO()
    try:
        fastavro.schemaless_writer(
            out, avro_format._PARSED, {"attribute": attributes, "data": data}
        )
    except (ValueError, TypeError, OverflowError):  # not writable under the schema
        return
    only_invalid_event(avro_format.decode, out.getvalue())


def test_avro_nesting_bomb_is_an_invalid_event_not_a_crash() -> None:
    # ~50 KB of data-union arrays and maps nested 10,000 deep: fastavro's compiled
    # reader overflowed the C stack (SIGSEGV). A child process, so a regression fails
    # here instead of killing the test run.
    code = """
from routing.errors import InvalidEvent
from routing.formats import avro
def zz(n):
    n = (n << 1) ^ (n >> 63); out = bytearray()
    while True:
        b = n & 0x7F; n >>= 7
        if n: out.append(b | 0x80)
        else: out.append(b); return bytes(out)
for depth in (10_000, 200_000):
    body = bytearray(zz(0) + zz(4))  # no attributes; data: array branch
    body += (zz(1) + zz(1) + zz(0) + zz(3)) * depth  # array > record > map > array ...
    body += zz(0) + (zz(0) + zz(0)) * depth
    try:
        avro.decode(bytes(body))
    except InvalidEvent:
        continue
    raise SystemExit("decoded a nesting bomb?")
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert result.returncode == 0, (result.returncode, result.stderr.decode()[-2000:])


# -- structured-mode messages of every binding --------------------------------------------

structured = st.sampled_from(CONTENT_TYPES)


@FUZZ
@given(payload=mutated(), content_type=structured, data=st.data())
def test_structured_messages_with_mutated_payloads(
    payload: bytes, content_type: str, data: Any
) -> None:
    only_invalid_event(
        kafka.from_message,
        kafka.KafkaMessage(
            key=None, value=payload, headers=(("content-type", content_type.encode()),)
        ),
    )
    only_invalid_event(
        amqp.from_message, amqp.AmqpMessage(body=payload, content_type=content_type, headers={})
    )
    only_invalid_event(
        mqtt.from_message,
        mqtt.MqttMessage(payload, content_type, (), data.draw(st.sampled_from([4, 5]))),
    )
    only_invalid_event(nats.from_message, nats.NatsMessage(payload, {"Content-Type": content_type}))


@FUZZ
@given(event_data=st.binary(max_size=32), mode=st.sampled_from([Mode.BINARY, Mode.STRUCTURED]))
def test_binary_and_structured_sample_still_decodes(event_data: bytes, mode: Mode) -> None:
    # A sanity anchor for the properties above: valid messages do decode.
    event = SAMPLE.replace(data=event_data or None, datacontenttype="application/octet-stream")
    decoded = kafka.from_message(kafka.to_message(event, mode))
    assert decoded is not None and decoded.id == event.id


# -- connectors' header-to-text mappings --------------------------------------------------


@FUZZ
@given(value=st.binary(max_size=64))
def test_kafka_header_text_is_total(value: bytes) -> None:
    text = header_text(value)
    try:
        assert text == value.decode("utf-8")
    except UnicodeDecodeError:
        assert text.startswith(BASE64_MARKER)
    assert header_bytes(text) == value  # a redrive republishes the original bytes


amqp_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**64), 2**64)
    | st.floats()
    | st.text(max_size=8)
    | st.binary(max_size=8)
    | st.builds(
        lambda raw, places: decimal.Decimal(raw) * decimal.Decimal(10) ** -places,
        st.integers(0, 2**32 - 1),
        st.integers(0, 255),
    )
    | st.datetimes(timezones=st.just(dt.UTC))
    | st.datetimes(),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)


@FUZZ
@given(value=amqp_values)
def test_amqp_header_text_is_total(value: Any) -> None:
    assert isinstance(header_text(value), str)


# -- ingress and dead letters: where undecodable messages go --------------------------------

texts = st.text(max_size=24) | st.sampled_from(["\x00", "\U0001fffe", "\ud800", " ", ""])


@FUZZ
@given(
    payload=st.binary(max_size=64),
    content_type=st.none() | texts,
    topic=texts,
    headers=st.dictionaries(texts, texts, max_size=4),
    native_id=st.none() | texts,
)
def test_ingress_wrap_raises_only_what_the_runtime_catches(
    payload: bytes,
    content_type: str | None,
    topic: str,
    headers: dict[str, str],
    native_id: str | None,
) -> None:
    rules = IngressRules.compile(
        type="com.example.{topic[0]}", source="urn:{topic}", subject="{header.x}"
    )
    values = TemplateValues(address=topic, separator="/", headers=headers, key=None, event=None)
    with contextlib.suppress(InvalidEvent, TemplateError):
        rules.wrap(payload, values, native_id=native_id, content_type=content_type)


@FUZZ
@given(
    payload=st.binary(max_size=64),
    content_type=st.none() | texts,
    address=texts,
    headers=st.dictionaries(texts, texts, max_size=4),
    coordinates=st.dictionaries(texts, texts | st.integers(), max_size=4),
    error=texts,
    native_id=st.none() | texts,
    original=st.none() | st.just(SAMPLE),
)
def test_dead_letter_of_anything_is_a_valid_event(
    payload: bytes,
    content_type: str | None,
    address: str,
    headers: dict[str, str],
    coordinates: dict[str, Any],
    error: str,
    native_id: str | None,
    original: CloudEvent | None,
) -> None:
    letter = dead_letter_event(
        gateway_id="gw",
        route="r",
        connector="c",
        address=address,
        payload=payload,
        headers=headers,
        coordinates=coordinates,
        error=ValueError(error),
        attempts=1,
        native_id=native_id,
        original=original,
        content_type=content_type,
        target="t",
    )
    assert letter.data == (payload or None)
    for encode in (json_format.encode, avro_format.encode):  # it can be published, too
        encode(letter)
