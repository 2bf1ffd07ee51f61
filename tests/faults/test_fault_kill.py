"""SIGKILL the gateway at random moments while events stream; a new process takes over.

Four routes run in one gateway process, so every kill hits all of them mid-stream:
NATS JetStream -> Kafka, Kafka -> AMQP, MQTT QoS 1 -> NATS JetStream, AMQP -> MQTT.
After each kill a fresh ``python -m gateway.cli run`` starts at once. The guarantee
is at-least-once: nothing may be lost, and the duplicates (counted) must stay within
what was in flight at each kill (the source's unacknowledged window: route
``max_in_flight`` plus what the source buffers, plus for Kafka the acked records not
yet committed).
"""

from __future__ import annotations

import asyncio
import functools
import os
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.brokers import NATS_URL, RABBITMQ_URL
from tests.faults.brokers import PrivateMosquitto
from tests.faults.conftest import FaultReport
from tests.faults.gateway import GatewayProcess
from tests.faults.harness import AMQP, KAFKA, MQTT, NATS, Pair, Scenario, until

pytestmark = [pytest.mark.integration, pytest.mark.faults]

EVENTS = int(os.environ.get("MESHGATE_FAULT_EVENTS", "22000"))
KILLS = 4
RATE = 150.0  # events/s per route: ~37 s of stream with the default EVENTS
MAX_IN_FLIGHT = 256  # the route default
# What one kill can leave unacknowledged (or acked but not committed) per source.
WINDOW = {
    NATS: MAX_IN_FLIGHT + 64,  # + one pull batch buffered
    KAFKA: MAX_IN_FLIGHT + 500,  # + commit_every acks not yet committed
    AMQP: 100,  # prefetch: the broker hands out no more unacked deliveries
    MQTT: 100,  # receive_maximum: the broker keeps no more in flight
}


@pytest.mark.timeout(300)
async def test_sigkill_at_random_moments_loses_nothing(
    kafka_bootstrap: str,
    private_mosquitto: PrivateMosquitto,
    gateways: Callable[[Path, str], GatewayProcess],
    tmp_path: Path,
    rng: random.Random,
    fault_report: FaultReport,
) -> None:
    mqtt = private_mosquitto.url  # max_queued_messages 0: the broker itself drops nothing
    pairs = [
        Pair(NATS, NATS_URL, KAFKA, kafka_bootstrap),
        Pair(KAFKA, kafka_bootstrap, AMQP, RABBITMQ_URL),
        Pair(MQTT, mqtt, NATS, NATS_URL),
        Pair(AMQP, RABBITMQ_URL, MQTT, mqtt),
    ]
    # ack_wait 5 s: a killed gateway's unacked JetStream deliveries come back sooner.
    async with Scenario(pairs, source={NATS: {"ack_wait_seconds": 5}}) as scenario:
        gateway = gateways(scenario.write(tmp_path), "gw")
        await gateway.wait_started()
        per_pair = -(-EVENTS // len(pairs))
        # Paced so the stream outlasts the kills (each waits for the Kafka group to
        # recover) however fast the gateway keeps up: every kill lands mid-stream.
        feeding = asyncio.gather(*(scenario.feed(pair, per_pair, rate=RATE) for pair in pairs))
        moments: list[str] = []
        hit: dict[str, int] = {pair.name: 0 for pair in pairs}  # kills while it flowed
        for _ in range(KILLS):
            # Kill at a random moment once every unfinished route flows again (the
            # Kafka group needs the dead member's session to time out first).
            mark = {pair.name: pair.unique() for pair in pairs}
            await until(functools.partial(flowing, pairs, mark, per_pair), 20)
            await asyncio.sleep(rng.uniform(0.1, 1.5))
            for pair in pairs:
                if mark[pair.name] < pair.unique() < per_pair:
                    hit[pair.name] += 1
            moments.append("/".join(str(pair.unique()) for pair in pairs))
            gateway.kill()
            gateway.start()
            await gateway.wait_started()
        await feeding
        assert all(hit.values()), f"a route was never killed mid-stream: {hit} {moments}"
        delivered = await scenario.until_delivered(150)
        await asyncio.sleep(1.0)  # let late duplicates arrive so they are counted
        for pair in pairs:
            fault_report.add(
                "SIGKILL x4 mid-stream",
                pair,
                f"{hit[pair.name]} kills while it flowed; delivered at kills {' '.join(moments)}",
            )
        assert delivered, {pair.name: pair.tally() for pair in pairs}
        assert not scenario.errors
        for pair in pairs:
            tally = pair.tally()
            assert tally["lost"] == 0 and tally["unexpected"] == 0, (pair.name, tally)
            assert tally["dups"] <= KILLS * WINDOW[pair.src], (pair.name, tally)
        assert gateway.terminate(60) == 0


def flowing(pairs: list[Pair], mark: dict[str, int], total: int) -> bool:
    """Every route delivered 30 more events since ``mark`` (or finished)."""
    return all(p.unique() >= min(mark[p.name] + 30, total) for p in pairs)
