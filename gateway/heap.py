"""Keep the garbage collector's full collections short, for tail latency.

CPython's full (generation 2) collection walks every object the collector tracks.
Once started, a gateway holds ~38,000 long-lived ones (modules, config, pydantic
models, broker clients); a full collection walking them stalled the event loop for
16-33 ms in the bench at 1,000 events/s (NATS->NATS), delaying every event in
flight. ``gc.freeze()`` moves them into a permanent generation that collections
skip: the full collections during the run then took under 1 ms.

Frozen objects are still freed by reference counting; only reference cycles among
them are never collected. A hot reload therefore thaws, collects and freezes again
(``settle``), so the cycles of a replaced configuration are collected too.
"""

from __future__ import annotations

import gc

__all__ = ["resettle", "settle"]


def settle() -> None:
    """Collect everything now, then freeze what survived (``meshgate run``, after start)."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def resettle() -> None:
    """``settle`` again after a reload, in a process that settled at start; nothing in a
    process that never did (the gateway embedded in another program, or the tests)."""
    if gc.get_freeze_count():
        settle()
