"""A route's target broker goes away under load: frozen (SIGSTOP), then stopped.

Four routes in one gateway process, each into a private target broker that this test
owns (the shared system brokers serve as sources only):

    NATS JetStream (system) -> RabbitMQ (private node)
    NATS JetStream (system) -> Mosquitto (private)
    RabbitMQ queue (system) -> NATS JetStream (private)
    NATS JetStream (system) -> Kafka (private mock cluster)

Events are fed at a steady rate the whole time. Phase 1 freezes all four targets for
``MESHGATE_FAULT_OUTAGE_S`` seconds (SIGSTOP; TCP stays open, nothing answers), phase
2 stops RabbitMQ, Mosquitto and NATS (SIGTERM) for as long and starts them again on
the same port and data (the Kafka mock cannot restart with its data, so it is only
frozen). During each outage the gateway must stop consuming: the source backlog
(JetStream ``num_pending``, RabbitMQ queue depth) grows by nearly everything fed, and
the gateway's resident memory (VmRSS) stays bounded. After recovery everything fed
must arrive (duplicates are allowed and counted).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.localbrokers import KafkaMockCluster
from tests.brokers import KAFKA_MOCK_REBALANCE_DELAY_MS, NATS_URL, RABBITMQ_URL
from tests.faults.brokers import (
    PrivateMosquitto,
    PrivateNats,
    PrivateRabbit,
    frozen,
    restart_all,
    stop_all,
)
from tests.faults.conftest import FaultReport
from tests.faults.gateway import GatewayProcess
from tests.faults.harness import AMQP, KAFKA, MQTT, NATS, Pair, Scenario, until

pytestmark = [pytest.mark.integration, pytest.mark.faults]

RATE = 120.0  # events per second per route
MAX_IN_FLIGHT = 256
RSS_GROWTH_LIMIT_KIB = 64 * 1024


class Probe:
    """Samples the gateway's RSS and every route's source backlog."""

    def __init__(self, scenario: Scenario, gateway: GatewayProcess) -> None:
        self.scenario = scenario
        self.gateway = gateway
        self.rss: list[tuple[str, int]] = []
        self.phase = "warm-up"
        self._task: asyncio.Task[None] | None = None

    async def backlog(self, pair: Pair) -> int:
        if pair.src == NATS:
            pending, _ack_pending = await self.scenario.jetstream_pending(pair)
            return pending
        ready, _consumers = await self.scenario.queue_depth(pair)
        return ready

    async def backlogs(self) -> dict[str, int]:
        values = await asyncio.gather(*(self.backlog(p) for p in self.scenario.pairs))
        return {p.name: v for p, v in zip(self.scenario.pairs, values, strict=True)}

    async def _sample(self) -> None:
        while True:
            self.rss.append((self.phase, self.gateway.rss_kib()))
            await asyncio.sleep(0.25)

    def start(self) -> None:
        self._task = asyncio.create_task(self._sample())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def peak(self, phase: str | None = None) -> int:
        return max((kib for p, kib in self.rss if phase is None or p == phase), default=0)


async def outage(
    probe: Probe,
    name: str,
    seconds: float,
    affected: list[Pair],
    record: dict[str, list[str]],
) -> None:
    """Measure one outage that is already in progress; backlog must grow meanwhile."""
    probe.phase = name
    began = time.monotonic()
    await asyncio.sleep(min(1.5, seconds / 3))  # the in-flight window fills up first
    before, fed_before = await probe.backlogs(), {p.name: len(p.sent) for p in affected}
    await asyncio.sleep(max(0.0, seconds - (time.monotonic() - began)))
    after, fed_after = await probe.backlogs(), {p.name: len(p.sent) for p in affected}
    for pair in affected:
        fed = fed_after[pair.name] - fed_before[pair.name]
        grew = after[pair.name] - before[pair.name]
        taken = fed - grew  # what the gateway pulled from its source meanwhile
        record[pair.name].append(
            f"{name}: backlog {before[pair.name]}->{after[pair.name]} (+{grew} of {fed} fed)"
        )
        assert fed > 0, (name, pair.name)
        assert taken <= MAX_IN_FLIGHT + 64, (name, pair.name, before, after, fed)


@pytest.mark.timeout(240)
async def test_target_outage_applies_backpressure_and_loses_nothing(
    private_rabbit: PrivateRabbit,
    private_mosquitto: PrivateMosquitto,
    private_nats: PrivateNats,
    gateways: Callable[[Path, str], GatewayProcess],
    tmp_path: Path,
    outage_s: float,
    fault_report: FaultReport,
) -> None:
    async with KafkaMockCluster(
        log=tmp_path / "kafka.log", rebalance_delay_ms=KAFKA_MOCK_REBALANCE_DELAY_MS
    ) as kafka:
        pairs = [
            Pair(NATS, NATS_URL, AMQP, private_rabbit.url, label="to-rabbit"),
            Pair(NATS, NATS_URL, MQTT, private_mosquitto.url, label="to-mosquitto"),
            Pair(AMQP, RABBITMQ_URL, NATS, private_nats.url, label="to-nats"),
            Pair(NATS, NATS_URL, KAFKA, kafka.bootstrap_servers, label="to-kafka"),
        ]
        to_rabbit, to_mosquitto, to_nats, to_kafka = pairs
        async with Scenario(pairs, source={AMQP: {"prefetch": 100}}) as scenario:
            gateway = gateways(scenario.write(tmp_path), "gw")
            await gateway.wait_started()
            stop_feeding = asyncio.Event()

            async def feed(pair: Pair) -> None:
                while not stop_feeding.is_set():
                    await scenario.feed(pair, int(RATE), rate=RATE)

            feeders = [asyncio.create_task(feed(pair)) for pair in pairs]
            probe = Probe(scenario, gateway)
            probe.start()
            record: dict[str, list[str]] = {pair.name: [] for pair in pairs}
            try:
                assert await until(lambda: all(p.unique() > 0 for p in pairs), 30)
                await asyncio.sleep(1.0)
                baseline = probe.peak("warm-up")

                with contextlib.ExitStack() as stack:  # SIGCONT on any way out
                    stack.enter_context(private_rabbit.frozen())
                    stack.enter_context(private_mosquitto.frozen())
                    stack.enter_context(private_nats.frozen())
                    stack.enter_context(frozen(kafka.process.pid))
                    await outage(probe, "frozen", outage_s, pairs, record)
                probe.phase = "recovery 1"
                marks = {p.name: len(p.sent) for p in pairs}
                assert await until(lambda: all(p.unique() >= marks[p.name] for p in pairs), 90)

                stopped = [private_rabbit, private_mosquitto, private_nats]
                await stop_all(*stopped)
                try:
                    await outage(
                        probe, "stopped", outage_s, [to_rabbit, to_mosquitto, to_nats], record
                    )
                finally:
                    await restart_all(*stopped)
                probe.phase = "recovery 2"
            finally:
                stop_feeding.set()
                await asyncio.gather(*feeders, return_exceptions=True)
            delivered = await scenario.until_delivered(120)
            await asyncio.sleep(1.0)
            await probe.stop()
            peak = max(probe.peak("frozen"), probe.peak("stopped"))
            for pair in pairs:
                notes = "; ".join(record[pair.name])
                fault_report.add(
                    f"target outage {outage_s:.0f}s+{outage_s:.0f}s",
                    pair,
                    f"{notes}; gateway RSS {baseline // 1024}->{peak // 1024} MiB",
                )
            assert delivered, {p.name: p.tally() for p in pairs}
            for pair in pairs:
                assert pair.tally()["lost"] == 0, (pair.name, pair.tally())
            assert peak - baseline <= RSS_GROWTH_LIMIT_KIB, (baseline, peak)
            assert to_kafka.received and to_nats.received
            assert gateway.terminate(60) == 0
