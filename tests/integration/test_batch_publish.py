"""``publish_many`` (the optional ``BatchPublisher`` hook) of the NATS, Kafka and AMQP
connectors against the loopback NATS server, the Kafka mock cluster and the loopback
RabbitMQ, and the batch path end to end: a refused event in a JetStream burst (or an
AMQP queue's backlog) is dead-lettered alone while the rest is delivered and acked. The
MQTT connector's against the loopback Mosquitto: a burst to an MQTT source is handed
over in batches, an MQTT->MQTT backlog goes the batch path, a lost connection fails the
unconfirmed items of a batch. (An MQTT 5 refusal, the ACL's, in a batch:
tests/security/test_mqtt_security.py.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import textwrap
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aio_pika
import aiomqtt
import nats
import pytest
from aiokafka import AIOKafkaConsumer
from nats.js.api import StreamConfig

from connectors.amqp import AmqpConnector, AmqpOptions, AmqpTarget
from connectors.base import BatchPublisher, Delivery
from connectors.errors import ConnectionLost, PublishRejected
from connectors.kafka import KafkaConnector, KafkaOptions, KafkaTarget
from connectors.mqtt import MqttConnector, MqttOptions, MqttSource, MqttTarget
from connectors.mqtt.config import subscriber_client_id
from connectors.mqtt.session import Session
from connectors.nats import NatsConnector, NatsOptions, NatsTarget
from gateway.config import load_config
from gateway.runtime import Gateway
from routing.bindings import Mode
from routing.bindings import amqp as amqp_binding
from routing.bindings import nats as binding
from routing.event import CloudEvent
from tests.brokers import MQTT_HOST_PORT, unique_name

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def event(n: int, data: bytes = b'{"n":1}', **changes: object) -> CloudEvent:
    base = CloudEvent(id=f"e{n}", source="urn:batch", type="com.acme.ok", data=data)
    return base.replace(**changes) if changes else base


@contextlib.asynccontextmanager
async def stream(nats_url: str, *prefixes: str) -> AsyncIterator[nats.NATS]:
    """A fresh stream per prefix (``<prefix>.>``), deleted afterwards."""
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    names = []
    for prefix in prefixes:
        names.append(unique_name("BATCH"))
        await js.add_stream(StreamConfig(name=names[-1], subjects=[f"{prefix}.>"]))
    try:
        yield nc
    finally:
        for name in names:
            with contextlib.suppress(Exception):
                await js.delete_stream(name)
        await nc.close()


async def until(check: Callable[[], bool], within: float) -> None:
    """Poll ``check`` until it is true; ``TimeoutError`` after ``within`` seconds."""
    deadline = asyncio.get_running_loop().time() + within
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"condition not met within {within}s")
        await asyncio.sleep(0.05)


async def one_dead_lettered_of_60(config: Path) -> None:
    """Run route ``r`` of ``config`` until 60 events are settled: 59 delivered, one
    dead-lettered, at least one batch on the batch path, nothing left in flight."""
    gateway = Gateway(load_config(config))
    await gateway.start()
    try:
        stats = gateway.stats["r"]
        await until(lambda: stats.delivered + stats.dead_lettered == 60, 30)
        await until(lambda: gateway.in_flight() == 0, 5)
        assert (stats.delivered, stats.dead_lettered) == (59, 1)
        assert gateway.pipelines[0].batcher.batches >= 1
    finally:
        await gateway.stop()


async def stored(nc: nats.NATS, subject: str) -> int:
    js = nc.jetstream()
    name = await js.find_stream_name_by_subject(subject)
    return (await js.stream_info(name)).state.messages


async def test_nats_publish_many_confirms_each_and_fails_only_the_bad_ones(
    nats_url: str,
) -> None:
    prefix = unique_name("bt")
    connector = NatsConnector("n", NatsOptions(type="nats", servers=(nats_url,)))
    assert isinstance(connector, BatchPublisher)
    async with stream(nats_url, prefix) as nc:
        await connector.start()
        try:
            good = NatsTarget(connector="n", subject=f"{prefix}.good")
            nowhere = NatsTarget(connector="n", subject=f"{unique_name('nostream')}.x")
            items = [(good, event(n)) for n in range(20)]
            items.insert(5, (nowhere, event(100)))
            items.insert(9, (good, event(101, data=b"x" * (nc.max_payload + 1))))
            outcomes = await connector.publish_many(items)
            assert [type(o).__name__ for o in outcomes if o is not None] == [
                "PublishRejected",
                "PublishRejected",
            ]
            assert isinstance(outcomes[5], PublishRejected)
            assert "no JetStream stream" in str(outcomes[5])
            assert "max_payload" in str(outcomes[9])
            assert await stored(nc, f"{prefix}.good") == 20
            # Published again (a retry): Nats-Msg-Id lets the stream drop the copies.
            again = await connector.publish_many([(good, event(n)) for n in range(20)])
            assert again == [None] * 20
            assert await stored(nc, f"{prefix}.good") == 20
        finally:
            await connector.close()


async def test_kafka_publish_many_confirms_each_and_fails_only_the_bad_ones(
    kafka_bootstrap: str,
) -> None:
    topic = unique_name("batch")
    options = KafkaOptions(type="kafka", bootstrap_servers=kafka_bootstrap)
    connector = KafkaConnector("k", options)
    assert isinstance(connector, BatchPublisher)
    await connector.start()
    try:
        target = KafkaTarget(connector="k", topic=topic)
        items = [(target, event(n)) for n in range(20)]
        items.insert(3, (target, event(100, data=b"x" * (4 * 1024 * 1024))))
        outcomes = await connector.publish_many(items)
        assert isinstance(outcomes[3], PublishRejected)
        assert outcomes[:3] + outcomes[4:] == [None] * 20
    finally:
        await connector.close()
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        auto_offset_reset="earliest",
        group_id=None,  # no group to join: the mock makes joins slow
    )
    await consumer.start()
    try:
        seen: set[tuple[int, int]] = set()  # (partition, offset)
        async with asyncio.timeout(20):
            while len(seen) < 20:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    seen.update((record.partition, record.offset) for record in records)
        assert len(seen) == 20
    finally:
        await consumer.stop()


async def test_a_refused_event_in_a_jetstream_burst_is_dead_lettered_alone(
    nats_url: str, tmp_path: Path
) -> None:
    src, out, dlq = unique_name("bs"), unique_name("bo"), unique_name("bd")
    async with stream(nats_url, src, out, dlq) as nc:
        js = nc.jetstream()
        for n in range(60):  # a backlog: the gateway pulls it in batches
            kind = unique_name("nostream") if n == 17 else out  # no stream captures the first
            message = binding.to_message(event(n, type=kind), Mode.BINARY)
            await js.publish(f"{src}.in", message.data, headers=dict(message.headers or {}))
        config = tmp_path / "config.yaml"
        config.write_text(
            textwrap.dedent(f"""
            gateway: {{id: batch-it, drain_timeout_seconds: 5, state_dir: '{tmp_path}'}}
            connectors:
              n: {{type: nats, servers: ['{nats_url}']}}
            routes:
              - name: r
                from: {{connector: n, subject: '{src}.in',
                        jetstream: {{durable: {unique_name("d")}}}}}
                to: [{{connector: n, subject: '{{type}}.events'}}]
                dead_letter: {{connector: n, subject: '{dlq}.letters'}}
                retry: {{max_attempts: 2, initial_backoff_seconds: 0.01}}
        """)
        )
        await one_dead_lettered_of_60(config)
        assert await stored(nc, f"{out}.events") == 59
        assert await stored(nc, f"{dlq}.letters") == 1
        # Everything was acked: the durable has nothing pending or unacknowledged.
        name = await js.find_stream_name_by_subject(f"{src}.in")
        consumers = await js.consumers_info(name)
        assert [(c.num_pending, c.num_ack_pending) for c in consumers] == [(0, 0)]


# -- AMQP ---------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def rabbit(url: str) -> AsyncIterator[aio_pika.abc.AbstractChannel]:
    """A raw channel on a connection of its own (the test deletes what it declares)."""
    connection = await aio_pika.connect(url, timeout=10)
    channel = await connection.channel()
    try:
        yield channel
    finally:
        await connection.close()


async def drained(channel: aio_pika.abc.AbstractChannel, queue: str, count: int) -> list[str]:
    """The message ids of the ``count`` messages in ``queue`` (acked), within 20 s."""
    ids: list[str] = []
    source = await channel.get_queue(queue)
    async with asyncio.timeout(20):
        while len(ids) < count:
            message = await source.get(fail=False)
            if message is None:
                await asyncio.sleep(0.05)
                continue
            ids.append(message.message_id or "")
            await message.ack()
    assert await source.get(fail=False) is None  # nothing more than expected
    return ids


def amqp_connector(url: str) -> AmqpConnector:
    return AmqpConnector("a", AmqpOptions(type="amqp", url=url, connection_name=unique_name("bt")))


async def test_amqp_publish_many_confirms_each_and_fails_only_the_bad_ones(
    rabbitmq_url: str,
) -> None:
    connector = amqp_connector(rabbitmq_url)
    assert isinstance(connector, BatchPublisher)
    queue = unique_name("bt-q")
    async with rabbit(rabbitmq_url) as channel:
        await channel.declare_queue(queue, durable=False, auto_delete=False)
        await connector.start()
        try:
            good = AmqpTarget(connector="a", routing_key=queue)
            missing = AmqpTarget(connector="a", exchange=unique_name("no-such-x"))
            unroutable = AmqpTarget(connector="a", routing_key=unique_name("no-such-q"))
            items = [(good, event(n)) for n in range(30)]
            items.insert(4, (missing, event(100)))
            items.insert(17, (unroutable, event(101)))
            outcomes = await connector.publish_many(items)
            assert isinstance(outcomes[4], PublishRejected)
            assert "no exchange" in str(outcomes[4])
            assert isinstance(outcomes[17], PublishRejected)
            assert "unroutable" in str(outcomes[17])
            assert outcomes[:4] + outcomes[5:17] + outcomes[18:] == [None] * 30
            ids = await drained(channel, queue, 30)
            assert sorted(ids) == sorted(f"e{n}" for n in range(30))
            # The channel the missing exchange never reached is still good for more.
            assert await connector.publish_many([(good, event(200))]) == [None]
            assert await drained(channel, queue, 1) == ["e200"]
        finally:
            await connector.close()
            await channel.queue_delete(queue)


async def test_amqp_publish_many_one_event_to_two_exchanges(rabbitmq_url: str) -> None:
    """basic.return is matched by message_id (the event id): two publishes of one event
    in a batch never overlap, so a return names the right one."""
    connector = amqp_connector(rabbitmq_url)
    routed, dead_end, queue = unique_name("bt-x"), unique_name("bt-x"), unique_name("bt-q")
    async with rabbit(rabbitmq_url) as channel:
        exchange = await channel.declare_exchange(routed, "direct", durable=False)
        await channel.declare_exchange(dead_end, "direct", durable=False)  # bound to nothing
        bound = await channel.declare_queue(queue, durable=False)
        await bound.bind(exchange, "k")
        await connector.start()
        try:
            to_queue = AmqpTarget(connector="a", exchange=routed, routing_key="k")
            nowhere = AmqpTarget(connector="a", exchange=dead_end, routing_key="k")
            items = []
            for n in range(10):
                pair = [(nowhere, event(n)), (to_queue, event(n))]
                items += pair if n % 2 else pair[::-1]
            outcomes = await connector.publish_many(items)
            for (target, _event), outcome in zip(items, outcomes, strict=True):
                if target is nowhere:
                    assert isinstance(outcome, PublishRejected), outcome
                    assert "unroutable" in str(outcome)
                else:
                    assert outcome is None
            assert sorted(await drained(channel, queue, 10)) == sorted(f"e{n}" for n in range(10))
            # Concurrent batches (and a lone publish) sharing event ids, in opposite
            # orders: each id still one publish at a time, and none waits on another.
            async with asyncio.timeout(30):
                first, second, _ = await asyncio.gather(
                    connector.publish_many(items),
                    connector.publish_many(items[::-1]),
                    connector.publish(to_queue, event(3)),
                )
            for outcomes, batch in ((first, items), (second, items[::-1])):
                for (target, _event), outcome in zip(batch, outcomes, strict=True):
                    assert (outcome is None) == (target is to_queue), outcome
            assert len(await drained(channel, queue, 21)) == 21
        finally:
            await connector.close()
            await channel.queue_delete(queue)
            await channel.exchange_delete(routed)
            await channel.exchange_delete(dead_end)


async def test_an_amqp_backlog_goes_the_batch_path_and_a_refused_event_is_dead_lettered_alone(
    rabbitmq_url: str, tmp_path: Path
) -> None:
    src, out, dlq = unique_name("bt-s"), unique_name("bt-o"), unique_name("bt-d")
    async with rabbit(rabbitmq_url) as channel:
        for queue in (src, out, dlq):
            await channel.declare_queue(queue, durable=False)
        for n in range(60):  # a backlog: the gateway takes it in batches
            # the first names a queue that does not exist: unroutable, dead-lettered
            kind = unique_name("no-such-q") if n == 17 else out
            message = amqp_binding.to_message(event(n, type=kind), Mode.BINARY)
            await channel.default_exchange.publish(
                aio_pika.Message(
                    message.body,
                    content_type=message.content_type,
                    headers=dict(message.headers),  # type: ignore[arg-type]
                ),
                routing_key=src,
            )
        config = tmp_path / "config.yaml"
        config.write_text(
            textwrap.dedent(f"""
            gateway: {{id: batch-amqp, drain_timeout_seconds: 5, state_dir: '{tmp_path}'}}
            connectors:
              a: {{type: amqp, url: '{rabbitmq_url}'}}
            routes:
              - name: r
                from: {{connector: a, queue: '{src}', declare: false}}
                to: [{{connector: a, routing_key: '{{type}}'}}]
                dead_letter: {{connector: a, routing_key: '{dlq}'}}
                retry: {{max_attempts: 2, initial_backoff_seconds: 0.01}}
        """)
        )
        await one_dead_lettered_of_60(config)
        try:
            assert len(await drained(channel, out, 59)) == 59
            assert len(await drained(channel, dlq, 1)) == 1
            # Everything was acked: nothing left in the source queue.
            assert (
                await channel.declare_queue(src, passive=True)
            ).declaration_result.message_count == 0
        finally:
            for queue in (src, out, dlq):
                await channel.queue_delete(queue)


# -- MQTT ---------------------------------------------------------------------------

MQTT_URL = "mqtt://{}:{}".format(*MQTT_HOST_PORT)


def mqtt_connector(name: str, **extra: object) -> MqttConnector:
    return MqttConnector(
        name, MqttOptions.model_validate({"url": MQTT_URL, "client_id": unique_name(name), **extra})
    )


async def test_an_mqtt_burst_is_handed_over_in_batches(
    mqtt_host_port: tuple[str, int], nats_url: str, tmp_path: Path
) -> None:
    """paho reads one packet per readable event when nothing outbound is in flight: the
    source must read every buffered packet, or a burst never forms a batch."""
    count = 2000
    topic, subject = f"{unique_name('bt')}/in", unique_name("bt-out")
    config = tmp_path / "config.yaml"
    config.write_text(
        textwrap.dedent(f"""
        gateway: {{id: batch-mqtt, drain_timeout_seconds: 5, state_dir: '{tmp_path}'}}
        connectors:
          m: {{type: mqtt, url: '{MQTT_URL}', client_id: {unique_name("bt-m")},
               clean_start: true, session_expiry_seconds: 0}}
          n: {{type: nats, servers: ['{nats_url}']}}
        routes:
          - name: r
            from: {{connector: m, topic: '{topic}', qos: 1}}
            to: [{{connector: n, subject: '{subject}', jetstream: false}}]
    """)
    )
    received: list[str] = []
    nc = await nats.connect(nats_url)

    async def collect(message: nats.aio.msg.Msg) -> None:
        received.append((message.headers or {}).get("ce-id", ""))

    await nc.subscribe(subject, cb=collect)
    gateway = Gateway(load_config(config))
    producer = mqtt_connector("bt-producer", max_in_flight=500)  # a burst at once
    sizes: list[int] = []
    try:
        await gateway.start()
        pipeline = gateway.pipelines[0]
        await until(lambda: pipeline.stream is not None, 10)
        await asyncio.wait_for(pipeline.connector.wait_subscribed(pipeline.group.source), 15)
        process = pipeline.batcher.process

        async def recorded(batch: list[Delivery]) -> None:
            sizes.append(len(batch))
            await process(batch)

        pipeline.batcher.process = recorded  # type: ignore[method-assign]
        await producer.start()
        target = MqttTarget.model_validate({"connector": "bt-producer", "topic": topic})
        stats = gateway.stats["r"]
        # Bursts of 500: Mosquitto drops what exceeds a subscriber's queue (its
        # max_queued_messages, 1,000 by default) on top of its messages in flight.
        for first in range(0, count, 500):
            burst = range(first, first + 500)
            await asyncio.gather(*(producer.publish(target, event(n)) for n in burst))
            await until(lambda: stats.delivered >= first + 500, 30)  # noqa: B023 - awaited here
        await until(lambda: gateway.in_flight() == 0, 5)
        await nc.flush()
        await until(lambda: len(received) >= count, 5)
    finally:
        await producer.close()
        await gateway.stop()
        await nc.close()
    assert stats.delivered == count
    assert sorted(received) == sorted(f"e{n}" for n in range(count))  # no loss, no copy
    # Before the fix: no batch at all (one message per event-loop turn).
    assert sizes and max(sizes) > 1
    assert sum(sizes) >= count // 4, sizes


@contextlib.asynccontextmanager
async def mqtt_collector(*filters: str) -> AsyncIterator[list[aiomqtt.Message]]:
    """What arrives on ``filters`` (QoS 1) while the block runs, in arrival order."""
    received: list[aiomqtt.Message] = []
    host, port = MQTT_HOST_PORT
    async with aiomqtt.Client(
        host, port, identifier=unique_name("bt-c"), protocol=aiomqtt.ProtocolVersion.V5, timeout=10
    ) as client:
        for topic_filter in filters:
            await client.subscribe(topic_filter, qos=1)

        async def collect() -> None:
            async for message in client.messages:
                received.append(message)

        task = asyncio.ensure_future(collect())
        try:
            yield received
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def ce_id(message: aiomqtt.Message) -> str:
    """The ``id`` user property of a binary-mode CloudEvent received over MQTT 5."""
    user = getattr(message.properties, "UserProperty", None) or []
    return dict(user).get("id", "")


async def test_mqtt_publish_many_confirms_each_in_order_and_fails_only_the_bad_ones(
    mqtt_host_port: tuple[str, int],
) -> None:
    # Few in flight: paho queues the rest of the batch and sends it as PUBACKs come.
    connector = mqtt_connector("bt-p", max_in_flight=4)
    assert isinstance(connector, BatchPublisher)
    prefix = unique_name("bt")
    good = MqttTarget.model_validate({"connector": "bt-p", "topic": f"{prefix}/good"})
    exactly_once = good.model_copy(update={"qos": 2})
    wildcard = good.model_copy(update={"topic": f"{prefix}/+"})  # not a topic name
    # A user property over 65,535 bytes: MQTT 5 cannot encode it.
    oversize = good.model_copy(update={"headers": {"x-big": "x" * 70_000}})
    async with mqtt_collector(f"{prefix}/#") as received:
        await connector.start()
        try:
            items = [(good, event(n)) for n in range(30)]
            items.insert(4, (wildcard, event(100)))
            items.insert(12, (exactly_once, event(101)))
            items.insert(20, (oversize, event(102)))
            outcomes = await connector.publish_many(items)
            assert isinstance(outcomes[4], PublishRejected)
            assert "not a valid MQTT topic name" in str(outcomes[4])
            assert isinstance(outcomes[20], PublishRejected)
            assert "65,535" in str(outcomes[20])
            assert outcomes[:4] + outcomes[5:20] + outcomes[21:] == [None] * 31
            await until(lambda: len(received) >= 31, 10)
        finally:
            await connector.close()
    ids = [ce_id(message) for message in received]
    assert sorted(ids) == sorted([*(f"e{n}" for n in range(30)), "e101"])
    # One topic, one publisher: the QoS 1 publishes arrive in the batch's order.
    assert [i for i in ids if i != "e101"] == [f"e{n}" for n in range(30)]


async def test_mqtt_publish_many_fails_the_unconfirmed_items_when_the_connection_is_lost(
    mqtt_host_port: tuple[str, int],
) -> None:
    connector = mqtt_connector("bt-p", max_in_flight=1, publish_timeout_seconds=10)
    target = MqttTarget.model_validate({"connector": "bt-p", "topic": f"{unique_name('bt')}/x"})
    items = [(target, event(n)) for n in range(50)]
    await connector.start()
    try:
        batch = asyncio.ensure_future(connector.publish_many(items))
        await asyncio.sleep(0)  # the batch is handed over: it waits for the PUBACKs
        publisher = connector._publisher
        assert publisher is not None
        publisher.abort("test: connection dropped")
        outcomes = await asyncio.wait_for(batch, 10)
        assert all(o is None or isinstance(o, ConnectionLost) for o in outcomes), outcomes
        assert sum(isinstance(o, ConnectionLost) for o in outcomes) >= 49  # one may be acked
        # The runtime retries them: the publisher reconnects and takes the batch again.
        assert await asyncio.wait_for(connector.publish_many(items), 15) == [None] * 50
    finally:
        await connector.close()


async def test_an_mqtt_backlog_goes_the_batch_path_and_a_refused_event_is_dead_lettered_alone(
    mqtt_host_port: tuple[str, int], tmp_path: Path
) -> None:
    prefix, base = unique_name("bt"), unique_name("bt-g")
    source = MqttSource(connector="m", topic=f"{prefix}/in", qos=1)
    client_id = subscriber_client_id(base, source)
    options = MqttOptions(url=MQTT_URL, client_id=base)
    log = logging.getLogger("tests.batch")
    # The source's session exists before the gateway: the backlog waits in it.
    session = Session(options, client_id, clean_start=True, session_expiry=60, log=log)
    await session.connect()
    await session.subscribe(source.topic, 1, no_local=False)
    await session.close()
    producer = mqtt_connector("bt-p")
    await producer.start()
    try:
        into = MqttTarget.model_validate({"connector": "bt-p", "topic": source.topic})
        # The 18th names a topic with a wildcard: refused at publish, dead-lettered.
        events = [event(n, type="b+d" if n == 17 else "ok") for n in range(60)]
        assert await producer.publish_many([(into, e) for e in events]) == [None] * 60
    finally:
        await producer.close()
    config = tmp_path / "config.yaml"
    config.write_text(
        textwrap.dedent(f"""
        gateway: {{id: batch-mqtt, drain_timeout_seconds: 5, state_dir: '{tmp_path}'}}
        connectors:
          m: {{type: mqtt, url: '{MQTT_URL}', client_id: {base}, session_expiry_seconds: 60}}
        routes:
          - name: r
            from: {{connector: m, topic: '{source.topic}', qos: 1}}
            to: [{{connector: m, topic: '{prefix}/out/{{type}}'}}]
            dead_letter: {{connector: m, topic: '{prefix}/dlq'}}
            retry: {{max_attempts: 2, initial_backoff_seconds: 0.01}}
    """)
    )
    try:
        async with mqtt_collector(f"{prefix}/out/#", f"{prefix}/dlq") as received:
            await one_dead_lettered_of_60(config)
            await until(lambda: len(received) >= 60, 10)
        assert sorted(m.topic.value for m in received) == sorted(
            [f"{prefix}/out/ok"] * 59 + [f"{prefix}/dlq"]
        )
        # Everything was acked: the source's session redelivers nothing.
        session = Session(options, client_id, clean_start=False, session_expiry=0, log=log)
        await session.connect()
        assert session.session_present
        redelivered = asyncio.ensure_future(session.next_message())
        done, _ = await asyncio.wait({redelivered}, timeout=1.0)
        redelivered.cancel()
        assert not done, "a message of the backlog was not acknowledged"
    finally:
        await session.close()
