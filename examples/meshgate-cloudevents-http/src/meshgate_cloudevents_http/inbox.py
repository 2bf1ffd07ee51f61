"""Where the events of one path wait: the inbox, its iterator, and how events settle.

The server admits a request's events into the inbox of its path; ``consume`` hands
out a ``PathStream`` reading it. Each event carries a ``settle`` callback, called by
the delivery's ``ack``/``nack`` (or with ``STOPPING`` when nobody will process it),
that resolves the future the request's handler waits on: the first settlement wins.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from aiohttp import web

from connectors import Delivery
from meshgate_cloudevents_http.binding import HttpMessage, Received
from meshgate_cloudevents_http.config import HttpSource

__all__ = ["Inbox", "Outcome", "PathCounts", "PathStream", "give_back", "make_delivery"]


class Outcome(Enum):
    """How one received event was settled."""

    ACKED = "acked"
    """Every target confirmed (or the gateway dead-lettered it, or filtered it out)."""
    REQUEUE = "requeue"
    """nack(requeue=True): not delivered; the sender should send it again."""
    REJECTED = "rejected"
    """nack(requeue=False): the gateway refuses it for good."""
    STOPPING = "stopping"
    """Never processed: the path stopped being read, or the connector closed."""


@dataclass
class PathCounts:
    """Requests of one path by how they were admitted (metrics, tests)."""

    accepted: int = 0
    """Queued for the routes: answered once their events are settled."""
    deferred: int = 0
    """Answered 429 or 503 at once: the sender should send again later."""
    refused: int = 0
    """Answered 4xx at once: malformed, too large, wrong method, unknown path."""


@dataclass(eq=False)
class Inbox:
    """The events received on one path, waiting for the runtime to pull them."""

    source: HttpSource
    queue: deque[tuple[Delivery, Callable[[Outcome], None]]] = field(default_factory=deque)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    in_flight: int = 0
    """Events accepted and not yet settled (queued or being processed)."""
    reading: bool = False
    """A consume() iterator reads this path now."""
    ended: bool = False
    """The connector closed: iterators of this inbox end."""
    unsettled: set[Callable[[Outcome], None]] = field(default_factory=set)
    """How to settle each accepted event not settled yet (queued or pulled)."""


class PathStream:
    """The async iterator ``consume`` returns: the deliveries of one path.

    Registered at creation (not at the first ``anext``), so requests are accepted as
    soon as ``consume`` returned: that is this source's readiness.
    """

    def __init__(self, inbox: Inbox) -> None:
        self._inbox = inbox
        self._closed = False

    def __aiter__(self) -> PathStream:
        return self

    async def __anext__(self) -> Delivery:
        inbox = self._inbox
        while True:
            if self._closed or inbox.ended:
                raise StopAsyncIteration
            if inbox.queue:
                delivery, _ = inbox.queue.popleft()
                return delivery
            inbox.arrived.clear()
            await inbox.arrived.wait()

    async def aclose(self) -> None:
        """Stop reading the path: events not settled yet are answered 503 (sent again)."""
        if self._closed:
            return
        self._closed = True
        self._inbox.reading = False
        self._inbox.arrived.set()
        give_back(self._inbox)


def give_back(inbox: Inbox) -> None:
    """Answer every unsettled event 503: queued ones were never processed, pulled ones
    are abandoned (the runtime drains before it closes an iterator)."""
    inbox.queue.clear()
    for settle in list(inbox.unsettled):
        settle(Outcome.STOPPING)


def make_delivery(
    path: str,
    request: web.Request,
    message: Received | HttpMessage,
    settle: Callable[[Outcome], None],
) -> Delivery:
    """The ``Delivery`` of one admitted event; ack/nack settle it (the HTTP answer)."""

    async def ack() -> None:
        settle(Outcome.ACKED)

    async def nack(*, requeue: bool) -> None:
        settle(Outcome.REQUEUE if requeue else Outcome.REJECTED)

    native = message.message if isinstance(message, Received) else message
    content_type = next((v for k, v in native.headers.items() if k.lower() == "content-type"), None)
    coordinates: dict[str, str | int] = {"path": path, "method": request.method}
    if request.remote:
        coordinates["remote"] = request.remote
    return Delivery(
        message=message,
        address=path,
        payload=native.body,
        headers=native.headers,
        ack=ack,
        nack=nack,
        ordering_key=path,
        coordinates=coordinates,
        content_type=content_type,
    )
