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

The youngest generation is collected after ``YOUNG_THRESHOLD`` net allocations, not
CPython's 700. A batch in flight holds thousands of objects (up to ``max_in_flight``
deliveries, each with its message, event, plan and publish); at 700, collections run
several times per batch, walk those objects and move them to older generations,
where they are walked again, though nearly all of them are freed by reference
counting moments later. Measured (docs/performance.md): collections took ~4 µs of
each JetStream event's CPU at 700 and nearly none at 10,000; core NATS ran 2.6% fewer
instructions per event. What waits longer for a collection is only garbage in
reference cycles, which the gateway makes little of.
"""

from __future__ import annotations

import gc

__all__ = ["YOUNG_THRESHOLD", "resettle", "settle"]

YOUNG_THRESHOLD = 10_000
"""Net allocations of tracked objects between collections of the youngest generation."""


def settle() -> None:
    """Collect everything now, then freeze what survived, and collect the youngest
    generation less often (``meshgate run``, after start)."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)


def resettle() -> None:
    """``settle`` again after a reload, in a process that settled at start; nothing in a
    process that never did (the gateway embedded in another program, or the tests)."""
    if gc.get_freeze_count():
        settle()
