"""Kafka protocol binding: CloudEvent <-> Kafka record (pure, no client import).

What it implements
    The CloudEvents Kafka Protocol Binding 1.0 for records with headers (Kafka
    0.11+): ``to_message`` writes an event in binary or structured mode,
    ``from_message`` reads either mode back, or returns ``None`` for a record that is
    not a CloudEvent.

Spec
    https://github.com/cloudevents/spec/blob/main/cloudevents/bindings/kafka-protocol-binding.md
    (section numbers below refer to it).

Binary mode (3.2)
    The value is the event data as-is, and no value at all (``None``, a tombstone on
    compacted topics) when the event has no data; an empty value is empty data. The
    ``content-type`` header carries ``datacontenttype``; every other attribute is a
    ``ce_<name>`` header whose value is the UTF-8 of its canonical string.

Structured mode (3.3)
    The value is the event in an event format (JSON, or Avro) and the
    ``content-type`` header is the format's media type.

Reading (3)
    Structured mode when the ``content-type`` header starts with
    ``application/cloudevents`` (any case); otherwise binary mode when a
    ``ce_specversion`` header exists; otherwise the record is no CloudEvent (``None``).

Key (3.1)
    The record key is the caller's ``key`` (the user-provided key, the default the
    spec requires). With ``key_from_partitionkey=True`` an event with a
    ``partitionkey`` extension gets the UTF-8 of that value's canonical string as
    key instead; the attribute stays in the event. Reading never turns the key into
    an attribute.

Deviations and notes
    - An event whose ``datacontenttype`` itself starts with ``application/cloudevents``
      is always written structured: in binary mode its ``content-type`` header would
      make every receiver read the record as structured mode.
    - The ``content-type`` header name is matched in any case on reading (the spec
      writes it in lower case, which is what this module writes).
    - A ``ce_datacontenttype`` header is accepted on reading; it must agree with
      ``content-type`` when both are present. Repeated headers must agree too.
    - A structured record in an event format meshgate does not know is rejected
      (``InvalidEvent``) rather than forwarded as binary (which 3 allows).
    - Records written by Kafka 0.10 producers carry no headers, so structured JSON
      from them is not recognised: it reads as "not a CloudEvent".
"""

from __future__ import annotations

from dataclasses import dataclass

from routing.bindings._headers import (
    AttributeHeaders,
    Mode,
    binary_attributes,
    binary_mode_possible,
    header_text,
    prefix_clash,
)
from routing.errors import InvalidEvent
from routing.event import (
    CONTEXT_ATTRIBUTES,
    REQUIRED_ATTRIBUTES,
    CloudEvent,
    canonical_string,
    is_valid_attribute_name,
)
from routing.formats import EventFormat, decode, encode, is_structured

__all__ = ["HEADER_PREFIX", "KafkaMessage", "from_message", "header_clash", "to_message"]

HEADER_PREFIX = "ce_"
CONTENT_TYPE = "content-type"
_SPECVERSION_HEADER = HEADER_PREFIX + "specversion"
_PREFIX_LENGTH = len(HEADER_PREFIX)
_REQUIRED = frozenset(REQUIRED_ATTRIBUTES)


@dataclass(slots=True)  # not frozen: made per message (see routing.bindings)
class KafkaMessage:
    """The parts of a Kafka record the binding reads and writes."""

    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]


def to_message(
    event: CloudEvent,
    mode: Mode = Mode.BINARY,
    *,
    key: bytes | None = None,
    key_from_partitionkey: bool = False,
    fmt: EventFormat = EventFormat.JSON,
) -> KafkaMessage:
    """Write ``event`` as a Kafka record in ``mode`` (``fmt`` is for structured mode)."""
    mode = Mode(mode)
    if key_from_partitionkey:
        partitionkey = event.get("partitionkey")
        if partitionkey is not None:
            key = canonical_string(partitionkey).encode("utf-8")
    if mode is Mode.STRUCTURED or not binary_mode_possible(event):
        content_type, payload = encode(event, EventFormat(fmt))
        return KafkaMessage(key, payload, ((CONTENT_TYPE, content_type.encode("utf-8")),))
    headers = [
        (HEADER_PREFIX + name, value.encode("utf-8"))
        for name, value in binary_attributes(event, with_datacontenttype=False)
    ]
    if event.datacontenttype is not None:
        headers.append((CONTENT_TYPE, event.datacontenttype.encode("utf-8")))
    return KafkaMessage(key, event.data, tuple(headers))


def from_message(message: KafkaMessage) -> CloudEvent | None:
    """Read a Kafka record: the CloudEvent it carries, or ``None`` if it carries none.

    Raises ``InvalidEvent`` when the record claims to be a CloudEvent but breaks the
    binding or the spec; the error names the header or attribute at fault.
    """
    content_type: str | None = None
    found: list[tuple[str, bytes]] = []  # the ce_ headers
    has_specversion = False
    for name, value in message.headers:  # one pass: this runs per record
        if name.startswith(HEADER_PREFIX):
            has_specversion = has_specversion or name == _SPECVERSION_HEADER
            found.append((name, value))
        elif name.lower() == CONTENT_TYPE:
            text = header_text(name, value)
            if content_type is not None and content_type != text:
                raise InvalidEvent(
                    f"header {name}",
                    f"appears twice with different values ({content_type!r}, {text!r})",
                )
            content_type = text
    if content_type is not None and is_structured(content_type):
        if message.value is None:
            raise InvalidEvent(
                "value", "a structured-mode record carries the event in its value, but it has none"
            )
        return decode(message.value, content_type)
    if not has_specversion:
        return None
    event = _usual(found, content_type, message.value)
    if event is None:
        attributes = AttributeHeaders(f"header {HEADER_PREFIX}{{}}")
        for name, value in found:
            attributes.add(name[len(HEADER_PREFIX) :], header_text(name, value), name)
        if content_type is not None:
            attributes.add("datacontenttype", content_type, CONTENT_TYPE)
        event = attributes.event(message.value)
    return event


def _usual(
    found: list[tuple[str, bytes]], content_type: str | None, data: bytes | None
) -> CloudEvent | None:
    """The binary-mode event of a usual record, read in one pass: each ``ce_`` header
    once, its value UTF-8 and its name an attribute name, every required attribute
    there. None for anything else: ``AttributeHeaders`` then reads the record and
    names what is wrong (this runs per record; that one stays the reference)."""
    context: dict[str, str] = {}
    extensions: dict[str, str] = {}
    for name, value in found:
        attribute = name[_PREFIX_LENGTH:]
        if attribute in context or attribute in extensions:
            return None
        if not is_valid_attribute_name(attribute):
            return None
        try:
            text = value.decode("utf-8")
        except (UnicodeDecodeError, AttributeError):  # AttributeError: not bytes
            return None
        (context if attribute in CONTEXT_ATTRIBUTES else extensions)[attribute] = text
    if content_type is not None and context.setdefault("datacontenttype", content_type) != (
        content_type
    ):
        return None
    if not _REQUIRED.issubset(context):
        return None
    return CloudEvent(extensions=extensions, data=data, **context)


def header_clash(name: str) -> str | None:
    """Why a target's own header ``name`` cannot travel beside this binding's, or None.

    Kafka header names are case-sensitive, but reading takes ``content-type`` in any
    case (datacontenttype, or the event format of structured mode) and ``ce_<name>``
    headers as attributes; both are refused in any case.
    """
    if name.lower() == CONTENT_TYPE:
        return (
            "the Kafka binding writes the content-type header itself (any case: it carries "
            "datacontenttype, or the event format in structured mode); expected another "
            "name (set datacontenttype with attributes: {set: ...})"
        )
    return prefix_clash(name, (HEADER_PREFIX,), "Kafka")
