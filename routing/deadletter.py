"""Dead-letter events: what a route publishes when a message cannot be delivered.

The dead letter is itself a CloudEvent, so it can travel over any connector:

- ``data`` is the original message payload, byte for byte, and
  ``datacontenttype`` the original content type when there was one;
- ``type`` is ``io.meshgate.deadletter``, ``source`` names the gateway and route;
- ``id`` is derived from the original's native id or event id (or a hash of the
  payload), so a redelivered poison message yields the *same* dead-letter id;
- extensions ``dlreason`` (``reason_of``: the error class, or the short reason an
  error class declares, e.g. ``signature``), ``dlerror`` (message), ``dlroute``,
  ``dlconnector``, ``dladdress``, ``dlcoordinates`` (JSON), ``dlheaders`` (JSON of
  the original native headers), ``dlattempts``, ``dloriginalid`` when the
  original was a CloudEvent, and ``dltarget`` (the target that refused it) when
  publishing failed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Final

import orjson

from routing.event import FORBIDDEN_CHARS, CloudEvent

__all__ = ["DEAD_LETTER_TYPE", "dead_letter_event", "reason_of"]

DEAD_LETTER_TYPE: Final = "io.meshgate.deadletter"
# What a CloudEvents string may not hold is replaced, so the dead letter stays valid.
_UNPRINTABLE: Final = FORBIDDEN_CHARS
_MAX_ERROR_CHARS: Final = 1024


def reason_of(error: BaseException) -> str:
    """The dead-letter reason of ``error``: its ``dead_letter_reason`` when the class
    declares one (``signature`` for every refused signature, whatever the subclass),
    else the error class name. Dead letters, the local store and logs all use this."""
    declared = getattr(type(error), "dead_letter_reason", None)
    return declared if isinstance(declared, str) and declared else type(error).__name__


def _clean(text: str) -> str:
    # Attribute values may not hold control characters; error texts often do.
    return _UNPRINTABLE.sub(" ", text)[:_MAX_ERROR_CHARS] or "-"


def _media_type(content_type: str | None) -> str | None:
    # A native content type is whatever the producer sent; a dead letter must still be
    # a valid event (the poison message may be poison precisely because of it).
    if not content_type:
        return None
    return _UNPRINTABLE.sub(" ", content_type).strip() or None


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")  # ids are hashed: any text will do


def _json(value: Mapping[str, object]) -> str:
    try:
        return orjson.dumps(dict(value)).decode()
    except orjson.JSONEncodeError:  # e.g. a lone surrogate: escaped instead
        return json.dumps(dict(value), ensure_ascii=True, separators=(",", ":"), default=str)


def dead_letter_event(
    *,
    gateway_id: str,
    route: str,
    connector: str,
    address: str,
    payload: bytes,
    headers: Mapping[str, str],
    coordinates: Mapping[str, str | int],
    error: BaseException,
    attempts: int,
    native_id: str | None,
    original: CloudEvent | None,
    content_type: str | None,
    target: str | None = None,
) -> CloudEvent:
    """Build the dead-letter CloudEvent for one failed message."""
    if native_id is not None:
        basis = f"native:{connector}:{native_id}"
    elif original is not None:
        basis = f"event:{original.source}:{original.id}"
    else:
        basis = "payload:" + hashlib.sha256(_utf8(address) + b"\0" + payload).hexdigest()
    extensions: dict[str, str | int] = {
        "dlreason": reason_of(error),
        "dlerror": _clean(str(error)),
        "dlroute": _clean(route),
        "dlconnector": _clean(connector),
        "dladdress": _clean(address) if address else "-",
        "dlcoordinates": _clean(_json(coordinates)),
        "dlheaders": _clean(_json(headers)),
        "dlattempts": attempts,
    }
    if original is not None:
        extensions["dloriginalid"] = _clean(original.id)
    if target is not None:
        extensions["dltarget"] = _clean(target)
    return CloudEvent(
        id=hashlib.sha256(_utf8(f"{route}\0{basis}")).hexdigest()[:32],
        source=f"meshgate://{gateway_id}/routes/{route}",
        type=DEAD_LETTER_TYPE,
        subject=original.id if original is not None else None,
        datacontenttype=_media_type(content_type)
        or (original.datacontenttype if original else None)
        or "application/octet-stream",
        extensions=extensions,
        data=payload or None,
    )
