"""JSON event format for CloudEvents 1.0 (``application/cloudevents+json``).

Data handling, per the JSON format spec:
- a JSON media type (``application/json``, ``text/json``, ``*/*+json``, or no
  ``datacontenttype`` at all) whose bytes parse as JSON is inlined as ``data``;
- other data that is valid UTF-8 text of a ``text/*`` type goes in ``data`` as a string;
- anything else is base64 in ``data_base64``.
On decode, JSON ``null`` means "unset", and an event carrying both ``data`` and
``data_base64`` is rejected. Inline JSON data comes back re-serialized compactly:
a JSON value has no byte-exact form, so whitespace inside ``data`` is not kept.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any, Final

import orjson

from routing.errors import InvalidEvent
from routing.event import CloudEvent, is_valid_attribute_name

__all__ = [
    "CONTENT_TYPE",
    "decode",
    "decode_object",
    "encode",
    "encode_object",
    "is_json_media_type",
]

CONTENT_TYPE: Final = "application/cloudevents+json"
BATCH_CONTENT_TYPE: Final = "application/cloudevents-batch+json"


def is_json_media_type(content_type: str | None) -> bool:
    """True for media types whose data the JSON format inlines as a JSON value."""
    if content_type is None:
        return True  # the JSON format says: absent datacontenttype means application/json
    media = content_type.split(";", 1)[0].strip().lower()
    return media in ("application/json", "text/json") or media.endswith("+json")


def _is_text_media_type(content_type: str | None) -> bool:
    return content_type is not None and content_type.strip().lower().startswith("text/")


def encode_object(event: CloudEvent) -> dict[str, Any]:
    """The event as a JSON-ready dict (attribute values keep their JSON types)."""
    obj: dict[str, Any] = {}
    for name, value in event.attributes():
        obj[name] = base64.b64encode(value).decode("ascii") if isinstance(value, bytes) else value
    data = event.data
    if data is None:
        return obj
    if is_json_media_type(event.datacontenttype):
        try:
            parsed = orjson.loads(data)
        except orjson.JSONDecodeError:
            parsed = _NOT_JSON
        # `null` inline would read back as "no data", so it travels as base64 instead.
        if parsed is not _NOT_JSON and parsed is not None:
            obj["data"] = orjson.Fragment(data)
            return obj
    elif _is_text_media_type(event.datacontenttype):
        try:
            obj["data"] = data.decode("utf-8")
            return obj
        except UnicodeDecodeError:
            pass
    obj["data_base64"] = base64.b64encode(data).decode("ascii")
    return obj


_NOT_JSON: Final = object()


def encode(event: CloudEvent) -> bytes:
    """Serialize one event to ``application/cloudevents+json`` bytes."""
    return orjson.dumps(encode_object(event))


def decode(payload: bytes | str) -> CloudEvent:
    """Parse ``application/cloudevents+json`` bytes; raise ``InvalidEvent`` when invalid."""
    try:
        obj = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent("payload", f"not valid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise InvalidEvent("payload", f"a JSON object was expected, got {type(obj).__name__}")
    return decode_object(obj)


def decode_object(obj: Mapping[str, Any]) -> CloudEvent:
    """Build an event from an already parsed JSON object."""
    attributes: dict[str, Any] = {}
    for name, value in obj.items():
        if name in ("data", "data_base64") or value is None:
            continue
        if not is_valid_attribute_name(name):
            raise InvalidEvent(
                repr(name), "attribute names must be lower-case letters and digits only"
            )
        if isinstance(value, float):
            raise InvalidEvent(name, f"{value!r}: CloudEvents has no floating point type")
        if isinstance(value, dict | list):
            raise InvalidEvent(name, "attribute values must be strings, integers or booleans")
        attributes[name] = value
    if "specversion" not in attributes:
        raise InvalidEvent("specversion", "required attribute is missing")
    data = _decode_data(obj, attributes.get("datacontenttype"))
    return CloudEvent.from_attributes(attributes, data)


def _decode_data(obj: Mapping[str, Any], content_type: object) -> bytes | None:
    data = obj.get("data")
    data_base64 = obj.get("data_base64")
    if data is not None and data_base64 is not None:
        raise InvalidEvent("data", "an event may carry data or data_base64, not both")
    if data_base64 is not None:
        if not isinstance(data_base64, str):
            raise InvalidEvent("data_base64", "expected a base64 string")
        try:
            return base64.b64decode(data_base64, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidEvent("data_base64", f"not valid base64 ({exc})") from None
    if data is None:
        return None
    ctype = content_type if isinstance(content_type, str) else None
    if isinstance(data, str) and not is_json_media_type(ctype):
        return data.encode("utf-8")
    try:
        return orjson.dumps(data)
    except orjson.JSONEncodeError:
        raise InvalidEvent("data", "JSON data is nested too deeply (at most 254 levels)") from None
