"""One address on one broker, driven by the raw client: publish, consume, and the
matching pieces of a gateway config (connector, ``from:``, ``to:``).

Every endpoint makes its own resources (JetStream stream, Kafka topic, AMQP queue,
MQTT topic) under a fresh name and deletes what the broker keeps when closed.
``send`` starts a publish and returns an awaitable that completes when the broker
confirmed it (JetStream PubAck, Kafka acks=all, AMQP confirm, MQTT PUBACK), so a
publisher can keep a window of publishes in flight, as a tuned client would.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from routing.bindings import Mode
from routing.event import CloudEvent

__all__ = ["ENDPOINTS", "Endpoint", "Env"]

OnPayload = Callable[[bytes], None]


@dataclass
class Env:
    """Where the brokers are, and the publishing window of the raw clients."""

    nats_url: str = f"nats://127.0.0.1:{os.environ.get('MESHGATE_NATS_PORT', '4222')}"
    amqp_url: str = (
        f"amqp://guest:guest@127.0.0.1:{os.environ.get('MESHGATE_RABBITMQ_PORT', '5672')}/"
    )
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = int(os.environ.get("MESHGATE_MQTT_PORT", "1883"))
    kafka_bootstrap: str | None = None
    window: int = 256


def _done() -> asyncio.Future[None]:
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    future.set_result(None)
    return future


class Endpoint(abc.ABC):
    """One address (subject, topic, queue) on one broker, with its raw client."""

    kind: ClassVar[str]
    description: ClassVar[str]

    def __init__(self, env: Env, token: str) -> None:
        self.env = env
        self.token = token
        self._tasks: list[asyncio.Task[None]] = []

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect the raw client and create the address."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop consuming, delete the address (where the broker keeps it), disconnect."""

    @abc.abstractmethod
    def encode(self, event: CloudEvent, mode: Mode) -> Any:
        """The native message for ``event`` (the project's binding: what producers send)."""

    @abc.abstractmethod
    async def send(self, native: Any) -> Awaitable[Any]:
        """Start publishing ``native``; the awaitable completes once the broker confirmed."""

    async def flush(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """After a run of sends: make sure the bytes left (core NATS)."""

    @abc.abstractmethod
    async def consume(self, on_payload: OnPayload) -> None:
        """Start consuming this address in the background (acking each message)."""

    @abc.abstractmethod
    def connector(self, gateway_token: str) -> dict[str, Any]:
        """The ``connectors:`` entry a gateway uses for this broker."""

    @abc.abstractmethod
    def source(self) -> dict[str, Any]:
        """The route's ``from:`` reading this address (without ``connector``)."""

    @abc.abstractmethod
    def target(self, mode: Mode) -> dict[str, Any]:
        """A route's ``to:`` entry writing to this address (without ``connector``)."""

    @abc.abstractmethod
    def peer(self, run: str) -> dict[str, Any]:
        """This address for a peer bridge (``bench.peers``); ``run`` names the bridge's
        own consumer resources (durable, group, client id)."""

    async def _stop_tasks(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()


# -- NATS ---------------------------------------------------------------------------------


class NatsJetStream(Endpoint):
    """JetStream: publish_async + PubAck; a push consumer with explicit acks."""

    kind = "nats"
    description = "NATS JetStream (PubAck, explicit acks)"
    gateway_batch: ClassVar[int | None] = None  # JetStream pull batch of the gateway source

    async def open(self) -> None:
        import nats
        from nats.js.api import StreamConfig

        self.nc = await nats.connect(self.env.nats_url, name=f"bench-{self.token}")
        self.js = self.nc.jetstream()
        self.stream = f"MGB_{self.token}"
        self.subject = f"mgb.{self.token}.ev"
        await self.js.add_stream(
            StreamConfig(name=self.stream, subjects=[f"mgb.{self.token}.>"], max_age=900.0)
        )
        self._sub: Any = None

    async def close(self) -> None:
        await self._stop_tasks()
        with contextlib.suppress(Exception):
            if self._sub is not None:
                await self._sub.unsubscribe()
        with contextlib.suppress(Exception):
            await self.js.delete_stream(self.stream)
        with contextlib.suppress(Exception):
            await self.nc.close()

    def encode(self, event: CloudEvent, mode: Mode) -> Any:
        from routing.bindings.nats import to_message

        message = to_message(event, mode)
        return message.data, dict(message.headers or {})

    async def send(self, native: Any) -> Awaitable[Any]:
        data, headers = native
        return await self.js.publish_async(self.subject, data, headers=dict(headers))

    async def consume(self, on_payload: OnPayload) -> None:
        from nats.js.api import AckPolicy, ConsumerConfig

        async def on_message(msg: Any) -> None:
            on_payload(msg.data)
            await msg.ack()

        self._sub = await self.js.subscribe(
            self.subject,
            stream=self.stream,
            cb=on_message,
            manual_ack=True,
            config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, max_ack_pending=100_000),
        )

    def connector(self, gateway_token: str) -> dict[str, Any]:
        return {"type": "nats", "servers": [self.env.nats_url], "name": f"gw-{gateway_token}"}

    def source(self) -> dict[str, Any]:
        jetstream: dict[str, Any] = {"stream": self.stream, "durable": f"gw{self.token}"}
        if self.gateway_batch is not None:
            jetstream["batch"] = self.gateway_batch
        return {"subject": self.subject, "jetstream": jetstream}

    def target(self, mode: Mode) -> dict[str, Any]:
        return {"subject": self.subject, "mode": mode.value}

    def peer(self, run: str) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "url": self.env.nats_url,
            "subject": self.subject,
            "stream": getattr(self, "stream", None),
            "durable": f"peer{run}",
        }


class NatsCore(NatsJetStream):
    """Core NATS: at-most-once both ways (no stream, no acks)."""

    kind = "nats-core"
    description = "core NATS (at-most-once)"

    async def open(self) -> None:
        import nats

        self.nc = await nats.connect(self.env.nats_url, name=f"bench-{self.token}")
        self.subject = f"mgbc.{self.token}.ev"
        self._sub = None

    async def close(self) -> None:
        await self._stop_tasks()
        with contextlib.suppress(Exception):
            if self._sub is not None:
                await self._sub.unsubscribe()
        with contextlib.suppress(Exception):
            await self.nc.close()

    async def send(self, native: Any) -> Awaitable[Any]:
        data, headers = native
        await self.nc.publish(self.subject, data, headers=headers or None)
        return _done()

    async def flush(self) -> None:
        await self.nc.flush(timeout=30)

    async def consume(self, on_payload: OnPayload) -> None:
        async def on_message(msg: Any) -> None:
            on_payload(msg.data)

        self._sub = await self.nc.subscribe(
            self.subject, cb=on_message, pending_msgs_limit=1_000_000
        )

    def source(self) -> dict[str, Any]:
        # The defaults (524,288 messages, 64 MiB: the client libraries') hold what a
        # publisher running far ahead sends; 1,024 (the default before) dropped 94%.
        return {"subject": self.subject}

    def target(self, mode: Mode) -> dict[str, Any]:
        return {"subject": self.subject, "mode": mode.value, "jetstream": False}


# -- Kafka --------------------------------------------------------------------------------


class Kafka(Endpoint):
    """aiokafka: acks=all idempotent producer (send() futures); a group consumer."""

    kind = "kafka"
    description = "Kafka, librdkafka mock cluster (acks=all)"
    gateway_linger_ms: ClassVar[int | None] = None

    async def open(self) -> None:
        from aiokafka import AIOKafkaProducer

        if self.env.kafka_bootstrap is None:
            raise RuntimeError("no Kafka cluster started")
        self.topic = f"mgb-{self.token}"
        self.producer = AIOKafkaProducer(
            bootstrap_servers=self.env.kafka_bootstrap, acks="all", enable_idempotence=True
        )
        await self.producer.start()
        await self.producer.partitions_for(self.topic)  # the mock auto-creates the topic
        self.consumer: Any = None

    async def close(self) -> None:
        await self._stop_tasks()
        if self.consumer is not None:
            with contextlib.suppress(Exception):
                await self.consumer.stop()
        with contextlib.suppress(Exception):
            await self.producer.stop()

    def encode(self, event: CloudEvent, mode: Mode) -> Any:
        from routing.bindings.kafka import to_message

        message = to_message(event, mode)
        return message.key, message.value, list(message.headers)

    async def send(self, native: Any) -> Awaitable[Any]:
        key, value, headers = native
        future: Awaitable[Any] = await self.producer.send(
            self.topic, value=value, key=key, headers=headers
        )
        return future

    async def consume(self, on_payload: OnPayload) -> None:
        from aiokafka import AIOKafkaConsumer

        consumer = AIOKafkaConsumer(
            self.topic,
            bootstrap_servers=self.env.kafka_bootstrap,
            group_id=f"mgb-c-{self.token}",
            auto_offset_reset="earliest",
            fetch_max_wait_ms=10,
        )
        await consumer.start()
        self.consumer = consumer

        async def loop() -> None:
            while True:
                batches = await consumer.getmany(timeout_ms=100, max_records=5000)
                for records in batches.values():
                    for record in records:
                        on_payload(record.value or b"")

        self._tasks.append(asyncio.create_task(loop()))

    def connector(self, gateway_token: str) -> dict[str, Any]:
        connector: dict[str, Any] = {"type": "kafka", "bootstrap_servers": self.env.kafka_bootstrap}
        if self.gateway_linger_ms is not None:
            connector["linger_seconds"] = self.gateway_linger_ms / 1000
        return connector

    def source(self) -> dict[str, Any]:
        # Same fetch wait as the raw consumer: the mock cluster holds every fetch that long.
        group = f"mgb-g-{self.token}"
        return {"topics": [self.topic], "group_id": group, "fetch_max_wait_seconds": 0.01}

    def target(self, mode: Mode) -> dict[str, Any]:
        return {"topic": self.topic, "mode": mode.value}

    def peer(self, run: str) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "bootstrap": self.env.kafka_bootstrap,
            "topic": self.topic,
            "group": f"mgb-peer-{run}",
        }


# -- AMQP ---------------------------------------------------------------------------------


class Amqp(Endpoint):
    """aio-pika: persistent messages with publisher confirms; manual acks."""

    kind = "amqp"
    description = "RabbitMQ (confirms, persistent, manual acks)"

    async def open(self) -> None:
        import aio_pika

        self.connection = await aio_pika.connect(self.env.amqp_url)
        self.channel = await self.connection.channel(publisher_confirms=True)
        self.queue_name = f"mgb.{self.token}"
        await self.channel.declare_queue(
            self.queue_name, durable=True, arguments={"x-expires": 900_000}
        )

    async def close(self) -> None:
        await self._stop_tasks()
        with contextlib.suppress(Exception):
            await self.channel.queue_delete(self.queue_name)
        with contextlib.suppress(Exception):
            await self.connection.close()

    def encode(self, event: CloudEvent, mode: Mode) -> Any:
        import aio_pika
        from aio_pika.abc import DeliveryMode

        from routing.bindings.amqp import to_message

        message = to_message(event, mode)
        return aio_pika.Message(
            message.body,
            content_type=message.content_type,
            headers=dict(message.headers),  # type: ignore[arg-type]
            message_id=event.id,
            delivery_mode=DeliveryMode.PERSISTENT,
        )

    async def send(self, native: Any) -> Awaitable[Any]:
        publish = self.channel.default_exchange.publish(native, routing_key=self.queue_name)
        return asyncio.ensure_future(publish)

    async def consume(self, on_payload: OnPayload) -> None:
        channel = await self.connection.channel()
        await channel.set_qos(prefetch_count=1000)
        queue = await channel.get_queue(self.queue_name)

        async def on_message(message: Any) -> None:
            on_payload(message.body)
            await message.ack()

        await queue.consume(on_message)

    def connector(self, gateway_token: str) -> dict[str, Any]:
        return {"type": "amqp", "url": self.env.amqp_url, "connection_name": f"gw-{gateway_token}"}

    def source(self) -> dict[str, Any]:
        return {"queue": self.queue_name}

    def target(self, mode: Mode) -> dict[str, Any]:
        return {"exchange": "", "routing_key": self.queue_name, "mode": mode.value}

    def peer(self, run: str) -> dict[str, Any]:
        return {"kind": self.kind, "url": self.env.amqp_url, "queue": self.queue_name}


# -- MQTT ---------------------------------------------------------------------------------


class Mqtt(Endpoint):
    """aiomqtt (paho), MQTT 5, QoS 1 both ways."""

    kind = "mqtt"
    description = "Mosquitto, MQTT 5 QoS 1"

    async def open(self) -> None:
        import aiomqtt

        self.topic = f"mgb/{self.token}/ev"
        self.publisher = aiomqtt.Client(
            self.env.mqtt_host,
            self.env.mqtt_port,
            identifier=f"mgb-p-{self.token}",
            protocol=aiomqtt.ProtocolVersion.V5,
            max_inflight_messages=100,
        )
        # aiomqtt logs a warning per publish beyond 10 unconfirmed ones: the bench
        # keeps a window of them on purpose (and the logging would slow the raw path).
        self.publisher.pending_calls_threshold = 1 << 30
        await self.publisher.__aenter__()
        self.subscriber: Any = None

    async def close(self) -> None:
        await self._stop_tasks()
        for client in (self.subscriber, self.publisher):
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.__aexit__(None, None, None)

    def encode(self, event: CloudEvent, mode: Mode) -> Any:
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        from routing.bindings.mqtt import to_message

        message = to_message(event, mode)
        properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        if message.content_type is not None:
            properties.ContentType = message.content_type
        if message.user_properties:
            properties.UserProperty = list(message.user_properties)
        return message.payload, properties

    async def send(self, native: Any) -> Awaitable[Any]:
        payload, properties = native
        publish = self.publisher.publish(self.topic, payload, qos=1, properties=properties)
        return asyncio.ensure_future(publish)

    async def consume(self, on_payload: OnPayload) -> None:
        import aiomqtt

        subscriber = aiomqtt.Client(
            self.env.mqtt_host,
            self.env.mqtt_port,
            identifier=f"mgb-c-{self.token}",
            protocol=aiomqtt.ProtocolVersion.V5,
        )
        await subscriber.__aenter__()
        self.subscriber = subscriber
        await subscriber.subscribe(self.topic, qos=1)

        async def loop() -> None:
            async for message in subscriber.messages:
                payload = message.payload
                on_payload(payload if isinstance(payload, bytes) else bytes(str(payload), "utf-8"))

        self._tasks.append(asyncio.create_task(loop()))

    def connector(self, gateway_token: str) -> dict[str, Any]:
        return {
            "type": "mqtt",
            "host": self.env.mqtt_host,
            "port": self.env.mqtt_port,
            "protocol": 5,
            "client_id": f"mgb-gw-{gateway_token}",
            "clean_start": True,
            "session_expiry_seconds": 60,
        }

    def source(self) -> dict[str, Any]:
        return {"topic": self.topic, "qos": 1}

    def target(self, mode: Mode) -> dict[str, Any]:
        return {"topic": self.topic, "qos": 1, "mode": mode.value}

    def peer(self, run: str) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "host": self.env.mqtt_host,
            "port": self.env.mqtt_port,
            "topic": self.topic,
            "client_id": f"mgb-peer-{run}",
        }


ENDPOINTS: dict[str, type[Endpoint]] = {
    cls.kind: cls for cls in (NatsJetStream, NatsCore, Kafka, Amqp, Mqtt)
}
