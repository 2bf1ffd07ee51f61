"""The CloudEvents HTTP protocol binding (1.0): CloudEvent <-> HTTP request, pure.

Spec: cloudevents/spec ``cloudevents/bindings/http-protocol-binding.md``.

Reading (3): the ``Content-Type`` header picks the mode. A value starting with
``application/cloudevents-batch`` is batched mode (3.3; only the JSON batch format:
a JSON array, possibly empty, of JSON-format events); one starting with
``application/cloudevents`` is structured mode (3.2; JSON or Avro); anything else is
binary mode (3.1) when a ``ce-specversion`` header exists, and no CloudEvent at all
(``None``: a plain webhook, wrapped by the route's ingress rules) otherwise.

Binary mode: every attribute is a ``ce-<name>`` header (names in any case), values
percent-encoded (3.1.3.2, done by ``routing.bindings.nats.percent_encode``, the
same rule), except ``datacontenttype``, which is the ``Content-Type`` header (3.1.1);
a ``ce-datacontenttype`` header is refused. An empty body is an event without data.

Errors: ``InvalidEvent`` naming the header or member at fault (the server answers
400 with it), ``UnsupportedFormat`` for a CloudEvents media type meshgate has no
event format for (415).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

import orjson

from routing.bindings import Mode
from routing.bindings.nats import percent_decode, percent_encode
from routing.errors import InvalidEvent
from routing.event import CloudEvent, is_valid_attribute_name
from routing.formats import EventFormat, decode, encode, is_structured
from routing.formats import json as json_format

__all__ = [
    "BATCH_CONTENT_TYPE",
    "HttpMessage",
    "Received",
    "UnsupportedFormat",
    "from_request",
    "message_headers",
    "to_message",
]

PREFIX: Final = "ce-"
BATCH_CONTENT_TYPE: Final = "application/cloudevents-batch+json"
_BATCH_PREFIX: Final = "application/cloudevents-batch"
_FORMATS: Final = frozenset(f.content_type for f in EventFormat)
_REQUIRED: Final = ("specversion", "id", "source", "type")


class UnsupportedFormat(InvalidEvent):
    """A CloudEvents media type whose event format meshgate cannot read."""


@dataclass(frozen=True, slots=True)
class HttpMessage:
    """One HTTP message: its headers (names as sent) and body."""

    body: bytes
    headers: dict[str, str]


@dataclass(frozen=True, slots=True)
class Received:
    """One event of a request and the message that carries it alone: the request itself,
    or for an event of a batch, that event's JSON object as a structured message (what a
    dead letter keeps and ``meshgate dlq redrive`` sends again)."""

    event: CloudEvent
    message: HttpMessage


def to_message(
    event: CloudEvent, mode: Mode = Mode.BINARY, *, fmt: EventFormat = EventFormat.JSON
) -> HttpMessage:
    """``event`` as an HTTP request body and headers.

    An event whose ``datacontenttype`` starts with ``application/cloudevents`` goes
    structured even when binary mode is asked for: in binary mode that value would be
    the Content-Type, and every receiver would read the body as structured.
    """
    if Mode(mode) is Mode.STRUCTURED or is_structured(event.datacontenttype):
        content_type, body = encode(event, EventFormat(fmt))
        return HttpMessage(body, {"Content-Type": content_type})
    headers: dict[str, str] = {}
    for name, value in event.canonical_attributes().items():
        if name == "datacontenttype":
            headers["Content-Type"] = value
        else:
            headers[PREFIX + name] = percent_encode(value)
    return HttpMessage(event.data or b"", headers)


def _one_content_type(headers: Iterable[tuple[str, str]]) -> str | None:
    found: str | None = None
    for name, value in headers:
        if name.lower() == "content-type":
            if found is not None and found != value:
                raise InvalidEvent(
                    "header Content-Type",
                    f"sent twice with different values ({found!r}, {value!r})",
                )
            found = value
    return found


_NOT_KEPT: Final = frozenset(
    {
        # Credentials: never copied into a delivery (dead letters carry its headers).
        "authorization",
        "proxy-authorization",
        "cookie",
        # Hop-by-hop (RFC 9110 7.6.1): about this connection, not the message.
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)


def message_headers(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The request headers a delivery keeps: all but credentials and hop-by-hop ones."""
    return {name: value for name, value in pairs if name.lower() not in _NOT_KEPT}


def from_request(headers: Iterable[tuple[str, str]], body: bytes) -> list[Received] | None:
    """The events of one HTTP request, or None when it carries no CloudEvent.

    ``headers`` are (name, value) pairs as received (repeated names allowed). A list
    because of batched mode; structured and binary mode give one event.
    """
    pairs = list(headers)
    events = _events(pairs, body)
    if events is None or isinstance(events, CloudEvent):
        whole = HttpMessage(body, message_headers(pairs))
        return None if events is None else [Received(events, whole)]
    return events


def _events(pairs: list[tuple[str, str]], body: bytes) -> CloudEvent | list[Received] | None:
    content_type = _one_content_type(pairs)
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media.startswith(_BATCH_PREFIX):
        return _batch(media, body)
    if is_structured(content_type):
        if media not in _FORMATS:
            raise UnsupportedFormat(
                "header Content-Type",
                f"{content_type!r} names no event format meshgate reads (expected "
                f"{', '.join(sorted(_FORMATS))} or {BATCH_CONTENT_TYPE})",
            )
        return decode(body, media)
    if not any(name.lower() == PREFIX + "specversion" for name, _ in pairs):
        return None
    return _binary(pairs, content_type, body)


def _binary(pairs: list[tuple[str, str]], content_type: str | None, body: bytes) -> CloudEvent:
    attributes: dict[str, str] = {}
    for name, raw in pairs:
        lowered = name.lower()
        if not lowered.startswith(PREFIX):
            continue
        attribute = lowered[len(PREFIX) :]
        where = f"header {name}"
        if attribute == "datacontenttype":
            raise InvalidEvent(
                where, "not allowed in binary mode: Content-Type carries datacontenttype"
            )
        if not is_valid_attribute_name(attribute):
            raise InvalidEvent(
                where, f"{attribute!r} is not an attribute name (lower-case a-z and 0-9 only)"
            )
        value = percent_decode(raw, where)
        if attributes.get(attribute, value) != value:
            raise InvalidEvent(
                where, f"sent twice with different values ({attributes[attribute]!r}, {value!r})"
            )
        attributes[attribute] = value
    for name in _REQUIRED:
        if name not in attributes:
            raise InvalidEvent(f"header ce-{name}", "required attribute is missing")
    if content_type is not None:
        attributes["datacontenttype"] = content_type
    return CloudEvent.from_attributes(attributes, body or None)


def _batch(media: str, body: bytes) -> list[Received]:
    if media != BATCH_CONTENT_TYPE:
        raise UnsupportedFormat(
            "header Content-Type", f"{media!r}: the only batch format is {BATCH_CONTENT_TYPE}"
        )
    try:
        items = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent("body", f"not valid JSON ({exc})") from None
    if not isinstance(items, list):
        raise InvalidEvent("body", f"a batch is a JSON array, got {type(items).__name__}")
    events: list[Received] = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise InvalidEvent(
                f"batch[{index}]", f"expected a JSON object, got {type(item).__name__}"
            )
        try:
            event = json_format.decode_object(item)
        except InvalidEvent as exc:
            raise InvalidEvent(f"batch[{index}] {exc.attribute}", exc.rule) from None
        alone = HttpMessage(orjson.dumps(item), {"Content-Type": json_format.CONTENT_TYPE})
        events.append(Received(event, alone))
    return events
