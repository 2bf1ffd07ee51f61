"""The Kafka connector's ``publish_many`` builds its own record batches
(``connectors.kafka.batches``, aiokafka's ``create_batch``/``send_batch``): against the
mock cluster (4 partitions per auto-created topic), keyed records land on the
partition ``publish`` puts them on, in order per key; headers and the CloudEvent
binding are unchanged; a call larger than one batch builder is split and fully
confirmed; a record too large fails alone; with the cluster frozen no record is
reported confirmed.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer

from connectors.errors import ConnectionLost, PublishRejected, PublishTimeout
from connectors.kafka import KafkaConnector, KafkaOptions, KafkaTarget
from gateway.localbrokers import KafkaMockCluster
from routing.bindings import Mode
from routing.bindings import kafka as binding
from routing.event import CloudEvent
from tests.brokers import unique_name

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def event(n: int, data: bytes | None = b'{"n":1}', **extensions: str) -> CloudEvent:
    return CloudEvent(
        id=f"e{n}",
        source="urn:batches",
        type="com.acme.ok",
        data=data,
        datacontenttype="application/json",
        extensions=extensions,
    )


async def records(bootstrap: str, topic: str, count: int) -> list[Any]:
    """The first ``count`` records of ``topic``, sorted by (partition, offset)."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    seen: list[Any] = []
    try:
        async with asyncio.timeout(20):
            while len(seen) < count:
                for batch in (await consumer.getmany(timeout_ms=500)).values():
                    seen.extend(batch)
    finally:
        await consumer.stop()
    return sorted(seen, key=lambda r: (r.partition, r.offset))


async def connector(bootstrap: str, **options: Any) -> KafkaConnector:
    started = KafkaConnector(
        "k", KafkaOptions(type="kafka", bootstrap_servers=bootstrap, **options)
    )
    await started.start()
    return started


async def test_keyed_records_land_where_publish_puts_them_in_order(kafka_bootstrap: str) -> None:
    one, many = unique_name("single"), unique_name("batched")
    # A small batch size: each partition gets several builders per call.
    kafka = await connector(kafka_bootstrap, max_batch_size=1024)
    try:
        events = [event(n) for n in range(120)]
        for n, item in enumerate(events):
            await kafka.publish(KafkaTarget(connector="k", topic=one, key=f"k{n % 13}"), item)
        targets = [KafkaTarget(connector="k", topic=many, key=f"k{n % 13}") for n in range(120)]
        outcomes = await kafka.publish_many(list(zip(targets, events, strict=True)))
        assert outcomes == [None] * 120
    finally:
        await kafka.close()
    alone, batched = await asyncio.gather(
        records(kafka_bootstrap, one, 120), records(kafka_bootstrap, many, 120)
    )
    place_alone = {r.key: r.partition for r in alone}
    place_batched = {r.key: r.partition for r in batched}
    assert len(place_alone) == 13
    assert place_batched == place_alone
    assert len(set(place_batched.values())) > 1  # the keys spread: placement was tested
    # Per key, the records keep the order they were handed over in.
    for key in place_batched:
        numbers = [_number(r) for r in batched if r.key == key]
        assert numbers == sorted(numbers)


def _message(record: Any) -> binding.KafkaMessage:
    return binding.KafkaMessage(record.key, record.value, tuple(record.headers))


def _number(record: Any) -> int:
    """n of the event ``e<n>`` a record carries."""
    decoded = binding.from_message(_message(record))
    assert decoded is not None
    return int(decoded.id[1:])


async def test_headers_and_binding_unchanged_round_trip(kafka_bootstrap: str) -> None:
    topic = unique_name("roundtrip")
    kafka = await connector(kafka_bootstrap)
    binary = KafkaTarget(
        connector="k", topic=topic, key="one", headers={"x-team": "ops"}, mode=Mode.BINARY
    )
    structured = KafkaTarget(connector="k", topic=topic, key="two", mode=Mode.STRUCTURED)
    traced = event(0, traceparent="00-" + "1" * 32 + "-" + "2" * 16 + "-01")
    items = [(binary, traced), (structured, event(1)), (binary, event(2, data=None))]
    try:
        assert await kafka.publish_many(items) == [None] * 3
        expected = {item[1].id: kafka.encode(*item) for item in items}
    finally:
        await kafka.close()
    for record in await records(kafka_bootstrap, topic, 3):
        message = _message(record)
        decoded = binding.from_message(message)
        assert decoded is not None
        wanted = expected[decoded.id]
        # A keyed record without data keeps no value, as publish sends it.
        assert (record.key, record.value, tuple(record.headers)) == (
            wanted.key,
            wanted.value,
            wanted.headers,
        )
        assert decoded == next(item[1] for item in items if item[1].id == decoded.id)


async def test_a_call_larger_than_one_builder_is_split_and_all_confirmed(
    kafka_bootstrap: str,
) -> None:
    topic = unique_name("split")
    kafka = await connector(kafka_bootstrap, max_batch_size=2048)
    try:
        target = KafkaTarget(connector="k", topic=topic)  # unkeyed: one partition at a time
        items = [(target, event(n, data=b"x" * 300)) for n in range(300)]
        assert await kafka.publish_many(items) == [None] * 300
    finally:
        await kafka.close()
    got = await records(kafka_bootstrap, topic, 300)
    assert sorted(_number(r) for r in got) == list(range(300))
    # ~300 B records, 2 KiB builders: full builders move on to other partitions.
    assert len({r.partition for r in got}) > 1


async def test_a_record_too_large_fails_alone(kafka_bootstrap: str) -> None:
    topic = unique_name("oversize")
    kafka = await connector(kafka_bootstrap, max_request_size=4096)
    try:
        # Same key: the record too large sits between neighbours of its partition.
        target = KafkaTarget(connector="k", topic=topic, key="same")
        items = [(target, event(n)) for n in range(10)]
        items.insert(4, (target, event(99, data=b"x" * 5000)))
        outcomes = await kafka.publish_many(items)
        assert isinstance(outcomes[4], PublishRejected)
        assert "too large" in str(outcomes[4])
        assert outcomes[:4] + outcomes[5:] == [None] * 10
        # publish raises the same error for it
        with pytest.raises(PublishRejected, match="too large"):
            await kafka.publish(target, event(99, data=b"x" * 5000))
    finally:
        await kafka.close()
    got = await records(kafka_bootstrap, topic, 10)
    assert [r.offset for r in got] == list(range(10))
    assert len({r.partition for r in got}) == 1


async def test_a_frozen_cluster_confirms_nothing(tmp_path: Path) -> None:
    """SIGSTOP a private mock cluster: every record of the call fails retriably, those
    for a topic whose metadata never came as well as those already in batches."""
    async with KafkaMockCluster(brokers=1, log=tmp_path / "mock.log") as cluster:
        kafka = await connector(cluster.bootstrap_servers, request_timeout_seconds=1.0)
        known, unknown = unique_name("known"), unique_name("unknown")
        try:
            target = KafkaTarget(connector="k", topic=known)
            assert await kafka.publish_many([(target, event(0))]) == [None]
            os.kill(cluster.process.pid, signal.SIGSTOP)
            try:
                items = [(target, event(n)) for n in range(1, 6)]
                items += [
                    (KafkaTarget(connector="k", topic=unknown), event(n)) for n in range(6, 9)
                ]
                outcomes = await kafka.publish_many(items)
            finally:
                os.kill(cluster.process.pid, signal.SIGCONT)
            assert all(isinstance(o, PublishTimeout | ConnectionLost) for o in outcomes), outcomes
            assert all(o is not None and o.retriable for o in outcomes)
        finally:
            await kafka.close()
