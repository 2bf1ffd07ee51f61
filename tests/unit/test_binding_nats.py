"""NATS binding: the CloudEvents NATS protocol binding rules (headers, NATS 2.2+)."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from routing.bindings import Mode, NatsMessage
from routing.bindings.nats import from_message, percent_decode, percent_encode, to_message
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
    subject="Euro € 😀",
    time="2026-11-26T10:00:00.5Z",
    extensions={"count": 42, "flag": True, "blob": b"\x00\xff"},
    data=b'{"celsius":21.5}',
)
REQUIRED = {"ce-specversion": "1.0", "ce-id": "evt-1", "ce-source": "/sensors/7", "ce-type": "t"}


def binary(data: bytes = b"x", **extra: str) -> NatsMessage:
    return NatsMessage(data, {**REQUIRED, **{"ce-" + k: v for k, v in extra.items()}})


# -- percent-encoding (HTTP binding 3.1.3.2) --------------------------------------------


def test_spec_example_is_encoded_exactly() -> None:
    assert percent_encode("Euro € 😀") == "Euro%20%E2%82%AC%20%F0%9F%98%80"


@pytest.mark.parametrize(
    ("text", "encoded"),
    [
        (" ", "%20"),
        ('"', "%22"),
        ("%", "%25"),
        ("\u00a0", "%C2%A0"),
        ("é", "%C3%A9"),
        ("\U0010fffd", "%F4%8F%BF%BD"),
        ("!~#$&'()*+,/:;<=>?@[\\]^_`{|}", "!~#$&'()*+,/:;<=>?@[\\]^_`{|}"),
        ("AZaz09-._", "AZaz09-._"),
    ],
)
def test_exactly_space_quote_percent_and_non_printable_ascii_are_encoded(
    text: str, encoded: str
) -> None:
    assert percent_encode(text) == encoded
    assert percent_decode(encoded) == text


def test_decoding_accepts_lower_case_hex_and_unnecessary_escapes() -> None:
    assert percent_decode("%e2%82%ac%41%2d") == "€A-"


@pytest.mark.parametrize(
    ("value", "decoded"),
    [
        ('"a b"', "a b"),
        ('"say \\"hi\\""', 'say "hi"'),
        ('"back\\\\slash"', "back\\slash"),
        ('"%25 is percent"', "% is percent"),
        (' "padded" ', "padded"),
        ('""', ""),
    ],
)
def test_double_quoted_values_are_unquoted_before_percent_decoding(
    value: str, decoded: str
) -> None:
    assert percent_decode(value) == decoded


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        ("100%", "does not start a %XX escape"),
        ("%4", "does not start a %XX escape"),
        ("%zz", "does not start a %XX escape"),
        ("%C0%A0", "does not percent-decode to UTF-8 text"),  # overlong U+0020 (spec example)
        ("%ED%A0%80", "does not percent-decode to UTF-8 text"),  # an encoded surrogate
        ("%FF", "does not percent-decode to UTF-8 text"),
        ("%E2%82", "does not percent-decode to UTF-8 text"),  # truncated sequence
        ('"open', "never closes"),
        ('"escaped close\\"', "closing double quote is escaped"),
        ('"in"side"', "unescaped double quote"),
    ],
)
def test_malformed_header_values_are_rejected_naming_the_header(value: str, rule: str) -> None:
    with pytest.raises(InvalidEvent, match=rf"header ce-subject: .*{re.escape(rule)}"):
        from_message(binary(subject=value))


# -- binary mode ------------------------------------------------------------------------


def test_binary_headers_are_ce_prefixed_and_percent_encoded() -> None:
    message = to_message(EVENT)
    assert message.headers == {
        "ce-id": "evt-1",
        "ce-source": "/sensors/7",
        "ce-specversion": "1.0",
        "ce-type": "com.example.reading",
        "ce-datacontenttype": "application/json",
        "ce-subject": "Euro%20%E2%82%AC%20%F0%9F%98%80",
        "ce-time": "2026-11-26T10:00:00.5Z",
        "ce-count": "42",
        "ce-flag": "true",
        "ce-blob": "AP8=",
    }


def test_binary_datacontenttype_is_a_ce_header_not_content_type() -> None:
    headers = to_message(EVENT).headers
    assert headers is not None
    assert headers["ce-datacontenttype"] == "application/json"
    assert "content-type" not in {name.lower() for name in headers}


def test_binary_event_carrying_a_cloudevent_as_data_stays_binary() -> None:
    # NATS signals structured mode with Content-Type, not with ce-datacontenttype.
    inner = EVENT.replace(datacontenttype="application/cloudevents+json")
    message = to_message(inner)
    assert message.headers is not None and "ce-id" in message.headers
    decoded = from_message(message)
    assert decoded is not None and decoded.datacontenttype == "application/cloudevents+json"
    assert decoded.data == inner.data


def test_binary_payload_is_the_data_as_is_and_empty_without_data() -> None:
    assert to_message(EVENT).data == b'{"celsius":21.5}'
    message = to_message(EVENT.replace(data=None))
    assert message.data == b""
    decoded = from_message(message)
    assert decoded is not None and decoded.data is None


def test_binary_roundtrip_keeps_canonical_attributes_and_data() -> None:
    special = EVENT.replace(subject='100% "quoted" \u00a0 text', extensions={"note": " x "})
    decoded = from_message(to_message(special))
    assert decoded is not None
    assert decoded.canonical_attributes() == special.canonical_attributes()
    assert decoded.data == special.data


def test_header_names_match_in_any_case() -> None:
    headers = {
        "CE-SpecVersion": "1.0",
        "Ce-Id": "evt-1",
        "ce-SOURCE": "/s",
        "CE-TYPE": "t",
        "CE-Zone": "eu",
    }
    decoded = from_message(NatsMessage(b"x", headers))
    assert decoded is not None
    assert decoded.canonical_attributes() == {
        "specversion": "1.0",
        "id": "evt-1",
        "source": "/s",
        "type": "t",
        "zone": "eu",
    }


def test_headers_differing_only_in_case_must_agree() -> None:
    assert from_message(NatsMessage(b"x", {**REQUIRED, "CE-ID": "evt-1"})) is not None
    with pytest.raises(InvalidEvent, match="header CE-ID: gives attribute 'id'"):
        from_message(NatsMessage(b"x", {**REQUIRED, "CE-ID": "evt-2"}))


def test_content_type_header_is_not_datacontenttype_in_binary_mode() -> None:
    message = NatsMessage(b"x", {**REQUIRED, "Content-Type": "text/plain"})
    decoded = from_message(message)
    assert decoded is not None and decoded.datacontenttype is None


def test_other_headers_are_ignored() -> None:
    decoded = from_message(NatsMessage(b"x", {**REQUIRED, "Nats-Msg-Id": "42"}))
    assert decoded is not None
    assert set(decoded.canonical_attributes()) == {"id", "source", "specversion", "type"}


def test_empty_binary_payload_reads_as_no_data() -> None:
    decoded = from_message(binary(b"", datacontenttype="application/json"))
    assert decoded is not None and decoded.data is None


@pytest.mark.parametrize("header", ["ce-foo-bar", "ce-", "ce-data"])
def test_ce_header_that_is_no_attribute_name_is_rejected(header: str) -> None:
    with pytest.raises(InvalidEvent, match=rf"header {header}: .*lower-case"):
        from_message(NatsMessage(b"x", {**REQUIRED, header: "v"}))


def test_missing_required_attribute_names_the_header() -> None:
    headers = {k: v for k, v in REQUIRED.items() if k != "ce-type"}
    with pytest.raises(
        InvalidEvent, match=r"type: required attribute is missing \(expected header ce-type\)"
    ):
        from_message(NatsMessage(b"x", headers))


@pytest.mark.parametrize("time", ["2020-01-01T18:31Z", "2020-01-01T18:31:00+05"])
def test_bad_time_header_is_rejected(time: str) -> None:
    with pytest.raises(InvalidEvent, match=re.escape(f"time: '{time}' is not an RFC 3339")):
        from_message(binary(time=percent_encode(time)))


def test_percent_encoded_time_is_decoded_before_validation() -> None:
    decoded = from_message(binary(time="2020-01-01T00%3A00%3A00%2B05%3A30"))
    assert decoded is not None and decoded.time == "2020-01-01T00:00:00+05:30"


# -- structured mode --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "encode"),
    [(EventFormat.JSON, json_format.encode), (EventFormat.AVRO, avro_format.encode)],
)
def test_structured_payload_is_the_event_format_with_content_type(
    fmt: EventFormat, encode: Callable[[CloudEvent], bytes]
) -> None:
    message = to_message(EVENT, Mode.STRUCTURED, fmt=fmt)
    assert message.headers == {"Content-Type": fmt.content_type}
    assert message.data == encode(EVENT)
    decoded = from_message(message)
    assert decoded is not None and decoded.canonical_attributes() == EVENT.canonical_attributes()


@pytest.mark.parametrize(
    "headers",
    [
        {"Content-Type": "application/cloudevents+json"},
        {"content-type": "Application/CloudEvents+JSON; charset=utf-8"},
        {"CONTENT-TYPE": "APPLICATION/CLOUDEVENTS+JSON"},
    ],
)
def test_structured_detection_is_case_insensitive(headers: dict[str, str]) -> None:
    decoded = from_message(NatsMessage(json_format.encode(EVENT), headers))
    assert decoded is not None and decoded.id == "evt-1"


def test_structured_wins_over_ce_headers_in_the_same_message() -> None:
    headers = {**REQUIRED, "ce-id": "other", "Content-Type": "application/cloudevents+json"}
    decoded = from_message(NatsMessage(json_format.encode(EVENT), headers))
    assert decoded is not None and decoded.id == "evt-1"


@pytest.mark.parametrize("headers", [None, {}, {"Nats-Msg-Id": "42"}])
def test_headerless_json_object_with_specversion_is_structured_json(
    headers: dict[str, str] | None,
) -> None:
    decoded = from_message(NatsMessage(json_format.encode(EVENT), headers))
    assert decoded is not None
    assert decoded.canonical_attributes() == EVENT.canonical_attributes()
    assert decoded.data == EVENT.data


@pytest.mark.parametrize(
    "message",
    [
        NatsMessage(b"legacy payload 42", None),
        NatsMessage(b"", None),
        NatsMessage(b'{"temperature":21.5}', None),
        NatsMessage(b"[1,2]", {}),
        NatsMessage(json_format.encode(EVENT), {"Content-Type": "application/json"}),
        NatsMessage(
            b"x", {"ce-id": "1", "ce-source": "s", "ce-type": "t", "Content-Type": "text/plain"}
        ),
    ],
    ids=["plain", "empty", "json", "json-array", "json-with-content-type", "no-specversion"],
)
def test_messages_that_are_not_cloudevents_read_as_none(message: NatsMessage) -> None:
    assert from_message(message) is None


def test_headerless_json_with_specversion_must_be_valid() -> None:
    with pytest.raises(InvalidEvent, match="source: required attribute is missing"):
        from_message(NatsMessage(b'{"specversion":"1.0","id":"1","type":"t"}', None))
    with pytest.raises(
        InvalidEvent, match=re.escape("time: '2020-01-01T18:31Z' is not an RFC 3339")
    ):
        from_message(
            NatsMessage(
                b'{"specversion":"1.0","id":"1","source":"s","type":"t","time":"2020-01-01T18:31Z"}',
                None,
            )
        )


def test_conflicting_content_type_headers_are_rejected() -> None:
    headers = {"Content-Type": "application/cloudevents+json", "content-type": "text/plain"}
    with pytest.raises(InvalidEvent, match="header content-type: appears twice"):
        from_message(NatsMessage(b"{}", headers))


def test_structured_invalid_json_is_rejected() -> None:
    with pytest.raises(InvalidEvent, match="payload: not valid JSON"):
        from_message(NatsMessage(b"{", {"Content-Type": "application/cloudevents+json"}))


def test_structured_missing_id_is_rejected() -> None:
    data = b'{"specversion":"1.0","source":"s","type":"t"}'
    with pytest.raises(InvalidEvent, match="id: required attribute is missing"):
        from_message(NatsMessage(data, {"Content-Type": "application/cloudevents+json"}))


def test_structured_data_and_data_base64_together_are_rejected() -> None:
    data = b'{"specversion":"1.0","id":"1","source":"s","type":"t","data":{},"data_base64":"AA=="}'
    with pytest.raises(
        InvalidEvent, match="data: an event may carry data or data_base64, not both"
    ):
        from_message(NatsMessage(data, {"Content-Type": "application/cloudevents+json"}))


def test_structured_garbage_avro_is_rejected() -> None:
    with pytest.raises(InvalidEvent, match="payload: not a CloudEvents Avro record"):
        from_message(NatsMessage(b"\x04", {"Content-Type": "application/cloudevents+avro"}))
