"""The CloudEvents HTTP binding, pure: binary, structured and batched mode both ways."""

from __future__ import annotations

import orjson
import pytest
from http_helpers import sample_event
from meshgate_cloudevents_http.binding import (
    BATCH_CONTENT_TYPE,
    HttpMessage,
    UnsupportedFormat,
    from_request,
    message_headers,
    to_message,
)

from routing.bindings import Mode
from routing.errors import InvalidEvent
from routing.formats import EventFormat
from routing.formats import json as json_format

REQUIRED = [("ce-specversion", "1.0"), ("ce-id", "1"), ("ce-source", "/s"), ("ce-type", "t")]


def read(message: HttpMessage) -> list[object]:
    received = from_request(message.headers.items(), message.body)
    assert received is not None
    return [r.event for r in received]


def test_binary_mode_headers_are_percent_encoded_and_content_type_is_datacontenttype() -> None:
    event = sample_event()
    message = to_message(event)
    assert message.headers["Content-Type"] == "application/json"
    assert "ce-datacontenttype" not in message.headers
    # The spec's own example (3.1.3.2), plus '"' and '%'.
    assert message.headers["ce-comexampleflag"] == (
        "Euro%20%E2%82%AC%20%F0%9F%98%80%20%22quoted%22%20100%25"
    )
    assert message.body == event.data
    assert read(message) == [event]


def test_binary_mode_without_datacontenttype_sends_no_content_type() -> None:
    event = sample_event(datacontenttype=None, data=None)
    message = to_message(event)
    assert not any(name.lower() == "content-type" for name in message.headers)
    assert message.body == b""
    assert read(message) == [event]


def test_binary_header_names_match_in_any_case_and_quoted_values_are_unquoted() -> None:
    headers = [("CE-SpecVersion", "1.0"), ("Ce-Id", '"a b"'), ("ce-source", "/s"), ("ce-type", "t")]
    (received,) = from_request(headers, b"") or []
    assert received.event.id == "a b"


@pytest.mark.parametrize(
    ("headers", "where", "rule"),
    [
        (REQUIRED[:1] + REQUIRED[2:], "header ce-id", "required attribute is missing"),
        ([*REQUIRED, ("ce-datacontenttype", "text/plain")], "ce-datacontenttype", "Content-Type"),
        ([*REQUIRED, ("ce-Bad_Name", "x")], "ce-Bad_Name", "not an attribute name"),
        ([*REQUIRED, ("ce-x", "%E2%82")], "ce-x", "UTF-8"),
        ([*REQUIRED, ("ce-x", "%C0%A0")], "ce-x", "UTF-8"),  # overlong: MUST be rejected
        ([*REQUIRED, ("ce-x", "50%")], "ce-x", "%XX"),
        ([*REQUIRED, ("ce-id", "2")], "ce-id", "different values"),
        ([*REQUIRED, ("ce-time", "2026-01-01T10:00Z")], "time", "RFC 3339"),
        (
            [*REQUIRED, ("Content-Type", "text/plain"), ("Content-Type", "text/html")],
            "Content-Type",
            "different values",
        ),
    ],
)
def test_malformed_binary_mode_names_what_is_wrong(
    headers: list[tuple[str, str]], where: str, rule: str
) -> None:
    with pytest.raises(InvalidEvent) as caught:
        from_request(headers, b"x")
    assert where in str(caught.value) and rule in str(caught.value), str(caught.value)


@pytest.mark.parametrize("fmt", [EventFormat.JSON, EventFormat.AVRO])
def test_structured_mode_roundtrip(fmt: EventFormat) -> None:
    event = sample_event()
    message = to_message(event, Mode.STRUCTURED, fmt=fmt)
    assert message.headers == {"Content-Type": fmt.content_type}
    assert read(message) == [event]


def test_structured_content_type_with_parameters_and_any_case() -> None:
    event = sample_event()
    body = json_format.encode(event)
    headers = [("content-type", "Application/CloudEvents+JSON; charset=UTF-8")]
    assert [r.event for r in from_request(headers, body) or []] == [event]


def test_binary_mode_of_a_cloudevents_datacontenttype_goes_structured() -> None:
    event = sample_event(datacontenttype="application/cloudevents+json")
    message = to_message(event, Mode.BINARY)
    assert message.headers == {"Content-Type": json_format.CONTENT_TYPE}
    assert read(message) == [event]


def test_batch_gives_one_event_each_with_its_own_structured_message() -> None:
    events = [sample_event(1), sample_event(2, datacontenttype="text/plain", data=b"hi")]
    body = orjson.dumps([json_format.encode_object(e) for e in events])
    received = from_request([("Content-Type", BATCH_CONTENT_TYPE)], body) or []
    assert [r.event for r in received] == events
    for one, event in zip(received, events, strict=True):
        assert one.message.headers == {"Content-Type": json_format.CONTENT_TYPE}
        assert json_format.decode(one.message.body) == event


def test_empty_batch_is_allowed() -> None:
    assert from_request([("Content-Type", BATCH_CONTENT_TYPE)], b"[]") == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{", "not valid JSON"),
        (b'{"specversion": "1.0"}', "a batch is a JSON array"),
        (b"[1]", "batch[0]: expected a JSON object"),
        (b'[{"specversion":"1.0","id":"1","source":"/s","type":"t"}, {"id":"2"}]', "batch[1]"),
    ],
)
def test_malformed_batch(body: bytes, message: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        from_request([("Content-Type", BATCH_CONTENT_TYPE)], body)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    "content_type", ["application/cloudevents+xml", "application/cloudevents-batch+avro"]
)
def test_unknown_event_format_is_unsupported(content_type: str) -> None:
    with pytest.raises(UnsupportedFormat) as caught:
        from_request([("Content-Type", content_type)], b"<x/>")
    assert content_type in str(caught.value)


def test_plain_request_is_no_cloudevent() -> None:
    assert from_request([("Content-Type", "application/json")], b'{"a": 1}') is None
    assert from_request([("ce-id", "1")], b"no specversion: a plain webhook") is None


def test_credentials_and_hop_by_hop_headers_never_reach_the_delivery() -> None:
    """Dead letters and the local store keep a delivery's headers: no secrets there."""
    pairs = [
        ("Authorization", "Bearer s3cret"),
        ("Cookie", "session=s3cret"),
        ("Proxy-Authorization", "Basic s3cret"),
        ("Connection", "keep-alive"),
        ("Transfer-Encoding", "chunked"),
        ("X-Request-Id", "r-1"),
        ("Content-Type", "text/plain"),
    ]
    plain = from_request(pairs, b"hello")  # a plain webhook: no CloudEvent
    assert plain is None
    assert message_headers(pairs) == {"X-Request-Id": "r-1", "Content-Type": "text/plain"}
    event = sample_event(1)
    binary = [*pairs[:5], ("ce-specversion", "1.0"), ("ce-id", event.id)]
    binary += [("ce-source", event.source), ("ce-type", event.type)]
    received = from_request(binary, b"{}")
    assert received is not None
    kept = received[0].message.headers
    assert "s3cret" not in repr(kept) and "Connection" not in kept
