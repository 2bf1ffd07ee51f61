"""Avro event format for CloudEvents 1.0 (``application/cloudevents+avro``).

Uses the schema of the spec (``cloudevents.avsc``): every attribute in one
``attribute`` map, the payload in ``data``. Our data is always bytes, so it is
written as the ``bytes`` branch; on decode every branch of the data union is
accepted (JSON-like values are turned back into compact JSON bytes).

Decoding uses fastavro's pure-Python reader, not its compiled one: the data union
nests (maps and arrays of ``CloudEventData``), and the compiled reader recurses on the
C stack, so a ~50 KB payload nested 10,000 deep crashed the whole process with
SIGSEGV (found by tests/faults). The Python reader hits the interpreter's recursion
limit instead, which becomes ``InvalidEvent`` like the JSON format's depth limit; it
costs ~10 microseconds more per event.
"""

from __future__ import annotations

import io
from typing import Any, Final

import fastavro
import orjson
from fastavro import _read_py  # the recursion-safe reader (see the module docstring)

from routing.errors import InvalidEvent
from routing.event import CloudEvent

__all__ = ["CONTENT_TYPE", "SCHEMA", "decode", "encode"]

CONTENT_TYPE: Final = "application/cloudevents+avro"

_DATA_RECORD: Final = {
    "type": "record",
    "name": "CloudEventData",
    "doc": "Representation of a JSON Value",
    "fields": [
        {
            "name": "value",
            "type": {
                "type": "map",
                "values": [
                    "null",
                    "boolean",
                    {"type": "map", "values": "CloudEventData"},
                    {"type": "array", "items": "CloudEventData"},
                    "double",
                    "string",
                ],
            },
        }
    ],
}

SCHEMA: Final = {
    "namespace": "io.cloudevents",
    "type": "record",
    "name": "CloudEvent",
    "version": "1.0",
    "doc": "Avro Event Format for CloudEvents",
    "fields": [
        {
            "name": "attribute",
            "type": {"type": "map", "values": ["null", "boolean", "int", "string", "bytes"]},
        },
        {
            "name": "data",
            "type": [
                "bytes",
                "null",
                "boolean",
                {
                    "type": "map",
                    "values": ["null", "boolean", _DATA_RECORD, "double", "string"],
                },
                {"type": "array", "items": "CloudEventData"},
                "double",
                "string",
            ],
        },
    ],
}

_PARSED = fastavro.parse_schema(SCHEMA)


def encode(event: CloudEvent) -> bytes:
    """Serialize one event as a schemaless Avro datum of the CloudEvent record."""
    out = io.BytesIO()
    record = {"attribute": dict(event.attributes()), "data": event.data}
    fastavro.schemaless_writer(out, _PARSED, record)
    return out.getvalue()


def decode(payload: bytes) -> CloudEvent:
    """Parse an Avro CloudEvent datum; raise ``InvalidEvent`` when it is not one."""
    try:
        record = _read_py.schemaless_reader(io.BytesIO(payload), _PARSED, None)
    except Exception as exc:  # EOFError, ValueError, RecursionError (too deep), ...
        raise InvalidEvent(
            "payload", f"not a CloudEvents Avro record ({type(exc).__name__}: {exc})"
        ) from None
    if not isinstance(record, dict) or not isinstance(record.get("attribute"), dict):
        raise InvalidEvent("payload", "not a CloudEvents Avro record (no attribute map)")
    attributes = record["attribute"]
    if "specversion" not in attributes or attributes["specversion"] is None:
        raise InvalidEvent("specversion", "required attribute is missing")
    return CloudEvent.from_attributes(attributes, _data_bytes(record.get("data")))


def _data_bytes(data: Any) -> bytes | None:
    if data is None or isinstance(data, bytes):
        return data
    if isinstance(data, str):
        return data.encode("utf-8")
    try:
        return orjson.dumps(_unwrap(data))
    except (orjson.JSONEncodeError, RecursionError):
        raise InvalidEvent("data", "JSON data is nested too deeply (at most 254 levels)") from None


def _unwrap(value: Any) -> Any:
    """Turn the schema's CloudEventData records back into plain JSON values."""
    if isinstance(value, dict):
        if set(value) == {"value"} and isinstance(value["value"], dict):
            return {k: _unwrap(v) for k, v in value["value"].items()}
        return {k: _unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unwrap(v) for v in value]
    return value
