"""A minimal hand-written bridge, per message: receive, publish, wait for the
confirmation, ack (``python -m bench.peers.handwritten spec.yaml``; see ``bench.peers``).

What a user writes with the same clients meshgate uses, at-least-once: nats-py
(``pull_subscribe`` + ``fetch``, ``js.publish`` waiting for the PubAck, ``msg.ack``),
aiokafka (``getmany``, ``send_and_wait`` with acks=all and idempotence, ``commit``
after the batch), aio-pika (prefetch, publisher confirms, ``message.ack``), aiomqtt
(QoS 1, PUBACK sent by hand once forwarded). The messages of one fetch (or within the
prefetch window) are forwarded concurrently; nothing else is tuned.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import yaml

from bench.peers.carry import from_headers, to_headers

Send = Callable[[bytes, str | None, dict[str, str]], Awaitable[None]]
WINDOW = 256
"""Messages forwarded at once (fetch batch, prefetch, in-flight bound)."""


async def _target(spec: dict[str, Any], closers: list[Callable[[], Awaitable[Any]]]) -> Send:
    kind = spec["kind"]
    if kind in ("nats", "nats-core"):
        import nats

        nc = await nats.connect(spec["url"])
        closers.append(nc.close)
        js = nc.jetstream()
        subject = spec["subject"]

        async def send_nats(payload: bytes, ctype: str | None, attrs: dict[str, str]) -> None:
            headers = to_headers(kind, ctype, attrs) or None
            if kind == "nats":
                await js.publish(subject, payload, headers=headers)
            else:
                await nc.publish(subject, payload, headers=headers)

        return send_nats
    if kind == "kafka":
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(
            bootstrap_servers=spec["bootstrap"], acks="all", enable_idempotence=True
        )
        await producer.start()
        closers.append(producer.stop)
        topic = spec["topic"]

        async def send_kafka(payload: bytes, ctype: str | None, attrs: dict[str, str]) -> None:
            headers = [(k, v.encode()) for k, v in to_headers(kind, ctype, attrs).items()]
            await producer.send_and_wait(topic, payload, headers=headers)

        return send_kafka
    if kind == "amqp":
        import aio_pika
        from aio_pika.abc import DeliveryMode

        connection = await aio_pika.connect(spec["url"])
        closers.append(connection.close)
        channel = await connection.channel(publisher_confirms=True)
        queue = spec["queue"]

        async def send_amqp(payload: bytes, ctype: str | None, attrs: dict[str, str]) -> None:
            message = aio_pika.Message(
                payload,
                content_type=ctype,
                headers=dict(to_headers(kind, ctype, attrs)),
                delivery_mode=DeliveryMode.PERSISTENT,
            )
            await channel.default_exchange.publish(message, routing_key=queue)

        return send_amqp
    if kind == "mqtt":
        import aiomqtt
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        client = aiomqtt.Client(
            spec["host"],
            spec["port"],
            identifier=f"{spec['client_id']}-out",
            protocol=aiomqtt.ProtocolVersion.V5,
            max_inflight_messages=100,
        )
        client.pending_calls_threshold = 1 << 30
        await client.__aenter__()
        closers.append(lambda: client.__aexit__(None, None, None))
        topic = spec["topic"]

        async def send_mqtt(payload: bytes, ctype: str | None, attrs: dict[str, str]) -> None:
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            if ctype is not None:
                properties.ContentType = ctype
            if attrs:
                properties.UserProperty = list(to_headers(kind, ctype, attrs).items())
            await client.publish(topic, payload, qos=1, properties=properties)

        return send_mqtt
    raise ValueError(f"unknown target kind {kind!r}")


def _fan_out(sends: list[Send]) -> Send:
    if len(sends) == 1:
        return sends[0]

    async def send_all(payload: bytes, ctype: str | None, attrs: dict[str, str]) -> None:
        await asyncio.gather(*(send(payload, ctype, attrs) for send in sends))

    return send_all


async def _consume_nats(spec: dict[str, Any], send: Send, stop: asyncio.Event) -> None:
    import nats
    import nats.errors

    nc = await nats.connect(spec["url"])
    try:
        kind = spec["kind"]
        if kind == "nats-core":  # at-most-once: nothing to ack

            async def on_core(msg: Any) -> None:
                ctype, attrs = from_headers(kind, (msg.headers or {}).items(), None)
                await send(msg.data, ctype, attrs)

            await nc.subscribe(spec["subject"], cb=on_core)
            await stop.wait()
            return
        js = nc.jetstream()
        psub = await js.pull_subscribe(
            spec["subject"], durable=spec["durable"], stream=spec["stream"]
        )

        async def forward(msg: Any) -> None:
            ctype, attrs = from_headers(kind, (msg.headers or {}).items(), None)
            await send(msg.data, ctype, attrs)
            await msg.ack()

        while not stop.is_set():
            try:
                msgs = await psub.fetch(WINDOW, timeout=0.5)
            except TimeoutError:  # nats-py raises both its own and the builtin one
                continue
            await asyncio.gather(*(forward(msg) for msg in msgs))
    finally:
        await nc.close()


async def _consume_kafka(spec: dict[str, Any], send: Send, stop: asyncio.Event) -> None:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        spec["topic"],
        bootstrap_servers=spec["bootstrap"],
        group_id=spec["group"],
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=10,
    )
    await consumer.start()

    async def forward(record: Any) -> None:
        ctype, attrs = from_headers("kafka", record.headers or (), None)
        await send(record.value or b"", ctype, attrs)

    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=100, max_records=WINDOW)
            records = [record for batch in batches.values() for record in batch]
            if records:
                await asyncio.gather(*(forward(record) for record in records))
                await consumer.commit()
    finally:
        await consumer.stop()


async def _consume_amqp(spec: dict[str, Any], send: Send, stop: asyncio.Event) -> None:
    import aio_pika

    connection = await aio_pika.connect(spec["url"])
    try:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=WINDOW)
        queue = await channel.get_queue(spec["queue"])

        async def on_message(message: Any) -> None:
            ctype, attrs = from_headers(
                "amqp", (message.headers or {}).items(), message.content_type
            )
            await send(message.body, ctype, attrs)
            await message.ack()

        await queue.consume(on_message)
        await stop.wait()
    finally:
        await connection.close()


async def _consume_mqtt(spec: dict[str, Any], send: Send, stop: asyncio.Event) -> None:
    import aiomqtt

    client = aiomqtt.Client(
        spec["host"],
        spec["port"],
        identifier=f"{spec['client_id']}-in",
        protocol=aiomqtt.ProtocolVersion.V5,
    )
    client._client.manual_ack_set(True)  # PUBACK only once forwarded: at-least-once
    slots = asyncio.Semaphore(100)  # the broker's receive maximum for this client
    tasks: set[asyncio.Task[None]] = set()

    async def forward(message: Any) -> None:
        try:
            props = message.properties
            items = getattr(props, "UserProperty", None) or []
            ctype = getattr(props, "ContentType", None)
            ctype, attrs = from_headers("mqtt", items, ctype)
            await send(bytes(message.payload), ctype, attrs)
            client._client.ack(message.mid, message.qos)
        finally:
            slots.release()

    async with client:
        await client.subscribe(spec["topic"], qos=1)
        reader = asyncio.ensure_future(_read_mqtt(client, forward, slots, tasks))
        await stop.wait()
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader


async def _read_mqtt(
    client: Any,
    forward: Callable[[Any], Awaitable[None]],
    slots: asyncio.Semaphore,
    tasks: set[asyncio.Task[None]],
) -> None:
    async for message in client.messages:
        await slots.acquire()
        task = asyncio.ensure_future(forward(message))
        tasks.add(task)
        task.add_done_callback(tasks.discard)


CONSUMERS = {
    "nats": _consume_nats,
    "nats-core": _consume_nats,
    "kafka": _consume_kafka,
    "amqp": _consume_amqp,
    "mqtt": _consume_mqtt,
}


async def run(spec: dict[str, Any]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    closers: list[Callable[[], Awaitable[Any]]] = []
    try:
        send = _fan_out([await _target(target, closers) for target in spec["targets"]])
        await CONSUMERS[spec["source"]["kind"]](spec["source"], send, stop)
    finally:
        for close in reversed(closers):
            with contextlib.suppress(Exception):
                await close()


def main(argv: list[str]) -> int:
    spec = yaml.safe_load(Path(argv[1]).read_text())
    asyncio.run(run(spec))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
