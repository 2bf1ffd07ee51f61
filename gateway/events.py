"""Recent events per route, for ``GET /api/events`` (Server-Sent Events).

While the admin server runs, the runtime hands every outcome to ``EventLog.record``:
a tuple appended to a bounded deque per route and offered to each live subscriber.
Nothing is formatted then; JSON is built only for what a client reads. Event data is
left out unless ``show_data`` is set.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from connectors.base import Delivery
from routing.event import CloudEvent

__all__ = ["EventLog", "Recorded"]

RECENT = 50
"""Events kept per route for a client that connects."""

QUEUE = 1_000
"""Events buffered per subscriber; a client further behind misses events (counted)."""


@dataclass(frozen=True, slots=True)
class Recorded:
    """One outcome of one event on one route."""

    at: float
    route: str
    outcome: str
    event: CloudEvent | None
    address: str
    error: str | None

    def to_json(self, show_data: bool) -> dict[str, Any]:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(self.at, UTC).isoformat(timespec="milliseconds"),
            "route": self.route,
            "outcome": self.outcome,
            "address": self.address,
            "attributes": None,
        }
        if self.event is not None:
            out["attributes"] = self.event.canonical_attributes()
            if show_data and self.event.data is not None:
                try:
                    out["data"] = self.event.data.decode("utf-8")
                except UnicodeDecodeError:
                    out["data_base64"] = base64.b64encode(self.event.data).decode("ascii")
        if self.error is not None:
            out["error"] = self.error
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
        entry = Recorded(
            time.time(),
            route,
            outcome,
            event,
            delivery.address,
            None if error is None else f"{type(error).__name__}: {error}",
        )
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
        yield from sorted(entries, key=lambda entry: entry.at)

    def subscribe(self, route: str | None) -> Subscriber:
        subscriber = Subscriber(route)
        self.subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self.subscribers.discard(subscriber)
