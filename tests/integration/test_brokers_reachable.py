"""Each broker fixture works: one confirmed publish and one consume per broker."""

from __future__ import annotations

import asyncio

import aio_pika
import aiomqtt
import nats
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from nats.js.api import StreamConfig
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests.brokers import unique_name

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


async def test_kafka_mock_produce_consume_commit(kafka_bootstrap: str) -> None:
    topic, group = unique_name("reach"), unique_name("group")
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        sent = await producer.send_and_wait(topic, b"hello", key=b"k", headers=[("h", b"v")])
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        record = await asyncio.wait_for(consumer.getone(), 30)
        assert (record.key, record.value, list(record.headers)) == (b"k", b"hello", [("h", b"v")])
        assert (record.partition, record.offset) == (sent.partition, sent.offset)
        await consumer.commit()
        tp = TopicPartition(topic, record.partition)
        assert await consumer.committed(tp) == record.offset + 1
    finally:
        await consumer.stop()


async def test_rabbitmq_confirmed_publish_and_get(rabbitmq_url: str) -> None:
    connection = await aio_pika.connect(rabbitmq_url, timeout=10)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        queue = await channel.declare_queue(unique_name("reach"), exclusive=True)
        confirm = await channel.default_exchange.publish(
            aio_pika.Message(b"hello", headers={"ce-id": "1"}, content_type="text/plain"),
            routing_key=queue.name,
        )
        assert confirm is not None  # Basic.Ack from the broker
        message = None
        for _ in range(50):
            message = await queue.get(no_ack=False, fail=False)
            if message is not None:
                break
            await asyncio.sleep(0.1)
        assert message is not None
        assert (message.body, message.headers, message.content_type) == (
            b"hello",
            {"ce-id": "1"},
            "text/plain",
        )
        await message.ack()
        await queue.delete(if_unused=False, if_empty=False)


async def test_mqtt5_qos1_roundtrip(mqtt_host_port: tuple[str, int]) -> None:
    host, port = mqtt_host_port
    topic = f"meshgate-test/{unique_name('reach')}"
    props = Properties(PacketTypes.PUBLISH)
    props.UserProperty = [("ce-id", "1")]
    async with aiomqtt.Client(
        host,
        port,
        identifier=unique_name("client"),
        protocol=aiomqtt.ProtocolVersion.V5,
        timeout=10,
    ) as client:
        await client.subscribe(topic, qos=1)
        await client.publish(topic, b"hello", qos=1, properties=props)  # waits for PUBACK
        async with asyncio.timeout(10):
            message = await anext(aiter(client.messages))
    assert (str(message.topic), message.payload, message.qos) == (topic, b"hello", 1)
    assert message.properties is not None
    assert ("ce-id", "1") in message.properties.UserProperty


async def test_nats_jetstream_publish_ack(nats_url: str) -> None:
    stream, subject = unique_name("REACH"), f"meshgate-test.{unique_name('reach')}"
    nc = await nats.connect(nats_url, connect_timeout=5, max_reconnect_attempts=0)
    try:
        js = nc.jetstream(timeout=10)
        await js.add_stream(StreamConfig(name=stream, subjects=[subject]))
        try:
            ack = await js.publish(subject, b"hello", headers={"ce-id": "1"})
            assert (ack.stream, ack.seq) == (stream, 1)
            sub = await js.pull_subscribe(subject, durable=unique_name("dur"), stream=stream)
            [msg] = await sub.fetch(1, timeout=10)
            assert (msg.data, msg.headers) == (b"hello", {"ce-id": "1"})
            await msg.ack()
        finally:
            await js.delete_stream(stream)
    finally:
        await nc.close()
