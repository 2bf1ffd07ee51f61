"""SIGTERM mid-stream: in-flight work drains and is committed; the restart duplicates nothing.

Four routes whose targets do not deduplicate (so a duplicate would be seen):

    NATS JetStream (system) -> Kafka (session mock)
    Kafka (session mock)    -> RabbitMQ (system)
    RabbitMQ queue (system) -> Mosquitto (private)
    Mosquitto QoS 1         -> RabbitMQ (system)

The gateway gets SIGTERM 50-200 ms after it resumed (SIGCONT) with a backlog fed while
it was frozen, so every route has a full in-flight window; events fed after the
freeze (see ``FREEZE_MAX_S``) keep arriving through the stop. It must exit 0
after draining (every delivery it took is published and acknowledged, Kafka offsets
committed, JetStream acks flushed, MQTT acks written). A new process then finishes
the stream: nothing lost, and no event delivered twice.

The freeze lasts at most ``FREEZE_MAX_S``, well within the Kafka source's group
session (6 s, a heartbeat every 2 s): a member frozen longer is expelled, its commits
are refused (UnknownMemberId), and the restart re-reads what it had acked. That is a
duplicate of the freeze, not of the stop (seen: the 20 probe events again on
Kafka -> RabbitMQ when feeding the backlog took 10 s on a busy machine).

A feed publish that failed and was published again may leave two copies in the source
(seen under load 7-10: RabbitMQ held the confirms for the queue of the frozen gateway
over 10 s); ``Pair.tally`` does not count those as the gateway's duplicates
(``test_fault_stop_settles.py``).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.brokers import NATS_URL, RABBITMQ_URL
from tests.faults.brokers import PrivateMosquitto, frozen
from tests.faults.conftest import FaultReport
from tests.faults.gateway import GatewayProcess
from tests.faults.harness import AMQP, KAFKA, MQTT, NATS, Pair, Scenario, until

pytestmark = [pytest.mark.integration, pytest.mark.faults]

EVENTS = 2500  # per route
PROBE = 20  # per route, before the backlog: every route is live
FREEZE_MAX_S = 2.0  # the feed goes on after this, with the gateway running


@pytest.mark.timeout(180)
async def test_sigterm_drains_and_restart_delivers_no_duplicates(
    kafka_bootstrap: str,
    private_mosquitto: PrivateMosquitto,
    gateways: Callable[[Path, str], GatewayProcess],
    tmp_path: Path,
    rng: random.Random,
    fault_report: FaultReport,
) -> None:
    mqtt = private_mosquitto.url
    pairs = [
        Pair(NATS, NATS_URL, KAFKA, kafka_bootstrap),
        Pair(KAFKA, kafka_bootstrap, AMQP, RABBITMQ_URL),
        Pair(AMQP, RABBITMQ_URL, MQTT, mqtt),
        Pair(MQTT, mqtt, AMQP, RABBITMQ_URL),
    ]
    async with Scenario(pairs) as scenario:
        gateway = gateways(scenario.write(tmp_path), "gw")
        await gateway.wait_started()
        # Every route live first, then the stream is fed as a backlog while the
        # gateway is frozen: it resumes with full in-flight windows on every route and
        # gets the SIGTERM mid-backlog however fast it is. (Stops with events arriving
        # all along are looped in test_fault_stop_traffic.py.)
        await asyncio.gather(*(scenario.feed(pair, PROBE) for pair in pairs))
        assert await until(lambda: all(pair.unique() == PROBE for pair in pairs), 60)
        feeding = asyncio.ensure_future(
            asyncio.gather(*(scenario.feed(pair, EVENTS - PROBE) for pair in pairs))
        )
        with frozen(gateway.pid):
            await asyncio.wait({feeding}, timeout=FREEZE_MAX_S)
        await asyncio.sleep(rng.uniform(0.05, 0.2))
        at_term = [pair.unique() for pair in pairs]
        began = time.monotonic()
        code = await asyncio.to_thread(gateway.terminate, 60)
        drained_s = time.monotonic() - began
        log = gateway.current_log()
        after_exit = [pair.unique() for pair in pairs]
        before_stop = [set(pair.received) for pair in pairs]  # delivered by the first process
        gateway.start()
        await gateway.wait_started()
        await feeding
        delivered = await scenario.until_delivered(120)
        await asyncio.sleep(1.5)  # a duplicate would show up by now
        # Duplicates across the stop: delivered before it, and again after the restart.
        across = [
            sum(pair.received[i] > 1 for i in ids)
            for pair, ids in zip(pairs, before_stop, strict=True)
        ]
        for index, pair in enumerate(pairs):
            fault_report.add(
                "SIGTERM mid-stream + restart",
                pair,
                f"SIGTERM at {at_term[index]} delivered, {after_exit[index]} after the "
                f"drain ({drained_s:.1f}s), exit {code}; {across[index]} of those came again",
            )
        assert code == 0, log[-3000:]
        assert "draining in-flight" in log and "did not finish" not in log, log[-3000:]
        assert all(n < EVENTS for n in at_term), f"SIGTERM came after a stream: {at_term}"
        assert delivered, {pair.name: pair.tally() for pair in pairs}
        for pair in pairs:
            tally = pair.tally()
            assert tally["lost"] == 0 and tally["unexpected"] == 0, (pair.name, tally)
        assert gateway.terminate(60) == 0
        duplicated = {pair.name: pair.tally() for pair in pairs if pair.tally()["dups"]}
        assert not duplicated, f"duplicates after a graceful stop: {duplicated}"
