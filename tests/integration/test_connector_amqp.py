"""The ``amqp`` connector against the loopback RabbitMQ: conformance plus AMQP specifics.

AMQP-specific tests: mandatory publishes of unroutable messages are rejected, a
missing exchange is rejected without breaking later publishes, topic-exchange
bindings with ``*``/``#``, the consumer survives a broker-side connection close
(``rabbitmqctl close_connection``) and a queue deletion, and ``prefetch`` bounds
the unacknowledged deliveries in flight.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aio_pika
import pytest

from connectors.amqp import (
    AmqpConnector,
    AmqpOptions,
    AmqpSource,
    AmqpTarget,
    Binding,
    ExchangeDeclaration,
    ExchangeKind,
    QueueType,
)
from connectors.base import Delivery
from connectors.errors import PublishRejected
from connectors.redact import redact_url
from connectors.testing import sample_event
from routing.bindings import Mode
from tests.brokers import RABBITMQ_URL, unique_name
from tests.integration.connector_hooks import HookedConformance

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

WAIT = 15.0


async def eventually(check: Callable[[], Awaitable[bool]], within: float = WAIT) -> None:
    """Poll ``check`` until it is true; fail after ``within`` seconds."""
    deadline = asyncio.get_running_loop().time() + within
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"condition not met within {within}s")
        await asyncio.sleep(0.1)


class Broker:
    """Raw aio-pika access for setup, inspection and cleanup."""

    def __init__(self) -> None:
        self.queues: list[str] = []
        self.exchanges: list[str] = []
        self.connection: aio_pika.abc.AbstractConnection | None = None

    async def channel(self) -> aio_pika.abc.AbstractChannel:
        if self.connection is None:
            self.connection = await aio_pika.connect(RABBITMQ_URL, timeout=10)
        return await self.connection.channel()

    async def queue(self, name: str | None = None) -> str:
        name = name or unique_name("amqp-q")
        channel = await self.channel()
        await channel.declare_queue(name, durable=True)
        await channel.close()
        self.queues.append(name)
        return name

    async def exchange(self, kind: str = "topic") -> str:
        name = unique_name("amqp-x")
        channel = await self.channel()
        await channel.declare_exchange(name, kind, durable=False)
        await channel.close()
        self.exchanges.append(name)
        return name

    async def counts(self, queue: str) -> tuple[int, int]:
        """(ready messages, consumers) of ``queue``."""
        channel = await self.channel()
        try:
            result = (await channel.declare_queue(queue, passive=True)).declaration_result
        except aio_pika.exceptions.ChannelNotFoundEntity:
            return 0, 0  # not declared yet
        await channel.close()
        return result.message_count or 0, result.consumer_count or 0

    async def wait_consumers(self, queue: str, count: int = 1) -> None:
        async def ready() -> bool:
            return (await self.counts(queue))[1] == count

        await eventually(ready)

    async def publish(self, routing_key: str, body: bytes, **properties: Any) -> None:
        channel = await self.channel()
        await channel.default_exchange.publish(aio_pika.Message(body, **properties), routing_key)
        await channel.close()

    async def cleanup(self) -> None:
        if self.connection is None:
            return
        channel = await self.channel()
        for queue in self.queues:
            await channel.queue_delete(queue)
        for exchange in self.exchanges:
            await channel.exchange_delete(exchange)
        await self.connection.close()


def connector(**options: Any) -> AmqpConnector:
    name = unique_name("amqp-conn")
    opts = AmqpOptions(url=RABBITMQ_URL, connection_name=name, **options)
    return AmqpConnector(name, opts)


async def rabbitmqctl(*args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        "rabbitmqctl",
        "-q",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    if process.returncode != 0:
        pytest.skip(f"rabbitmqctl {args[0]} failed here: {err.decode(errors='replace')[:200]}")
    return out.decode()


async def close_connection_from_broker(connection_name: str) -> None:
    """Have RabbitMQ close the connection named ``connection_name`` (only that one)."""
    if shutil.which("rabbitmqctl") is None:
        pytest.skip("rabbitmqctl not installed: cannot close a connection from the broker side")
    marker = f'{{"connection_name","{connection_name}"}}'
    listing = await rabbitmqctl("list_connections", "pid", "client_properties")
    pids = [line.split("\t", 1)[0] for line in listing.splitlines() if marker in line]
    if not pids:
        pytest.fail(f"connection {connection_name!r} not listed by rabbitmqctl")
    for pid in pids:
        await rabbitmqctl("close_connection", pid, "meshgate test: forced close")


@pytest.fixture
async def broker(rabbitmq_url: str) -> AsyncIterator[Broker]:
    raw = Broker()
    try:
        yield raw
    finally:
        await raw.cleanup()


class Pump:
    """Pulls deliveries in a task (cancelling ``anext`` would end the generator)."""

    def __init__(self, stream: AsyncIterator[Delivery]) -> None:
        self.got: list[Delivery] = []
        self.task = asyncio.create_task(self._run(stream))

    async def _run(self, stream: AsyncIterator[Delivery]) -> None:
        async for delivery in stream:
            self.got.append(delivery)

    async def wait_for(self, count: int, within: float = WAIT) -> list[Delivery]:
        async def enough() -> bool:
            return len(self.got) >= count

        await eventually(enough, within)
        return self.got[:count]

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


class TestAmqpConformance(HookedConformance):
    @pytest.fixture(autouse=True)
    def _broker(self, broker: Broker) -> None:
        self.broker = broker

    def make_connector(self) -> AmqpConnector:
        return connector()

    async def make_pair(self, mode: Mode) -> tuple[AmqpSource, AmqpTarget]:
        queue = await self.broker.queue()
        source = AmqpSource(connector="rabbit", queue=queue, declare=True, prefetch=10)
        target = AmqpTarget(connector="rabbit", exchange="", routing_key=queue, mode=mode)
        return source, target

    async def publish_raw(self, target: Any, payload: bytes) -> None:
        await self.broker.publish(target.routing_key, payload)

    async def bounce(self, connector: AmqpConnector) -> None:
        await close_connection_from_broker(connector.connection_name)

    def bounded(self, source: AmqpSource, limit: int) -> tuple[AmqpConnector, AmqpSource]:
        return self.make_connector(), source.model_copy(update={"prefetch": limit})


async def test_unroutable_mandatory_publish_is_rejected() -> None:
    conn = connector()
    await conn.start()
    try:
        nowhere = AmqpTarget(connector="rabbit", routing_key=unique_name("no-such-queue"))
        with pytest.raises(PublishRejected, match="unroutable"):
            await conn.publish(nowhere, sample_event())
        # Without mandatory the broker drops it and confirms (documented silent loss).
        lax = nowhere.model_copy(update={"mandatory": False})
        await conn.publish(lax, sample_event())
    finally:
        await conn.close()


async def test_missing_exchange_rejects_only_its_own_publish(broker: Broker) -> None:
    queue = await broker.queue()
    conn = connector()
    await conn.start()
    try:
        missing = AmqpTarget(connector="rabbit", exchange=unique_name("no-such-x"))
        good = AmqpTarget(connector="rabbit", routing_key=queue)
        results = await asyncio.gather(
            *(conn.publish(good, sample_event(n)) for n in range(20)),
            conn.publish(missing, sample_event(99)),
            *(conn.publish(good, sample_event(n)) for n in range(20, 40)),
            return_exceptions=True,
        )
        failed = [r for r in results if r is not None]
        assert len(failed) == 1 and isinstance(failed[0], PublishRejected)
        assert "no exchange" in str(failed[0])
        await conn.publish(good, sample_event(40))
        assert (await broker.counts(queue))[0] == 41
    finally:
        await conn.close()


async def test_declare_exchange_on_first_publish(broker: Broker) -> None:
    name = unique_name("amqp-x")
    broker.exchanges.append(name)
    conn = connector()
    await conn.start()
    try:
        target = AmqpTarget(
            connector="rabbit",
            exchange=name,
            routing_key="a.b",
            mandatory=False,
            declare_exchange=ExchangeDeclaration(type=ExchangeKind.TOPIC, durable=False),
        )
        await conn.publish(target, sample_event())
        channel = await broker.channel()
        await channel.declare_exchange(name, "topic", passive=True)  # raises if missing
        await channel.close()
    finally:
        await conn.close()


async def test_topic_binding_wildcards(broker: Broker) -> None:
    exchange = await broker.exchange("topic")
    queue = unique_name("amqp-q")
    broker.queues.append(queue)
    source = AmqpSource(
        connector="rabbit",
        queue=queue,
        declare=True,
        bind=(Binding(exchange=exchange, binding_key="plant.*.telemetry.#"),),
    )
    conn = connector()
    await conn.start()
    pump = Pump(aiter(conn.consume(source)))
    try:
        await broker.wait_consumers(queue)
        to = AmqpTarget(connector="rabbit", exchange=exchange)
        keys = ["plant.a.telemetry", "plant.b.telemetry.x.y", "plant.c.d.telemetry", "other"]
        for n, key in enumerate(keys):
            target = to.model_copy(update={"routing_key": key})
            if key in ("plant.c.d.telemetry", "other"):  # '*' is exactly one word
                with pytest.raises(PublishRejected):
                    await conn.publish(target, sample_event(n))
            else:
                await conn.publish(target, sample_event(n))
        got = await pump.wait_for(2)
        assert [d.address for d in got] == ["plant.a.telemetry", "plant.b.telemetry.x.y"]
        assert got[1].coordinates["exchange"] == exchange
        assert got[1].coordinates["queue"] == queue
        assert got[1].native_id == "evt-1"  # message_id property = CloudEvent id
        for delivery in got:
            await delivery.ack()
        await conn.close()
        await asyncio.wait_for(pump.task, 5)  # close() ends the consume iterator
    finally:
        await pump.stop()
        await conn.close()


async def test_consumer_survives_broker_side_connection_close(broker: Broker) -> None:
    queue = await broker.queue()
    source = AmqpSource(connector="rabbit", queue=queue, prefetch=10)
    target = AmqpTarget(connector="rabbit", routing_key=queue)
    conn = connector()
    await conn.start()
    pump = Pump(aiter(conn.consume(source)))
    try:
        await broker.wait_consumers(queue)
        await conn.publish(target, sample_event(1))
        (held,) = await pump.wait_for(1)  # not acked before the connection dies

        await close_connection_from_broker(conn.connection_name)
        for n in (2, 3, 4):  # published while the connector reconnects
            await broker.publish(queue, b"during outage %d" % n, message_id=f"raw-{n}")
        await held.ack()  # stale: its channel is gone; must neither raise nor ack another

        got = await pump.wait_for(5)
        assert conn.health.reconnects == 1  # one connection, back once (the core counts)
        again = [d for d in got[1:] if d.native_id == "evt-1"]
        assert len(again) == 1 and again[0].coordinates["redelivered"] is True
        assert sorted(d.native_id or "" for d in got[1:]) == ["evt-1", "raw-2", "raw-3", "raw-4"]
        for delivery in got[1:]:
            await delivery.ack()
        await conn.publish(target, sample_event(5))  # the publish channel came back too
        (last,) = (await pump.wait_for(6))[5:]
        assert last.native_id == "evt-5"
        await last.ack()
        await pump.stop()
        await conn.close()
        assert len(pump.got) == 6
        # Nothing left unacked or requeued: the stale ack acked no other message.
        assert await broker.counts(queue) == (0, 0)
    finally:
        await pump.stop()
        await conn.close()


async def _settled(broker: Broker, queue: str) -> bool:
    return (await broker.counts(queue))[0] == 0


async def test_consumer_resubscribes_after_queue_deletion(broker: Broker) -> None:
    queue = unique_name("amqp-q")
    broker.queues.append(queue)
    source = AmqpSource(connector="rabbit", queue=queue, declare=True, queue_type=QueueType.QUORUM)
    conn = connector()
    await conn.start()
    pump = Pump(aiter(conn.consume(source)))
    try:
        await broker.wait_consumers(queue)
        channel = await broker.channel()
        await channel.queue_delete(queue)  # the broker cancels the consumer
        await channel.close()
        await broker.wait_consumers(queue)  # re-declared and consuming again
        await conn.publish(AmqpTarget(connector="rabbit", routing_key=queue), sample_event(9))
        (delivery,) = await pump.wait_for(1)
        assert delivery.native_id == "evt-9"
        await delivery.ack()
    finally:
        await pump.stop()
        await conn.close()


async def test_prefetch_bounds_unacked_deliveries(broker: Broker) -> None:
    queue = await broker.queue()
    for n in range(20):
        await broker.publish(queue, b"m%d" % n)
    conn = connector()
    await conn.start()
    pump = Pump(aiter(conn.consume(AmqpSource(connector="rabbit", queue=queue, prefetch=5))))
    try:
        first = await pump.wait_for(5)
        await asyncio.sleep(1.0)
        assert len(pump.got) == 5  # nothing more until acks
        assert (await broker.counts(queue))[0] == 15
        for delivery in first:
            await delivery.ack()
        await pump.wait_for(10)
        await asyncio.sleep(0.5)
        assert len(pump.got) == 10
        for delivery in pump.got[5:10]:
            await delivery.nack(requeue=False)  # dropped, not requeued
        for delivery in (await pump.wait_for(15))[10:]:
            await delivery.ack()
        for delivery in (await pump.wait_for(20))[15:]:
            await delivery.ack()
        assert [d.payload for d in pump.got] == [b"m%d" % n for n in range(20)]
        await eventually(lambda: _settled(broker, queue))
    finally:
        await pump.stop()
        await conn.close()


async def test_acks_around_an_unsettled_delivery_leave_it_alone_unacked(broker: Broker) -> None:
    """Acks are coalesced into one basic.ack with ``multiple`` only over a run of
    settled tags: a delivery not settled in the middle (an event in retry) is never
    acked by its neighbours' acks, and comes back when the channel closes."""
    queue = await broker.queue()
    for n in range(12):
        await broker.publish(queue, b"m%d" % n)
    conn = connector()
    await conn.start()
    pump = Pump(aiter(conn.consume(AmqpSource(connector="rabbit", queue=queue, prefetch=20))))
    try:
        got = await pump.wait_for(12)
        for n, delivery in enumerate(got):  # all in one event-loop turn: one flush
            if n == 4:
                continue
            if n == 7:
                await delivery.nack(requeue=False)  # dropped
            else:
                await delivery.ack()
        assert (await broker.counts(queue))[0] == 0
    finally:
        await pump.stop()
        await conn.close()
    # Closing sent the acks recorded, then closed the channel: the one delivery never
    # settled is back, the rest are gone.
    channel = await broker.channel()
    message = await (await channel.get_queue(queue)).get(timeout=5)
    assert message.body == b"m4"
    await message.ack()
    assert await (await channel.get_queue(queue)).get(fail=False) is None
    await channel.close()


def test_password_is_redacted() -> None:
    url = "amqp://user:s3cret@rabbit.example:5672/prod?heartbeat=5"
    assert "s3cret" not in redact_url(url)
    with pytest.raises(ValueError) as info:
        AmqpOptions(url="http://user:s3cret@rabbit.example/")
    assert "s3cret" not in str(info.value)
    assert redact_url(url) == "amqp://user:***@rabbit.example:5672/prod?heartbeat=5"


async def test_first_connection_failure_raises_connection_lost_without_password() -> None:
    from connectors.errors import ConnectionLost

    conn = AmqpConnector(
        "down", AmqpOptions(url="amqp://user:s3cret@127.0.0.1:1/", connect_timeout=2)
    )
    with pytest.raises(ConnectionLost) as info:
        await conn.start()
    assert "s3cret" not in str(info.value)
    await conn.close()
