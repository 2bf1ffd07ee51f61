"""MQTT binding: CloudEvent <-> MQTT PUBLISH message, 5.0 and 3.1.1 (pure, no client import).

What it implements
    The CloudEvents MQTT Protocol Binding 1.0: ``to_message`` writes an event for an
    MQTT 5 session in binary or structured mode, or for an MQTT 3.1.1 session in
    structured JSON; ``from_message`` reads it back, or returns ``None`` for a
    message that is no CloudEvent.

Spec
    https://github.com/cloudevents/spec/blob/main/cloudevents/bindings/mqtt-protocol-binding.md
    (section numbers below refer to it).

Binary mode, MQTT 5 only (3.1)
    The payload is the event data as-is. The Content Type property carries
    ``datacontenttype``; every other attribute is a User Property named exactly as
    the attribute, whose value is its canonical string. MQTT has no null payload: an
    empty payload reads back as an event without data, so an event whose data is
    empty bytes loses that distinction. On reading, User Properties named
    ``ce-<name>`` count too, and so does a ``datacontenttype`` User Property (the
    spec's own example sends one); every User Property whose name is an attribute
    name is an attribute, as 3.1.3 prescribes.

Structured mode (3.2)
    The payload is the event in an event format. MQTT 5: JSON or Avro, with the
    format's media type as Content Type. MQTT 3.1.1 has no properties at all, so it
    carries structured JSON only (3, 3.2.1): ``to_message`` raises ``ValueError`` for
    binary mode or a non-JSON format on 3.1.1, since that is a configuration error
    rather than a bad event.

Reading (3)
    MQTT 5: structured mode when Content Type starts with ``application/cloudevents``
    (any case); otherwise binary mode when a ``specversion`` (or ``ce-specversion``)
    User Property exists. MQTT 3.1.1: the payload is a CloudEvent only when it is a
    JSON object with a ``specversion`` member, and then must be a valid one
    (``InvalidEvent``); any other payload is a legacy message (``None``).

Deviations and notes
    - An MQTT 5 message with neither Content Type nor CloudEvents User Properties is
      read by the 3.1.1 rule, so structured JSON published by a 3.1.1 client still
      reads as a CloudEvent on an MQTT 5 session (the broker forwards it without
      properties). The spec would call it binary mode without attributes: ``None``.
    - An event is written structured, whatever ``mode`` says, when MQTT 5 binary
      mode cannot carry it: its ``datacontenttype`` starts with
      ``application/cloudevents`` (every receiver would read the message as
      structured mode), or a property would exceed MQTT's 65,535-byte strings.
    - A structured message in an event format meshgate does not know is rejected
      (``InvalidEvent``) rather than forwarded as binary (which 3 allows).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from routing.bindings._headers import (
    AttributeHeaders,
    Mode,
    binary_attributes,
    binary_mode_possible,
    data_or_none,
    headerless_json_event,
    prefix_clash,
)
from routing.event import CloudEvent, is_valid_attribute_name
from routing.formats import EventFormat, decode, encode, is_structured

__all__ = [
    "INGEST_PREFIX",
    "MQTT_3_1_1",
    "MQTT_5",
    "MqttMessage",
    "from_message",
    "header_clash",
    "to_message",
]

MQTT_5: Final = 5
MQTT_3_1_1: Final = 4  # the protocol level byte of MQTT 3.1.1
INGEST_PREFIX: Final = "ce-"
_STRING_MAX: Final = 65_535  # MQTT UTF-8 strings carry a 16-bit length


@dataclass(slots=True)  # not frozen: made per message (see routing.bindings)
class MqttMessage:
    """The parts of an MQTT PUBLISH the binding reads and writes.

    ``protocol_version`` is 5 (MQTT 5.0) or 4 (MQTT 3.1.1, which has no Content Type
    and no User Properties).
    """

    payload: bytes
    content_type: str | None
    user_properties: tuple[tuple[str, str], ...]
    protocol_version: int

    def __post_init__(self) -> None:
        _check_version(self.protocol_version)


def to_message(
    event: CloudEvent,
    mode: Mode = Mode.BINARY,
    *,
    fmt: EventFormat = EventFormat.JSON,
    protocol_version: int = MQTT_5,
) -> MqttMessage:
    """Write ``event`` as an MQTT message in ``mode`` (``fmt`` is for structured mode).

    Raises ``ValueError`` for what MQTT 3.1.1 cannot carry (binary mode, Avro):
    that is a route configuration error, not a bad event.
    """
    mode, fmt = Mode(mode), EventFormat(fmt)
    _check_version(protocol_version)
    if protocol_version == MQTT_3_1_1:
        if mode is not Mode.STRUCTURED or fmt is not EventFormat.JSON:
            raise ValueError(
                "MQTT 3.1.1 carries CloudEvents in structured mode with the JSON format only "
                f"(asked for {mode} mode, {fmt} format); use MQTT 5 for binary mode or Avro"
            )
        return MqttMessage(encode(event, fmt)[1], None, (), MQTT_3_1_1)
    if mode is Mode.STRUCTURED or not _binary_fits(event):
        content_type, payload = encode(event, fmt)
        return MqttMessage(payload, content_type, (), MQTT_5)
    properties = tuple(binary_attributes(event, with_datacontenttype=False))
    return MqttMessage(event.data or b"", event.datacontenttype, properties, MQTT_5)


def from_message(message: MqttMessage) -> CloudEvent | None:
    """Read an MQTT message: the CloudEvent it carries, or ``None`` if it carries none.

    Raises ``InvalidEvent`` when the message claims to be a CloudEvent but breaks the
    binding or the spec; the error names the property or attribute at fault.
    """
    if message.protocol_version == MQTT_3_1_1:
        return headerless_json_event(message.payload)
    if message.content_type is not None and is_structured(message.content_type):
        return decode(message.payload, message.content_type)
    names = {name for name, _ in message.user_properties}
    if "specversion" not in names and INGEST_PREFIX + "specversion" not in names:
        if message.content_type is None and not any(map(_is_attribute_property, names)):
            return headerless_json_event(message.payload)
        return None
    attributes = AttributeHeaders("user property {}")
    for name, value in message.user_properties:
        if name.startswith(INGEST_PREFIX):
            attributes.add(name[len(INGEST_PREFIX) :], value, name, "user property")
        elif is_valid_attribute_name(name):
            attributes.add(name, value, name, "user property")
    if message.content_type is not None:
        attributes.add("datacontenttype", message.content_type, "Content Type", "property")
    return attributes.event(data_or_none(message.payload))


def _is_attribute_property(name: str) -> bool:
    return name.startswith(INGEST_PREFIX) or is_valid_attribute_name(name)


def _binary_fits(event: CloudEvent) -> bool:
    if not binary_mode_possible(event):
        return False
    return all(
        len(text.encode("utf-8")) <= _STRING_MAX for text in event.canonical_attributes().values()
    )


def _check_version(protocol_version: int) -> None:
    if protocol_version not in (MQTT_5, MQTT_3_1_1):
        raise ValueError(
            f"protocol_version must be 5 (MQTT 5.0) or 4 (MQTT 3.1.1), not {protocol_version!r}"
        )


def header_clash(name: str) -> str | None:
    """Why a target's own User Property ``name`` cannot travel beside this binding's,
    or None.

    MQTT 5 User Property names are exact (case-sensitive): every one named like an
    attribute (``^[a-z0-9]+$``) reads back as that attribute (3.1.3), and so does a
    ``ce-`` prefixed one (refused in any case). ``Region`` or ``x-region`` are fine.
    The content type is the Content Type property, not a User Property.
    """
    if is_valid_attribute_name(name):
        return (
            f"MQTT 5 User Properties named like an attribute are read back as that "
            f"attribute; expected a name with a '-' or capitals (e.g. x-{name}), or set "
            "the attribute with attributes: {set: ...}"
        )
    return prefix_clash(name, (INGEST_PREFIX,), "MQTT")
