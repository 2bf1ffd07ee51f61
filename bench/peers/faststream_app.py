"""An idiomatic FastStream bridge app (``python -m bench.peers.faststream_app spec.yaml``).

One FastStream broker per protocol involved; a subscriber on the source broker with
``AckPolicy.ACK`` (the message is acked once the handler returned) whose handler
publishes to every target broker and waits for each confirmation (JetStream PubAck
through ``stream=``, Kafka acks=all, RabbitMQ publisher confirms with ``persist``,
MQTT QoS 1). JetStream is read by a pull subscription (``PullSub``, batches of 64 like
meshgate's default). Everything else is FastStream's default (one message at a time
per subscriber), except that the brokers log nothing per message (``logger=None``:
FastStream logs every message at INFO by default, which meshgate does not). Needs
``pip install 'meshgate[bench]'`` (FastStream with its nats, kafka, rabbit and mqtt
extras). FastStream's MQTT publish takes no content type, so the bridge carries
``datacontenttype`` as a user property.
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
from faststream import AckPolicy
from faststream.kafka import KafkaBroker, KafkaMessage
from faststream.mqtt import MQTTBroker, MQTTMessage, QoS
from faststream.nats import JStream, NatsBroker, NatsMessage, PullSub
from faststream.rabbit import RabbitBroker, RabbitMessage, RabbitQueue

from bench.peers.carry import from_headers, to_headers

Send = Callable[[bytes, str | None, dict[str, str]], Awaitable[None]]


def _broker(spec: dict[str, Any], role: str) -> Any:
    kind = spec["kind"]
    if kind in ("nats", "nats-core"):
        return NatsBroker(spec["url"], logger=None)
    if kind == "kafka":
        return KafkaBroker(spec["bootstrap"], acks="all", enable_idempotence=True, logger=None)
    if kind == "amqp":
        return RabbitBroker(spec["url"], logger=None)
    if kind == "mqtt":
        return MQTTBroker(
            host=spec["host"],
            port=spec["port"],
            client_id=f"{spec['client_id']}-fs-{role}",
            logger=None,
        )
    raise ValueError(f"unknown kind {kind!r}")


def _sender(spec: dict[str, Any], broker: Any) -> Send:
    kind = spec["kind"]
    if kind in ("nats", "nats-core"):
        stream = spec.get("stream") if kind == "nats" else None

        async def send_nats(payload: bytes, ctype: str | None, attrs: dict[str, str]) -> None:
            await broker.publish(
                payload, spec["subject"], headers=to_headers(kind, ctype, attrs), stream=stream
            )

        return send_nats
    if kind == "kafka":

        async def send_kafka(payload: bytes, ctype: str | None, attrs: dict[str, str]) -> None:
            await broker.publish(payload, spec["topic"], headers=to_headers(kind, ctype, attrs))

        return send_kafka
    if kind == "amqp":

        async def send_amqp(payload: bytes, ctype: str | None, attrs: dict[str, str]) -> None:
            await broker.publish(
                payload,
                queue=spec["queue"],
                headers=to_headers(kind, ctype, attrs),
                content_type=ctype,
                persist=True,
            )

        return send_amqp

    async def send_mqtt(payload: bytes, ctype: str | None, attrs: dict[str, str]) -> None:
        carried = {**attrs, "datacontenttype": ctype} if attrs and ctype else attrs
        await broker.publish(
            payload, spec["topic"], qos=QoS.AT_LEAST_ONCE, headers=to_headers(kind, ctype, carried)
        )

    return send_mqtt


def _subscribe(spec: dict[str, Any], broker: Any, send: Send) -> None:
    kind = spec["kind"]

    async def handle(payload: bytes, ctype: str | None, headers: dict[str, Any]) -> None:
        content_type, attrs = from_headers(kind, headers.items(), ctype)
        await send(payload, content_type, attrs)

    if kind in ("nats", "nats-core"):
        options: dict[str, Any] = {}
        if kind == "nats":
            options = {
                "stream": JStream(spec["stream"], declare=False),
                "durable": spec["durable"],
                "pull_sub": PullSub(batch_size=64, timeout=0.5),
                "ack_policy": AckPolicy.ACK,
            }

        @broker.subscriber(spec["subject"], **options)  # type: ignore[misc]
        async def on_nats(msg: NatsMessage) -> None:
            await handle(msg.body, None, msg.raw_message.headers or {})

    elif kind == "kafka":

        @broker.subscriber(  # type: ignore[misc]
            spec["topic"],
            group_id=spec["group"],
            auto_offset_reset="earliest",
            fetch_max_wait_ms=10,
            ack_policy=AckPolicy.ACK,
        )
        async def on_kafka(msg: KafkaMessage) -> None:
            raw = msg.raw_message
            await handle(msg.body, None, {k: v for k, v in (raw.headers or ())})  # type: ignore[union-attr]

    elif kind == "amqp":
        queue = RabbitQueue(spec["queue"], declare=False)

        @broker.subscriber(queue, ack_policy=AckPolicy.ACK)  # type: ignore[misc]
        async def on_amqp(msg: RabbitMessage) -> None:
            raw = msg.raw_message
            await handle(msg.body, raw.content_type, dict(raw.headers or {}))

    else:

        @broker.subscriber(spec["topic"], qos=QoS.AT_LEAST_ONCE, ack_policy=AckPolicy.ACK)  # type: ignore[misc]
        async def on_mqtt(msg: MQTTMessage) -> None:
            await handle(msg.body, msg.content_type or None, dict(msg.headers))


async def run(spec: dict[str, Any]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    targets = [
        (target, _broker(target, f"out{index}")) for index, target in enumerate(spec["targets"])
    ]
    sends = [_sender(target, broker) for target, broker in targets]

    async def send_all(payload: bytes, ctype: str | None, attrs: dict[str, str]) -> None:
        if len(sends) == 1:
            await sends[0](payload, ctype, attrs)
        else:
            await asyncio.gather(*(send(payload, ctype, attrs) for send in sends))

    source = _broker(spec["source"], "in")
    _subscribe(spec["source"], source, send_all)
    started: list[Any] = []
    try:
        for _target, broker in targets:
            await broker.start()
            started.append(broker)
        await source.start()
        started.append(source)
        await stop.wait()
    finally:
        for broker in reversed(started):
            with contextlib.suppress(Exception):
                await broker.stop()


def main(argv: list[str]) -> int:
    spec = yaml.safe_load(Path(argv[1]).read_text())
    asyncio.run(run(spec))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
