"""Raw broker administration for the fault tests, with each broker's own client library.

What a scenario needs before traffic (AMQP queues, JetStream streams, Kafka topics,
persistent MQTT sessions with their subscription) and what it reads while a fault is
in progress (JetStream consumer backlog, AMQP queue depth and consumer count). Kept
apart from the connectors on purpose: the fault tests judge the gateway by what the
brokers themselves report.
"""

from __future__ import annotations

import aio_pika
import aiomqtt
import nats
from aiokafka import AIOKafkaProducer
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

__all__ = [
    "SESSION_EXPIRY",
    "create_kafka_topic",
    "create_stream",
    "declare_queue",
    "delete_queue",
    "delete_stream",
    "jetstream_pending",
    "queue_depth",
    "subscribe_session",
]

SESSION_EXPIRY = 600  # seconds a primed MQTT session outlives its connection


async def declare_queue(url: str, queue: str) -> None:
    connection = await aio_pika.connect(url, timeout=10)
    async with connection:
        channel = await connection.channel()
        await channel.declare_queue(queue, durable=True)


async def delete_queue(url: str, queue: str) -> None:
    connection = await aio_pika.connect(url, timeout=5)
    async with connection:
        channel = await connection.channel()
        await channel.queue_delete(queue)


async def queue_depth(url: str, queue: str) -> tuple[int, int]:
    """(messages ready, consumers) of an AMQP queue."""
    connection = await aio_pika.connect(url, timeout=5)
    async with connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        result = declared.declaration_result
        return result.message_count or 0, result.consumer_count or 0


async def create_stream(url: str, stream: str, subject: str) -> None:
    nc = await nats.connect(url, connect_timeout=5)
    try:
        await nc.jetstream().add_stream(name=stream, subjects=[subject])
    finally:
        await nc.close()


async def delete_stream(url: str, stream: str) -> None:
    nc = await nats.connect(url, connect_timeout=5)
    try:
        await nc.jetstream().delete_stream(stream)
    finally:
        await nc.close()


async def jetstream_pending(url: str, stream: str, durable: str) -> tuple[int, int]:
    """(num_pending, num_ack_pending) of a JetStream durable consumer."""
    nc = await nats.connect(url, connect_timeout=5)
    try:
        info = await nc.jetstream().consumer_info(stream, durable)
    finally:
        await nc.close()
    return info.num_pending, info.num_ack_pending


async def create_kafka_topic(bootstrap: str, topic: str) -> None:
    """The mock creates a topic (4 partitions) on its first metadata request."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        await producer.partitions_for(topic)
    finally:
        await producer.stop()


async def subscribe_session(url: str, client_id: str, subscription: str) -> None:
    """Leave a persistent MQTT 5 session subscribed (QoS 1) to ``subscription``, so that
    the broker queues what is published before its owner connects."""
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = SESSION_EXPIRY
    host, port = url.removeprefix("mqtt://").split(":")
    async with aiomqtt.Client(
        host,
        int(port),
        identifier=client_id,
        protocol=aiomqtt.ProtocolVersion.V5,
        properties=props,
        clean_start=True,
        timeout=10,
    ) as client:
        await client.subscribe(subscription, qos=1)
