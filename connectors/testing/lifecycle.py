"""Conformance: start/close semantics, health, and surviving a lost link."""

from __future__ import annotations

import asyncio

import pytest

from connectors.base import Delivery, HealthState
from connectors.errors import ConnectorError
from connectors.testing.harness import AnyConnector, Consumer, Harness, sample_event

__all__ = ["LifecycleTests"]

NO_BOUNCE = "no `conformance_bounce` fixture: the test cannot break this connector's link"


class LifecycleTests:
    """``close()`` ends what runs and refuses what comes after; a lost link heals."""

    async def test_health_follows_start_and_close(self, conformance: Harness) -> None:
        """UP after ``start()``, CLOSED after ``close()``."""
        connector = await conformance.connector()
        started = connector.health.state
        await conformance.close(connector)
        assert (started, connector.health.state) == (HealthState.UP, HealthState.CLOSED)

    async def test_close_ends_consume_iterator(self, conformance: Harness) -> None:
        """A consume iterator waiting for messages ends when its connector closes
        (the runtime's consume tasks finish instead of hanging shutdown)."""
        connector = await conformance.connector()
        source, _ = await conformance.usable_pair(connector)
        consumer = await conformance.subscribe(connector, source)
        await conformance.close(connector)
        assert await consumer.ended(), "consume() still running after close()"
        error = consumer.task.exception()
        assert error is None or isinstance(error, ConnectorError), repr(error)

    async def test_close_is_idempotent(self, conformance: Harness) -> None:
        """A second ``close()`` is harmless, and so is closing a never-started connector."""
        connector = await conformance.connector()
        await conformance.close(connector)
        await conformance.close(connector)
        assert connector.health.state is HealthState.CLOSED
        unstarted = conformance.new_connector()
        await conformance.close(unstarted)

    async def test_publish_after_close_raises(self, conformance: Harness) -> None:
        """Publishing on a closed connector fails at once with a ``ConnectorError``
        saying so, never hangs and never reports success."""
        connector = await conformance.connector()
        _, target = await conformance.usable_pair(connector)
        await conformance.close(connector)
        with pytest.raises(ConnectorError) as caught:
            async with asyncio.timeout(conformance.timeouts.receive):
                await connector.publish(target, sample_event())
        assert str(caught.value), "the error says nothing"

    async def test_consume_after_close_ends_or_raises(self, conformance: Harness) -> None:
        """``consume()`` on a closed connector raises a ``ConnectorError`` or yields
        nothing and ends."""
        connector = await conformance.connector()
        source, _ = await conformance.usable_pair(connector)
        await conformance.close(connector)
        try:
            async with asyncio.timeout(conformance.timeouts.receive):
                async for delivery in connector.consume(source):
                    pytest.fail(f"closed connector yielded {delivery.address!r}")
        except ConnectorError:
            pass

    async def test_close_with_unsettled_deliveries_returns(self, conformance: Harness) -> None:
        """``close()`` returns in time although deliveries are still unacked (their
        redelivery is the ack tests' business)."""
        connector = await conformance.connector()
        source, target = await conformance.usable_pair(connector)
        consumer = await conformance.subscribe(connector, source)
        for n in range(3):
            await conformance.publish(connector, target, sample_event(n))
        await consumer.take(3)
        await conformance.close(connector)  # fails the test after the receive timeout

    async def test_consumer_resumes_after_bounce(self, conformance: Harness) -> None:
        """After the link to the broker broke, the same consume iterator delivers
        again (reconnected and resubscribed by itself) and health is back UP."""
        if conformance.bouncer is None:
            pytest.skip(NO_BOUNCE)
        connector = await conformance.connector()
        source, target = await conformance.usable_pair(connector)
        consumer = await conformance.subscribe(connector, source)
        await conformance.publish(connector, target, sample_event(1))
        await (await consumer.next()).ack()
        await conformance.bouncer(connector)
        await conformance.publish_until_confirmed(connector, target, sample_event(2))
        delivery = await _next_with_id(conformance, connector, consumer, "evt-2")
        await delivery.ack()
        await _wait_up(conformance, connector)

    async def test_unacked_delivery_survives_bounce(self, conformance: Harness) -> None:
        """A delivery unacked when the link broke is not lost: it comes again (acks
        tied to the connection: AMQP, MQTT) or stays ackable (Kafka offsets, JetStream
        ack subjects). Acking the stale one is harmless, and after a restart nothing
        that was settled comes back."""
        if conformance.bouncer is None:
            pytest.skip(NO_BOUNCE)
        if not conformance.capabilities.acknowledgements:
            pytest.skip("capabilities.acknowledgements is false: nothing to redeliver")
        connector = await conformance.connector()
        source, target = await conformance.usable_pair(connector)
        consumer = await conformance.subscribe(connector, source)
        await conformance.publish(connector, target, sample_event(3))
        stale = await consumer.next()
        await conformance.bouncer(connector)
        await conformance.publish_until_confirmed(connector, target, sample_event(4))
        await (await _next_with_id(conformance, connector, consumer, "evt-4")).ack()
        await stale.ack()  # its link may be gone: must not raise
        await conformance.close(connector)

        second = await conformance.connector()
        again = await conformance.subscribe(second, source)
        await conformance.publish(second, target, sample_event(5))
        event = second.decode(await again.next(conformance.timeouts.redelivery))
        assert event is not None and event.id == "evt-5", f"{event} came back after its ack"

    async def test_publish_resumes_after_bounce(self, conformance: Harness) -> None:
        """Publishing works again after the link broke; errors on the way are retriable
        ones (the runtime retries them), never a success that did not happen."""
        if conformance.bouncer is None:
            pytest.skip(NO_BOUNCE)
        connector = await conformance.connector()
        source, target = await conformance.usable_pair(connector)
        consumer = await conformance.subscribe(connector, source)
        await conformance.bouncer(connector)
        await conformance.publish_until_confirmed(connector, target, sample_event(4))
        delivery = await _next_with_id(conformance, connector, consumer, "evt-4")
        await delivery.ack()


async def _next_with_id(
    conformance: Harness, connector: AnyConnector, consumer: Consumer, event_id: str
) -> Delivery:
    """The delivery of ``event_id``, acking what comes before it (redeliveries of
    earlier messages are allowed after a broken link: at-least-once)."""
    while True:
        delivery = await consumer.next(conformance.timeouts.redelivery)
        event = connector.decode(delivery)
        if event is not None and event.id == event_id:
            return delivery
        await delivery.ack()


async def _wait_up(conformance: Harness, connector: AnyConnector) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + conformance.timeouts.redelivery
    while connector.health.state is not HealthState.UP:
        if loop.time() > deadline:
            pytest.fail(f"health still {connector.health.state} after the link came back")
        await asyncio.sleep(0.05)  # polling a state, with a deadline
