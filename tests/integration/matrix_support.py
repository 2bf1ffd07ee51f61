"""Harness of the end-to-end matrix (tests/integration/test_matrix.py and its container twin).

A ``Mesh`` is one test run against four brokers (``Endpoints``): it names every
source and target address after a fresh run token, writes the gateway YAML for a
list of ``Spec`` routes, prepares what the brokers need *before* traffic (AMQP
exchanges and the receiver queue with its bindings, Kafka topics, the JetStream
stream that captures the target subjects, primed MQTT source sessions), publishes
into the sources with the connectors' own ``publish`` (raw clients for legacy
payloads), and receives on every target with the connectors' own ``consume`` and
``decode`` into ``arrivals`` (by target address). Everything it created is removed
at exit. Nothing here is specific to loopback brokers: only ``Endpoints`` differ.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import aiomqtt
import nats
import yaml
from aiokafka import AIOKafkaProducer
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from connectors.amqp import AmqpConnector, AmqpOptions, AmqpSource, AmqpTarget
from connectors.base import Connector
from connectors.kafka import KafkaConnector, KafkaOptions, KafkaSource, KafkaTarget
from connectors.mqtt import MqttConnector, MqttOptions, MqttSource, MqttTarget
from connectors.mqtt.config import subscriber_client_id
from connectors.nats import JetStreamSource, NatsConnector, NatsOptions, NatsSource, NatsTarget
from routing.event import CloudEvent
from tests.brokers import unique_name

KAFKA, AMQP, MQTT, MQTT4, NATS, NATSCORE = "kafka", "amqp", "mqtt", "mqtt4", "nats", "natscore"
PROBE = "com.example.matrix.probe"
WAIT = 30.0
MQTT_SESSION_EXPIRY = 300


@dataclass(frozen=True)
class Endpoints:
    kafka: str  # host:port
    amqp: str  # amqp://user:pass@host:port/
    mqtt: tuple[str, int]
    nats: str  # nats://host:port
    kafka_session_ms: int = 6000
    """The gateway's Kafka group session. Apache Kafka refuses less than its
    ``group.min.session.timeout.ms`` (6 s by default); the librdkafka mock takes 3 s,
    which halves what a restart waits for the group (a killed member's session to
    expire; after a clean stop, the mock answers the next join only after the
    session less 1 s)."""

    @property
    def mqtt_url(self) -> str:
        return f"mqtt://{self.mqtt[0]}:{self.mqtt[1]}"


@dataclass(eq=False)
class Spec:
    """One route: source protocol -> target protocol, target mode, legacy or CloudEvents."""

    name: str
    src: str
    dst: str
    mode: str = "binary"
    legacy: bool = False
    route: dict[str, Any] = field(default_factory=dict)  # extra route keys (retry, ...)
    source: dict[str, Any] = field(default_factory=dict)  # extra from: (jetstream: keys)
    target: dict[str, Any] = field(default_factory=dict)  # extra/overriding to: keys

    @property
    def src_mode(self) -> str:
        """Sources get the other mode than the target, so both decode paths run."""
        return "structured" if self.src == MQTT4 or self.mode == "binary" else "binary"


def sep(protocol: str) -> str:
    return "/" if protocol in (MQTT, MQTT4) else "."


@dataclass
class Arrival:
    address: str
    event: CloudEvent | None
    payload: bytes
    key: str | None
    error: str | None = None


async def within(check: Callable[[], bool], seconds: float = WAIT) -> bool:
    """Poll ``check`` until true (True) or ``seconds`` pass (False)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


class Mesh:
    """One run: addresses, gateway config, broker setup, test-side clients, receivers."""

    def __init__(self, endpoints: Endpoints, specs: list[Spec] | None = None) -> None:
        self.ep = endpoints
        self.run = unique_name("mx")
        self.specs: list[Spec] = specs or []
        self.kafka_topics: list[str] = []  # extra topics to receive (dead letters)
        self.options: dict[str, dict[str, Any]] = {}  # extra options per gateway connector
        self.exchanges = [f"{self.run}-in", f"{self.run}-out"]
        self.arrivals: dict[str, list[Arrival]] = defaultdict(list)
        self.connectors: dict[str, Connector[Any, Any, Any]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._amqp: aio_pika.abc.AbstractConnection | None = None
        self._nc: Any = None
        self._producer: Any = None
        self._primed: list[tuple[str, int]] = []

    # -- names and config --------------------------------------------------------------

    def address(self, spec: Spec, side: str) -> str:
        proto = spec.src if side == "in" else spec.dst
        parts = [self.run, spec.name, side]
        if side == "out" and proto == MQTT4:
            parts = [self.run, "v4", spec.name, "out"]
        elif side == "out" and proto == NATSCORE:
            parts = [self.run, "core", spec.name, "out"]
        return sep(proto).join(parts)

    def queue(self, spec: Spec) -> str:
        return f"{self.run}-{spec.name}"

    def gateway_client_id(self, protocol: str) -> str:
        return f"{self.run}-gw" + ("4" if protocol == MQTT4 else "")

    def _from(self, spec: Spec) -> dict[str, Any]:
        addr, name = self.address(spec, "in"), self.queue(spec)
        if spec.src == KAFKA:
            return {
                "connector": KAFKA,
                "topics": [addr],
                "group_id": name,
                "session_timeout_ms": self.ep.kafka_session_ms,
                **spec.source,
            }
        if spec.src == AMQP:
            return {
                "connector": AMQP,
                "queue": name,
                "declare": True,
                "prefetch": 200,
                "bind": [{"exchange": f"{self.run}-in", "binding_key": addr}],
                **spec.source,
            }
        if spec.src in (MQTT, MQTT4):
            return {"connector": spec.src, "topic": addr, "qos": 1, **spec.source}
        jetstream = {"stream": name, "durable": "gw", "create_stream": True, **spec.source}
        return {"connector": NATS, "subject": addr, "jetstream": jetstream}

    def _to(self, spec: Spec) -> dict[str, Any]:
        out = sep(spec.dst).join(["{topic[0]}", "{topic[1]}", "out"])
        target: dict[str, Any] = {
            KAFKA: {"connector": KAFKA, "topic": out, "key": "{topic[1]}:{id}"},
            AMQP: {
                "connector": AMQP,
                "exchange": f"{self.run}-out",
                "routing_key": out,
                "declare_exchange": {"type": "topic"},
            },
            MQTT: {"connector": MQTT, "topic": out, "qos": 1},
            MQTT4: {"connector": MQTT4, "topic": "{topic[0]}/v4/{topic[1]}/out", "qos": 1},
            NATS: {"connector": NATS, "subject": out},
            NATSCORE: {
                "connector": NATS,
                "subject": "{topic[0]}.core.{topic[1]}.out",
                "jetstream": False,
            },
        }[spec.dst]
        return {**target, "mode": spec.mode, **spec.target}

    def config(self) -> dict[str, Any]:
        routes = []
        for spec in self.specs:
            route = {
                "name": spec.name,
                "from": self._from(spec),
                "to": [self._to(spec)],
                **spec.route,
            }
            if spec.legacy:
                route["ingress"] = {
                    "type": "com.example.legacy.{topic[1]}",
                    "source": "urn:legacy:{topic[0]}/{topic[1]}",
                    "subject": "{topic[-1]}",
                }
            routes.append(route)
        used = {r["from"]["connector"] for r in routes}
        used |= {
            t["connector"] for r in routes for t in [*r["to"], r.get("dead_letter") or {}] if t
        }
        ep = self.ep
        mqtt = {"type": "mqtt", "url": ep.mqtt_url, "session_expiry": MQTT_SESSION_EXPIRY}
        connectors = {
            KAFKA: {"type": "kafka", "bootstrap_servers": ep.kafka, "request_timeout_ms": 10000},
            AMQP: {"type": "amqp", "url": ep.amqp},
            MQTT: {**mqtt, "protocol": 5, "client_id": self.gateway_client_id(MQTT)},
            MQTT4: {**mqtt, "protocol": 4, "client_id": self.gateway_client_id(MQTT4)},
            NATS: {"type": "nats", "servers": [ep.nats]},
        }
        return {
            "gateway": {"id": self.run, "drain_timeout_seconds": 15},
            "connectors": {
                k: v | self.options.get(k, {}) for k, v in connectors.items() if k in used
            },
            "routes": routes,
        }

    def write(self, directory: Path) -> Path:
        path = directory / f"{self.run}.yaml"
        path.write_text(yaml.safe_dump(self.config(), sort_keys=False, allow_unicode=True))
        return path

    # -- setup and teardown --------------------------------------------------------------

    async def __aenter__(self) -> Mesh:
        try:
            await self._prepare()
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def _prepare(self) -> None:
        ep, run = self.ep, self.run
        self._amqp = await aio_pika.connect(ep.amqp, timeout=10)
        channel = await self._amqp.channel()
        for name in self.exchanges:
            await channel.declare_exchange(name, "topic", durable=True)
        for spec in self.specs:  # as the gateway will (same arguments): a backlog may build
            if spec.src == AMQP:
                queue = await channel.declare_queue(self.queue(spec), durable=True)
                await queue.bind(f"{run}-in", self.address(spec, "in"))
        rx = await channel.declare_queue(f"{run}-rx", durable=True)
        for spec in self.specs:
            if spec.dst == AMQP and "exchange" not in spec.target:
                await rx.bind(f"{run}-out", self.address(spec, "out"))
        self._nc = await nats.connect(ep.nats, connect_timeout=5)
        await self._nc.jetstream().add_stream(name=f"{run}-rx", subjects=[f"{run}.*.out"])
        self._producer = AIOKafkaProducer(bootstrap_servers=ep.kafka, acks="all")
        await self._producer.start()
        for spec in self.specs:  # have the topics exist before anyone subscribes
            for side, proto in (("in", spec.src), ("out", spec.dst)):
                if proto == KAFKA:
                    await self._producer.partitions_for(self.address(spec, side))
        for topic in self.kafka_topics:
            await self._producer.partitions_for(topic)
        for spec in self.specs:
            if spec.src in (MQTT, MQTT4):
                await self._prime(spec)
        await self._start_side()

    async def _prime(self, spec: Spec) -> None:
        """Create the gateway's persistent source session (and its subscription) up
        front, so that what is published before the gateway subscribes is queued."""
        source = MqttSource(connector=spec.src, topic=self.address(spec, "in"), qos=1)
        client_id = subscriber_client_id(self.gateway_client_id(spec.src), source)
        version = 5 if spec.src == MQTT else 4
        await self._mqtt_session(client_id, version, keep=True, topic=source.topic)
        self._primed.append((client_id, version))

    async def _mqtt_session(
        self, client_id: str, version: int, *, keep: bool, topic: str | None = None
    ) -> None:
        kwargs: dict[str, Any] = {"identifier": client_id, "timeout": 10}
        if version == 5:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = MQTT_SESSION_EXPIRY if keep else 0
            kwargs |= {
                "protocol": aiomqtt.ProtocolVersion.V5,
                "properties": props,
                "clean_start": not keep,
            }
        else:
            kwargs |= {"protocol": aiomqtt.ProtocolVersion.V311, "clean_session": not keep}
        async with aiomqtt.Client(self.ep.mqtt[0], self.ep.mqtt[1], **kwargs) as client:
            if topic is not None:
                await client.subscribe(topic, qos=1)

    async def _start_side(self) -> None:
        """Test-side connectors (publish into sources, consume targets) and receivers."""
        ep, run = self.ep, self.run
        mqtt: dict[str, Any] = {"url": ep.mqtt_url, "clean_start": True, "session_expiry": 0}
        self.connectors = {
            KAFKA: KafkaConnector(
                "kafka",
                KafkaOptions(type="kafka", bootstrap_servers=ep.kafka, request_timeout_ms=10000),
            ),
            AMQP: AmqpConnector("amqp", AmqpOptions(url=ep.amqp)),
            MQTT: MqttConnector("mqtt", MqttOptions(protocol=5, client_id=f"{run}-tx", **mqtt)),
            MQTT4: MqttConnector("mqtt4", MqttOptions(protocol=4, client_id=f"{run}-tx4", **mqtt)),
            NATS: NatsConnector("nats", NatsOptions(servers=(ep.nats,))),
        }
        await asyncio.gather(*(c.start() for c in self.connectors.values()))
        topics = [self.address(s, "out") for s in self.specs if s.dst == KAFKA]
        if topics := topics + self.kafka_topics:
            self._receive(
                KAFKA,
                KafkaSource(
                    connector=KAFKA, topics=topics, group_id=f"{run}-rx", session_timeout_ms=6000
                ),
            )
        self._receive(AMQP, AmqpSource(connector=AMQP, queue=f"{run}-rx", prefetch=500))
        self._receive(
            NATS,
            NatsSource(
                connector=NATS,
                subject=f"{run}.*.out",
                jetstream=JetStreamSource(stream=f"{run}-rx", durable="rx", batch=256),
            ),
        )
        non_durable = (
            (MQTT, MqttSource(connector=MQTT, topic=f"{run}/+/out"), f"{run}/probe/out"),
            (MQTT4, MqttSource(connector=MQTT4, topic=f"{run}/v4/+/out"), f"{run}/v4/probe/out"),
            (
                NATS,
                NatsSource(connector=NATS, subject=f"{run}.core.*.out"),
                f"{run}.core.probe.out",
            ),
        )
        for protocol, source, _ in non_durable:
            self._receive(protocol, source)
        # Subscriptions without a durable backlog must be live before traffic starts.
        await asyncio.gather(*(self._probe(p, addr) for p, _, addr in non_durable))

    def _receive(self, protocol: str, source: Any) -> None:
        connector = self.connectors[protocol]

        async def drain() -> None:
            async for delivery in connector.consume(source):
                try:
                    event, error = connector.decode(delivery), None
                except Exception as exc:  # recorded and reported as a problem
                    event, error = None, f"{type(exc).__name__}: {exc}"
                key = delivery.coordinates.get("key") if protocol == KAFKA else None
                self.arrivals[delivery.address].append(
                    Arrival(
                        delivery.address,
                        event,
                        delivery.payload,
                        None if key is None else str(key),
                        error,
                    )
                )
                await delivery.ack()

        self._tasks.append(asyncio.create_task(drain(), name=f"rx:{protocol}"))

    async def _probe(self, protocol: str, address: str) -> None:
        probe = CloudEvent(id="probe", source="urn:probe", type=PROBE, data=b"p")
        target: Any = (
            MqttTarget(connector=protocol, topic=address, mode="structured")
            if protocol in (MQTT, MQTT4)
            else NatsTarget(connector=NATS, subject=address, jetstream=False)
        )
        for _ in range(40):
            await self.connectors[protocol].publish(target, probe)
            if await within(lambda: bool(self.arrivals.get(address)), 0.5):
                return
        raise AssertionError(f"receiver for {address} never saw its probe")

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*(c.close() for c in self.connectors.values()), return_exceptions=True)
        with contextlib.suppress(Exception):
            for client_id, version in self._primed:
                await self._mqtt_session(client_id, version, keep=False)
        if self._producer is not None:
            await self._producer.stop()
        if self._nc is not None:
            js = self._nc.jetstream()
            names = [f"{self.run}-rx"] + [self.queue(s) for s in self.specs if s.src == NATS]
            for name in names:
                with contextlib.suppress(Exception):
                    await js.delete_stream(name)
            await self._nc.close()
        if self._amqp is not None:
            channel = await self._amqp.channel()
            for queue in [f"{self.run}-rx"] + [self.queue(s) for s in self.specs]:
                await channel.queue_delete(queue)
            for exchange in self.exchanges:
                await channel.exchange_delete(exchange)
            await self._amqp.close()

    # -- while the gateway runs ----------------------------------------------------------

    async def sources_ready(self, seconds: float = WAIT) -> None:
        """AMQP source queues have a consumer and JetStream source streams exist."""
        js = self._nc.jetstream()
        deadline = asyncio.get_running_loop().time() + seconds
        for spec in self.specs:
            while not await self._source_ready(spec, js):
                assert asyncio.get_running_loop().time() < deadline, (
                    f"source of route {spec.name} never became ready"
                )
                await asyncio.sleep(0.1)

    async def _source_ready(self, spec: Spec, js: Any) -> bool:
        if spec.src == AMQP:
            return (await self.amqp_counts(self.queue(spec)))[1] > 0
        if spec.src == NATS:
            try:
                await js.consumer_info(self.queue(spec), "gw")
            except nats.js.errors.NotFoundError:
                return False
        return True

    async def amqp_counts(self, queue: str) -> tuple[int, int]:
        """(ready messages, consumers) of an AMQP queue; (0, 0) while it does not exist."""
        assert self._amqp is not None
        channel = await self._amqp.channel()
        try:
            result = (await channel.declare_queue(queue, passive=True)).declaration_result
        except aio_pika.exceptions.ChannelNotFoundEntity:
            return 0, 0
        await channel.close()
        return result.message_count or 0, result.consumer_count or 0

    async def bind(self, exchange: str, routing_key: str) -> None:
        """Bind the AMQP receiver queue to ``exchange`` (e.g. to make a target routable)."""
        assert self._amqp is not None
        channel = await self._amqp.channel()
        await (await channel.get_queue(f"{self.run}-rx")).bind(exchange, routing_key)
        await channel.close()

    async def jetstream_consumer(self, stream: str, durable: str = "gw") -> Any:
        return await self._nc.jetstream().consumer_info(stream, durable)

    async def publish(self, spec: Spec, event: CloudEvent) -> None:
        """Publish ``event`` into ``spec``'s source with the connector's own publish."""
        addr, mode = self.address(spec, "in"), spec.src_mode
        target: Any = {
            KAFKA: lambda: KafkaTarget(connector=KAFKA, topic=addr, mode=mode),
            AMQP: lambda: AmqpTarget(
                connector=AMQP, exchange=f"{self.run}-in", routing_key=addr, mode=mode
            ),
            MQTT: lambda: MqttTarget(connector=MQTT, topic=addr, mode=mode),
            MQTT4: lambda: MqttTarget(connector=MQTT4, topic=addr, mode="structured"),
            NATS: lambda: NatsTarget(connector=NATS, subject=addr, mode=mode),
        }[spec.src]()
        await self.connectors[spec.src].publish(target, event)

    async def publish_legacy(self, spec: Spec, payload: bytes, n: int) -> str:
        """Publish a plain payload with the raw client; the id ingress must give it."""
        addr = self.address(spec, "in")
        if spec.src == KAFKA:
            meta = await self._producer.send_and_wait(addr, payload)
            return f"{addr}/{meta.partition}/{meta.offset}"
        if spec.src == AMQP:
            assert self._amqp is not None
            channel = await self._amqp.channel(publisher_confirms=True)
            exchange = await channel.get_exchange(f"{self.run}-in")
            await exchange.publish(aio_pika.Message(payload, message_id=f"lg-{n}"), addr)
            await channel.close()
            return f"lg-{n}"
        if spec.src == NATS:
            ack = await self._nc.jetstream().publish(addr, payload)
            return f"{ack.stream}/{ack.seq}"
        version = aiomqtt.ProtocolVersion.V5 if spec.src == MQTT else aiomqtt.ProtocolVersion.V311
        async with aiomqtt.Client(*self.ep.mqtt, protocol=version, timeout=10) as client:
            await client.publish(addr, payload, qos=1)
        return "*"  # MQTT has no message id that survives redelivery: a UUID is made

    def received(self, spec: Spec) -> list[Arrival]:
        return self.arrivals.get(self.address(spec, "out"), [])

    def unique(self, spec: Spec) -> int:
        return len(
            {
                a.payload if spec.legacy else (a.event.id if a.event else "")
                for a in self.received(spec)
            }
        )

    async def until_received(self, counts: dict[str, int], seconds: float = WAIT) -> bool:
        """Wait until each named route's target saw that many distinct events."""
        by_name = {s.name: s for s in self.specs}
        return await within(
            lambda: all(self.unique(by_name[n]) >= c for n, c in counts.items()), seconds
        )
