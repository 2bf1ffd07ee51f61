"""Kafka binding: every rule of the CloudEvents Kafka protocol binding we implement."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from routing.bindings import KafkaMessage, Mode
from routing.bindings.kafka import from_message, to_message
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
    extensions={"count": 42, "flag": True, "blob": b"\x00\xff", "traceparent": "00-ab-cd-01"},
    data=b'{"celsius":21.5}',
)
HEADERS = (
    ("ce_specversion", b"1.0"),
    ("ce_id", b"evt-1"),
    ("ce_source", b"/sensors/7"),
    ("ce_type", b"com.example.reading"),
)


def binary(*extra: tuple[str, bytes], value: bytes | None = b"x") -> KafkaMessage:
    return KafkaMessage(None, value, HEADERS + extra)


def headers_of(message: KafkaMessage) -> dict[str, bytes]:
    names = [name for name, _ in message.headers]
    assert len(names) == len(set(names)), "no header is written twice"
    return dict(message.headers)


# -- binary mode: writing ---------------------------------------------------------------


def test_binary_headers_are_ce_prefixed_utf8_canonical_strings() -> None:
    message = to_message(EVENT)
    assert headers_of(message) == {
        "ce_id": b"evt-1",
        "ce_source": b"/sensors/7",
        "ce_specversion": b"1.0",
        "ce_type": b"com.example.reading",
        "ce_subject": "temp €".encode(),
        "ce_time": b"2026-11-26T10:00:00.5Z",
        "ce_count": b"42",
        "ce_flag": b"true",
        "ce_blob": b"AP8=",
        "ce_traceparent": b"00-ab-cd-01",
        "content-type": b"application/json",
    }


def test_binary_datacontenttype_goes_in_content_type_header_only() -> None:
    headers = headers_of(to_message(EVENT))
    assert headers["content-type"] == b"application/json"
    assert "ce_datacontenttype" not in headers


def test_binary_value_is_the_data_as_is() -> None:
    assert to_message(EVENT).value == b'{"celsius":21.5}'


def test_binary_event_without_data_has_no_value_a_tombstone() -> None:
    message = to_message(EVENT.replace(data=None))
    assert message.value is None
    decoded = from_message(message)
    assert decoded is not None and decoded.data is None


def test_binary_empty_data_stays_empty_not_none() -> None:
    decoded = from_message(to_message(EVENT.replace(data=b"")))
    assert decoded is not None and decoded.data == b""


def test_binary_without_datacontenttype_has_no_content_type_header() -> None:
    assert "content-type" not in headers_of(to_message(EVENT.replace(datacontenttype=None)))


def test_binary_roundtrip_keeps_canonical_attributes_and_data() -> None:
    decoded = from_message(to_message(EVENT))
    assert decoded is not None
    assert decoded.canonical_attributes() == EVENT.canonical_attributes()
    assert decoded.data == EVENT.data
    assert decoded.extensions["count"] == "42"  # typed values travel as canonical strings


def test_event_carrying_a_cloudevent_as_data_is_sent_structured() -> None:
    inner = EVENT.replace(datacontenttype="Application/CloudEvents+JSON", data=b'{"id":"x"}')
    message = to_message(inner, Mode.BINARY)
    assert headers_of(message) == {"content-type": b"application/cloudevents+json"}
    decoded = from_message(message)
    assert decoded is not None and decoded.canonical_attributes() == inner.canonical_attributes()
    assert decoded.data == inner.data


# -- structured mode: writing -----------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "content_type", "encode"),
    [
        (EventFormat.JSON, b"application/cloudevents+json", json_format.encode),
        (EventFormat.AVRO, b"application/cloudevents+avro", avro_format.encode),
    ],
)
def test_structured_value_is_the_event_format(
    fmt: EventFormat, content_type: bytes, encode: Callable[[CloudEvent], bytes]
) -> None:
    message = to_message(EVENT, Mode.STRUCTURED, fmt=fmt)
    assert message.headers == (("content-type", content_type),)
    assert message.value == encode(EVENT)
    decoded = from_message(message)
    assert decoded is not None and decoded.canonical_attributes() == EVENT.canonical_attributes()
    assert decoded.data == EVENT.data


def test_structured_event_without_data_still_has_a_value() -> None:
    assert to_message(EVENT.replace(data=None), Mode.STRUCTURED).value


def test_mode_may_be_given_as_its_string() -> None:
    assert to_message(EVENT, "structured").headers[0][0] == "content-type"  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="bogus"):
        to_message(EVENT, "bogus")  # type: ignore[arg-type]


# -- key mapping ------------------------------------------------------------------------


def test_key_is_the_user_key_by_default_even_with_a_partitionkey() -> None:
    event = EVENT.replace(extensions={"partitionkey": "p-1"})
    assert to_message(event).key is None
    assert to_message(event, key=b"user").key == b"user"
    assert to_message(event, Mode.STRUCTURED, key=b"user").key == b"user"


def test_opt_in_key_mapper_uses_partitionkey_and_keeps_the_attribute() -> None:
    event = EVENT.replace(extensions={"partitionkey": "zone-ü"})
    for mode in Mode:
        message = to_message(event, mode, key=b"user", key_from_partitionkey=True)
        assert message.key == "zone-ü".encode()
        decoded = from_message(message)
        assert decoded is not None and decoded.get("partitionkey") == "zone-ü"


def test_opt_in_key_mapper_uses_the_canonical_string_of_a_typed_partitionkey() -> None:
    event = EVENT.replace(extensions={"partitionkey": 17})
    assert to_message(event, key_from_partitionkey=True).key == b"17"


def test_opt_in_key_mapper_without_partitionkey_keeps_the_user_key() -> None:
    assert to_message(EVENT, key=b"user", key_from_partitionkey=True).key == b"user"


def test_decoding_never_turns_the_key_into_an_attribute() -> None:
    message = to_message(EVENT, key=b"some-key")
    decoded = from_message(message)
    assert decoded is not None and decoded.get("partitionkey") is None
    assert decoded.canonical_attributes() == EVENT.canonical_attributes()


# -- reading: mode detection ------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [
        b"application/cloudevents+json",
        b"Application/CloudEvents+JSON; charset=UTF-8",
        b"APPLICATION/CLOUDEVENTS+JSON",
    ],
)
def test_structured_detection_is_case_insensitive(content_type: bytes) -> None:
    value = json_format.encode(EVENT)
    decoded = from_message(KafkaMessage(None, value, (("content-type", content_type),)))
    assert decoded is not None and decoded.id == "evt-1"


def test_content_type_header_name_matches_in_any_case() -> None:
    value = json_format.encode(EVENT)
    decoded = from_message(
        KafkaMessage(None, value, (("Content-Type", b"application/cloudevents+json"),))
    )
    assert decoded is not None and decoded.id == "evt-1"


def test_structured_wins_over_ce_headers_present_in_the_same_record() -> None:
    # Structured records MAY carry the binary-mode headers too (3.3.3): the value rules.
    value = json_format.encode(EVENT)
    message = KafkaMessage(
        None,
        value,
        (
            ("ce_specversion", b"1.0"),
            ("ce_id", b"other"),
            ("content-type", b"application/cloudevents+json"),
        ),
    )
    decoded = from_message(message)
    assert decoded is not None and decoded.id == "evt-1"


def test_binary_needs_only_ce_specversion_to_be_recognised() -> None:
    decoded = from_message(binary(("content-type", b"text/plain")))
    assert decoded is not None
    assert decoded.datacontenttype == "text/plain" and decoded.data == b"x"


def test_ce_datacontenttype_header_is_accepted_on_reading() -> None:
    decoded = from_message(binary(("ce_datacontenttype", b"text/csv")))
    assert decoded is not None and decoded.datacontenttype == "text/csv"


def test_repeated_headers_with_the_same_value_are_accepted() -> None:
    decoded = from_message(binary(("ce_id", b"evt-1")))
    assert decoded is not None and decoded.id == "evt-1"


@pytest.mark.parametrize(
    "message",
    [
        KafkaMessage(None, b"legacy payload 42", ()),
        KafkaMessage(b"key", b'{"specversion":"1.0","id":"1","source":"s","type":"t"}', ()),
        KafkaMessage(None, b"{}", (("content-type", b"application/json"),)),
        KafkaMessage(None, b"x", (("ce_id", b"1"), ("ce_source", b"s"), ("ce_type", b"t"))),
        KafkaMessage(None, b"x", (("CE_SPECVERSION", b"1.0"),)),
        KafkaMessage(None, None, ()),
    ],
    ids=[
        "plain",
        "json-without-headers",
        "json-content-type",
        "no-specversion",
        "upper-case",
        "empty",
    ],
)
def test_records_that_are_not_cloudevents_read_as_none(message: KafkaMessage) -> None:
    assert from_message(message) is None


def test_reading_invents_no_attributes() -> None:
    decoded = from_message(binary())
    assert decoded is not None
    assert decoded.canonical_attributes() == {
        "id": "evt-1",
        "source": "/sensors/7",
        "specversion": "1.0",
        "type": "com.example.reading",
    }


# -- reading: malformed records ---------------------------------------------------------


def test_header_value_that_is_not_utf8_names_the_header() -> None:
    with pytest.raises(InvalidEvent, match=r"header ce_time: not valid UTF-8 .*offset 4"):
        from_message(binary(("ce_time", b"2020\xff")))


def test_content_type_that_is_not_utf8_names_the_header() -> None:
    with pytest.raises(InvalidEvent, match="header content-type: not valid UTF-8"):
        from_message(binary(("content-type", b"\xc0\xa0")))


def test_conflicting_content_type_headers_are_rejected() -> None:
    with pytest.raises(InvalidEvent, match=r"header Content-Type: appears twice"):
        from_message(binary(("content-type", b"text/plain"), ("Content-Type", b"text/csv")))


def test_conflicting_attribute_headers_are_rejected() -> None:
    with pytest.raises(
        InvalidEvent, match=r"header ce_id: gives attribute 'id'.*'evt-2'.*header ce_id"
    ):
        from_message(binary(("ce_id", b"evt-2")))
    with pytest.raises(
        InvalidEvent, match=r"header content-type: gives attribute 'datacontenttype'"
    ):
        from_message(binary(("ce_datacontenttype", b"text/csv"), ("content-type", b"text/plain")))


@pytest.mark.parametrize("header", ["ce_Foo", "ce_foo-bar", "ce_", "ce_data"])
def test_ce_header_that_is_no_attribute_name_is_rejected(header: str) -> None:
    with pytest.raises(InvalidEvent, match=f"header {header}: .*lower-case"):
        from_message(binary((header, b"v")))


def test_missing_required_attribute_names_the_header() -> None:
    message = KafkaMessage(None, b"x", HEADERS[:1] + HEADERS[2:])
    with pytest.raises(
        InvalidEvent, match=r"id: required attribute is missing \(expected header ce_id\)"
    ):
        from_message(message)


@pytest.mark.parametrize("time", ["2020-01-01T18:31Z", "2020-01-01T18:31:00+05", "2020-01-01"])
def test_bad_time_header_is_rejected(time: str) -> None:
    with pytest.raises(
        InvalidEvent, match=re.escape(f"time: '{time}' is not an RFC 3339 timestamp")
    ):
        from_message(binary(("ce_time", time.encode())))


def test_unsupported_specversion_is_rejected() -> None:
    message = KafkaMessage(None, b"x", (("ce_specversion", b"0.3"), *HEADERS[1:]))
    with pytest.raises(InvalidEvent, match=re.escape("specversion: '0.3' is not supported")):
        from_message(message)


def structured(
    value: bytes | None, content_type: bytes = b"application/cloudevents+json"
) -> KafkaMessage:
    return KafkaMessage(None, value, (("content-type", content_type),))


def test_structured_invalid_json_is_rejected() -> None:
    with pytest.raises(InvalidEvent, match="payload: not valid JSON"):
        from_message(structured(b'{"specversion": "1.0",'))


def test_structured_missing_id_is_rejected() -> None:
    with pytest.raises(InvalidEvent, match="id: required attribute is missing"):
        from_message(structured(b'{"specversion":"1.0","source":"s","type":"t"}'))


def test_structured_data_and_data_base64_together_are_rejected() -> None:
    value = b'{"specversion":"1.0","id":"1","source":"s","type":"t","data":1,"data_base64":"AA=="}'
    with pytest.raises(
        InvalidEvent, match="data: an event may carry data or data_base64, not both"
    ):
        from_message(structured(value))


def test_structured_bad_time_is_rejected() -> None:
    value = b'{"specversion":"1.0","id":"1","source":"s","type":"t","time":"2020-01-01T18:31Z"}'
    with pytest.raises(InvalidEvent, match="time: '2020-01-01T18:31Z' is not an RFC 3339"):
        from_message(structured(value))


def test_structured_record_without_value_is_rejected() -> None:
    with pytest.raises(InvalidEvent, match=r"value: a structured-mode record .* has none"):
        from_message(structured(None))


@pytest.mark.parametrize(
    ("content_type", "rule"),
    [
        (b"application/cloudevents+xml", "names no supported event format"),
        (b"application/cloudevents-batch+json", "batched CloudEvents are not supported"),
    ],
)
def test_structured_format_we_cannot_read_is_rejected(content_type: bytes, rule: str) -> None:
    with pytest.raises(InvalidEvent, match=f"content-type: .*{rule}"):
        from_message(structured(b"{}", content_type))


def test_structured_garbage_avro_is_rejected() -> None:
    with pytest.raises(InvalidEvent, match="payload: not a CloudEvents Avro record"):
        from_message(structured(b"\x01", b"application/cloudevents+avro"))


@pytest.mark.parametrize(
    "extra",
    [
        (),
        (("content-type", b"application/json"), ("ce_subject", b"temp \xe2\x82\xac")),
        (("ce_datacontenttype", b"text/plain"), ("Content-Type", b"text/plain")),
        (("ce_count", b"42"), ("ce_traceparent", b"00-ab-cd-01"), ("x-other", b"\xff")),
        (("ce_time", b"2026-11-26T10:00:00.5Z"), ("ce_dataschema", b"urn:x")),
    ],
)
def test_one_pass_reading_agrees_with_the_checked_reading(
    extra: tuple[tuple[str, bytes], ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Usual records are read in one pass (``_usual``); the same record read the
    checked way (``AttributeHeaders``, which names what is wrong) gives the same event."""
    import routing.bindings.kafka as kafka_binding

    message = binary(*extra)
    quick = from_message(message)
    assert quick is not None and kafka_binding._usual is not None
    monkeypatch.setattr(kafka_binding, "_usual", lambda *_: None)
    assert from_message(message) == quick
    assert dict(quick.extensions) == dict(from_message(message).extensions)  # type: ignore[union-attr]
