"""Subscription readiness: which sources of a connector are registered on their broker.

``Connector.wait_subscribed(source)`` (the readiness signal of the contract) lets a
caller wait until a running ``consume(source)`` iterator is subscribed, so that a
message published from then on reaches it: tests wait on it instead of sleeping, and
nothing published to a non-durable address (MQTT topic, core NATS subject) right
after ``consume`` started is lost to a race. A connector keeps one ``Subscriptions``
and gives each consume iterator a ``Subscription`` handle, marked ``up()`` once the
broker confirmed the subscription (SUBACK, consume-ok, partitions assigned, ...) and
``down()`` when the link is lost or the iterator ends.
"""

from __future__ import annotations

import asyncio

from pydantic import BaseModel

__all__ = ["Subscription", "Subscriptions"]


class Subscription:
    """The readiness of one consume iterator; see ``Subscriptions.track``."""

    def __init__(self, owner: Subscriptions, key: str) -> None:
        self._owner = owner
        self._key = key
        self._up = False

    @property
    def is_up(self) -> bool:
        return self._up

    def up(self) -> None:
        """The broker confirmed the subscription: published messages now reach it."""
        if not self._up:
            self._up = True
            self._owner._change(self._key, +1)

    def down(self) -> None:
        """The subscription is gone (link lost, iterator ended). Idempotent."""
        if self._up:
            self._up = False
            self._owner._change(self._key, -1)


class Subscriptions:
    """The subscribed sources of one connector, counted per source.

    Sources are told apart by their options (``model_dump_json``), so the source a
    caller passes to ``wait`` need not be the same object ``consume`` got, only equal.
    """

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}
        self._events: dict[str, asyncio.Event] = {}

    @staticmethod
    def key(source: BaseModel) -> str:
        return source.model_dump_json()

    def track(self, source: BaseModel) -> Subscription:
        """A handle for one consume iterator of ``source`` (down until ``up()``)."""
        return Subscription(self, self.key(source))

    def is_subscribed(self, source: BaseModel) -> bool:
        return self._counts.get(self.key(source), 0) > 0

    async def wait(self, source: BaseModel) -> None:
        """Return once at least one iterator of ``source`` is subscribed."""
        await self._event(self.key(source)).wait()

    def _event(self, key: str) -> asyncio.Event:
        return self._events.setdefault(key, asyncio.Event())

    def _change(self, key: str, delta: int) -> None:
        count = self._counts.get(key, 0) + delta
        self._counts[key] = count
        event = self._event(key)
        if count > 0:
            event.set()
        else:
            event.clear()
