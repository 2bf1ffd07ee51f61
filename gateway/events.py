"""Recent events per route, for ``GET /api/events`` (Server-Sent Events).

While the admin server runs, the runtime hands the rare outcomes (dead-lettered,
undeliverable, failed) to ``EventLog.record``, and the frequent ones (delivered,
filtered) too while at least one client follows the stream: a tuple appended to a
bounded deque per route and offered to each subscriber. Nothing is formatted then;
JSON is built only for what a client reads. Event data is left out unless
``show_data`` is set.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections import deque
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from connectors.base import Delivery
from routing.event import CloudEvent

__all__ = ["EventLog", "Recorded", "to_json"]

RECENT = 50
"""Events kept per route for a client that connects."""

QUEUE = 1_000
"""Events buffered per subscriber; a client further behind misses events (counted)."""


Recorded = tuple[float, str, str, CloudEvent | None, str, BaseException | None]
"""(time.time(), route, outcome, event or None, address, error or None): a plain tuple,
the cheapest thing to build per event (a dataclass instance costs ~10 times more)."""


def to_json(entry: Recorded, show_data: bool) -> dict[str, Any]:
    """One recorded outcome as the JSON object ``/api/events`` sends."""
    at, route, outcome, event, address, error = entry
    out: dict[str, Any] = {
        "time": datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds"),
        "route": route,
        "outcome": outcome,
        "address": address,
        "attributes": None,
    }
    if event is not None:
        out["attributes"] = event.canonical_attributes()
        if show_data and event.data is not None:
            try:
                out["data"] = event.data.decode("utf-8")
            except UnicodeDecodeError:
                out["data_base64"] = base64.b64encode(event.data).decode("ascii")
    if error is not None:
        out["error"] = f"{type(error).__name__}: {error}"
    return out


class Subscriber:
    """One client's queue of recorded outcomes, optionally of one route only."""

    def __init__(self, route: str | None) -> None:
        self.route = route
        self.queue: asyncio.Queue[Recorded] = asyncio.Queue(QUEUE)
        self.missed = 0


class EventLog:
    """The recent outcomes of every route and the clients following them."""

    def __init__(self) -> None:
        self.recent: dict[str, deque[Recorded]] = {}
        self.subscribers: set[Subscriber] = set()

    def record(
        self,
        route: str,
        outcome: str,
        event: CloudEvent | None,
        delivery: Delivery,
        error: BaseException | None = None,
    ) -> None:
        entry = (time.time(), route, outcome, event, delivery.address, error)
        recent = self.recent.get(route)
        if recent is None:
            recent = self.recent[route] = deque(maxlen=RECENT)
        recent.append(entry)
        for subscriber in self.subscribers:
            if subscriber.route is None or subscriber.route == route:
                try:
                    subscriber.queue.put_nowait(entry)
                except asyncio.QueueFull:
                    subscriber.missed += 1

    def backlog(self, route: str | None) -> Iterator[Recorded]:
        """What is kept, oldest first (of one route, or of all routes)."""
        if route is not None:
            yield from list(self.recent.get(route, ()))
            return
        entries = [entry for recent in list(self.recent.values()) for entry in recent]
        yield from sorted(entries, key=lambda entry: entry[0])

    def subscribe(self, route: str | None) -> Subscriber:
        subscriber = Subscriber(route)
        self.subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self.subscribers.discard(subscriber)
