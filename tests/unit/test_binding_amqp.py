"""AMQP 0-9-1 (RabbitMQ) binding: the Knative RabbitMQ binding rules we implement."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest

from routing.bindings import AmqpMessage, Mode
from routing.bindings.amqp import from_message, to_message
from routing.errors import InvalidEvent
from routing.event import CloudEvent
from routing.formats import EventFormat
from routing.formats import avro as avro_format
from routing.formats import json as json_format

EVENT = CloudEvent(
    id="evt-1",
    source="/sensors/7",
    type="com.example.reading",
    datacontenttype="application/json",
    subject="temp €",
    time="2026-11-26T10:00:00.5Z",
    extensions={"count": 42, "flag": True, "blob": b"\x00\xff"},
    data=b'{"celsius":21.5}',
)
REQUIRED = {"ce-specversion": "1.0", "ce-id": "evt-1", "ce-source": "/sensors/7", "ce-type": "t"}


def binary(body: bytes = b"x", content_type: str | None = None, **extra: object) -> AmqpMessage:
    headers: dict[str, object] = dict(REQUIRED)
    headers.update({name.replace("ce_", "ce-", 1): value for name, value in extra.items()})
    return AmqpMessage(body, content_type, headers)


# -- binary mode: writing ---------------------------------------------------------------


def test_binary_headers_are_ce_dash_prefixed_canonical_strings() -> None:
    message = to_message(EVENT)
    assert message.headers == {
        "ce-id": "evt-1",
        "ce-source": "/sensors/7",
        "ce-specversion": "1.0",
        "ce-type": "com.example.reading",
        "ce-subject": "temp €",
        "ce-time": "2026-11-26T10:00:00.5Z",
        "ce-count": "42",
        "ce-flag": "true",
        "ce-blob": "AP8=",
    }
    assert all(isinstance(value, str) for value in message.headers.values())


def test_binary_datacontenttype_is_the_content_type_property() -> None:
    message = to_message(EVENT)
    assert message.content_type == "application/json"
    assert "ce-datacontenttype" not in message.headers
    assert to_message(EVENT.replace(datacontenttype=None)).content_type is None


def test_binary_body_is_the_data_as_is() -> None:
    assert to_message(EVENT).body == b'{"celsius":21.5}'


def test_binary_event_without_data_has_an_empty_body_and_reads_back_without_data() -> None:
    message = to_message(EVENT.replace(data=None))
    assert message.body == b""
    decoded = from_message(message)
    assert decoded is not None and decoded.data is None


def test_binary_roundtrip_keeps_canonical_attributes_and_data() -> None:
    decoded = from_message(to_message(EVENT))
    assert decoded is not None
    assert decoded.canonical_attributes() == EVENT.canonical_attributes()
    assert decoded.data == EVENT.data


def test_event_carrying_a_cloudevent_as_data_is_sent_structured() -> None:
    inner = EVENT.replace(datacontenttype="application/cloudevents+json; charset=utf-8")
    message = to_message(inner)
    assert message.content_type == "application/cloudevents+json" and message.headers == {}
    decoded = from_message(message)
    assert decoded is not None and decoded.canonical_attributes() == inner.canonical_attributes()


def test_datacontenttype_too_long_for_the_content_type_shortstr_is_sent_structured() -> None:
    long = EVENT.replace(datacontenttype="text/plain; x=" + "é" * 121)  # 256 bytes of UTF-8
    message = to_message(long)
    assert message.content_type == "application/cloudevents+json"
    fits = EVENT.replace(datacontenttype="text/plain; x=" + "é" * 120)  # 254 bytes
    assert to_message(fits).content_type == fits.datacontenttype


def test_attribute_name_too_long_for_a_header_name_is_sent_structured() -> None:
    event = EVENT.replace(extensions={"a" * 253: "v"})
    assert to_message(event).content_type == "application/cloudevents+json"
    assert to_message(EVENT.replace(extensions={"a" * 252: "v"})).content_type == "application/json"


# -- structured mode: writing -----------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "encode"),
    [(EventFormat.JSON, json_format.encode), (EventFormat.AVRO, avro_format.encode)],
)
def test_structured_body_is_the_event_format(
    fmt: EventFormat, encode: Callable[[CloudEvent], bytes]
) -> None:
    message = to_message(EVENT, Mode.STRUCTURED, fmt=fmt)
    assert message.content_type == fmt.content_type
    assert message.headers == {}
    assert message.body == encode(EVENT)
    decoded = from_message(message)
    assert decoded is not None and decoded.canonical_attributes() == EVENT.canonical_attributes()
    assert decoded.data == EVENT.data


# -- reading ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    ["application/cloudevents+json", "Application/CloudEvents+Json; charset=utf-8"],
)
def test_structured_detection_is_case_insensitive(content_type: str) -> None:
    decoded = from_message(AmqpMessage(json_format.encode(EVENT), content_type, {}))
    assert decoded is not None and decoded.id == "evt-1"


def test_structured_wins_over_ce_headers_in_the_same_message() -> None:
    headers = {"ce-specversion": "1.0", "ce-id": "other"}
    message = AmqpMessage(json_format.encode(EVENT), "application/cloudevents+json", headers)
    decoded = from_message(message)
    assert decoded is not None and decoded.id == "evt-1"


@pytest.mark.parametrize("prefix", ["ce-", "cloudEvents_", "cloudEvents:"])
def test_every_accepted_header_prefix_reads(prefix: str) -> None:
    headers = {prefix + name[3:]: value for name, value in REQUIRED.items()}
    headers[prefix + "zone"] = "eu"
    decoded = from_message(AmqpMessage(b"x", "text/plain", headers))
    assert decoded is not None
    assert decoded.canonical_attributes() == {
        "id": "evt-1",
        "source": "/sensors/7",
        "specversion": "1.0",
        "type": "t",
        "datacontenttype": "text/plain",
        "zone": "eu",
    }


def test_prefixes_may_be_mixed_and_must_agree() -> None:
    decoded = from_message(AmqpMessage(b"x", None, {**REQUIRED, "cloudEvents:id": "evt-1"}))
    assert decoded is not None and decoded.id == "evt-1"
    with pytest.raises(
        InvalidEvent, match=r"header cloudEvents:id: gives attribute 'id' .*header ce-id"
    ):
        from_message(AmqpMessage(b"x", None, {**REQUIRED, "cloudEvents:id": "evt-2"}))


@pytest.mark.parametrize(
    ("value", "canonical"),
    [
        ("text", "text"),
        ("tëxt".encode(), "tëxt"),
        (bytearray(b"abc"), "abc"),
        (7, "7"),
        (-(2**40), str(-(2**40))),
        (True, "true"),
        (False, "false"),
        (datetime(2026, 11, 26, 10, 0, tzinfo=UTC), "2026-11-26T10:00:00Z"),
        (datetime(2026, 11, 26, 10, 0, 0, 250000), "2026-11-26T10:00:00.250000Z"),
        (
            datetime(2026, 11, 26, 12, 0, tzinfo=timezone(timedelta(hours=2))),
            "2026-11-26T10:00:00Z",
        ),
    ],
)
def test_field_table_values_become_canonical_strings(value: object, canonical: str) -> None:
    decoded = from_message(binary(ce_x=value))
    assert decoded is not None and decoded.get("x") == canonical


def test_timestamp_header_reads_as_rfc3339_time() -> None:
    decoded = from_message(binary(ce_time=datetime(2026, 11, 26, 10, 0, tzinfo=UTC)))
    assert decoded is not None and decoded.time == "2026-11-26T10:00:00Z"


@pytest.mark.parametrize("value", [1.5, None, [1], {"a": 1}, b"\xff"])
def test_field_table_values_without_canonical_string_are_rejected(value: object) -> None:
    with pytest.raises(InvalidEvent, match="header ce-x: "):
        from_message(binary(ce_x=value))


def test_bytes_header_that_is_not_utf8_names_the_header() -> None:
    with pytest.raises(InvalidEvent, match="header ce-subject: not valid UTF-8"):
        from_message(binary(ce_subject=b"\xc3\x28"))


def test_float_header_says_what_was_expected() -> None:
    with pytest.raises(InvalidEvent, match="a float value has no CloudEvents canonical string"):
        from_message(binary(ce_x=1.5))


def test_ce_datacontenttype_header_is_accepted_and_must_agree_with_content_type() -> None:
    decoded = from_message(binary(ce_datacontenttype="text/csv"))
    assert decoded is not None and decoded.datacontenttype == "text/csv"
    with pytest.raises(
        InvalidEvent, match="property content_type: gives attribute 'datacontenttype'"
    ):
        from_message(binary(content_type="text/plain", ce_datacontenttype="text/csv"))


def test_empty_binary_body_reads_as_no_data() -> None:
    decoded = from_message(binary(b"", "application/json"))
    assert decoded is not None and decoded.data is None
    assert decoded.datacontenttype == "application/json"


@pytest.mark.parametrize(
    "message",
    [
        AmqpMessage(b"legacy payload 42", None, {}),
        AmqpMessage(
            b'{"specversion":"1.0","id":"1","source":"s","type":"t"}', "application/json", {}
        ),
        AmqpMessage(b"x", None, {"x-death": [], "ce-id": "1", "ce-source": "s", "ce-type": "t"}),
        AmqpMessage(b"x", None, {"CE-specversion": "1.0"}),
    ],
    ids=["plain", "json", "no-specversion", "wrong-case-prefix"],
)
def test_messages_that_are_not_cloudevents_read_as_none(message: AmqpMessage) -> None:
    assert from_message(message) is None


def test_reading_invents_no_attributes() -> None:
    decoded = from_message(binary())
    assert decoded is not None
    assert set(decoded.canonical_attributes()) == {"id", "source", "specversion", "type"}


def test_other_headers_are_ignored() -> None:
    message = AmqpMessage(b"x", None, {**REQUIRED, "x-death": [{"count": 1}], "app": 1.5})
    decoded = from_message(message)
    assert decoded is not None and set(decoded.canonical_attributes()) == {
        "id",
        "source",
        "specversion",
        "type",
    }


@pytest.mark.parametrize("header", ["ce-Foo", "cloudEvents_foo_bar", "ce-"])
def test_prefixed_header_that_is_no_attribute_name_is_rejected(header: str) -> None:
    with pytest.raises(InvalidEvent, match=rf"header {re.escape(header)}: .*lower-case"):
        from_message(AmqpMessage(b"x", None, {**REQUIRED, header: "v"}))


def test_missing_required_attribute_names_the_header() -> None:
    headers = {k: v for k, v in REQUIRED.items() if k != "ce-source"}
    with pytest.raises(
        InvalidEvent, match=r"source: required attribute is missing \(expected header ce-source\)"
    ):
        from_message(AmqpMessage(b"x", None, headers))


@pytest.mark.parametrize("time", ["2020-01-01T18:31Z", "2020-01-01T18:31:00+05"])
def test_bad_time_header_is_rejected(time: str) -> None:
    with pytest.raises(InvalidEvent, match=re.escape(f"time: '{time}' is not an RFC 3339")):
        from_message(binary(ce_time=time))


def test_structured_invalid_json_is_rejected() -> None:
    with pytest.raises(InvalidEvent, match="payload: not valid JSON"):
        from_message(AmqpMessage(b"{", "application/cloudevents+json", {}))


def test_structured_missing_id_is_rejected() -> None:
    body = b'{"specversion":"1.0","source":"s","type":"t"}'
    with pytest.raises(InvalidEvent, match="id: required attribute is missing"):
        from_message(AmqpMessage(body, "application/cloudevents+json", {}))


def test_structured_data_and_data_base64_together_are_rejected() -> None:
    body = b'{"specversion":"1.0","id":"1","source":"s","type":"t","data":"a","data_base64":"AA=="}'
    with pytest.raises(
        InvalidEvent, match="data: an event may carry data or data_base64, not both"
    ):
        from_message(AmqpMessage(body, "application/cloudevents+json", {}))


def test_structured_garbage_avro_is_rejected() -> None:
    with pytest.raises(InvalidEvent, match="payload: not a CloudEvents Avro record"):
        from_message(AmqpMessage(b"\x02", "application/cloudevents+avro", {}))


def test_structured_unknown_format_is_rejected() -> None:
    with pytest.raises(InvalidEvent, match=r"content-type: .*names no supported event format"):
        from_message(AmqpMessage(b"<e/>", "application/cloudevents+xml", {}))
