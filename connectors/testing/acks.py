"""Conformance: acknowledgements (at-least-once): ack, nack, redelivery after a crash."""

from __future__ import annotations

import pytest

from connectors.testing.harness import Harness, sample_event

__all__ = ["AckTests"]

AT_MOST_ONCE = "capabilities.acknowledgements is false: at-most-once, nothing to redeliver"


def _needs_acks(conformance: Harness) -> None:
    if not conformance.capabilities.acknowledgements:
        pytest.skip(AT_MOST_ONCE)


class AckTests:
    """Nothing is acknowledged to the broker before ``ack()``; what is not acked comes
    back; what is acked does not."""

    async def test_unacked_delivery_is_redelivered_after_crash(self, conformance: Harness) -> None:
        """A delivery never acked (the gateway stops before its targets confirmed)
        reaches the next connector instance reading the same source."""
        _needs_acks(conformance)
        first = await conformance.connector()
        source, target = await conformance.usable_pair(first)
        consumer = await conformance.subscribe(first, source)
        await conformance.publish(first, target, sample_event(7))
        assert first.decode(await consumer.next()) is not None  # and never acked
        await conformance.close(first)

        second = await conformance.connector()
        again = await conformance.subscribe(second, source)
        event = second.decode(await again.next(conformance.timeouts.redelivery))
        assert event is not None and event.id == "evt-7"

    async def test_redelivery_keeps_native_id(self, conformance: Harness) -> None:
        """``native_id`` survives redelivery (wrapped events keep their id)."""
        _needs_acks(conformance)
        first = await conformance.connector()
        source, target = await conformance.usable_pair(first)
        consumer = await conformance.subscribe(first, source)
        await conformance.publish(first, target, sample_event(8))
        delivery = await consumer.next()
        if delivery.native_id is None:
            pytest.skip("deliveries carry no native_id (the protocol has no stable one)")
        await conformance.close(first)
        second = await conformance.connector()
        again = await (await conformance.subscribe(second, source)).next(
            conformance.timeouts.redelivery
        )
        assert again.native_id == delivery.native_id
        await again.ack()

    async def test_acked_delivery_is_not_redelivered(self, conformance: Harness) -> None:
        """After ``ack()`` and a clean close, a new instance does not get it again."""
        _needs_acks(conformance)
        first = await conformance.connector()
        source, target = await conformance.usable_pair(first)
        consumer = await conformance.subscribe(first, source)
        await conformance.publish(first, target, sample_event(1))
        await (await consumer.next()).ack()
        await conformance.close(first)

        second = await conformance.connector()
        again = await conformance.subscribe(second, source)
        await conformance.publish(second, target, sample_event(2))
        delivery = await again.next()
        event = second.decode(delivery)
        assert event is not None and event.id == "evt-2", "an acked delivery came back"
        await delivery.ack()
        await again.nothing_within()

    async def test_out_of_order_acks_never_release_an_unacked(self, conformance: Harness) -> None:
        """Acking the 1st and 3rd but not the 2nd: after a crash the 2nd comes back
        (the 3rd may too), the 1st does not."""
        _needs_acks(conformance)
        first = await conformance.connector()
        source, target = await conformance.usable_pair(first)
        consumer = await conformance.subscribe(first, source)
        for n in (1, 2, 3):
            await conformance.publish(first, target, sample_event(n))
        got = await consumer.take(3)
        await got[2].ack()
        await got[0].ack()
        await conformance.close(first)

        second = await conformance.connector()
        again = await conformance.subscribe(second, source)
        redelivered = []
        event = second.decode(await again.next(conformance.timeouts.redelivery))
        while event is not None and event.id != "evt-2":
            redelivered.append(event.id)
            event = second.decode(await again.next(conformance.timeouts.redelivery))
        assert event is not None and event.id == "evt-2"
        assert "evt-1" not in redelivered

    async def test_nack_with_requeue_redelivers(self, conformance: Harness) -> None:
        """``nack(requeue=True)`` gives the message back to the broker: it comes again."""
        _needs_acks(conformance)
        connector = await conformance.connector()
        source, target = await conformance.usable_pair(connector)
        consumer = await conformance.subscribe(connector, source)
        await conformance.publish(connector, target, sample_event(3))
        await (await consumer.next()).nack(requeue=True)
        second = await consumer.next(conformance.timeouts.redelivery)
        event = connector.decode(second)
        assert event is not None and event.id == "evt-3"
        await second.ack()

    async def test_nack_without_requeue_drops(self, conformance: Harness) -> None:
        """``nack(requeue=False)`` settles the message for good (dropped or dead-lettered by the
        broker): the next message comes, the nacked one does not come back."""
        _needs_acks(conformance)
        connector = await conformance.connector()
        source, target = await conformance.usable_pair(connector)
        consumer = await conformance.subscribe(connector, source)
        await conformance.publish(connector, target, sample_event(1))
        await (await consumer.next()).nack(requeue=False)
        await conformance.publish(connector, target, sample_event(2))
        delivery = await consumer.next()
        event = connector.decode(delivery)
        assert event is not None and event.id == "evt-2"
        await delivery.ack()
        await consumer.nothing_within()
        await conformance.close(connector)
        again = await conformance.subscribe(await conformance.connector(), source)
        await again.nothing_within()

    async def test_settling_twice_is_harmless(self, conformance: Harness) -> None:
        """A second ``ack()``, or a ``nack()`` after ``ack()``, neither raises nor
        brings the message back."""
        _needs_acks(conformance)
        connector = await conformance.connector()
        source, target = await conformance.usable_pair(connector)
        consumer = await conformance.subscribe(connector, source)
        await conformance.publish(connector, target, sample_event(1))
        delivery = await consumer.next()
        await delivery.ack()
        await delivery.ack()
        await delivery.nack(requeue=True)
        await consumer.nothing_within()

    async def test_closed_iterator_gives_back_unacked(self, conformance: Harness) -> None:
        """Closing one consume iterator (a route removed on reload) with a delivery
        unacked: the next iterator of that source gets it."""
        _needs_acks(conformance)
        connector = await conformance.connector()
        source, target = await conformance.usable_pair(connector)
        consumer = await conformance.subscribe(connector, source)
        await conformance.publish(connector, target, sample_event(5))
        await consumer.next()
        await consumer.stop()
        again = await conformance.subscribe(connector, source)
        delivery = await again.next(conformance.timeouts.redelivery)
        event = connector.decode(delivery)
        assert event is not None and event.id == "evt-5"
        await delivery.ack()
