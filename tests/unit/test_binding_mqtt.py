"""MQTT binding: the CloudEvents MQTT protocol binding rules, for MQTT 5 and 3.1.1."""

from __future__ import annotations

import re
from collections.abc import Callable

import orjson
import pytest

from routing.bindings import Mode, MqttMessage
from routing.bindings.mqtt import from_message, to_message
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
REQUIRED = (("specversion", "1.0"), ("id", "evt-1"), ("source", "/sensors/7"), ("type", "t"))
STRUCTURED_JSON = json_format.encode(EVENT)


def v5(
    *extra: tuple[str, str], payload: bytes = b"x", content_type: str | None = None
) -> MqttMessage:
    return MqttMessage(payload, content_type, REQUIRED + extra, 5)


def v4(payload: bytes) -> MqttMessage:
    return MqttMessage(payload, None, (), 4)


# -- MQTT 5 binary mode: writing --------------------------------------------------------


def test_binary_user_properties_are_named_exactly_as_the_attributes() -> None:
    message = to_message(EVENT)
    assert message.protocol_version == 5
    assert dict(message.user_properties) == {
        "id": "evt-1",
        "source": "/sensors/7",
        "specversion": "1.0",
        "type": "com.example.reading",
        "subject": "temp €",
        "time": "2026-11-26T10:00:00.5Z",
        "count": "42",
        "flag": "true",
        "blob": "AP8=",
    }
    assert len(message.user_properties) == len(dict(message.user_properties))


def test_binary_datacontenttype_is_the_content_type_property() -> None:
    message = to_message(EVENT)
    assert message.content_type == "application/json"
    assert "datacontenttype" not in dict(message.user_properties)
    assert to_message(EVENT.replace(datacontenttype=None)).content_type is None


def test_binary_payload_is_the_data_as_is_and_empty_without_data() -> None:
    assert to_message(EVENT).payload == b'{"celsius":21.5}'
    message = to_message(EVENT.replace(data=None))
    assert message.payload == b""
    decoded = from_message(message)
    assert decoded is not None and decoded.data is None


def test_binary_roundtrip_keeps_canonical_attributes_and_data() -> None:
    decoded = from_message(to_message(EVENT))
    assert decoded is not None
    assert decoded.canonical_attributes() == EVENT.canonical_attributes()
    assert decoded.data == EVENT.data


def test_event_carrying_a_cloudevent_as_data_is_sent_structured() -> None:
    inner = EVENT.replace(datacontenttype="application/CLOUDEVENTS+json")
    message = to_message(inner)
    assert message.content_type == "application/cloudevents+json"
    assert message.user_properties == ()
    decoded = from_message(message)
    assert decoded is not None and decoded.canonical_attributes() == inner.canonical_attributes()


def test_value_longer_than_an_mqtt_string_is_sent_structured() -> None:
    event = EVENT.replace(subject="s" * 65_536)
    assert to_message(event).content_type == "application/cloudevents+json"
    assert to_message(EVENT.replace(subject="s" * 65_535)).content_type == "application/json"


# -- MQTT 5 structured mode -------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "encode"),
    [(EventFormat.JSON, json_format.encode), (EventFormat.AVRO, avro_format.encode)],
)
def test_v5_structured_payload_is_the_event_format(
    fmt: EventFormat, encode: Callable[[CloudEvent], bytes]
) -> None:
    message = to_message(EVENT, Mode.STRUCTURED, fmt=fmt)
    assert message.content_type == fmt.content_type
    assert message.user_properties == ()
    assert message.payload == encode(EVENT)
    decoded = from_message(message)
    assert decoded is not None and decoded.canonical_attributes() == EVENT.canonical_attributes()


@pytest.mark.parametrize(
    "content_type", ["application/cloudevents+json", "Application/CloudEvents+JSON; charset=utf-8"]
)
def test_v5_structured_detection_is_case_insensitive(content_type: str) -> None:
    decoded = from_message(MqttMessage(STRUCTURED_JSON, content_type, (), 5))
    assert decoded is not None and decoded.id == "evt-1"


def test_v5_structured_wins_over_attribute_user_properties() -> None:
    message = MqttMessage(STRUCTURED_JSON, "application/cloudevents+json", REQUIRED, 5)
    decoded = from_message(message)
    assert decoded is not None and decoded.type == "com.example.reading"


# -- MQTT 5 binary mode: reading --------------------------------------------------------


def test_ce_prefixed_user_properties_are_accepted() -> None:
    properties = (*(("ce-" + name, value) for name, value in REQUIRED), ("ce-zone", "eu"))
    decoded = from_message(MqttMessage(b"x", None, properties, 5))
    assert decoded is not None and decoded.get("zone") == "eu" and decoded.id == "evt-1"


def test_datacontenttype_user_property_is_accepted_and_must_agree() -> None:
    decoded = from_message(v5(("datacontenttype", "text/csv")))
    assert decoded is not None and decoded.datacontenttype == "text/csv"
    same = from_message(v5(("datacontenttype", "text/csv"), content_type="text/csv"))
    assert same is not None and same.datacontenttype == "text/csv"
    with pytest.raises(
        InvalidEvent, match="property Content Type: gives attribute 'datacontenttype'"
    ):
        from_message(v5(("datacontenttype", "text/csv"), content_type="text/plain"))


def test_user_properties_that_are_no_attribute_names_are_ignored() -> None:
    decoded = from_message(v5(("Trace-Id", "abc"), ("x-origin", "plant")))
    assert decoded is not None
    assert set(decoded.canonical_attributes()) == {"id", "source", "specversion", "type"}


def test_prefixed_user_property_that_is_no_attribute_name_is_rejected() -> None:
    with pytest.raises(InvalidEvent, match=r"user property ce-Zone: .*lower-case"):
        from_message(v5(("ce-Zone", "eu")))


def test_conflicting_user_properties_are_rejected() -> None:
    with pytest.raises(
        InvalidEvent, match=r"user property ce-id: gives attribute 'id'.*user property id"
    ):
        from_message(v5(("ce-id", "other")))


def test_empty_binary_payload_reads_as_no_data() -> None:
    decoded = from_message(v5(payload=b"", content_type="application/json"))
    assert decoded is not None and decoded.data is None


def test_reading_invents_no_attributes() -> None:
    decoded = from_message(v5())
    assert decoded is not None
    assert set(decoded.canonical_attributes()) == {"id", "source", "specversion", "type"}


def test_missing_required_attribute_names_the_user_property() -> None:
    message = MqttMessage(b"x", None, REQUIRED[:3], 5)
    with pytest.raises(
        InvalidEvent, match=r"type: required attribute is missing \(expected user property type\)"
    ):
        from_message(message)


@pytest.mark.parametrize("time", ["2020-01-01T18:31Z", "2020-01-01T18:31:00+05"])
def test_bad_time_user_property_is_rejected(time: str) -> None:
    with pytest.raises(InvalidEvent, match=re.escape(f"time: '{time}' is not an RFC 3339")):
        from_message(v5(("time", time)))


@pytest.mark.parametrize(
    "message",
    [
        MqttMessage(b"legacy payload 42", None, (), 5),
        MqttMessage(b"21.5", "text/plain", (("unit", "C"),), 5),
        MqttMessage(STRUCTURED_JSON, "application/json", (), 5),
        MqttMessage(STRUCTURED_JSON, None, (("origin", "plant"),), 5),
        MqttMessage(b"x", None, (("id", "1"), ("source", "s"), ("type", "t")), 5),
    ],
    ids=["plain", "text", "json-with-content-type", "json-with-properties", "no-specversion"],
)
def test_v5_messages_that_are_not_cloudevents_read_as_none(message: MqttMessage) -> None:
    assert from_message(message) is None


def test_v5_message_without_any_property_is_read_like_mqtt_3_1_1() -> None:
    # Structured JSON published by a 3.1.1 client reaches MQTT 5 sessions bare.
    decoded = from_message(MqttMessage(STRUCTURED_JSON, None, (), 5))
    assert decoded is not None and decoded.canonical_attributes() == EVENT.canonical_attributes()


# -- MQTT 3.1.1 -------------------------------------------------------------------------


def test_v4_carries_structured_json_without_properties() -> None:
    message = to_message(EVENT, Mode.STRUCTURED, protocol_version=4)
    assert message == MqttMessage(STRUCTURED_JSON, None, (), 4)
    decoded = from_message(message)
    assert decoded is not None and decoded.canonical_attributes() == EVENT.canonical_attributes()
    assert decoded.data == EVENT.data


def test_v4_binary_mode_is_a_configuration_error() -> None:
    with pytest.raises(
        ValueError,
        match=r"MQTT 3.1.1 carries CloudEvents in structured mode with the JSON format only",
    ):
        to_message(EVENT, protocol_version=4)


def test_v4_avro_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="JSON format only"):
        to_message(EVENT, Mode.STRUCTURED, fmt=EventFormat.AVRO, protocol_version=4)


@pytest.mark.parametrize("version", [3, 6, 0])
def test_unknown_protocol_version_is_rejected(version: int) -> None:
    with pytest.raises(ValueError, match="protocol_version must be 5"):
        to_message(EVENT, protocol_version=version)
    with pytest.raises(ValueError, match="protocol_version must be 5"):
        MqttMessage(b"", None, (), version)


@pytest.mark.parametrize(
    "payload",
    [
        b"legacy payload 42",
        b"",
        b"21.5",
        b'"specversion"',
        b'["specversion", "1.0"]',
        b'{"temperature": 21.5}',
        b'{"specversion": "1.0", "id": ',  # not JSON at all: a legacy payload, not an error
        b"\xff\xfe",
    ],
)
def test_v4_payload_that_is_no_json_object_with_specversion_reads_as_none(payload: bytes) -> None:
    assert from_message(v4(payload)) is None


def test_v4_ignores_the_properties_3_1_1_does_not_have() -> None:
    message = MqttMessage(b"21.5", "application/cloudevents+json", REQUIRED, 4)
    assert from_message(message) is None


@pytest.mark.parametrize(
    ("obj", "error"),
    [
        ({"specversion": "1.0", "source": "s", "type": "t"}, "id: required attribute is missing"),
        ({"specversion": None, "id": "1", "source": "s", "type": "t"}, "specversion: required"),
        ({"specversion": "0.3", "id": "1", "source": "s", "type": "t"}, "specversion: '0.3'"),
        (
            {
                "specversion": "1.0",
                "id": "1",
                "source": "s",
                "type": "t",
                "time": "2020-01-01T18:31Z",
            },
            "time: '2020-01-01T18:31Z' is not an RFC 3339",
        ),
        (
            {
                "specversion": "1.0",
                "id": "1",
                "source": "s",
                "type": "t",
                "time": "2020-01-01T18:31:00+05",
            },
            "time: '2020-01-01T18:31:00+05' is not an RFC 3339",
        ),
        (
            {
                "specversion": "1.0",
                "id": "1",
                "source": "s",
                "type": "t",
                "data": 1,
                "data_base64": "AA==",
            },
            "data: an event may carry data or data_base64, not both",
        ),
        (
            {"specversion": "1.0", "id": "1", "source": "s", "type": "t", "x": 1.5},
            "x: 1.5: CloudEvents has no floating",
        ),
    ],
)
def test_v4_json_object_with_specversion_must_be_a_valid_event(
    obj: dict[str, object], error: str
) -> None:
    with pytest.raises(InvalidEvent, match=re.escape(error)):
        from_message(v4(orjson.dumps(obj)))


def test_structured_invalid_json_with_content_type_is_rejected() -> None:
    with pytest.raises(InvalidEvent, match="payload: not valid JSON"):
        from_message(MqttMessage(b"{", "application/cloudevents+json", (), 5))


def test_structured_garbage_avro_is_rejected() -> None:
    with pytest.raises(InvalidEvent, match="payload: not a CloudEvents Avro record"):
        from_message(MqttMessage(b"\x03", "application/cloudevents+avro", (), 5))
