"""Bookkeeping for deliveries in flight in one pipeline (``gateway.pipeline``).

``Lanes`` keeps ``ordered: true`` routes to one publish per ordering key at a time;
``Heartbeats`` tells a source that a slow delivery is still being worked on
(``Delivery.in_progress``: JetStream's +WPI), so the broker does not redeliver it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Heartbeats", "Lanes", "Slots"]

# The runtime's logger (docs/operations.md names it), whichever runtime module logs.
log = logging.getLogger("meshgate.runtime")


class Slots:
    """The ``max_in_flight`` slots of one pipeline, taken by its one consume loop.

    ``asyncio.Semaphore`` makes and awaits a coroutine for every ``acquire``, even with
    a slot free; the consume loop takes one per delivery, so a free slot is taken here
    without one (``take_now``) and only a full pipeline waits (``take``).
    """

    def __init__(self, count: int) -> None:
        self.free = count
        self._waiter: asyncio.Future[None] | None = None

    def take_now(self) -> bool:
        """Take a slot if one is free."""
        if self.free > 0:
            self.free -= 1
            return True
        return False

    async def take(self) -> None:
        """Take a slot, waiting until one is released (one waiter at a time)."""
        while self.free <= 0:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        self.free -= 1

    def release(self) -> None:
        self.free += 1
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


@dataclass
class Lanes:
    """Per-key locks so ordered routes publish one event per key at a time."""

    locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    users: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock = self.locks.setdefault(key, asyncio.Lock())
        self.users[key] += 1
        try:
            async with lock:
                yield
        finally:
            self.users[key] -= 1
            if self.users[key] == 0:  # forget idle keys so the map stays small
                del self.users[key]
                del self.locks[key]


class Heartbeats:
    """Sends ``in_progress`` about every ``PERIOD`` seconds for each delivery in flight.

    One timer loop per pipeline, not one timer per delivery: most deliveries finish
    long before the first beat, and then a heartbeat costs a dict insert and delete
    (no clock read). The loop ticks twice per period; a delivery gets its first beat
    0.5-1 period after it started, then one per period. A delivery's beats never
    overlap (a slow signal skips a beat instead).
    """

    PERIOD = 1.0

    def __init__(self) -> None:
        # token -> [signal, tick of the start or of the last beat]
        self._beating: dict[int, list[Any]] = {}
        self._sending: dict[int, asyncio.Task[None]] = {}
        self._ticker: asyncio.Task[None] | None = None
        self._ticks = 0

    def add(self, token: int, signal: Callable[[], Awaitable[None]]) -> None:
        self._beating[token] = [signal, self._ticks]
        if self._ticker is None:
            self._ticker = asyncio.get_running_loop().create_task(self._tick())

    def remove(self, token: int) -> None:
        self._beating.pop(token, None)

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._beating:
                await asyncio.sleep(self.PERIOD / 2)
                self._ticks += 1
                for token, entry in list(self._beating.items()):
                    if self._ticks - entry[1] >= 2 and token not in self._sending:
                        entry[1] = self._ticks
                        self._sending[token] = loop.create_task(self._send(token, entry[0]))
        finally:
            self._ticker = None

    async def _send(self, token: int, signal: Callable[[], Awaitable[None]]) -> None:
        try:
            await signal()
        except Exception as exc:  # a lost heartbeat only risks a redelivery (a duplicate)
            log.debug("in_progress signal failed: %s", exc)
        finally:
            self._sending.pop(token, None)
