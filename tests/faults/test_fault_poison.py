"""Poison messages mixed into good traffic: each is dead-lettered with its error.

Two routes with a dead-letter target on the source's own broker:

    RabbitMQ queue (system) -> NATS JetStream (system),   dead letters -> RabbitMQ queue
    Kafka (session mock)    -> Mosquitto (private),        dead letters -> Kafka topic

While good events stream, poison is published raw into the sources: CloudEvents that
break the spec (bad ``time``, missing ``id``, structured JSON without ``source``),
payloads that are not CloudEvents on a route without ingress rules, undecodable Avro
(``application/cloudevents+avro``: random bytes, and a nesting bomb that used to crash
the process), a native content type with a control character, and events too large
for the NATS target (1.5 MiB > max_payload). Each poison message carries an
``x-poison`` header, so its dead letter is found by its ``dlheaders``. Every one must
be dead-lettered with the expected ``dlreason``; every good event must arrive, and
none later than the retry budget allows (plus slack for a loaded machine).
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aio_pika
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from connectors.amqp import AmqpSource
from connectors.kafka import KafkaSource
from routing.event import CloudEvent
from tests.brokers import NATS_URL, RABBITMQ_URL
from tests.faults import admin
from tests.faults.brokers import PrivateMosquitto
from tests.faults.conftest import FaultReport
from tests.faults.gateway import GatewayProcess
from tests.faults.harness import AMQP, KAFKA, MQTT, NATS, Pair, Scenario, until

pytestmark = [pytest.mark.integration, pytest.mark.faults]

GOOD = 1500  # per route
WARM_UP = 20
EACH = 5  # poison messages of each kind
RETRY = {"max_attempts": 3, "initial_backoff_seconds": 0.1, "max_backoff_seconds": 0.5}
BUDGET_S = 0.1 + 0.2  # the backoff ceilings before retries 2 and 3
SLACK_S = 5.0  # queueing behind 256 in flight on a shared 2-core machine


def zz(n: int) -> bytes:
    """An Avro long (zig-zag varint)."""
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | 0x80 if n else byte)
        if not n:
            return bytes(out)


def avro_bomb(depth: int = 10_000) -> bytes:
    """No attributes, then data nested ``depth`` times (array > record > map > array...)."""
    nested = (zz(1) + zz(1) + zz(0) + zz(3)) * depth
    return zz(0) + zz(4) + nested + zz(0) + (zz(0) + zz(0)) * depth


def ce_headers(prefix: str, n: int, **changes: str) -> dict[str, str]:
    headers = {
        "specversion": "1.0",
        "id": f"poison-{n}",
        "source": "urn:poison",
        "type": "com.example.poison",
        **changes,
    }
    return {f"{prefix}{name}": value for name, value in headers.items() if value}


# kind -> (AMQP properties/headers, body) and the dead-letter reason expected
AMQP_POISON: dict[str, tuple[Callable[[int], dict[str, Any]], str]] = {
    "bad-time": (
        lambda n: {"headers": ce_headers("ce-", n, time="2020-01-01T18:31Z"), "body": b"bad time"},
        "InvalidEvent",
    ),
    "avro-garbage": (
        lambda n: {"content_type": "application/cloudevents+avro", "body": os.urandom(64)},
        "InvalidEvent",
    ),
    "avro-bomb": (
        lambda n: {"content_type": "application/cloudevents+avro", "body": avro_bomb()},
        "InvalidEvent",
    ),
    "not-a-cloudevent": (lambda n: {"body": b"legacy payload"}, "NotACloudEvent"),
    "too-large-for-nats": (
        lambda n: {"headers": ce_headers("ce-", n, id=f"big-{n}"), "body": b"x" * (1536 * 1024)},
        "PublishRejected",
    ),
}
KAFKA_POISON: dict[str, tuple[Callable[[int], dict[str, Any]], str]] = {
    "missing-id": (
        lambda n: {"headers": ce_headers("ce_", n, id=""), "value": b"no id"},
        "InvalidEvent",
    ),
    "avro-garbage": (
        lambda n: {
            "headers": {"content-type": "application/cloudevents+avro"},
            "value": os.urandom(64),
        },
        "InvalidEvent",
    ),
    "json-no-source": (
        lambda n: {
            "headers": {"content-type": "application/cloudevents+json"},
            "value": b'{"specversion":"1.0","id":"x","type":"t"}',
        },
        "InvalidEvent",
    ),
    "control-char-content-type": (
        lambda n: {"headers": {"content-type": "text/plain\x07"}, "value": b"legacy"},
        "NotACloudEvent",
    ),
}


async def publish_amqp_poison(url: str, queue: str) -> list[str]:
    markers = []
    connection = await aio_pika.connect(url, timeout=10)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        for n in range(EACH):
            for kind, (make, _reason) in AMQP_POISON.items():
                spec = make(n)
                marker = f"{kind}-{n}"
                headers = {**spec.get("headers", {}), "x-poison": marker}
                message = aio_pika.Message(
                    spec["body"], headers=headers, content_type=spec.get("content_type")
                )
                await channel.default_exchange.publish(message, routing_key=queue)
                markers.append(marker)
                await asyncio.sleep(0.05)
    return markers


async def publish_kafka_poison(bootstrap: str, topic: str) -> list[str]:
    markers = []
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for n in range(EACH):
            for kind, (make, _reason) in KAFKA_POISON.items():
                spec = make(n)
                marker = f"{kind}-{n}"
                headers = {**spec["headers"], "x-poison": marker}
                await producer.send_and_wait(
                    topic, spec["value"], headers=[(k, v.encode()) for k, v in headers.items()]
                )
                markers.append(marker)
                await asyncio.sleep(0.05)
    finally:
        await producer.stop()
    return markers


@pytest.mark.timeout(180)
async def test_poison_is_dead_lettered_and_good_traffic_flows(
    kafka_bootstrap: str,
    private_mosquitto: PrivateMosquitto,
    gateways: Callable[[Path, str], GatewayProcess],
    tmp_path: Path,
    fault_report: FaultReport,
) -> None:
    from_amqp = Pair(AMQP, RABBITMQ_URL, NATS, NATS_URL, label="poison-amqp")
    from_kafka = Pair(KAFKA, kafka_bootstrap, MQTT, private_mosquitto.url, label="poison-kafka")
    pairs = [from_amqp, from_kafka]
    scenario = Scenario(pairs, route={"retry": RETRY})
    amqp_dlq = f"{scenario.run}-poison-amqp-dlq"
    kafka_dlq = f"{scenario.run}.poison-kafka.dlq"
    from_amqp.route = {
        "dead_letter": {
            "connector": scenario.connector_name("in", AMQP, RABBITMQ_URL),
            "routing_key": amqp_dlq,
        }
    }
    from_kafka.route = {
        "dead_letter": {
            "connector": scenario.connector_name("in", KAFKA, kafka_bootstrap),
            "topic": kafka_dlq,
        }
    }
    async with scenario:
        await admin.declare_queue(RABBITMQ_URL, amqp_dlq)
        letters: dict[str, list[CloudEvent]] = {"amqp": [], "kafka": []}
        collectors = [
            asyncio.create_task(
                collect(
                    scenario,
                    AMQP,
                    RABBITMQ_URL,
                    AmqpSource(connector="x", queue=amqp_dlq),
                    letters["amqp"],
                )
            ),
            asyncio.create_task(
                collect(
                    scenario,
                    KAFKA,
                    kafka_bootstrap,
                    KafkaSource(connector="x", topics=[kafka_dlq], group_id=f"{scenario.run}-dlq"),
                    letters["kafka"],
                )
            ),
        ]
        try:
            gateway = gateways(scenario.write(tmp_path), "gw")
            await gateway.wait_started()
            # Warm up first (the Kafka group join takes seconds): the latencies measured
            # below are then those of a flowing route with poison in it.
            await asyncio.gather(*(scenario.feed(pair, WARM_UP) for pair in pairs))
            assert await scenario.until_delivered(60), {p.name: p.tally() for p in pairs}
            warm = {pair.name: set(pair.sent) for pair in pairs}
            amqp_markers, kafka_markers, *_ = await asyncio.gather(
                publish_amqp_poison(RABBITMQ_URL, from_amqp.address("in")),
                publish_kafka_poison(kafka_bootstrap, from_kafka.address("in")),
                scenario.feed(from_amqp, GOOD),
                scenario.feed(from_kafka, GOOD),
            )
            delivered = await scenario.until_delivered(90)
            expected = len(amqp_markers) + len(kafka_markers)
            lettered = await until(
                lambda: len(letters["amqp"]) + len(letters["kafka"]) >= expected, 60
            )
        finally:
            for task in collectors:
                task.cancel()
            await asyncio.gather(*collectors, return_exceptions=True)
            await admin.delete_queue(RABBITMQ_URL, amqp_dlq)

        reasons = {"amqp": by_marker(letters["amqp"]), "kafka": by_marker(letters["kafka"])}
        for pair, side, kinds in (
            (from_amqp, "amqp", AMQP_POISON),
            (from_kafka, "kafka", KAFKA_POISON),
        ):
            lat = sorted(latencies(pair, warm[pair.name])) or [-1.0]
            counts = Counter(reason for reason, _error in reasons[side].values())
            fault_report.add(
                "poison mixed into good traffic",
                pair,
                f"{len(reasons[side])}/{EACH * len(kinds)} poison dead-lettered {dict(counts)}; "
                f"good latency p50 {lat[len(lat) // 2]:.2f}s max {lat[-1]:.2f}s",
            )
        assert gateway.running(), f"the gateway died:\n{gateway.log_text()[-3000:]}"
        assert delivered, {p.name: p.tally() for p in pairs}
        assert lettered, {side: sorted(r) for side, r in reasons.items()}
        for side, kinds in (("amqp", AMQP_POISON), ("kafka", KAFKA_POISON)):
            for marker, (reason, error) in reasons[side].items():
                want = kinds[marker.rsplit("-", 1)[0]][1]
                assert reason == want, (side, marker, reason, error)
                assert error, (side, marker)
        assert set(reasons["amqp"]) == set(amqp_markers)
        assert set(reasons["kafka"]) == set(kafka_markers)
        for pair in pairs:
            assert pair.tally()["lost"] == 0, (pair.name, pair.tally())
            worst = max(latencies(pair, warm[pair.name]))
            assert worst <= BUDGET_S + SLACK_S, (pair.name, worst)
        assert "processing task failed" not in gateway.log_text()
        assert gateway.terminate(60) == 0


async def collect(
    scenario: Scenario, proto: str, url: str, source: Any, into: list[CloudEvent]
) -> None:
    connector = await scenario.client(proto, url)
    async for delivery in connector.consume(source):
        letter = connector.decode(delivery)
        if letter is not None:
            into.append(letter)
        await delivery.ack()


def latencies(pair: Pair, skip: set[str]) -> list[float]:
    """Publish-to-first-arrival seconds of the good events (the warm-up left out)."""
    return [pair.arrived_at[i] - pair.sent_at[i] for i in pair.arrived_at if i not in skip]


def by_marker(letters: list[CloudEvent]) -> dict[str, tuple[str, str]]:
    """x-poison marker -> (dlreason, dlerror) of each dead letter."""
    found = {}
    for letter in letters:
        headers = orjson.loads(str(letter.extensions["dlheaders"]))
        marker = headers.get("x-poison")
        if marker is not None:
            found[marker] = (
                str(letter.extensions["dlreason"]),
                str(letter.extensions.get("dlerror", "")),
            )
    return found
