"""Event formats: how a whole CloudEvent is written into one message payload.

``encode(event, fmt)`` and ``decode(payload, content_type)`` pick the format by
name (``json`` / ``avro``) or by structured-mode content type.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from routing.errors import InvalidEvent
from routing.event import CloudEvent
from routing.formats import avro, json

__all__ = ["STRUCTURED_PREFIX", "EventFormat", "decode", "encode", "is_structured"]

STRUCTURED_PREFIX: Final = "application/cloudevents"


class EventFormat(StrEnum):
    """Event format used for structured-mode messages."""

    JSON = "json"
    """``application/cloudevents+json``: required by every binding."""
    AVRO = "avro"
    """``application/cloudevents+avro``: compact, typed; optional in the spec."""

    @property
    def content_type(self) -> str:
        return json.CONTENT_TYPE if self is EventFormat.JSON else avro.CONTENT_TYPE


def is_structured(content_type: str | None) -> bool:
    """Structured mode is signalled by a content type starting ``application/cloudevents``."""
    return content_type is not None and content_type.lstrip().lower().startswith(STRUCTURED_PREFIX)


def encode(event: CloudEvent, fmt: EventFormat = EventFormat.JSON) -> tuple[str, bytes]:
    """Serialize ``event``; returns (content type, payload)."""
    if fmt is EventFormat.AVRO:
        return avro.CONTENT_TYPE, avro.encode(event)
    return json.CONTENT_TYPE, json.encode(event)


def decode(payload: bytes, content_type: str) -> CloudEvent:
    """Parse a structured-mode payload whose content type names its format."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media == json.CONTENT_TYPE:
        return json.decode(payload)
    if media == avro.CONTENT_TYPE:
        return avro.decode(payload)
    if media.startswith(json.BATCH_CONTENT_TYPE):
        raise InvalidEvent("content-type", "batched CloudEvents are not supported by meshgate")
    raise InvalidEvent(
        "content-type",
        f"{content_type!r} names no supported event format "
        f"(expected {json.CONTENT_TYPE} or {avro.CONTENT_TYPE})",
    )
