"""Native header values as text, and back: one mapping for every connector.

Sources hand the runtime their headers as text (``Delivery.headers``: ingress
templates, dead letters, ``meshgate dlq`` and ``routes check`` read them), whatever
the client library gave: Kafka's bytes, AMQP field-table values, MQTT and NATS
strings. ``header_text`` is total, so no header value ever stops a message:

- UTF-8 bytes are their text; other bytes are ``base64:`` + their base64;
- booleans and integers their CloudEvents canonical strings (``true``, ``12``),
  floats and decimals ``str``, timestamps RFC 3339 in UTC (as the AMQP binding
  reads ``ce-`` headers), ``None`` the empty text;
- nested tables and arrays JSON of their members' texts.

``header_bytes`` turns such a text back into the original bytes (``base64:`` decoded),
for a redrive that republishes a message unchanged.

``LazyHeaders`` is the base of a source's ``Delivery.headers`` that makes that text
only when someone reads it (Kafka's ``TextHeaders``, NATS's ``RawHeaders``): the
binding reads a usual CloudEvent from the native form, so most messages never need it.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import decimal
import json
from collections.abc import ItemsView, Iterator, Mapping
from typing import Any

from routing.event import canonical_string

__all__ = ["BASE64_MARKER", "LazyHeaders", "header_bytes", "header_text"]

BASE64_MARKER = "base64:"
"""Prefix of a header (or key) text whose bytes were not valid UTF-8."""


def header_text(value: object) -> str:
    """The text of one native header value (see the module docstring); never raises."""
    if value is None:
        return ""
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return BASE64_MARKER + base64.b64encode(raw).decode("ascii")
    if isinstance(value, str | bool | int):
        return canonical_string(value)
    if isinstance(value, float | decimal.Decimal):
        return str(value)
    if isinstance(value, dt.datetime):
        moment = value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
        return moment.isoformat().replace("+00:00", "Z")
    if isinstance(value, Mapping):
        return json.dumps({str(k): header_text(v) for k, v in value.items()}, sort_keys=True)
    if isinstance(value, list | tuple):
        return json.dumps([header_text(item) for item in value])
    return str(value)


def header_bytes(text: str) -> bytes:
    """The bytes ``header_text`` made ``text`` from (``base64:`` decoded, else UTF-8)."""
    if text.startswith(BASE64_MARKER):
        try:
            return base64.b64decode(text[len(BASE64_MARKER) :], validate=True)
        except (binascii.Error, ValueError):
            pass  # a text that merely starts with the marker
    return text.encode("utf-8", "surrogatepass")


class LazyHeaders(Mapping[str, str]):
    """Header texts made from the native headers on first read (``_parse``, once)."""

    __slots__ = ("_parsed",)

    def __init__(self) -> None:
        self._parsed: dict[str, str] | None = None

    def _parse(self) -> dict[str, str]:
        raise NotImplementedError

    def _headers(self) -> dict[str, str]:
        parsed = self._parsed
        if parsed is None:
            parsed = self._parsed = self._parse()
        return parsed

    @property
    def parsed(self) -> bool:
        """Whether the texts were made (someone read a header)."""
        return self._parsed is not None

    def __getitem__(self, name: str) -> str:
        return self._headers()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._headers())

    def __len__(self) -> int:
        return len(self._headers())

    def __repr__(self) -> str:
        return repr(self._headers())

    def get(self, name: str, default: Any = None) -> Any:
        return self._headers().get(name, default)

    def items(self) -> ItemsView[str, str]:  # the dict's own: Mapping's iterates in Python
        return self._headers().items()
