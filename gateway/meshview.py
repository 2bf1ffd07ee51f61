"""The mesh view: gateways announce themselves on a control channel and keep a table of peers.

With ``gateway.mesh: {connector: edge, subject: meshgate.control}`` (``topic:`` on MQTT
and Kafka, ``exchange:`` and ``routing_key:`` on AMQP) a gateway publishes an announcement every
``interval_seconds`` (default 5) there: a CloudEvent
of type ``io.meshgate.mesh.announce`` whose JSON data holds its id, the process
instance, the meshgate version, its connectors (type, broker address without
credentials, state, reconnects) and its routes (source and target addresses by
broker, ``loop_guard``, counters). It listens on the same subject and keeps the
latest announcement of every peer instance, forgetting one that stays silent longer
than ``expire_seconds`` (default three intervals). Several instances with one gateway
id are replicas sharing work through the brokers, not a conflict.

The control channel is core NATS, MQTT QoS 0, a Kafka topic (each listener its own
consumer group, from the latest offset) or an AMQP topic exchange (each listener its
own queue, which RabbitMQ deletes once unused): a lost announcement is replaced by
the next one.
``meshgate mesh status FILE`` listens on the channel of FILE for a bounded time and
prints the table (``render``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from connectors.errors import ConnectorError, UnknownConnectorType
from connectors.redact import redact_url
from connectors.registry import default_registry
from gateway.meshcheck import MeshGraph
from routing.errors import InvalidEvent
from routing.event import CloudEvent

if TYPE_CHECKING:
    from gateway.config import GatewayConfig
    from gateway.runtime import AnyConnector, Gateway

__all__ = ["ANNOUNCE_TYPE", "ControlChannel", "Peer", "PeerTable", "announcement", "render"]

log = logging.getLogger("meshgate.mesh")

ANNOUNCE_TYPE: Final = "io.meshgate.mesh.announce"
COUNTERS: Final = ("received", "delivered", "filtered", "loop_dropped", "dead_lettered")


def _broker_text(config: GatewayConfig, connector: str) -> str:
    """``type address`` of a connector's broker, credentials masked (one per broker)."""
    cls, options = config.connectors[connector]
    fields = cls.topology.broker_identity(options) if cls.topology is not None else {}
    parts = []
    for value in fields.values():
        if value in (None, "", [], {}):
            continue
        values = value if isinstance(value, list | tuple) else [value]
        parts.append(",".join(redact_url(str(v)) for v in values))
    return f"{options.type} {' '.join(parts)}".rstrip()


def announcement(gateway: Gateway, instance: str, seq: int) -> CloudEvent:
    """The CloudEvent a gateway publishes on the control channel."""
    from gateway.asyncapi import meshgate_version

    config = gateway.config
    graph = MeshGraph([config])
    routes = []
    for node in graph.nodes:
        route = node.route
        stats = gateway.stats.get(route.name)
        routes.append(
            {
                "name": route.name,
                "source": {
                    "broker": _broker_text(config, route.source_connector),
                    "address": graph.source_text(node),
                },
                "targets": [
                    {"broker": _broker_text(config, t.connector), "address": address}
                    for t, address in graph.target_texts(node)
                ],
                "loop_guard": route.loop_guard,
                "counters": {name: getattr(stats, name, 0) for name in COUNTERS},
            }
        )
    connectors = {
        name: {
            "type": connector.options.type,
            "broker": _broker_text(config, name),
            "state": str(connector.health.state),
            "reconnects": connector.health.reconnects,
        }
        for name, connector in gateway.connectors.items()
    }
    body = {
        "gateway": config.gateway.id,
        "instance": instance,
        "version": meshgate_version(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "sent_at": time.time(),
        "connectors": connectors,
        "routes": routes,
    }
    return CloudEvent(
        id=f"{instance}-{seq}",
        source=f"meshgate://{config.gateway.id}",
        type=ANNOUNCE_TYPE,
        subject=config.gateway.id,
        datacontenttype="application/json",
        data=json.dumps(body, sort_keys=True).encode(),
    )


@dataclass
class Peer:
    """The latest announcement of one gateway instance, and the one before (for rates)."""

    body: dict[str, Any]
    seen: float
    previous: dict[str, Any] | None = None

    @property
    def gateway(self) -> str:
        return str(self.body["gateway"])

    def rate(self, route: str, counter: str = "delivered") -> float | None:
        """Events per second of ``route`` between the last two announcements."""
        if self.previous is None:
            return None
        now, before = _counters(self.body, route), _counters(self.previous, route)
        elapsed = float(self.body["sent_at"]) - float(self.previous["sent_at"])
        if now is None or before is None or elapsed <= 0:
            return None
        return max(0.0, (now.get(counter, 0) - before.get(counter, 0)) / elapsed)


def _counters(body: Mapping[str, Any], route: str) -> dict[str, int] | None:
    for entry in body.get("routes", ()):
        if entry.get("name") == route:
            return dict(entry.get("counters", {}))
    return None


@dataclass
class PeerTable:
    """Every instance heard from, by (gateway id, instance); silent ones expire."""

    expire_seconds: float
    clock: Callable[[], float] = time.monotonic
    peers: dict[tuple[str, str], Peer] = field(default_factory=dict)

    def observe(self, event: CloudEvent) -> Peer | None:
        """Take an announcement in; None for anything else on the channel."""
        if event.type != ANNOUNCE_TYPE or event.data is None:
            return None
        try:
            body = json.loads(event.data)
            key = (str(body["gateway"]), str(body["instance"]))
        except (ValueError, KeyError, TypeError):
            log.debug("ignored an unreadable announcement %s", event.id)
            return None
        old = self.peers.get(key)
        peer = Peer(body, self.clock(), previous=None if old is None else old.body)
        self.peers[key] = peer
        return peer

    def expire(self) -> list[tuple[str, str]]:
        """Forget instances silent for longer than ``expire_seconds``; their keys."""
        now = self.clock()
        gone = [k for k, p in self.peers.items() if now - p.seen > self.expire_seconds]
        for key in gone:
            del self.peers[key]
            log.info("mesh: gateway %s (instance %s) went silent: forgotten", *key)
        return gone

    def gateways(self) -> dict[str, list[Peer]]:
        """Live instances by gateway id: more than one means replicas sharing work."""
        self.expire()
        grouped: dict[str, list[Peer]] = {}
        for (gateway, _instance), peer in sorted(self.peers.items()):
            grouped.setdefault(gateway, []).append(peer)
        return grouped


class ControlChannel:
    """Announces this gateway and listens to its peers (``gateway.mesh``)."""

    def __init__(self, gateway: Gateway, instance: str) -> None:
        section = gateway.config.gateway.mesh
        if section is None:
            raise ValueError("gateway.mesh is not configured")
        self.gateway = gateway
        self.section = section
        self.instance = instance
        self.table = PeerTable(section.expiry())
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def connector(self) -> AnyConnector:
        return self.gateway.connectors[self.section.connector]

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._announce(), name="mesh:announce"),
            asyncio.create_task(self._listen(), name="mesh:listen"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _announce(self) -> None:
        target = self.section.target(self.connector)
        seq = 0
        while True:
            seq += 1
            try:
                event = announcement(self.gateway, self.instance, seq)
                await self.connector.publish(target, event)
            except (ConnectorError, InvalidEvent) as exc:  # at most once: the next one will do
                log.debug("mesh: announcement not sent: %s", exc)
            except Exception:
                log.exception("mesh: bug: announcement failed")
            await asyncio.sleep(self.section.interval_seconds)

    async def _listen(self) -> None:
        source = self.section.source(
            self.connector, f"{self.gateway.config.gateway.id}-{self.instance}"
        )
        await listen(self.connector, source, self.table)


async def listen(connector: AnyConnector, source: Any, table: PeerTable) -> None:
    """Feed every announcement on ``source`` into ``table`` until cancelled; a failed
    subscription is retried (``consume`` already survives connection losses)."""
    while True:
        try:
            async for delivery in connector.consume(source):
                try:
                    decoded = connector.decode(delivery)
                except InvalidEvent as exc:  # something else shares the channel
                    log.debug("mesh: ignored a message on the control channel: %s", exc)
                    decoded = None
                if decoded is not None:
                    table.observe(decoded)
                try:
                    await delivery.ack()
                except ConnectorError as exc:  # at most once: nothing to redeliver for
                    log.debug("mesh: control channel ack failed: %s", exc)
        except (ConnectorError, OSError) as exc:
            log.debug("mesh: control channel subscription failed, again in 1 s: %s", exc)
        except Exception:
            log.exception("mesh: bug: the control channel listener crashed; again in 1 s")
        await asyncio.sleep(1.0)


def render(table: PeerTable, listened: float, channel: str) -> list[str]:
    """The mesh as text: gateways (replicas), brokers, routes with their rates."""
    gateways = table.gateways()
    instances = sum(len(p) for p in gateways.values())
    lines = [
        f"mesh on {channel}: listened {listened:.1f} s, {len(gateways)} gateways "
        f"({instances} instances)"
    ]
    if not gateways:
        lines.append("  (no announcements heard)")
        return lines
    brokers: dict[str, str] = {}

    def broker(text: str) -> str:
        return brokers.setdefault(text, f"B{len(brokers) + 1}")

    lines.append("gateways:")
    route_lines: list[str] = []
    for gateway, peers in gateways.items():
        first = peers[0].body
        replicas = f", {len(peers)} replicas sharing work" if len(peers) > 1 else ""
        where = ", ".join(f"{p.body.get('host')}/{p.body.get('pid')}" for p in peers)
        lines.append(f"  {gateway}: meshgate {first.get('version')}{replicas} ({where})")
        states = ", ".join(
            f"{name} {c.get('state')}" for name, c in sorted(first.get("connectors", {}).items())
        )
        lines.append(f"    connectors: {states or '-'}")
        for entry in first.get("routes", ()):
            name = entry["name"]
            source = entry["source"]
            origin = f"{broker(source['broker'])} {source['address']}"  # numbered first
            targets = ", ".join(
                f"{broker(t['broker'])} {t['address']}" for t in entry.get("targets", ())
            )
            totals = {
                c: sum((_counters(p.body, name) or {}).get(c, 0) for p in peers) for c in COUNTERS
            }
            rates = [r for p in peers if (r := p.rate(name)) is not None]
            rate = f"{sum(rates):.1f}/s" if rates else "-"
            guard = "" if entry.get("loop_guard", True) else " [loop_guard: false]"
            route_lines.append(
                f"  {gateway}:{name}: {origin} -> "
                f"{targets}{guard}  delivered {totals['delivered']} ({rate}), "
                f"loop_dropped {totals['loop_dropped']}"
            )
    lines.append("brokers:")
    lines.extend(f"  {name}: {text}" for text, name in brokers.items())
    lines.append("routes:")
    lines.extend(route_lines)
    links = [
        f"  {a} -> {b}  ({broker(where)} {address})" for a, b, where, address in _links(gateways)
    ]
    if links:
        lines.append("links (a route publishes where another reads):")
        lines.extend(links)
    return lines


def _reads(kind: str, source: str, address: str) -> bool:
    """Whether a source (as announced) reads ``address``: the type's topology hook,
    or the same text for a type without one (or not installed here)."""
    try:
        hook = default_registry.get(kind).topology
    except UnknownConnectorType:
        hook = None
    return source == address if hook is None else hook.text_reads(source, address)


def _links(gateways: Mapping[str, list[Peer]]) -> list[tuple[str, str, str, str]]:
    """(route, route it feeds, broker, address) across every announced gateway."""
    routes = [
        (f"{gateway}:{entry['name']}", entry)
        for gateway, peers in gateways.items()
        for entry in peers[0].body.get("routes", ())
    ]
    found = []
    for label, entry in routes:
        for target in entry.get("targets", ()):
            for other, reader in routes:
                source = reader["source"]
                if source["broker"] != target["broker"]:
                    continue
                kind = str(source["broker"]).split(" ", 1)[0]
                if _reads(kind, str(source["address"]), str(target["address"])):
                    found.append((label, other, target["broker"], target["address"]))
    return found


async def status(config: GatewayConfig, seconds: float | None = None) -> list[str]:
    """Listen on ``config``'s control channel for ``seconds`` (default: two intervals and
    a half, so each instance is heard twice and rates can be shown), then render."""
    section = config.gateway.mesh
    if section is None:
        raise ValueError(f"{config.file}: gateway.mesh is not configured (no control channel)")
    cls, options = config.connectors[section.connector]
    if "client_id" in type(options).model_fields:
        # Never the running gateway's MQTT client id (the broker would drop its session);
        # a throw-away session (MQTT 5 expiry 0).
        status_id = f"meshgate-status-{uuid.uuid4().hex[:8]}"
        options = options.model_copy(
            update={"client_id": status_id, "session_expiry_seconds": 0, "clean_start": True}
        )
    connector: AnyConnector = cls(f"{section.connector}-mesh-status", options)
    await connector.start()
    table = PeerTable(section.expiry())
    listener = f"status-{uuid.uuid4().hex[:8]}"
    listening = asyncio.create_task(listen(connector, section.source(connector, listener), table))
    wait = seconds if seconds is not None else 2.5 * section.interval_seconds
    try:
        await asyncio.sleep(wait)  # the bounded listening time is the point of the command
    finally:
        listening.cancel()
        await asyncio.gather(listening, return_exceptions=True)
        await connector.close()
    return render(table, wait, f"{section.connector} {section.address}")


def document(gateway: Gateway) -> dict[str, Any]:
    """The mesh as this gateway sees it, for the admin API (``/api/mesh``)."""
    control = gateway.control
    if control is None:
        return {"enabled": False, "gateway": gateway.config.gateway.id, "gateways": {}}
    now = control.table.clock()
    section = control.section
    return {
        "enabled": True,
        "gateway": gateway.config.gateway.id,
        "instance": control.instance,
        "channel": {"connector": section.connector, "address": section.address},
        "gateways": {
            gid: [{"seen_seconds_ago": round(now - peer.seen, 3), **peer.body} for peer in peers]
            for gid, peers in control.table.gateways().items()
        },
        "text": render(control.table, section.interval_seconds, section.address),
    }
