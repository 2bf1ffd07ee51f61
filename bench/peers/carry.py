"""Where each protocol carries CloudEvents attributes, for the peer bridges.

A neutral form: ``(payload, content_type, attributes)``; ``attributes`` is empty in
structured mode (the payload is the whole event). Binary mode: NATS and AMQP headers
``ce-<name>``, Kafka headers ``ce_<name>``, MQTT 5 user properties ``<name>``; the
content type in the ``content-type`` header (Kafka), the ``content_type`` property
(AMQP), the Content Type property (MQTT) and the ``ce-datacontenttype`` header (NATS).
No percent-coding and no validation: what a minimal bridge does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["Neutral", "from_headers", "to_headers"]

Neutral = tuple[bytes, str | None, dict[str, str]]

_PREFIX = {"nats": "ce-", "nats-core": "ce-", "amqp": "ce-", "kafka": "ce_", "mqtt": ""}


def from_headers(
    kind: str, items: Iterable[tuple[str, Any]], content_type: str | None
) -> tuple[str | None, dict[str, str]]:
    """(content type, attributes) from a message's headers (or user properties)."""
    prefix = _PREFIX[kind]
    attributes: dict[str, str] = {}
    for key, raw in items:
        value = raw.decode() if isinstance(raw, bytes) else str(raw)
        name = key.lower()
        if name == "content-type":
            content_type = value
        elif name.startswith(prefix):
            attributes[name[len(prefix) :]] = value
    if kind.startswith("nats") and "datacontenttype" in attributes:
        content_type = attributes.pop("datacontenttype")
    return content_type, attributes


def to_headers(
    kind: str, content_type: str | None, attributes: Mapping[str, str]
) -> dict[str, str]:
    """The headers (user properties for MQTT) carrying ``attributes`` on ``kind``, and
    the content type where it is a header (NATS, Kafka; AMQP and MQTT have a property)."""
    prefix = _PREFIX[kind]
    headers = {prefix + name: value for name, value in attributes.items()}
    if content_type is not None:
        if kind.startswith("nats"):
            headers["ce-datacontenttype" if attributes else "content-type"] = content_type
        elif kind == "kafka":
            headers["content-type"] = content_type
    return headers
