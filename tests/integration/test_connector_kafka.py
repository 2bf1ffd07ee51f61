"""The ``kafka`` connector against librdkafka's mock cluster: conformance plus Kafka specifics.

Kafka-specific tests: out-of-order acks never let a commit skip an unacked record
(restart redelivers it), two gateways in one consumer group split the partitions
without losing records, ``max_in_flight`` bounds unacked deliveries, pattern
subscriptions, header/key/coordinate mapping, too-large records are rejected, an
unreachable cluster fails ``start``, and a frozen cluster turns into retriable
errors and RECONNECTING health, then recovers. The offset bookkeeping itself is
checked without a broker (``OffsetTracker``).

Topics are auto-created by the mock (4 partitions each) and vanish with it at the
end of the session; every test uses fresh topic and group names.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.conn import CloseReason
from aiokafka.consumer import group_coordinator
from aiokafka.errors import UnsupportedVersionError

from connectors.base import HealthState
from connectors.errors import ConnectionLost, PublishRejected, PublishTimeout
from connectors.kafka import KafkaConnector, KafkaOptions, KafkaSource, KafkaTarget, sink
from connectors.kafka import source as kafka_source
from connectors.kafka.offsets import OffsetTracker
from connectors.testing import sample_event
from connectors.testing.harness import AnyConnector
from gateway.localbrokers import KafkaMockCluster
from routing.bindings import Mode
from tests.brokers import KAFKA_MOCK_REBALANCE_DELAY_MS, unique_name
from tests.integration.connector_hooks import HookedConformance, next_delivery

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

WAIT = 15.0


@contextlib.asynccontextmanager
async def raw_producer(bootstrap: str) -> AsyncIterator[Any]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()


async def wait_until(check: Callable[[], bool], within: float = WAIT) -> None:
    """Poll ``check`` until it is true; ``TimeoutError`` after ``within`` seconds."""
    async with asyncio.timeout(within):
        while True:
            if check():
                return
            await asyncio.sleep(0.05)


async def create_topic(bootstrap: str, topic: str) -> int:
    """Have the mock auto-create ``topic`` (metadata request); returns its partition count."""
    async with raw_producer(bootstrap) as producer:
        return len(await producer.partitions_for(topic))


class TestKafkaConformance(HookedConformance):
    bootstrap: str

    @pytest.fixture(autouse=True)
    def _cluster(self, kafka_bootstrap: str) -> None:
        self.bootstrap = kafka_bootstrap

    def options(self, **changes: Any) -> KafkaOptions:
        fields: dict[str, Any] = {
            "type": "kafka",
            "bootstrap_servers": self.bootstrap,
            "request_timeout_ms": 10_000,
        }
        return KafkaOptions(**(fields | changes))

    def make_connector(self) -> KafkaConnector:
        return KafkaConnector("kafka-test", self.options())

    def source(self, topic: str, group: str | None = None, **changes: Any) -> KafkaSource:
        fields: dict[str, Any] = {
            "connector": "kafka-test",
            "topics": [topic],
            "group_id": group or unique_name("group"),
            # The mock waits up to session timeout - 1 s for members to (re)join.
            "session_timeout_ms": 3000,
        }
        return KafkaSource(**(fields | changes))

    async def make_pair(self, mode: Mode) -> tuple[KafkaSource, KafkaTarget]:
        topic = unique_name("kafka")
        await create_topic(self.bootstrap, topic)
        # One record key: one partition, the lane whose order the suite checks.
        target = KafkaTarget(connector="kafka-test", topic=topic, key="lane", mode=mode)
        return self.source(topic), target

    async def publish_raw(self, target: Any, payload: bytes) -> None:
        async with raw_producer(self.bootstrap) as producer:
            await producer.send_and_wait(target.topic, payload)

    async def bounce(self, connector: KafkaConnector) -> None:
        # The session's mock cluster cannot drop one client's connections, so close
        # every broker connection of the connector's clients under them, as a network
        # fault does: aiokafka reconnects on the next request.
        clients = [session._consumer._client for session in connector._sessions]
        if connector._producer._producer is not None:
            clients.append(connector._producer._producer.client)
        for client in clients:
            for conn in list(client._conns.values()):
                conn.close(reason=CloseReason.CONNECTION_BROKEN)

    def bounded(self, source: Any, limit: int) -> tuple[KafkaConnector, KafkaSource]:
        return self.make_connector(), source.model_copy(update={"max_in_flight": limit})

    # -- Kafka specifics ----------------------------------------------------------

    async def test_out_of_order_acks_never_skip_an_unacked_offset(self) -> None:
        source, target = await self.make_pair(Mode.BINARY)
        keyed = target.model_copy(update={"key": "one-partition"})
        async with self.running() as first:
            stream = aiter(first.consume(source))
            for n in range(3):
                await first.publish(keyed, sample_event(n))
            got = [await next_delivery(stream) for _ in range(3)]
            assert [d.coordinates["offset"] for d in got] == [0, 1, 2]
            await got[2].ack()
            await got[0].ack()  # offset 1 stays unacked: the commit point is 1
            await asyncio.sleep(0.5)  # several commit intervals
        async with self.running() as second:
            stream = aiter(second.consume(source))
            again = [await next_delivery(stream) for _ in range(2)]
            assert [d.coordinates["offset"] for d in again] == [1, 2]
            event = second.decode(again[0])
            assert event is not None and event.id == "evt-1"
            for delivery in again:
                await delivery.ack()

    async def test_consumer_group_splits_partitions_without_loss(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # librdkafka's mock answers a follower's SyncGroup that arrives after the
        # leader's with INVALID_REQUEST (a real broker returns the assignment). With
        # both members in one event loop the leader always wins that race, so the
        # group would never settle: hold the leader's SyncGroup back a little.
        rebalance = group_coordinator.CoordinatorGroupRebalance
        on_join_leader = rebalance._on_join_leader

        async def late_leader(self: Any, response: Any) -> Any:
            await asyncio.sleep(0.2)
            return await on_join_leader(self, response)

        monkeypatch.setattr(rebalance, "_on_join_leader", late_leader)
        topic = unique_name("kafka")
        assert await create_topic(self.bootstrap, topic) >= 2
        source = self.source(topic)
        target = KafkaTarget(connector="kafka-test", topic=topic)
        seen: dict[str, set[str]] = {"a": set(), "b": set()}

        async def drain(name: str, connector: AnyConnector) -> None:
            async for delivery in connector.consume(source):
                event = connector.decode(delivery)
                assert event is not None
                seen[name].add(event.id)
                await delivery.ack()

        async with self.running() as a, self.running() as b:
            tasks = [asyncio.create_task(drain("a", a)), asyncio.create_task(drain("b", b))]
            sent: set[str] = set()
            n = 0
            async with asyncio.timeout(40):
                # Keep publishing (spread over partitions by key) until the group settled
                # and both members got records, then until everything sent arrived.
                while not (seen["a"] and seen["b"]):
                    for _ in range(8):
                        n += 1
                        event = sample_event(n)
                        await a.publish(target.model_copy(update={"key": f"k{n}"}), event)
                        sent.add(event.id)
                    await asyncio.sleep(0.3)
            await wait_until(lambda: sent <= seen["a"] | seen["b"])
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        assert seen["a"] and seen["b"]
        assert sent <= seen["a"] | seen["b"]

    async def test_max_in_flight_bounds_unacked_deliveries(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(kafka_source, "_IDLE_S", 0.3)  # exercise the paused keep-alive polls
        source, target = await self.make_pair(Mode.BINARY)
        source = source.model_copy(update={"max_in_flight": 3})
        async with self.running() as connector:
            for n in range(6):
                await connector.publish(target, sample_event(n))
            stream = aiter(connector.consume(source))
            held = [await next_delivery(stream) for _ in range(3)]
            with pytest.raises(TimeoutError):
                await next_delivery(stream, timeout=2.0)  # the stream survives this timeout
            await held[0].ack()
            more = await next_delivery(stream)
            for delivery in [*held[1:], more]:
                await delivery.ack()

    async def test_pattern_subscription(self) -> None:
        prefix = unique_name("kpat")
        topic = f"{prefix}-orders"
        await create_topic(self.bootstrap, topic)
        source = self.source(topic, topics=None, pattern=f"^{prefix}-.*")
        async with self.running() as connector:
            stream = aiter(connector.consume(source))
            await connector.publish(
                KafkaTarget(connector="kafka-test", topic=topic), sample_event()
            )
            delivery = await next_delivery(stream)
            assert delivery.address == topic
            await delivery.ack()

    async def test_delivery_headers_key_and_coordinates(self) -> None:
        source, target = await self.make_pair(Mode.BINARY)
        async with self.running() as connector:
            stream = aiter(connector.consume(source))
            async with raw_producer(self.bootstrap) as producer:
                await producer.send_and_wait(
                    target.topic,
                    b"legacy",
                    key=b"device-7",
                    headers=[("plain", b"text"), ("blob", b"\xff\x00")],
                )
            delivery = await next_delivery(stream)
            assert delivery.headers == {"plain": "text", "blob": "base64:/wA="}
            assert delivery.message.key == b"device-7"
            partition, offset = delivery.coordinates["partition"], delivery.coordinates["offset"]
            assert delivery.native_id == f"{target.topic}/{partition}/{offset}"
            assert delivery.ordering_key == f"{target.topic}/{partition}"
            assert delivery.coordinates["key"] == "device-7"
            await delivery.ack()

            await connector.publish(target.model_copy(update={"key": "user-1"}), sample_event(1))
            keyed = await next_delivery(stream)
            assert keyed.message.key == b"user-1"
            await keyed.ack()
            by_attribute = target.model_copy(update={"key_from_partitionkey": True})
            await connector.publish(
                by_attribute, sample_event(2, extensions={"partitionkey": "pk-9"})
            )
            keyed = await next_delivery(stream)
            assert keyed.message.key == b"pk-9"
            await keyed.ack()

    async def test_too_large_record_is_rejected(self) -> None:
        _, target = await self.make_pair(Mode.BINARY)
        async with self.running() as connector:
            with pytest.raises(PublishRejected) as caught:
                await connector.publish(target, sample_event(data=b"x" * 2_000_000))
            assert not caught.value.retriable
            await connector.publish(target, sample_event())  # the producer still works

    async def test_producer_falls_back_when_brokers_refuse_idempotence(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # The mock supports InitProducerId, so play a broker that does not.
        class NoIdempotence(AIOKafkaProducer):  # type: ignore[misc]
            def __init__(self, **kwargs: Any) -> None:
                self.wants_pid = kwargs["enable_idempotence"]
                super().__init__(**kwargs)

            async def start(self) -> None:
                if self.wants_pid:
                    raise UnsupportedVersionError("InitProducerId")
                await super().start()

        monkeypatch.setattr(sink, "AIOKafkaProducer", NoIdempotence)
        _, target = await self.make_pair(Mode.BINARY)
        async with self.running() as connector:
            assert isinstance(connector, KafkaConnector) and not connector.idempotent
            await connector.publish(target, sample_event())  # confirmed with acks=all

    async def test_start_fails_when_no_broker_answers(self) -> None:
        connector = KafkaConnector(
            "kafka-down", self.options(bootstrap_servers="127.0.0.1:1", request_timeout_ms=3000)
        )
        with pytest.raises(ConnectionLost):
            await connector.start()
        await connector.close()


def process_state(pid: int) -> str:
    """The one-letter state of ``pid`` from /proc (``T``: stopped)."""
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0]


async def wait_stopped(pid: int) -> None:
    """SIGSTOP is asynchronous: wait until the kernel reports the process stopped."""
    await wait_until(lambda: process_state(pid) in ("T", "t"))


async def test_frozen_cluster_gives_retriable_errors_then_recovers(tmp_path: Any) -> None:
    """SIGSTOP a private mock cluster: publish fails retriably, health follows, then recovers."""
    async with KafkaMockCluster(
        brokers=1, log=tmp_path / "mock.log", rebalance_delay_ms=KAFKA_MOCK_REBALANCE_DELAY_MS
    ) as cluster:
        options = KafkaOptions(
            type="kafka",
            bootstrap_servers=(cluster.bootstrap_servers,),
            request_timeout_ms=2000,
            health_interval_s=0.5,
        )
        target = KafkaTarget(connector="kafka-fault", topic=unique_name("kafka"))
        connector = KafkaConnector("kafka-fault", options)
        await connector.start()
        try:
            await connector.publish(target, sample_event(1))
            os.kill(cluster.process.pid, signal.SIGSTOP)
            try:
                await wait_stopped(cluster.process.pid)
                with pytest.raises((PublishTimeout, ConnectionLost)) as caught:
                    await connector.publish(target, sample_event(2))
                assert caught.value.retriable
                await wait_until(lambda: connector.health.state is HealthState.RECONNECTING)
            finally:
                os.kill(cluster.process.pid, signal.SIGCONT)
            async with asyncio.timeout(WAIT):
                while True:
                    with contextlib.suppress(PublishTimeout, ConnectionLost):
                        await connector.publish(target, sample_event(3))
                        break
            await wait_until(lambda: connector.health.state is HealthState.UP)
            assert connector.health.reconnects >= 1
        finally:
            await connector.close()
        assert connector.health.state is HealthState.CLOSED


# -- offset bookkeeping, no broker ----------------------------------------------------


def test_tracker_commits_only_the_contiguous_acked_prefix() -> None:
    tracker: OffsetTracker[str] = OffsetTracker()
    entries = [tracker.track("p0", offset) for offset in range(4)]
    assert tracker.in_flight == 4
    tracker.ack("p0", entries[2])
    tracker.ack("p0", entries[0])
    assert tracker.due() == {"p0": 1}
    tracker.committed({"p0": 1})
    assert tracker.due() == {}
    tracker.ack("p0", entries[1])
    assert tracker.due() == {"p0": 3}
    assert tracker.in_flight == 1
    assert not tracker.ack("p0", entries[1])  # a second ack changes nothing


def test_tracker_rewind_and_revoke_forget_pending_deliveries() -> None:
    tracker: OffsetTracker[str] = OffsetTracker()
    first = [tracker.track("p0", offset) for offset in (10, 11, 12)]
    other = tracker.track("p1", 5)
    tracker.ack("p0", first[2])
    tracker.rewind("p0", 11)  # nack(requeue) of offset 11: 11 and 12 come again
    assert tracker.in_flight == 2  # offset 10 and p1's 5
    assert not tracker.ack("p0", first[1])  # the old delivery's ack is stale
    again = tracker.track("p0", 11)
    tracker.ack("p0", first[0])
    tracker.ack("p0", again)
    assert tracker.due(["p0"]) == {"p0": 12}
    tracker.revoke(["p1"])
    assert not tracker.ack("p1", other)  # late ack after a rebalance: ignored
    assert tracker.due() == {"p0": 12}
    assert tracker.in_flight == 0


def test_tracker_going_back_forgets_what_comes_again() -> None:
    tracker: OffsetTracker[str] = OffsetTracker()
    old = [tracker.track("p0", offset) for offset in (0, 1, 2)]
    tracker.track("p0", 1)  # the consumer went back (seek): 1 and 2 are redelivered
    assert not old[1].open and not old[2].open and old[0].open
    assert tracker.in_flight == 2


def test_options_validate_and_keep_the_password_secret() -> None:
    options = KafkaOptions.model_validate(
        {
            "type": "kafka",
            "bootstrap_servers": "k1:9092, k2:9092",
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_username": "gateway",
            "sasl_password": "hunter2",
        }
    )
    assert options.bootstrap_servers == ("k1:9092", "k2:9092")
    assert "hunter2" not in repr(options) and "hunter2" not in options.model_dump_json()
    kwargs = options.client_kwargs()
    assert kwargs["sasl_plain_password"] == "hunter2" and kwargs["ssl_context"] is not None
    assert options.producer_kwargs(idempotent=True)["acks"] == "all"
    bad: list[dict[str, Any]] = [
        {"bootstrap_servers": "user:pw@k1:9092"},
        {"bootstrap_servers": "k1:9092", "security_protocol": "SASL_PLAINTEXT"},
    ]
    for fields in bad:
        with pytest.raises(ValueError):
            KafkaOptions.model_validate({"type": "kafka", **fields})
    subscriptions: list[dict[str, Any]] = [
        {},
        {"topics": ["a"], "pattern": "a.*"},
        {"pattern": "("},
        {"topics": []},
    ]
    for fields in subscriptions:
        with pytest.raises(ValueError):
            KafkaSource.model_validate({"connector": "k", "group_id": "g", **fields})
