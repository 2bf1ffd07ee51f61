"""Shared conformance tests every connector runs against its real broker.

A connector's test module subclasses ``ConnectorConformance`` and implements the
three hooks; the tests here then prove the contract of ``connectors.base``:
publish is confirmed and consumable, both binding modes survive the trip,
an unacknowledged delivery is redelivered after a crash (at-least-once), a nack
with requeue redelivers, and a non-CloudEvent message decodes to None.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from connectors.base import Connector, Delivery, SourceOptions, TargetOptions
from routing.bindings import Mode
from routing.event import CloudEvent

AnyConnector = Connector[Any, Any, Any]

RECEIVE_TIMEOUT = 15.0


def sample_event(n: int = 1, **changes: Any) -> CloudEvent:
    event = CloudEvent(
        id=f"evt-{n}",
        source="urn:meshgate:conformance",
        type="com.example.conformance",
        subject="unit/1",
        time="2026-11-26T10:00:00.123Z",
        datacontenttype="application/json",
        extensions={"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
        data=b'{"n":%d}' % n,
    )
    return event.replace(**changes) if changes else event


async def next_delivery(
    stream: AsyncIterator[Delivery], timeout: float = RECEIVE_TIMEOUT
) -> Delivery:
    return await asyncio.wait_for(anext(stream), timeout)


class ConnectorConformance(abc.ABC):
    """Subclass in tests/integration/test_connector_<type>.py and implement the hooks."""

    @abc.abstractmethod
    def make_connector(self) -> AnyConnector:
        """A new, not yet started connector instance talking to the test broker."""

    @abc.abstractmethod
    async def make_pair(self, mode: Mode) -> tuple[SourceOptions, TargetOptions]:
        """A fresh source and a target that delivers into it (unique names per call).

        May create broker-side resources (streams, queues) before returning.
        """

    @abc.abstractmethod
    async def publish_raw(self, target: TargetOptions, payload: bytes) -> None:
        """Publish a plain non-CloudEvent payload to ``target``'s address with the raw client."""

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[AnyConnector]:
        connector = self.make_connector()
        await connector.start()
        try:
            yield connector
        finally:
            await connector.close()

    @pytest.mark.parametrize("mode", [Mode.BINARY, Mode.STRUCTURED])
    async def test_publish_then_consume_roundtrip(self, mode: Mode) -> None:
        source, target = await self.make_pair(mode)
        async with self.running() as connector:
            stream = aiter(connector.consume(source))
            receive = asyncio.ensure_future(next_delivery(stream))
            await asyncio.sleep(0.5)  # let the subscription settle for non-durable sources
            sent = sample_event()
            await connector.publish(target, sent)
            delivery = await receive
            got = connector.decode(delivery)
            assert got is not None
            assert got.canonical_attributes() == sent.canonical_attributes()
            assert got.data == sent.data
            await delivery.ack()

    async def test_unacked_delivery_is_redelivered_after_crash(self) -> None:
        source, target = await self.make_pair(Mode.BINARY)
        if not self.make_connector().capabilities.acknowledgements:
            pytest.skip("connector has no acknowledgements (at-most-once by design)")
        async with self.running() as first:
            stream = aiter(first.consume(source))
            receive = asyncio.ensure_future(next_delivery(stream))
            await asyncio.sleep(0.5)
            await first.publish(target, sample_event(7))
            delivery = await receive
            # No ack: the gateway "crashes" before its targets confirmed.
            assert first.decode(delivery) is not None
        async with self.running() as second:
            again = await next_delivery(aiter(second.consume(source)), timeout=40)
            event = second.decode(again)
            assert event is not None and event.id == "evt-7"
            await again.ack()

    async def test_nack_with_requeue_redelivers(self) -> None:
        source, target = await self.make_pair(Mode.BINARY)
        if not self.make_connector().capabilities.acknowledgements:
            pytest.skip("connector has no acknowledgements (at-most-once by design)")
        async with self.running() as connector:
            stream = aiter(connector.consume(source))
            receive = asyncio.ensure_future(next_delivery(stream))
            await asyncio.sleep(0.5)
            await connector.publish(target, sample_event(3))
            first = await receive
            await first.nack(requeue=True)
            second = await next_delivery(stream, timeout=40)
            event = connector.decode(second)
            assert event is not None and event.id == "evt-3"
            await second.ack()

    async def test_non_cloudevent_decodes_to_none(self) -> None:
        source, target = await self.make_pair(Mode.BINARY)
        async with self.running() as connector:
            stream = aiter(connector.consume(source))
            receive = asyncio.ensure_future(next_delivery(stream))
            await asyncio.sleep(0.5)
            await self.publish_raw(target, b"legacy payload 42")
            delivery = await receive
            assert connector.decode(delivery) is None
            assert delivery.payload == b"legacy payload 42"
            await delivery.ack()
