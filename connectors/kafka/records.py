"""A consumer record as a ``Delivery``: the per-record work of the Kafka source.

This runs once per record on the hot path, so it does only what every delivery
needs and leaves the rest to whoever reads it:

* ``Delivery.headers`` (the header values as text: ingress templates, dead letters,
  tracing) is a ``TextHeaders`` that decodes the record's headers on first read. A
  binary-mode CloudEvent is read from the raw headers by the binding and forwarded
  without anyone reading their text, so most records never decode them twice.
* ``Delivery.content_type`` is found without decoding the other headers.
* The ordering key (``topic/partition``) is made once per partition by the caller.

The text is the same as before: ``connectors.headertext.header_text`` of each value,
a later header of the same name winning, ``content-type`` matched in any case
(``find_header``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from operator import itemgetter
from typing import Any

from connectors.base import Delivery, Nack, find_header
from connectors.headertext import LazyHeaders, header_text
from routing.bindings.kafka import KafkaMessage

__all__ = ["TextHeaders", "delivery", "raw_headers"]

_CONTENT_TYPE = "content-type"
_VALUE = itemgetter(1)


class TextHeaders(LazyHeaders):
    """A record's headers as text, decoded on first read (see the module docstring)."""

    __slots__ = ("_raw",)

    def __init__(self, raw: tuple[tuple[str, bytes], ...]) -> None:
        super().__init__()
        self._raw = raw

    def _parse(self) -> dict[str, str]:
        return {name: header_text(value) for name, value in self._raw}


def raw_headers(headers: Any) -> tuple[tuple[str, bytes], ...]:
    """The record's headers for the binding: a value-less header (null) reads as empty."""
    raw: tuple[tuple[str, bytes], ...] = tuple(headers)  # aiokafka's tuple: no copy
    if all(map(_VALUE, raw)):  # in C: the common case, no empty or null value
        return raw
    return tuple((name, value if value is not None else b"") for name, value in raw)


def _content_type(raw: tuple[tuple[str, bytes], ...], headers: TextHeaders) -> str | None:
    """``find_header(headers, "content-type")``, without decoding the other headers."""
    exact: bytes | None = None
    loose = False
    for name, value in raw:
        if name == _CONTENT_TYPE:
            exact = value  # a later one wins, as in the text
        elif len(name) == len(_CONTENT_TYPE) and name.lower() == _CONTENT_TYPE:
            loose = True
    if exact is not None:
        return header_text(exact)
    return find_header(headers, _CONTENT_TYPE) if loose else None


def delivery(
    record: Any,
    lane: str,
    ack: Callable[[], Awaitable[None]],
    nack: Nack,
) -> Delivery[KafkaMessage]:
    """The delivery of ``record`` (an aiokafka ``ConsumerRecord``) on ordering ``lane``."""
    topic = record.topic
    offset = record.offset
    key = record.key
    value = record.value
    raw = raw_headers(record.headers)
    headers = TextHeaders(raw)
    coordinates: dict[str, str | int] = {
        "topic": topic,
        "partition": record.partition,
        "offset": offset,
    }
    if key is not None:
        coordinates["key"] = header_text(key)
    return Delivery(
        message=KafkaMessage(key=key, value=value, headers=raw),
        address=topic,
        payload=value if value is not None else b"",
        headers=headers,
        content_type=_content_type(raw, headers),
        ack=ack,
        nack=nack,
        native_id=f"{lane}/{offset}",
        ordering_key=lane,
        coordinates=coordinates,
    )
