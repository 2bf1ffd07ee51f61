"""Two gateways share each source through the broker's own work sharing; one is killed.

Gateways A and B run the same routes, sharing:

    Kafka consumer group            Kafka (session mock)   -> RabbitMQ (system)
    AMQP competing consumers        RabbitMQ queue         -> Kafka (session mock)
    MQTT 5 shared subscription      Mosquitto (private)    -> RabbitMQ (system)
    JetStream durable pull consumer NATS (system)          -> Kafka (session mock)

Once both take part in every route, A gets SIGKILL while events stream; B must take
over each source (Kafka: rebalance after A's session times out; AMQP: A's unacked
deliveries are requeued at once; JetStream: after ``ack_wait_seconds``; MQTT: see
below) and deliver everything. Duplicates are counted.

MQTT is the exception the test documents: a shared subscription's messages that
Mosquitto already handed to A's session (in flight, or queued for it while it is
offline) stay in that persistent session; MQTT 5 (4.8.2) lets a server keep them for
that session. So after B has taken over all new traffic, a replacement for A (same
client id) is started, and the route must be complete only after it resumed A's
session. The table shows how many events waited for it.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.brokers import NATS_URL, RABBITMQ_URL
from tests.faults.brokers import PrivateMosquitto
from tests.faults.conftest import FaultReport
from tests.faults.gateway import GatewayProcess
from tests.faults.harness import AMQP, KAFKA, MQTT, NATS, Pair, Scenario, until
from tests.faults.kafkagroup import assignments, form_pair, group_log, settled

pytestmark = [pytest.mark.integration, pytest.mark.faults]

EVENTS = 3000  # per route
RATE = 150.0  # events/s per route: 20 s of stream


@pytest.mark.timeout(240)
async def test_survivor_takes_over_every_shared_source(
    kafka_bootstrap: str,
    private_mosquitto: PrivateMosquitto,
    gateways: Callable[[Path, str], GatewayProcess],
    tmp_path: Path,
    rng: random.Random,
    fault_report: FaultReport,
) -> None:
    pairs = [
        Pair(KAFKA, kafka_bootstrap, AMQP, RABBITMQ_URL, label="group-kafka"),
        Pair(AMQP, RABBITMQ_URL, KAFKA, kafka_bootstrap, label="competing-amqp"),
        Pair(MQTT, private_mosquitto.url, AMQP, RABBITMQ_URL, label="shared-mqtt"),
        Pair(NATS, NATS_URL, KAFKA, kafka_bootstrap, label="durable-nats"),
    ]
    run_ids = ["a", "b"]
    scenario = Scenario(
        pairs,
        source={MQTT: {"share_group": "meshgate"}, NATS: {"ack_wait_seconds": 5}},
        gateway_ids=[],  # set below, once the run token exists
    )
    ids = [f"{scenario.run}-{name}" for name in run_ids]
    scenario.gateway_ids = ids
    async with scenario:
        # The Kafka group is formed one member at a time: A alone (the mock's leader),
        # then B (tests.faults.kafkagroup).
        a = gateways(scenario.write(tmp_path, ids[0]), "gw-a")
        session = scenario.source_options(pairs[0])["session_timeout_ms"] / 1000
        b = await form_pair(a, lambda: gateways(scenario.write(tmp_path, ids[1]), "gw-b"), session)
        # Paced so the kill lands mid-stream however fast the gateways are.
        feeding = asyncio.gather(*(scenario.feed(pair, EVENTS, rate=RATE) for pair in pairs))
        # Both must be working (Kafka: the group has two members with partitions).
        assert await until(lambda: settled([a, b]), 60), (assignments([a, b]), group_log(b))
        await asyncio.sleep(rng.uniform(0.5, 2.0))
        at_kill = [pair.unique() for pair in pairs]
        a.kill()
        await feeding
        shared_mqtt = pairs[2]
        others = [pair for pair in pairs if pair is not shared_mqtt]
        survivor_done = await scenario.until_delivered(120, others)
        mqtt_before_replacement = shared_mqtt.unique()
        replacement = gateways(scenario.write(tmp_path, ids[0]), "gw-a2")
        await replacement.wait_started()
        delivered = await scenario.until_delivered(90)
        await asyncio.sleep(1.0)
        for index, pair in enumerate(pairs):
            note = f"A killed at {at_kill[index]} delivered; B alone delivered the rest"
            if pair is shared_mqtt:
                waiting = EVENTS - mqtt_before_replacement
                note = (
                    f"A killed at {at_kill[index]}; {waiting} stayed in A's session "
                    "until a replacement of A resumed it"
                )
            fault_report.add("2 gateways share, one SIGKILLed", pair, note)
        assert survivor_done, {pair.name: pair.tally() for pair in others}
        assert delivered, {pair.name: pair.tally() for pair in pairs}
        for pair in pairs:
            assert pair.tally()["lost"] == 0, (pair.name, pair.tally())
        assert "assigned" in b.log_text()
        for gateway in (b, replacement):
            assert gateway.terminate(60) == 0
