"""AMQP 0-9-1 (RabbitMQ) binding: CloudEvent <-> AMQP message (pure, no client import).

What it implements
    CloudEvents has no official AMQP 0-9-1 binding (its AMQP binding is for AMQP
    1.0), so this follows the RabbitMQ binding of Knative eventing-rabbitmq:
    ``to_message`` writes an event in binary or structured mode, ``from_message``
    reads either mode back, or returns ``None`` for a message that is no CloudEvent.

Spec
    https://github.com/knative-extensions/eventing-rabbitmq/blob/main/cloudevents-protocol-spec/spec.md
    (section numbers below refer to it); header names of the AMQP 1.0 binding are
    also read: https://github.com/cloudevents/spec/blob/main/cloudevents/bindings/amqp-protocol-binding.md

Binary mode (3.1)
    The body is the event data as-is. The ``content_type`` property carries
    ``datacontenttype``; every other attribute is a ``ce-<name>`` header whose value
    is its canonical string. AMQP has no null body: an empty body reads back as an
    event without data, so an event whose data is empty bytes loses that distinction.
    On reading, ``cloudEvents_<name>`` and ``cloudEvents:<name>`` headers (AMQP 1.0
    binding, CloudEvents .NET SDK) count too, and header values may be any AMQP
    field-table type that has a canonical string: text, UTF-8 bytes, integers and
    booleans (canonical strings ``"12"``, ``"true"``) and timestamps (RFC 3339, UTC).

Structured mode (3.2)
    The body is the event in an event format (JSON, or Avro) and the
    ``content_type`` property is the format's media type; no ``ce-`` headers.

Reading (3)
    Structured mode when ``content_type`` starts with ``application/cloudevents``
    (any case); otherwise binary mode when a ``ce-specversion`` (or
    ``cloudEvents_specversion`` / ``cloudEvents:specversion``) header exists;
    otherwise the message is no CloudEvent (``None``).

Deviations and notes
    - An event is written structured, whatever ``mode`` says, when binary mode cannot
      carry it: its ``datacontenttype`` starts with ``application/cloudevents`` (every
      receiver would read the message as structured mode), or does not fit the
      255-byte ``content_type`` short string, or an attribute name is too long for a
      255-byte header name.
    - A ``ce-datacontenttype`` header is accepted on reading; it must agree with the
      ``content_type`` property. Headers naming the same attribute must agree.
    - A structured message in an event format meshgate does not know is rejected
      (``InvalidEvent``) rather than forwarded as binary (which 3 allows).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from routing.bindings._headers import (
    AttributeHeaders,
    Mode,
    binary_attributes,
    binary_mode_possible,
    data_or_none,
    header_text,
    prefix_clash,
)
from routing.errors import InvalidEvent
from routing.event import CloudEvent, canonical_string
from routing.formats import EventFormat, decode, encode, is_structured

__all__ = [
    "HEADER_PREFIX",
    "INGEST_PREFIXES",
    "AmqpMessage",
    "from_message",
    "header_clash",
    "to_message",
]

HEADER_PREFIX: Final = "ce-"
INGEST_PREFIXES: Final = (HEADER_PREFIX, "cloudEvents_", "cloudEvents:")
_SHORTSTR_MAX: Final = 255  # AMQP 0-9-1 shortstr: content_type and field-table names


@dataclass(slots=True)  # not frozen: made per message (see routing.bindings)
class AmqpMessage:
    """The parts of an AMQP 0-9-1 message the binding reads and writes."""

    body: bytes
    content_type: str | None
    headers: Mapping[str, object]


def to_message(
    event: CloudEvent, mode: Mode = Mode.BINARY, *, fmt: EventFormat = EventFormat.JSON
) -> AmqpMessage:
    """Write ``event`` as an AMQP message in ``mode`` (``fmt`` is for structured mode)."""
    if Mode(mode) is Mode.STRUCTURED or not _binary_fits(event):
        content_type, payload = encode(event, EventFormat(fmt))
        return AmqpMessage(payload, content_type, {})
    headers: dict[str, object] = {
        HEADER_PREFIX + name: value
        for name, value in binary_attributes(event, with_datacontenttype=False)
    }
    return AmqpMessage(event.data or b"", event.datacontenttype, headers)


def from_message(message: AmqpMessage) -> CloudEvent | None:
    """Read an AMQP message: the CloudEvent it carries, or ``None`` if it carries none.

    Raises ``InvalidEvent`` when the message claims to be a CloudEvent but breaks the
    binding or the spec; the error names the header or attribute at fault.
    """
    if message.content_type is not None and is_structured(message.content_type):
        return decode(message.body, message.content_type)
    if not any(prefix + "specversion" in message.headers for prefix in INGEST_PREFIXES):
        return None
    attributes = AttributeHeaders(f"header {HEADER_PREFIX}{{}}")
    for header, value in message.headers.items():
        for prefix in INGEST_PREFIXES:
            if header.startswith(prefix):
                attributes.add(header[len(prefix) :], _header_value(header, value), header)
                break
    if message.content_type is not None:
        attributes.add("datacontenttype", message.content_type, "content_type", "property")
    return attributes.event(data_or_none(message.body))


def _binary_fits(event: CloudEvent) -> bool:
    if not binary_mode_possible(event):
        return False
    ctype = event.datacontenttype
    if ctype is not None and len(ctype.encode("utf-8")) > _SHORTSTR_MAX:
        return False
    return all(len(HEADER_PREFIX + name) <= _SHORTSTR_MAX for name, _ in event.attributes())


def _header_value(header: str, value: object) -> str:
    """Canonical string of an AMQP field-table value."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return header_text(header, bytes(value))
    if isinstance(value, bool | int):
        return canonical_string(value)
    if isinstance(value, datetime):
        moment = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return moment.isoformat().replace("+00:00", "Z")
    raise InvalidEvent(
        f"header {header}",
        f"a {type(value).__name__} value has no CloudEvents canonical string "
        "(expected text, UTF-8 bytes, an integer, a boolean or a timestamp)",
    )


def header_clash(name: str) -> str | None:
    """Why a target's own header ``name`` cannot travel beside this binding's, or None.

    AMQP field-table names are case-sensitive; reading takes ``ce-``, ``cloudEvents_``
    and ``cloudEvents:`` headers as attributes, refused here in any case (other
    readers fold case). The content type is the ``content_type`` property, so a
    ``content-type`` header is only a header.
    """
    return prefix_clash(name, INGEST_PREFIXES, "AMQP")
