"""Traffic for the fault tests: routes between real brokers, every event counted by id.

A ``Scenario`` is one gateway config made of ``Pair`` routes (source protocol and
broker -> target protocol and broker). It prepares what the brokers need before any
traffic (AMQP queues, JetStream streams, Kafka topics, the gateway's persistent MQTT
source sessions), feeds numbered CloudEvents into the sources with the connectors'
own ``publish``, collects what reaches the targets with the connectors' own
``consume``/``decode`` and counts every id: sent, received unique, duplicates, lost.

Names derive from a fresh run token, so scenarios never see each other's traffic on
the shared system brokers.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from connectors.amqp import AmqpConnector, AmqpOptions, AmqpSource, AmqpTarget
from connectors.base import Connector
from connectors.kafka import KafkaConnector, KafkaOptions, KafkaSource, KafkaTarget
from connectors.mqtt import MqttConnector, MqttOptions, MqttSource, MqttTarget
from connectors.mqtt.config import subscriber_client_id
from connectors.nats import JetStreamSource, NatsConnector, NatsOptions, NatsSource, NatsTarget
from routing.event import CloudEvent
from tests.brokers import unique_name
from tests.faults import admin
from tests.faults.admin import SESSION_EXPIRY
from tests.polling import until  # the fault tests import it from here too

KAFKA, AMQP, MQTT, NATS = "kafka", "amqp", "mqtt", "nats"
FEED_CONFIRM_S = 30.0  # the test clients' AMQP publisher-confirm timeout
AnyConnector = Connector[Any, Any, Any]


@dataclass(eq=False)
class Pair:
    """One route: ``src`` protocol at ``src_url`` -> ``dst`` protocol at ``dst_url``."""

    src: str
    src_url: str
    dst: str
    dst_url: str
    label: str = ""
    via: str | None = None  # the target URL the gateway uses (a proxy), default dst_url
    route: dict[str, Any] = field(default_factory=dict)  # extra keys of this route
    name: str = ""  # route name, set by the scenario
    run: str = ""
    sent: list[str] = field(default_factory=list)
    received: Counter[str] = field(default_factory=Counter)
    resent: Counter[str] = field(default_factory=Counter)
    """Feed publishes repeated after a failed attempt, by id: a publish that timed out
    may still have reached the broker, so the source may hold that many extra copies."""
    positions: set[str] = field(default_factory=set)  # Kafka offsets / stream seqs seen
    rereads: int = 0  # the collector read one record twice (its own redelivery)
    sent_at: dict[str, float] = field(default_factory=dict)  # publish started (monotonic)
    arrived_at: dict[str, float] = field(default_factory=dict)  # first arrival
    forwarder: dict[str, str] = field(default_factory=dict)  # id -> gateway of first arrival

    @property
    def pair(self) -> str:
        return f"{self.src} -> {self.dst}"

    def address(self, side: str) -> str:
        proto = self.src if side == "in" else self.dst
        joiner = {KAFKA: ".", AMQP: "-", MQTT: "/", NATS: "."}[proto]
        return joiner.join([self.run, self.name, side])

    def sides(self) -> tuple[tuple[str, str, str], ...]:
        """(side, protocol, broker url) of the source ("in") and the target ("out")."""
        return (("in", self.src, self.src_url), ("out", self.dst, self.dst_url))

    def stream(self, side: str) -> str:  # JetStream stream names: no dots
        return f"{self.run}-{self.name}-{side}"

    def unique(self) -> int:
        return len(self.received)

    def tally(self) -> dict[str, int]:
        """Counts by id. ``dups``: copies delivered beyond those the source held, i.e.
        the gateway's duplicates; an id the feed published again after a failed attempt
        (``resent``) may be in the source more than once, and those copies are the
        feed's (``source_copies``: received beyond one copy, within what was resent)."""
        sent = set(self.sent)
        unique = sent & set(self.received)
        extra = {i: n - 1 for i, n in self.received.items() if n > 1}
        source_copies = sum(min(n, self.resent[i]) for i, n in extra.items())
        return {
            "sent": len(sent),
            "unique": len(unique),
            "dups": sum(extra.values()) - source_copies,
            "lost": len(sent - unique),
            "unexpected": len(set(self.received) - sent),
            "rereads": self.rereads,
            "resent": sum(self.resent.values()),
            "source_copies": source_copies,
        }


def event(pair: Pair, n: int, size: int = 200) -> CloudEvent:
    pad = ("x" * size).encode()
    return CloudEvent(
        id=f"{pair.name}-{n:06d}",
        source=f"urn:meshgate:faults:{pair.run}",
        type="com.example.faults.v1",
        subject=pair.name,
        datacontenttype="application/octet-stream",
        data=n.to_bytes(4, "big") + pad,
    )


class Scenario:
    """Brokers prepared for ``pairs``, test-side feeders and collectors, the gateway YAML."""

    def __init__(
        self,
        pairs: Iterable[Pair],
        *,
        gateway_id: str | None = None,
        route: dict[str, Any] | None = None,
        source: dict[str, dict[str, Any]] | None = None,
        target: dict[str, dict[str, Any]] | None = None,
        connector: dict[str, dict[str, Any]] | None = None,
        gateway_ids: Iterable[str] | None = None,
        drain_timeout: float = 20.0,
    ) -> None:
        self.run = unique_name("flt")
        self.gateway_id = gateway_id or f"{self.run}-gw"
        # every gateway that will read the sources (MQTT sessions are primed for each)
        self.gateway_ids = list(gateway_ids or [self.gateway_id])
        self.drain_timeout = drain_timeout
        self.pairs = list(pairs)
        for index, pair in enumerate(self.pairs):
            pair.run = self.run
            pair.name = pair.label or f"{pair.src}2{pair.dst}{index}"
        self.route = route or {}
        self.source_extra = source or {}
        self.target_extra = target or {}
        self.connector_extra = connector or {}
        self.clients: dict[tuple[str, str], AnyConnector] = {}
        self._client_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._names: dict[tuple[str, str, str], str] = {}
        self.errors: list[str] = []

    # -- gateway configuration ---------------------------------------------------------

    def connector_name(self, role: str, proto: str, url: str) -> str:
        key = (role, proto, url)
        if key not in self._names:
            self._names[key] = f"{role}-{proto}-{len(self._names)}"
        return self._names[key]

    def mqtt_client_id(self, gateway_id: str, name: str) -> str:
        return f"{gateway_id}-{name}"

    def _connector(self, gateway_id: str, name: str, proto: str, url: str) -> dict[str, Any]:
        extra = self.connector_extra.get(proto, {})
        if proto == KAFKA:
            return {"type": KAFKA, "bootstrap_servers": url, "request_timeout_ms": 10000, **extra}
        if proto == AMQP:
            return {"type": AMQP, "url": url, **extra}
        if proto == MQTT:
            return {
                "type": MQTT,
                "url": url,
                "client_id": self.mqtt_client_id(gateway_id, name),
                "session_expiry": SESSION_EXPIRY,
                **extra,
            }
        return {"type": NATS, "servers": [url], **extra}

    def source_options(self, pair: Pair) -> dict[str, Any]:
        extra = self.source_extra.get(pair.src, {})
        addr = pair.address("in")
        if pair.src == KAFKA:
            return {
                "topics": [addr],
                "group_id": f"{pair.run}-{pair.name}",
                "session_timeout_ms": 6000,
                **extra,
            }
        if pair.src == AMQP:
            return {"queue": addr, **extra}
        if pair.src == MQTT:
            return {"topic": addr, "qos": 1, **extra}
        jetstream = {"stream": pair.stream("in"), "durable": "gw", **extra}
        return {"subject": addr, "jetstream": jetstream}

    def target_options(self, pair: Pair) -> dict[str, Any]:
        extra = self.target_extra.get(pair.dst, {})
        addr = pair.address("out")
        key = {KAFKA: "topic", AMQP: "routing_key", MQTT: "topic", NATS: "subject"}[pair.dst]
        return {key: addr, **extra}

    def config(self, gateway_id: str | None = None) -> dict[str, Any]:
        gid = gateway_id or self.gateway_id
        connectors: dict[str, Any] = {}
        routes = []
        for pair in self.pairs:
            src = self.connector_name("in", pair.src, pair.src_url)
            dst_url = pair.via or pair.dst_url
            dst = self.connector_name("out", pair.dst, dst_url)
            connectors[src] = self._connector(gid, src, pair.src, pair.src_url)
            connectors[dst] = self._connector(gid, dst, pair.dst, dst_url)
            route = {
                "name": pair.name,
                "from": {"connector": src, **self.source_options(pair)},
                "to": [{"connector": dst, **self.target_options(pair)}],
                **self.route,
                **pair.route,
            }
            routes.append(route)
        return {
            "gateway": {"id": gid, "drain_timeout_seconds": self.drain_timeout},
            "connectors": connectors,
            "routes": routes,
        }

    def write(self, directory: Path, gateway_id: str | None = None) -> Path:
        gid = gateway_id or self.gateway_id
        path = directory / f"{gid}.yaml"
        path.write_text(yaml.safe_dump(self.config(gid), sort_keys=False))
        return path

    # -- preparation -------------------------------------------------------------------

    async def __aenter__(self) -> Scenario:
        try:
            await self.prepare()
        except BaseException:
            await self.__aexit__()
            raise
        return self

    async def prepare(self) -> None:
        for pair in self.pairs:
            for side, proto, url in pair.sides():
                await self._prepare_side(pair, side, proto, url)
        for pair in self.pairs:
            if pair.src == MQTT:
                for gid in self.gateway_ids:
                    await self.prime_mqtt(pair, gid)
        for pair in self.pairs:
            if pair.dst == MQTT:
                await self.client(MQTT, pair.dst_url)  # names the collector's session
                await self._prime_collector(pair)
            self._collect(pair)

    async def _prepare_side(self, pair: Pair, side: str, proto: str, url: str) -> None:
        addr = pair.address(side)
        if proto == AMQP:
            await admin.declare_queue(url, addr)
        elif proto == NATS:
            await admin.create_stream(url, pair.stream(side), addr)
        elif proto == KAFKA:
            await admin.create_kafka_topic(url, addr)

    async def prime_mqtt(self, pair: Pair, gateway_id: str) -> None:
        """Create the gateway's persistent source session and subscription before traffic."""
        options = self.source_options(pair)
        source = MqttSource(connector="x", **options)
        name = self.connector_name("in", MQTT, pair.src_url)
        client_id = subscriber_client_id(self.mqtt_client_id(gateway_id, name), source)
        await admin.subscribe_session(pair.src_url, client_id, source.subscription)

    async def _prime_collector(self, pair: Pair) -> None:
        base = self.clients[(MQTT, pair.dst_url)].name
        source = MqttSource(connector="x", topic=pair.address("out"), qos=1)
        client_id = subscriber_client_id(base, source)
        await admin.subscribe_session(pair.dst_url, client_id, source.subscription)

    async def client(self, proto: str, url: str) -> AnyConnector:
        key = (proto, url)
        # One client per broker even when a collector task and the test ask at once
        # (starting one yields): a second would replace the first, left open.
        async with self._client_lock:
            return await self._client(key)

    async def _client(self, key: tuple[str, str]) -> AnyConnector:
        proto, url = key
        if key not in self.clients:
            name = f"{self.run}-t{len(self.clients)}"
            connector: AnyConnector
            if proto == KAFKA:
                connector = KafkaConnector(
                    name, KafkaOptions(type=KAFKA, bootstrap_servers=url, request_timeout_ms=10000)
                )
            elif proto == AMQP:
                # A confirm waited for rather than given up on and published again (a
                # second copy in the source): the shared RabbitMQ, loaded, was seen
                # holding confirms over 10 s (the default) during a gateway freeze.
                connector = AmqpConnector(
                    name, AmqpOptions(url=url, confirm_timeout_seconds=FEED_CONFIRM_S)
                )
            elif proto == MQTT:
                connector = MqttConnector(
                    name,
                    MqttOptions(
                        url=url, client_id=name, session_expiry=SESSION_EXPIRY, max_inflight=200
                    ),
                )
            else:
                connector = NatsConnector(name, NatsOptions(servers=(url,)))
            await connector.start()
            self.clients[key] = connector
        return self.clients[key]

    def _collect(self, pair: Pair) -> None:
        addr = pair.address("out")
        source: Any
        if pair.dst == KAFKA:
            group = f"{pair.run}-rx-{pair.name}"
            source = KafkaSource(
                connector="x",
                topics=[addr],
                group_id=group,
                session_timeout_ms=6000,
                max_in_flight=2000,
            )
        elif pair.dst == AMQP:
            source = AmqpSource(connector="x", queue=addr, prefetch=1000)
        elif pair.dst == MQTT:
            source = MqttSource(connector="x", topic=addr, qos=1)
        else:
            source = NatsSource(
                connector="x",
                subject=addr,
                jetstream=JetStreamSource(
                    stream=pair.stream("out"), durable="rx", batch=500, max_ack_pending=5000
                ),
            )

        async def collect() -> None:
            connector = await self.client(pair.dst, pair.dst_url)
            async for delivery in connector.consume(source):
                try:
                    decoded = connector.decode(delivery)
                except Exception as exc:  # reported as a problem, not raised
                    self.errors.append(f"{pair.name}: undecodable: {exc}")
                    decoded = None
                # A Kafka offset or stream sequence read again is the collector's own
                # consumer re-reading (a rebalance in this busy test process), not a
                # second copy on the broker: not a duplicate of the gateway's. So is an
                # AMQP message the queue marks redelivered (the collector's channel
                # closed before its ack) once its id was counted: a second publish by
                # the gateway is a new message, never marked redelivered.
                position = delivery.native_id if pair.dst in (KAFKA, NATS) else None
                reread = position is not None and position in pair.positions
                if pair.dst == AMQP and decoded is not None:
                    reread = bool(delivery.coordinates.get("redelivered")) and (
                        decoded.id in pair.received
                    )
                if reread:
                    pair.rereads += 1
                elif decoded is not None:
                    if position is not None:
                        pair.positions.add(position)
                    pair.received[decoded.id] += 1
                    pair.arrived_at.setdefault(decoded.id, time.monotonic())
                    path = str(decoded.extensions.get("meshpath") or "")
                    pair.forwarder.setdefault(decoded.id, path.rsplit(",", 1)[-1])
                await delivery.ack()

        self._tasks.append(asyncio.create_task(collect(), name=f"collect:{pair.name}"))

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*(c.close() for c in self.clients.values()), return_exceptions=True)
        for pair in self.pairs:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._cleanup(pair), 10)

    async def _cleanup(self, pair: Pair) -> None:
        for side, proto, url in pair.sides():
            if proto == AMQP:
                await admin.delete_queue(url, pair.address(side))
            elif proto == NATS:
                await admin.delete_stream(url, pair.stream(side))

    # -- traffic -----------------------------------------------------------------------

    def _feed_target(self, pair: Pair) -> Any:
        addr = pair.address("in")
        if pair.src == KAFKA:
            return KafkaTarget(connector="x", topic=addr)
        if pair.src == AMQP:
            return AmqpTarget(connector="x", routing_key=addr)
        if pair.src == MQTT:
            return MqttTarget(connector="x", topic=addr, qos=1)
        return NatsTarget(connector="x", subject=addr)

    async def feed(
        self,
        pair: Pair,
        count: int,
        *,
        rate: float | None = None,
        concurrency: int = 100,
        make: Callable[[Pair, int], CloudEvent] = event,
    ) -> None:
        """Publish ``count`` more events into ``pair``'s source (confirmed each)."""
        connector = await self.client(pair.src, pair.src_url)
        target = self._feed_target(pair)
        slots = asyncio.Semaphore(concurrency)
        start, first = time.monotonic(), len(pair.sent)

        async def one(n: int) -> None:
            ev = make(pair, n)
            pair.sent_at[ev.id] = time.monotonic()
            for attempt in range(20):
                if attempt:
                    # The failed attempt may have reached the broker all the same (a
                    # confirm that timed out): a second copy in the source, not the
                    # gateway's duplicate (see ``Pair.tally``).
                    pair.resent[ev.id] += 1
                try:
                    await connector.publish(target, ev)
                    break
                except Exception:
                    if attempt == 19:
                        raise
                    await asyncio.sleep(0.5)
            pair.sent.append(ev.id)
            slots.release()

        tasks = []
        for n in range(first, first + count):
            await slots.acquire()
            tasks.append(asyncio.create_task(one(n)))
            if rate is not None:
                ahead = (n - first + 1) / rate - (time.monotonic() - start)
                if ahead > 0:
                    await asyncio.sleep(ahead)
        await asyncio.gather(*tasks)

    async def until_delivered(self, seconds: float, pairs: Iterable[Pair] | None = None) -> bool:
        chosen = list(pairs or self.pairs)
        return await until(lambda: all(p.unique() >= len(set(p.sent)) for p in chosen), seconds)

    async def jetstream_pending(self, pair: Pair, durable: str = "gw") -> tuple[int, int]:
        """(num_pending, num_ack_pending) of the gateway's durable on a NATS source."""
        return await admin.jetstream_pending(pair.src_url, pair.stream("in"), durable)

    async def queue_depth(self, pair: Pair) -> tuple[int, int]:
        """(messages ready, consumers) of an AMQP source queue."""
        return await admin.queue_depth(pair.src_url, pair.address("in"))
