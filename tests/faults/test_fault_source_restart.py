"""The source brokers restart (or freeze) while the gateway works through a backlog.

Routes read from private source brokers this test owns:

    RabbitMQ queue (private node)    -> NATS JetStream (system)
    Mosquitto QoS 1 (private)        -> RabbitMQ (system)
    NATS JetStream (private)         -> Kafka (session mock)
    Kafka (private mock, frozen)     -> RabbitMQ (system)

Once every route is live, a backlog is fed into every source while the gateway is
frozen (SIGSTOP). The gateway then runs in short slices (SIGCONT, ``SLICE_S``,
SIGSTOP) until every route has delivered some of it: while the test waits for its
consumers to see that, the gateway stands still, so no route can get through its
backlog meanwhile however slow the others are to show progress (waiting with the
gateway running once left a fast route with nothing left: "no backlog left at the
stop"). Still frozen, with every route mid-backlog, RabbitMQ, Mosquitto and NATS are
stopped (SIGTERM) and the Kafka mock frozen (it cannot restart with its data) for
``MESHGATE_FAULT_OUTAGE_S`` seconds; the gateway resumes into the outage.
After they are back, the consumers must come back by themselves: the AMQP source
queue must regain its consumer (not "reconnected with zero consumers") and keep it,
and more events fed after the restart must flow on every route. Nothing fed may be
lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
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

PROBE = 20
BURST = 4000
AFTER = 500
SLICE_S = 0.05  # the gateway runs this long at a time until every route has started


@pytest.mark.timeout(240)
async def test_source_restart_consumers_come_back_and_nothing_is_lost(
    kafka_bootstrap: str,
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
            Pair(AMQP, private_rabbit.url, NATS, NATS_URL, label="from-rabbit"),
            Pair(MQTT, private_mosquitto.url, AMQP, RABBITMQ_URL, label="from-mosquitto"),
            Pair(NATS, private_nats.url, KAFKA, kafka_bootstrap, label="from-nats"),
            Pair(KAFKA, kafka.bootstrap_servers, AMQP, RABBITMQ_URL, label="from-kafka"),
        ]
        from_rabbit = pairs[0]
        async with Scenario(pairs) as scenario:
            gateway = gateways(scenario.write(tmp_path), "gw")
            await gateway.wait_started()
            consumers = Consumers(scenario, from_rabbit)
            assert await consumers.regained(30), "the gateway never consumed its AMQP source"
            # Every route live first (the Kafka group join takes seconds), then the
            # backlog is fed while the gateway is frozen: all routes start on it at the
            # same moment, so the stop below comes in the middle of it on every route,
            # however fast the gateway is.
            await asyncio.gather(*(scenario.feed(pair, PROBE) for pair in pairs))
            assert await until(lambda: all(pair.unique() == PROBE for pair in pairs), 60)
            brokers = [private_rabbit, private_mosquitto, private_nats]
            started = lambda: all(pair.unique() > PROBE for pair in pairs)  # noqa: E731
            with contextlib.ExitStack() as outage:
                with frozen(gateway.pid):
                    await asyncio.gather(*(scenario.feed(pair, BURST) for pair in pairs))
                    assert await run_in_slices(gateway.pid, started, 60), [
                        pair.unique() for pair in pairs
                    ]
                    at_stop = [pair.unique() for pair in pairs]
                    assert all(n < PROBE + BURST for n in at_stop), (
                        f"no backlog left at the stop: {at_stop}"
                    )
                    try:
                        await stop_all(*brokers)
                    finally:
                        outage.enter_context(frozen(kafka.process.pid))
                try:
                    await asyncio.sleep(outage_s)
                finally:
                    outage.close()  # the Kafka mock resumes
                    await restart_all(*brokers)
            during = [pair.unique() for pair in pairs]

            # The AMQP consumer must come back, and stay (not a channel with no consumer).
            assert await consumers.regained(60), "AMQP source never regained its consumer"
            await asyncio.sleep(2.0)
            assert await consumers.count() >= 1, "AMQP consumer vanished after the restart"

            await asyncio.gather(*(scenario.feed(pair, AFTER) for pair in pairs))
            delivered = await scenario.until_delivered(120)
            await asyncio.sleep(1.0)
            for index, pair in enumerate(pairs):
                verb = "frozen" if pair.src == KAFKA else "restarted"
                fault_report.add(
                    f"source {verb} {outage_s:.0f}s",
                    pair,
                    f"delivered {at_stop[index]}/{PROBE + BURST} at the stop, "
                    f"{during[index]} after; +{AFTER} fed after restart",
                )
            assert delivered, {pair.name: pair.tally() for pair in pairs}
            for pair in pairs:
                assert pair.tally()["lost"] == 0, (pair.name, pair.tally())
            assert not scenario.errors
            assert gateway.terminate(60) == 0


async def run_in_slices(pid: int, check: Callable[[], bool], seconds: float) -> bool:
    """Let frozen ``pid`` run ``SLICE_S`` at a time until ``check()`` holds (it is
    checked with ``pid`` frozen again, after its effects had time to show)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            return False
        os.kill(pid, signal.SIGCONT)
        try:
            await asyncio.sleep(SLICE_S)
        finally:
            os.kill(pid, signal.SIGSTOP)
        await until(check, 1.0)  # what the slice published reaches the consumers
    return True


class Consumers:
    """Polls the consumer count of an AMQP source queue."""

    def __init__(self, scenario: Scenario, pair: Pair) -> None:
        self.scenario = scenario
        self.pair = pair

    async def count(self) -> int:
        try:
            _ready, consumers = await self.scenario.queue_depth(self.pair)
        except Exception:  # the node is still booting
            return 0
        return consumers

    async def regained(self, seconds: float) -> bool:
        deadline = asyncio.get_running_loop().time() + seconds
        while await self.count() < 1:
            if asyncio.get_running_loop().time() > deadline:
                return False
            await asyncio.sleep(0.2)
        return True
