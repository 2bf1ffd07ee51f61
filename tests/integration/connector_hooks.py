"""The repository's connector tests serve the conformance fixtures from methods.

``HookedConformance`` runs the shipped suite (``connectors.testing``) with the hooks of
a connector's test class: ``make_connector``, ``make_pair``, ``publish_raw`` and the
optional ``bounce`` and ``bounded``; the connector-specific tests of the same class
use them too (with ``running()``). A plugin needs none of this: it can define the
``conformance_*`` fixtures directly (docs/plugins.md).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from connectors.base import Delivery, SourceOptions
from connectors.testing import ConnectorConformance
from connectors.testing.harness import (
    AnyConnector,
    BounceFactory,
    ConnectorFactory,
    InFlightFactory,
    PairFactory,
    RawPublish,
    Timeouts,
)
from routing.bindings import Mode

RECEIVE_TIMEOUT = 15.0


async def next_delivery(
    stream: AsyncIterator[Delivery], timeout: float = RECEIVE_TIMEOUT
) -> Delivery:
    return await asyncio.wait_for(anext(stream), timeout)


async def subscribed(
    connector: AnyConnector, source: SourceOptions, timeout: float = RECEIVE_TIMEOUT
) -> None:
    """Wait for the readiness signal of ``source`` (its iterator must be pulling)."""
    await asyncio.wait_for(connector.wait_subscribed(source), timeout)


class HookedConformance(ConnectorConformance, abc.ABC):
    quiet: float = 0.5
    """The suite's "nothing (more) arrives" window, in seconds (its default is 1.5 s).

    Every such window starts once the consumer is subscribed (the readiness signal),
    on loopback brokers that hand out what they would wrongly (re)deliver at once: an
    AMQP requeue, an MQTT session's in-flight messages at CONNACK, the uncommitted
    offsets of a Kafka partition at the first fetch after assignment, a fourth
    delivery past a prefetch of 3. That takes milliseconds here, so 0.5 s still sees
    it. A class whose broker redelivers after a delay (JetStream's ``ack_wait``) keeps
    a window that, with the test's own steps, outlasts that delay.
    """

    @abc.abstractmethod
    def make_connector(self) -> AnyConnector:
        """A new, not yet started connector instance talking to the test broker."""

    @abc.abstractmethod
    async def make_pair(self, mode: Mode) -> tuple[Any, Any]:
        """A fresh source and a target that delivers into it (unique names per call)."""

    async def publish_raw(self, target: Any, payload: bytes) -> None:
        """Publish a plain non-CloudEvent payload to ``target``'s address (raw client)."""
        raise NotImplementedError

    async def bounce(self, connector: Any) -> None:
        """Break a started connector's link to the broker (override where possible)."""
        raise NotImplementedError

    def bounded(self, source: Any, limit: int) -> tuple[AnyConnector, SourceOptions]:
        """A connector and source holding at most ``limit`` unacked deliveries."""
        raise NotImplementedError

    def _overrides(self, name: str) -> bool:
        return getattr(type(self), name) is not getattr(HookedConformance, name)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[AnyConnector]:
        connector = self.make_connector()
        await connector.start()
        try:
            yield connector
        finally:
            await connector.close()

    @pytest.fixture
    def conformance_connector(self) -> ConnectorFactory:
        return self.make_connector

    @pytest.fixture
    def conformance_pair(self) -> PairFactory:
        return self.make_pair

    @pytest.fixture
    def conformance_publish_raw(self) -> RawPublish | None:
        return self.publish_raw if self._overrides("publish_raw") else None

    @pytest.fixture
    def conformance_bounce(self) -> BounceFactory | None:
        return self.bounce if self._overrides("bounce") else None

    @pytest.fixture
    def conformance_in_flight(self) -> InFlightFactory | None:
        return self.bounded if self._overrides("bounded") else None

    @pytest.fixture
    def conformance_timeouts(self) -> Timeouts:
        return Timeouts(quiet=self.quiet)
