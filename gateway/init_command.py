"""``meshgate init``: a commented starter config for the brokers listening on loopback.

The default ports are probed concurrently with a short timeout (a TCP connect, no
protocol handshake): Kafka 9092, RabbitMQ/AMQP 5672, MQTT 1883, NATS 4222. Every
broker found gets a connector and a route that reads from it; the first broker
found also receives from the others, so the file shows each protocol's source and
target options. Nothing found: a ``memory`` connector keeps the file valid, with
the four broker connectors as comments. The result passes ``meshgate validate``;
an existing file is never overwritten.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["KINDS", "PORTS", "broker_kinds", "probe", "run", "starter_config", "write_starter"]

KINDS = ("kafka", "amqp", "mqtt", "nats")
PORTS = {"kafka": 9092, "amqp": 5672, "mqtt": 1883, "nats": 4222}
HOST = "127.0.0.1"

_CONNECTORS = {
    "kafka": '  kafka: {type: kafka, bootstrap_servers: "127.0.0.1:9092"}',
    "amqp": '  amqp: {type: amqp, url: "amqp://guest:${RABBIT_PASSWORD:-guest}@127.0.0.1:5672/"}',
    "mqtt": "  mqtt: {type: mqtt, host: 127.0.0.1, port: 1883, protocol: 5}",
    "nats": '  nats: {type: nats, servers: ["nats://127.0.0.1:4222"]}',
}
_CONNECTOR_NOTES = {
    "kafka": "Kafka: acks=all publishes; docs/connectors/kafka.md",
    "amqp": "RabbitMQ: publisher confirms; the password comes from the environment",
    "mqtt": "MQTT 5 (protocol: 4 for 3.1.1, which carries structured-mode events only)",
    "nats": "NATS: a target publishes to JetStream unless it says jetstream: false",
}
_SOURCES = {
    "kafka": "{connector: kafka, topics: [meshgate.in], group_id: meshgate}",
    "amqp": "{connector: amqp, queue: meshgate.in, declare: true}",
    "mqtt": '{connector: mqtt, topic: "meshgate/in/#", qos: 1}',
    "nats": '{connector: nats, subject: "meshgate.in.>"}',
}
_TARGETS = {
    "kafka": "{connector: kafka, topic: meshgate.out}",
    # amq.topic exists on every RabbitMQ; bind a queue to it with key meshgate.out.
    "amqp": "{connector: amqp, exchange: amq.topic, routing_key: meshgate.out}",
    "mqtt": "{connector: mqtt, topic: meshgate/out, qos: 1}",
    # Core NATS: JetStream needs a stream capturing the subject (docs/connectors/nats.md).
    "nats": "{connector: nats, subject: meshgate.out, jetstream: false}",
}


async def _listening(port: int, seconds: float) -> bool:
    try:
        async with asyncio.timeout(seconds):
            _reader, writer = await asyncio.open_connection(HOST, port)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def _probe(seconds: float) -> list[str]:
    found = await asyncio.gather(*(_listening(PORTS[kind], seconds) for kind in KINDS))
    return [kind for kind, up in zip(KINDS, found, strict=True) if up]


def probe(timeout: float = 0.3) -> list[str]:
    """The broker kinds listening on their default loopback ports, in ``KINDS`` order."""
    return asyncio.run(_probe(timeout))


def starter_config(found: Sequence[str], gateway_id: str = "gateway-1") -> str:
    """The YAML text of a starter config for the broker kinds ``found``."""
    lines = [
        "# meshgate starter config, written by `meshgate init`.",
        "# Check it:   meshgate validate meshgate.yaml",
        "# Try it:     meshgate routes check meshgate.yaml --message message.json",
        "# Run it:     meshgate run meshgate.yaml",
        "# Reference:  docs/routes.md (routes, filters, templates), docs/connectors/*.md",
        "",
        "gateway:",
        f"  id: {gateway_id}            # unique per gateway in a mesh",
        '  # admin: {listen: "127.0.0.1:8080"}   # /healthz /readyz /metrics /api/...',
        "",
        "connectors:",
    ]
    if found:
        lines.append(f"  # Found on loopback: {', '.join(found)}.")
    else:
        lines += [
            "  # No broker answered on its default loopback port (Kafka 9092, RabbitMQ 5672,",
            "  # MQTT 1883, NATS 4222). An in-memory connector keeps this file valid; replace",
            "  # it with one of these once a broker runs:",
        ]
    for kind in KINDS:
        lines.append(f"  # {_CONNECTOR_NOTES[kind]}")
        lines.append(_CONNECTORS[kind] if kind in found else "  # " + _CONNECTORS[kind].strip())
    if not found:
        lines += ["  memory: {type: memory}", "", "routes:", *_memory_route()]
        return "\n".join(lines) + "\n"
    lines += ["", "routes:"]
    hub = found[0]
    for i, kind in enumerate(found):
        targets = [hub] if kind != hub else [other for other in found if other != hub] or [hub]
        lines += _route(kind, targets, explain=i == 0)
    return "\n".join(lines) + "\n"


def _route(source: str, targets: Sequence[str], *, explain: bool) -> list[str]:
    lines = [f"  - name: {source}-in", f"    from: {_SOURCES[source]}"]
    if explain:
        lines += [
            "    # Messages that are not CloudEvents are wrapped: {topic} is the topic, subject",
            "    # or routing key the message arrived on, {topic[N]} one level of it.",
        ]
    lines.append(f'    ingress: {{type: com.example.event, source: "{source}://{{topic}}"}}')
    if explain:
        lines.append(
            "    # filter: \"type LIKE 'com.example.%'\"   # CloudEvents SQL (docs/routes.md)"
        )
    lines.append("    to:")
    lines += [f"      - {_TARGETS[target]}" for target in targets]
    lines.append(f"    # dead_letter: {_TARGETS[targets[0]]}")
    return lines


def _memory_route() -> list[str]:
    return [
        "  - name: example",
        "    from: {connector: memory, topic: in}",
        '    ingress: {type: com.example.event, source: "memory://{topic}"}',
        "    to:",
        "      - {connector: memory, topic: out}",
    ]


def write_starter(path: Path, found: Sequence[str]) -> None:
    """Write the starter config to ``path``; ``FileExistsError`` if it exists."""
    with path.open("x", encoding="utf-8") as out:
        out.write(starter_config(found))


def broker_kinds(text: str) -> list[str]:
    """``--brokers``: comma-separated kinds (or ``none``), in ``KINDS`` order."""
    if text.strip().lower() == "none":
        return []
    kinds = [part.strip().lower() for part in text.split(",") if part.strip()]
    unknown = [kind for kind in kinds if kind not in KINDS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown broker kind {unknown[0]!r} (choose from {', '.join(KINDS)}, or none)"
        )
    return [kind for kind in KINDS if kind in kinds]


def run(config: str, brokers: list[str] | None) -> int:
    """``meshgate init``: probe (unless ``brokers`` is given), write, say what was found."""
    found = brokers if brokers is not None else probe()
    path = Path(config)
    try:
        write_starter(path, found)
    except FileExistsError:
        print(f"init: {path} exists; not overwriting it (choose another file)", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"init: cannot write {path}: {exc.strerror}", file=sys.stderr)
        return 1
    if brokers is None:
        probed = ", ".join(
            f"{kind} :{PORTS[kind]} {'found' if kind in found else 'not found'}" for kind in KINDS
        )
        print(f"probed 127.0.0.1: {probed}")
    print(f"wrote {path}; next: meshgate validate {path}")
    return 0
