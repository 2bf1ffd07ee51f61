"""Gateways whose routes form a cycle through real brokers: the loop guard ends it.

Each gateway runs in this process as its own ``Gateway`` with its own ``gateway.id``.
Every address is counted where the broker keeps what it received, so nothing races a
subscription: NATS subjects by the JetStream stream capturing them, Kafka topics by
their end offsets, AMQP routing keys by an observer queue bound beside the source
queue; MQTT topics by an observer subscribed (SUBACK) before any traffic.

"Exactly N, and nothing more, ever": wait (deadline 30 s) until every address has its
expected count and the gateway that closes the loop counted its ``loop_dropped``
event (after that drop no gateway holds the event any more), then listen for a quiet
period of ``QUIET`` seconds and count again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aio_pika
import aiomqtt
import nats
import pytest
import yaml
from aiokafka import AIOKafkaConsumer, TopicPartition

from connectors.mqtt import MqttSource
from connectors.mqtt.config import subscriber_client_id
from connectors.nats import NatsConnector, NatsOptions, NatsTarget
from gateway.config import load_config
from gateway.runtime import Gateway
from routing.bindings import amqp as amqp_binding
from routing.bindings import mqtt as mqtt_binding
from routing.event import CloudEvent
from tests.brokers import MQTT_HOST_PORT, NATS_URL, RABBITMQ_URL, unique_name
from tests.faults.admin import SESSION_EXPIRY, subscribe_session

pytestmark = pytest.mark.integration

HOST, PORT = MQTT_HOST_PORT
MQTT_URL = f"mqtt://{HOST}:{PORT}"
WAIT = 30.0
QUIET = 3.0
"""Seconds of silence after the loop closed; a hop here takes well under 100 ms."""


async def until(check: Callable[[], Any], timeout: float = WAIT) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


class Counts:
    """Counts of what each broker address received, read from the brokers."""

    def __init__(self, run: str) -> None:
        self.run = run
        self.mqtt: dict[str, list[CloudEvent | None]] = {}
        self.tasks: list[asyncio.Task[None]] = []
        self.nc: Any = None
        self.amqp: Any = None
        self.kafka: AIOKafkaConsumer | None = None

    async def nats_stream(self, subject: str) -> str:
        if self.nc is None:
            self.nc = await nats.connect(NATS_URL, connect_timeout=5)
        stream = f"{self.run}-{subject.rsplit('.', 1)[-1]}"
        await self.nc.jetstream().add_stream(name=stream, subjects=[subject])
        return stream

    async def on_nats(self, stream: str) -> int:
        info = await self.nc.jetstream().stream_info(stream)
        return int(info.state.messages)

    async def amqp_queue(self, url: str, exchange: str, key: str, queue: str) -> None:
        if self.amqp is None:
            self.amqp = await aio_pika.connect(url, timeout=10)
        channel = await self.amqp.channel()
        ex = await channel.declare_exchange(exchange, "topic", durable=True)
        for name in (queue, f"{queue}-observer"):
            declared = await channel.declare_queue(name, durable=True)
            await declared.bind(ex, key)
        await channel.close()

    async def on_amqp(self, queue: str) -> int:
        channel = await self.amqp.channel()
        declared = await channel.declare_queue(f"{queue}-observer", passive=True)
        await channel.close()
        return int(declared.declaration_result.message_count or 0)

    async def amqp_observed(self, queue: str) -> CloudEvent | None:
        channel = await self.amqp.channel()
        declared = await channel.declare_queue(f"{queue}-observer", passive=True)
        message = await declared.get(no_ack=True)
        await channel.close()
        return amqp_binding.from_message(
            amqp_binding.AmqpMessage(message.body, message.content_type, message.headers)
        )

    async def on_kafka(self, bootstrap: str, topic: str) -> int:
        if self.kafka is None:
            self.kafka = AIOKafkaConsumer(bootstrap_servers=bootstrap)
            await self.kafka.start()
        partitions = self.kafka.partitions_for_topic(topic)
        if not partitions:
            await self.kafka._client.force_metadata_update()
            partitions = self.kafka.partitions_for_topic(topic) or set()
        ends = await self.kafka.end_offsets([TopicPartition(topic, p) for p in partitions])
        return sum(ends.values())

    async def mqtt_observer(self, topic: str) -> None:
        """Subscribe before any traffic; every arrival decoded and kept."""
        arrivals = self.mqtt.setdefault(topic, [])
        subscribed = asyncio.Event()

        async def observe() -> None:
            async with aiomqtt.Client(
                HOST, PORT, protocol=aiomqtt.ProtocolVersion.V5, timeout=10
            ) as client:
                await client.subscribe(topic, qos=1)
                subscribed.set()
                async for message in client.messages:
                    props = message.properties
                    arrivals.append(
                        mqtt_binding.from_message(
                            mqtt_binding.MqttMessage(
                                bytes(message.payload),  # type: ignore[arg-type]
                                getattr(props, "ContentType", None),
                                tuple(getattr(props, "UserProperty", ())),
                                5,
                            )
                        )
                    )

        self.tasks.append(asyncio.create_task(observe()))
        await asyncio.wait_for(subscribed.wait(), 10)

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.nc is not None:
            with contextlib.suppress(Exception):
                for name in [s.config.name for s in await self.nc.jetstream().streams_info()]:
                    if name.startswith(self.run):
                        await self.nc.jetstream().delete_stream(name)
            await self.nc.close()
        if self.amqp is not None:
            channel = await self.amqp.channel()
            for queue in (f"{self.run}-a", f"{self.run}-a-observer"):
                with contextlib.suppress(Exception):
                    await channel.queue_delete(queue)
            await self.amqp.close()
        if self.kafka is not None:
            await self.kafka.stop()


@contextlib.asynccontextmanager
async def gateways(
    tmp_path: Path, configs: dict[str, dict[str, Any]]
) -> AsyncIterator[dict[str, Gateway]]:
    """One in-process ``Gateway`` per config (its key is the gateway id)."""
    running: dict[str, Gateway] = {}
    try:
        for gid, body in configs.items():
            body = {
                "gateway": {
                    "id": gid,
                    "drain_timeout_seconds": 5,
                    "state_dir": str(tmp_path / gid),
                },
                **body,
            }
            path = tmp_path / f"{gid}.yaml"
            path.write_text(yaml.safe_dump(body, sort_keys=False))
            gateway = Gateway(load_config(path))
            await gateway.start()
            running[gid] = gateway
        yield running
    finally:
        await asyncio.gather(*(g.stop() for g in running.values()), return_exceptions=True)


def mqtt_connector(gid: str) -> dict[str, Any]:
    return {"type": "mqtt", "url": MQTT_URL, "session_expiry": SESSION_EXPIRY}


async def prime_mqtt(gid: str, connector: str, topic: str) -> None:
    """The gateway's persistent MQTT source session, subscribed before any traffic."""
    source = MqttSource(connector=connector, topic=topic, qos=1)
    await subscribe_session(
        MQTT_URL, subscriber_client_id(f"{gid}-{connector}", source), source.subscription
    )


async def publish_origin(subject: str, event: CloudEvent) -> None:
    nc = NatsConnector("origin", NatsOptions(servers=(NATS_URL,)))
    await nc.start()
    try:
        # A core publish: no Nats-Msg-Id, so JetStream's deduplication never hides a copy.
        await nc.publish(NatsTarget(connector="origin", subject=subject, jetstream=False), event)
    finally:
        await nc.close()


def origin(run: str) -> CloudEvent:
    return CloudEvent(id=f"{run}-1", source="urn:test:mesh", type="com.example.mesh.v1", data=b"{}")


def drops(gateways: dict[str, Gateway]) -> dict[str, int]:
    return {
        f"{gid}/{route}": stats.loop_dropped
        for gid, gateway in gateways.items()
        for route, stats in gateway.stats.items()
        if stats.loop_dropped
    }


async def test_two_gateways_route_back_and_forth(tmp_path: Path) -> None:
    """G1: NATS x -> MQTT y; G2: MQTT y -> NATS x. One event on x: y once, x twice."""
    run = unique_name("mesh")
    x, y = f"{run}.x", f"{run}/y"
    g1, g2 = f"{run}-g1", f"{run}-g2"
    counts = Counts(run)
    try:
        stream = await counts.nats_stream(x)
        await counts.mqtt_observer(y)
        await prime_mqtt(g2, "plant", y)
        nats_conn = {"type": "nats", "servers": [NATS_URL]}
        configs = {
            g1: {
                "connectors": {"edge": nats_conn, "plant": mqtt_connector(g1)},
                "routes": [
                    {
                        "name": "x2y",
                        "from": {
                            "connector": "edge",
                            "subject": x,
                            "jetstream": {"stream": stream, "durable": "g1"},
                        },
                        "to": [{"connector": "plant", "topic": y, "qos": 1}],
                    }
                ],
            },
            g2: {
                "connectors": {"edge": nats_conn, "plant": mqtt_connector(g2)},
                "routes": [
                    {
                        "name": "y2x",
                        "from": {"connector": "plant", "topic": y, "qos": 1},
                        # Core publish (no Nats-Msg-Id): the stream counts every copy
                        # instead of deduplicating the return within its window.
                        "to": [
                            {
                                "connector": "edge",
                                "subject": x,
                                "mode": "structured",
                                "jetstream": False,
                            }
                        ],
                    }
                ],
            },
        }
        async with gateways(tmp_path, configs) as running:
            await publish_origin(x, origin(run))

            async def settled() -> bool:
                return await counts.on_nats(stream) >= 2 and drops(running) == {f"{g1}/x2y": 1}

            assert await until(settled), (
                await counts.on_nats(stream),
                len(counts.mqtt[y]),
                {g: dict(gw.stats) for g, gw in running.items()},
            )
            await asyncio.sleep(QUIET)  # the bounded quiet period: nothing more, ever
            on_x, on_y = await counts.on_nats(stream), len(counts.mqtt[y])
            print(f"\nG1/G2 cycle: sent 1 on x; on y {on_y}, on x {on_x}; dropped {drops(running)}")
            assert (on_x, on_y) == (2, 1)
            assert drops(running) == {f"{g1}/x2y": 1}
            (on_y_event,) = counts.mqtt[y]
            assert on_y_event is not None
            assert on_y_event.extensions["meshpath"] == g1
            assert str(on_y_event.extensions["meshhops"]) == "1"
            assert running[g2].stats["y2x"].delivered == 1
    finally:
        await counts.close()


async def test_three_gateways_four_protocols(tmp_path: Path, kafka_bootstrap: str) -> None:
    """x (NATS) -G1-> y (MQTT) -G2-> k (Kafka) -G3-> a (AMQP) -G1-> x: G1 sees itself
    in the path at a and drops the event; every address got it exactly once."""
    run = unique_name("mesh")
    x, y, k, a = f"{run}.x", f"{run}/y", f"{run}.k", "a"
    exchange, queue = f"{run}-ex", f"{run}-a"
    g1, g2, g3 = f"{run}-g1", f"{run}-g2", f"{run}-g3"
    counts = Counts(run)
    try:
        stream = await counts.nats_stream(x)
        await counts.mqtt_observer(y)
        await counts.amqp_queue(RABBITMQ_URL, exchange, a, queue)
        await prime_mqtt(g2, "plant", y)
        assert await counts.on_kafka(kafka_bootstrap, k) == 0  # creates the topic
        nats_conn = {"type": "nats", "servers": [NATS_URL]}
        kafka_conn = {"type": "kafka", "bootstrap_servers": kafka_bootstrap}
        amqp_conn = {"type": "amqp", "url": RABBITMQ_URL}
        configs = {
            g1: {
                "connectors": {"edge": nats_conn, "plant": mqtt_connector(g1), "ops": amqp_conn},
                "routes": [
                    {
                        "name": "x2y",
                        "from": {
                            "connector": "edge",
                            "subject": x,
                            "jetstream": {"stream": stream, "durable": "g1"},
                        },
                        "to": [{"connector": "plant", "topic": y, "qos": 1}],
                    },
                    {
                        "name": "a2x",
                        "from": {"connector": "ops", "queue": queue},
                        "to": [{"connector": "edge", "subject": x}],
                    },
                ],
            },
            g2: {
                "connectors": {"plant": mqtt_connector(g2), "core": kafka_conn},
                "routes": [
                    {
                        "name": "y2k",
                        "from": {"connector": "plant", "topic": y, "qos": 1},
                        "to": [{"connector": "core", "topic": k, "mode": "structured"}],
                    }
                ],
            },
            g3: {
                "connectors": {"core": kafka_conn, "ops": amqp_conn},
                "routes": [
                    {
                        "name": "k2a",
                        "from": {
                            "connector": "core",
                            "topics": [k],
                            "group_id": f"{run}-g3",
                            "session_timeout_ms": 6000,
                        },
                        "to": [{"connector": "ops", "exchange": exchange, "routing_key": a}],
                    }
                ],
            },
        }
        async with gateways(tmp_path, configs) as running:
            await publish_origin(x, origin(run))

            async def where() -> dict[str, int]:
                return {
                    "x": await counts.on_nats(stream),
                    "y": len(counts.mqtt[y]),
                    "k": await counts.on_kafka(kafka_bootstrap, k),
                    "a": await counts.on_amqp(queue),
                }

            async def settled() -> bool:
                return drops(running) == {f"{g1}/a2x": 1}

            assert await until(settled, 60), (await where(), drops(running))
            await asyncio.sleep(QUIET)
            seen = await where()
            print(
                f"\nthree gateways, four protocols: sent 1 on x; {seen}; dropped {drops(running)}"
            )
            assert seen == {"x": 1, "y": 1, "k": 1, "a": 1}
            assert drops(running) == {f"{g1}/a2x": 1}
            last = await counts.amqp_observed(queue)
            assert last is not None
            assert last.extensions["meshpath"] == f"{g1},{g2},{g3}"
            assert str(last.extensions["meshhops"]) == "3"
    finally:
        await counts.close()
