"""Conformance: consuming and publishing (readiness, no loss, order, backpressure)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import pytest

from connectors.testing.harness import Harness, sample_event, usable_pair

__all__ = ["DeliveryTests"]


class DeliveryTests:
    """A confirmed publish reaches a subscribed source, once, in order, at the pace
    the consumer pulls."""

    async def test_readiness_signal_replaces_settle_sleeps(self, conformance: Harness) -> None:
        """Published right after ``wait_subscribed`` returned, a message is received:
        the readiness signal is enough, on a fresh address each time."""
        connector = await conformance.connector()
        for n in range(3):
            source, target = await usable_pair(conformance, connector)
            consumer = await conformance.subscribe(connector, source)
            await conformance.publish(connector, target, sample_event(n))
            event = connector.decode(await consumer.next())
            assert event is not None and event.id == f"evt-{n}"
            await consumer.stop()

    async def test_every_publish_arrives_once(self, conformance: Harness) -> None:
        """Twenty confirmed publishes arrive, each once (acked as they come)."""
        connector = await conformance.connector()
        source, target = await usable_pair(conformance, connector)
        consumer = await conformance.subscribe(connector, source)
        for n in range(20):
            await conformance.publish(connector, target, sample_event(n))
        got = [
            str(getattr(connector.decode(d), "id", None)) for d in await consumer.take_acking(20)
        ]
        assert sorted(got) == sorted(f"evt-{n}" for n in range(20))
        await consumer.nothing_within()

    async def test_concurrent_publishes_are_all_confirmed(self, conformance: Harness) -> None:
        """``publish`` is called concurrently by the runtime: every call is confirmed
        and every message consumed."""
        connector = await conformance.connector()
        source, target = await usable_pair(conformance, connector)
        consumer = await conformance.subscribe(connector, source)
        async with asyncio.timeout(conformance.timeouts.receive):
            await asyncio.gather(
                *(conformance.publish(connector, target, sample_event(n)) for n in range(30))
            )
        deliveries = await consumer.take_acking(30)
        ids = {getattr(connector.decode(d), "id", None) for d in deliveries}
        assert ids == {f"evt-{n}" for n in range(30)}

    async def test_order_is_kept_within_one_lane(self, conformance: Harness) -> None:
        """Messages published one after another to one target arrive in that order,
        all with the same ``ordering_key`` (the lane ``ordered: true`` routes keep)."""
        connector = await conformance.connector()
        source, target = await usable_pair(conformance, connector)
        consumer = await conformance.subscribe(connector, source)
        for n in range(25):
            await conformance.publish(connector, target, sample_event(n))
        deliveries = await consumer.take_acking(25)
        ids = [getattr(connector.decode(d), "id", None) for d in deliveries]
        assert ids == [f"evt-{n}" for n in range(25)]
        assert len({d.ordering_key for d in deliveries}) == 1

    async def test_paused_consumer_loses_nothing(self, conformance: Harness) -> None:
        """While nobody pulls, messages wait (at the broker or in a bounded buffer) and
        arrive, in order, once pulling resumes."""
        connector = await conformance.connector()
        source, target = await usable_pair(conformance, connector)
        consumer = await conformance.subscribe(connector, source)
        await conformance.publish(connector, target, sample_event(0))
        first = await consumer.next()
        consumer.pause()
        for n in range(1, 21):
            await conformance.publish(connector, target, sample_event(n))
        await first.ack()
        consumer.resume()
        rest = await consumer.take_acking(20)
        ids = [getattr(connector.decode(d), "id", None) for d in rest]
        assert ids == [f"evt-{n}" for n in range(1, 21)]

    async def test_in_flight_bound_is_respected(self, conformance: Harness) -> None:
        """With a bound of 3 unacked deliveries a fourth comes only after an ack
        (backpressure: a slow target slows the source instead of growing memory)."""
        if conformance.in_flight is None:
            pytest.skip("no `conformance_in_flight` fixture: no in-flight bound declared")
        if not conformance.capabilities.acknowledgements:
            pytest.skip("no acknowledgements: nothing stays in flight")
        base_source, target = await conformance.pair(conformance.default_mode)
        bounded, source = conformance.in_flight(base_source, 3)
        connector = await conformance.connector(bounded)
        consumer = await conformance.subscribe(connector, source)
        for n in range(6):
            await conformance.publish(connector, target, sample_event(n))
        held = await consumer.take(3)
        await consumer.nothing_within()
        await held[0].ack()
        fourth = await consumer.next()
        await consumer.nothing_within()
        for delivery in [*held[1:], fourth]:
            await delivery.ack()
        rest = await consumer.take(2)
        ids = [str(getattr(connector.decode(d), "id", None)) for d in [*held, fourth, *rest]]
        assert sorted(ids) == [f"evt-{n}" for n in range(6)]
        for delivery in rest:
            await delivery.ack()

    async def test_sources_are_independent(self, conformance: Harness) -> None:
        """A message published to one fresh address never shows up on another."""
        connector = await conformance.connector()
        source_a, target_a = await usable_pair(conformance, connector)
        source_b, _ = await usable_pair(conformance, connector)
        consumer_a = await conformance.subscribe(connector, source_a)
        consumer_b = await conformance.subscribe(connector, source_b)
        await conformance.publish(connector, target_a, sample_event(1))
        await (await consumer_a.next()).ack()
        await consumer_b.nothing_within()

    async def test_delivery_describes_its_message(self, conformance: Harness) -> None:
        """``Delivery`` fields have the documented types: address, payload, headers as
        text, coordinates of text and numbers, the decoded event equals the sent one."""
        connector = await conformance.connector()
        source, target = await usable_pair(conformance, connector)
        consumer = await conformance.subscribe(connector, source)
        sent = sample_event(4)
        await conformance.publish(connector, target, sent)
        delivery = await consumer.next()
        assert isinstance(delivery.address, str) and delivery.address
        assert isinstance(delivery.payload, bytes) and delivery.payload
        assert isinstance(delivery.headers, Mapping)
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in delivery.headers.items())
        assert all(isinstance(v, str | int) for v in delivery.coordinates.values())
        assert delivery.native_id is None or isinstance(delivery.native_id, str)
        assert delivery.content_type is None or isinstance(delivery.content_type, str)
        assert connector.decode(delivery) == sent
        await delivery.ack()

    async def test_non_cloudevent_decodes_to_none(self, conformance: Harness) -> None:
        """A legacy (non-CloudEvent) message decodes to None, payload intact, so the
        route's ingress rules can wrap it."""
        publish_raw = conformance.raw_publisher
        if publish_raw is None:
            pytest.skip("no `conformance_publish_raw` fixture: cannot play a legacy producer")
        connector = await conformance.connector()
        source, target = await usable_pair(conformance, connector)
        consumer = await conformance.subscribe(connector, source)
        await publish_raw(target, b"legacy payload 42")
        delivery = await consumer.next()
        assert connector.decode(delivery) is None
        assert delivery.payload == b"legacy payload 42"
        await delivery.ack()

    async def test_raw_payload_is_delivered_byte_for_byte(self, conformance: Harness) -> None:
        """Arbitrary bytes (not UTF-8, NUL included) arrive unchanged."""
        publish_raw = conformance.raw_publisher
        if publish_raw is None:
            pytest.skip("no `conformance_publish_raw` fixture: cannot play a legacy producer")
        connector = await conformance.connector()
        source, target = await usable_pair(conformance, connector)
        consumer = await conformance.subscribe(connector, source)
        payload = bytes(range(256)) * 4
        await publish_raw(target, payload)
        delivery = await consumer.next()
        assert delivery.payload == payload
        await delivery.ack()
