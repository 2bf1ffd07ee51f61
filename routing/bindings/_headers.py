"""Helpers shared by the four protocol bindings (internal).

What the bindings have in common lives here so that each binding module holds only
its protocol's mapping rules:

- ``Mode``, the content mode a message is written in;
- turning native header values into the text of an attribute, with errors that
  name the header (``header_text``);
- collecting attributes from headers, rejecting names that are not attribute names
  and headers that contradict each other (``AttributeHeaders``);
- building the event once every attribute is known, with a hint at the header a
  missing required attribute was expected in (``AttributeHeaders.event``);
- the rules every binding shares for binary mode: which events binary mode cannot
  carry (``binary_mode_possible``), the attribute headers to write
  (``binary_attributes``), and "empty payload means no data" (``data_or_none``);
- recognising the headerless structured JSON of MQTT 3.1.1 and pre-2.2 NATS
  (``headerless_json_event``);
- putting a target's own native headers beside the binding's (``merge_headers``, the
  one precedence; each binding's ``header_clash`` says which names it refuses).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from enum import StrEnum
from typing import Final, TypeVar

import orjson

from routing.errors import InvalidEvent
from routing.event import CONTEXT_ATTRIBUTES, CloudEvent, is_valid_attribute_name
from routing.formats import is_structured
from routing.formats import json as json_format

__all__ = [
    "AttributeHeaders",
    "Mode",
    "binary_attributes",
    "binary_mode_possible",
    "data_or_none",
    "header_text",
    "headerless_json_event",
    "merge_headers",
    "prefix_clash",
]

V = TypeVar("V")

NAME_RULE: Final = "attribute names must be lower-case ASCII letters and digits only (a-z, 0-9)"


class Mode(StrEnum):
    """Content mode of a CloudEvent message (CloudEvents spec, section "Message")."""

    BINARY = "binary"
    """Data is the payload as-is; every other attribute travels as a protocol header."""
    STRUCTURED = "structured"
    """The whole event (attributes and data) is the payload, in an event format."""


def header_text(header: str, value: bytes | None) -> str:
    """The text of a header value that must be UTF-8 (Kafka headers, MQTT bytes)."""
    if value is None:
        raise InvalidEvent(f"header {header}", "has no value (expected UTF-8 text)")
    raw = bytes(value)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidEvent(
            f"header {header}",
            f"not valid UTF-8 (byte 0x{raw[exc.start]:02X} at offset {exc.start}); "
            "header values must be UTF-8 text",
        ) from None


class AttributeHeaders:
    """Attributes read from the headers of one binary-mode message.

    ``hint`` says where a missing attribute was expected, e.g. ``"header ce_{}"``.
    """

    __slots__ = ("_found", "_hint")

    def __init__(self, hint: str) -> None:
        self._hint = hint
        self._found: dict[str, tuple[str, str, str]] = {}  # name -> (kind, field, value)

    def add(self, name: str, value: str, field: str, kind: str = "header") -> None:
        """Record attribute ``name`` read from ``kind`` ``field`` (e.g. header ``ce_id``).

        Raises ``InvalidEvent`` when ``name`` is not an attribute name, or when another
        header already gave the same attribute a different value. (The location is
        passed in parts and put together only for an error: this runs per header.)
        """
        if not is_valid_attribute_name(name):
            raise InvalidEvent(f"{kind} {field}", f"{name!r} is not an attribute name: {NAME_RULE}")
        previous = self._found.get(name)
        if previous is None:
            self._found[name] = (kind, field, value)
        elif previous[2] != value:
            raise InvalidEvent(
                f"{kind} {field}",
                f"gives attribute {name!r} the value {value!r}, but {previous[0]} "
                f"{previous[1]} gives it {previous[2]!r}; send the attribute once",
            )

    def event(self, data: bytes | None) -> CloudEvent:
        """The validated event; ``InvalidEvent`` names what is missing or wrong."""
        for name in ("specversion", "id", "source", "type"):
            if name not in self._found:
                raise InvalidEvent(
                    name, f"required attribute is missing (expected {self._hint.format(name)})"
                )
        context: dict[str, str] = {}
        extensions: dict[str, str] = {}
        for name, (_, _, value) in self._found.items():
            (context if name in CONTEXT_ATTRIBUTES else extensions)[name] = value
        return CloudEvent(extensions=extensions, data=data, **context)


def binary_mode_possible(event: CloudEvent) -> bool:
    """False when binary mode would be read back as structured mode.

    Where ``datacontenttype`` travels as the message's content type (Kafka, AMQP,
    MQTT 5), a value starting with ``application/cloudevents`` makes every receiver
    take the message for structured mode: such an event must be sent structured.
    """
    return not is_structured(event.datacontenttype)


def binary_attributes(event: CloudEvent, *, with_datacontenttype: bool) -> list[tuple[str, str]]:
    """(attribute name, canonical string) of every attribute binary mode puts in headers."""
    return [
        (name, value)
        for name, value in event.canonical_attributes().items()
        if with_datacontenttype or name != "datacontenttype"
    ]


def data_or_none(payload: bytes) -> bytes | None:
    """Binary-mode data of a protocol without a null payload: empty means no data."""
    return bytes(payload) if payload else None


def headerless_json_event(payload: bytes) -> CloudEvent | None:
    """Structured JSON sent without any content type (MQTT 3.1.1, NATS before 2.2).

    The payload is taken for a CloudEvent only when it is a JSON object with a
    ``specversion`` member; then it must be a valid one (``InvalidEvent`` otherwise).
    Anything else is a legacy payload: ``None``.
    """
    try:
        obj = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(obj, dict) or "specversion" not in obj:
        return None
    return json_format.decode_object(obj)


def _exact(name: str) -> str:
    return name


def merge_headers(
    own: Iterable[tuple[str, V]],
    custom: Iterable[tuple[str, V]],
    *,
    same: Callable[[str], str] = _exact,
    refused: Callable[[str], str | None] | None = None,
) -> list[tuple[str, V]]:
    """The headers of a published message: ``own`` first, then ``custom`` beside them.

    The one precedence (docs/routes.md#native-headers): what the binding and the
    connector write (``own``: attribute headers, content type, ``Nats-Msg-Id``; or, one
    layer up, the trace context) always wins. A ``custom`` header (a target's
    ``headers:``) is left out when ``refused`` (the binding's ``header_clash``) names a
    reason, or when an ``own`` header has the same name after ``same`` (the protocol's
    case rule, e.g. ``str.lower`` for NATS). Loading the config already refuses
    clashing names with file and line; this keeps a message readable when such a name
    arrives anyway (a plugin, a direct call), rather than writing one that every
    CloudEvents reader rejects or reads as a different event.
    """
    merged = list(own)
    taken = {same(name) for name, _ in merged}
    for name, value in custom:
        if same(name) in taken or (refused is not None and refused(name) is not None):
            continue
        taken.add(same(name))
        merged.append((name, value))
    return merged


def prefix_clash(name: str, prefixes: Iterable[str], binding: str) -> str | None:
    """A ``header_clash`` reason when ``name`` starts with one of ``prefixes`` in any
    case (the binding's attribute headers), else None."""
    lowered = name.lower()
    for prefix in prefixes:
        if lowered.startswith(prefix.lower()):
            return (
                f"names starting {prefix} (any case) carry CloudEvents attributes in the "
                f"{binding} binding; expected another name (attributes change with "
                "attributes: {set: ...})"
            )
    return None
