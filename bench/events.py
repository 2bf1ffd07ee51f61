"""The benchmark's events: a CloudEvent whose JSON data carries a sequence number and
the publish time, padded to the payload size, and how a consumer reads them back.

The data is compact JSON (``{"seq":N,"ts":T,"pad":"..."}``), datacontenttype
``application/json``: in binary mode it is the payload as-is, in structured mode
the JSON event format inlines it as a JSON value (orjson keeps the key order), so
one regular expression finds ``seq`` and ``ts`` in either mode, on any protocol.
"""

from __future__ import annotations

import re
import time
from typing import Final

from routing.event import CloudEvent

__all__ = ["WARMUP", "extract", "make_event", "now_ns"]

WARMUP: Final = -1
"""Sequence number of the probe events sent until the path is live."""

_FIELDS = re.compile(rb'"seq":(-?\d+),"ts":(\d+)')
_SKELETON_BYTES = len(b'{"seq":,"ts":,"pad":""}')


def now_ns() -> int:
    """CLOCK_MONOTONIC in ns: one clock for every process of the machine (Linux)."""
    return time.monotonic_ns()


def make_event(seq: int, size: int, ts: int = 0) -> CloudEvent:
    """Event ``seq`` whose data is ``size`` bytes (at least the skeleton), stamped ``ts``."""
    head = f'"seq":{seq},"ts":{ts}'
    pad = max(0, size - _SKELETON_BYTES - len(head) + len('"seq":,"ts":'))
    data = ("{" + head + ',"pad":"' + "x" * pad + '"}').encode()
    return CloudEvent(
        id=f"b{seq}",
        source="/meshgate/bench",
        type="com.example.bench",
        datacontenttype="application/json",
        data=data,
    )


def extract(payload: bytes) -> tuple[int, int] | None:
    """(seq, ts) of a received payload (binary data or a structured JSON event)."""
    found = _FIELDS.search(payload)
    if found is None:
        return None
    return int(found.group(1)), int(found.group(2))
