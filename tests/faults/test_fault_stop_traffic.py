"""Graceful stops while events keep arriving: nothing delivered before a stop comes again.

Two routes in one gateway, run in-process (``gateway.runtime.Gateway``: on SIGTERM the
CLI calls exactly ``Gateway.stop()``), so a stop and restart costs well under a
second instead of a child process start:

    NATS JetStream (system) -> Kafka (session mock)
    Mosquitto QoS 1 (private) -> RabbitMQ (system)

Each round: events are published continuously into both sources; 0.1-0.4 s later
the gateway stops while they keep arriving (deliveries in flight, a pull pending),
stays down a moment, and a new gateway starts while they still arrive; then the feed
pauses until everything sent was delivered. A round fails when a duplicate reaches a
target during it (an event delivered before the stop and again after the restart).
A JetStream message lost at a stop (an ack that never left, or a message the server
sent into the stopped gateway's pull request as it unsubscribed) would only come back
after ``ack_wait_seconds`` (30 s): so every round must catch up well before that, and
at the end, once the last gateway stopped on a quiet stream, the durable must have no
unacknowledged message left. How long each round took to catch up is reported: the
messages a stop gives back reach the next gateway as soon as the stopped gateway's
pull request is over (docs/delivery.md, "Stopping and crashing").

``MESHGATE_FAULT_STOP_ROUNDS`` sets the number of rounds (default 20).
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import time
from collections.abc import Iterable
from pathlib import Path

import pytest

from gateway.config import GatewayConfig, load_config
from gateway.runtime import Gateway
from tests.brokers import NATS_URL, RABBITMQ_URL
from tests.faults.brokers import PrivateMosquitto
from tests.faults.conftest import FaultReport
from tests.faults.harness import AMQP, KAFKA, MQTT, NATS, Pair, Scenario, until

pytestmark = [pytest.mark.integration, pytest.mark.faults]

ROUNDS = int(os.environ.get("MESHGATE_FAULT_STOP_ROUNDS", "20"))
PROBE = 20  # per route, before the first round: every route is live
CHUNK = 20  # the feed publishes this many events at a time, paced at RATE
RATE = 1000.0  # events/s per route while feeding
CATCH_UP_S = 60.0  # > ack_wait_seconds (30): anything not delivered by then is lost
STRANDED_S = 15.0  # < ack_wait_seconds: a round slower than this waited for a redelivery


class Feed:
    """Publishes events into every pair's source continuously until ``stop``."""

    def __init__(self, scenario: Scenario, pairs: Iterable[Pair]) -> None:
        self.scenario = scenario
        self.pairs = list(pairs)
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._stopping.clear()
        self._tasks = [asyncio.create_task(self._run(pair)) for pair in self.pairs]

    async def _run(self, pair: Pair) -> None:
        while not self._stopping.is_set():
            await self.scenario.feed(pair, CHUNK, rate=RATE, concurrency=CHUNK)

    async def stop(self) -> None:
        self._stopping.set()
        await asyncio.gather(*self._tasks)


def dups(pair: Pair) -> int:
    return pair.tally()["dups"]


async def caught_up(scenario: Scenario, pair: Pair, times: dict[str, list[float]]) -> None:
    """Wait until ``pair`` delivered everything sent; record how long that took."""
    began = time.monotonic()
    assert await scenario.until_delivered(CATCH_UP_S, [pair]), pair.tally()
    times[pair.name].append(time.monotonic() - began)


@pytest.mark.timeout(420)
async def test_stops_with_events_arriving_deliver_nothing_twice(
    kafka_bootstrap: str,
    private_mosquitto: PrivateMosquitto,
    tmp_path: Path,
    rng: random.Random,
    fault_report: FaultReport,
) -> None:
    pairs = [
        Pair(NATS, NATS_URL, KAFKA, kafka_bootstrap),
        Pair(MQTT, private_mosquitto.url, AMQP, RABBITMQ_URL),
    ]
    jetstream = pairs[0]
    async with Scenario(pairs) as scenario:
        config: GatewayConfig = load_config(scenario.write(tmp_path))
        gateway = Gateway(config)
        await gateway.start()
        feed = Feed(scenario, pairs)
        failed: dict[str, list[str]] = {pair.name: [] for pair in pairs}
        catch_up: dict[str, list[float]] = {pair.name: [] for pair in pairs}
        in_flight: list[int] = []
        began = time.monotonic()
        try:
            await asyncio.gather(*(scenario.feed(pair, PROBE) for pair in pairs))
            assert await until(lambda: all(pair.unique() == PROBE for pair in pairs), 60)
            for round_ in range(ROUNDS):
                before = {pair.name: dups(pair) for pair in pairs}
                feed.start()
                await asyncio.sleep(rng.uniform(0.1, 0.4))
                in_flight.append(gateway.in_flight())
                await gateway.stop()  # what SIGTERM does; events keep arriving
                await asyncio.sleep(rng.uniform(0.0, 0.2))
                gateway = Gateway(config)
                await gateway.start()
                await asyncio.sleep(rng.uniform(0.05, 0.2))
                await feed.stop()
                await asyncio.gather(*(caught_up(scenario, pair, catch_up) for pair in pairs))
                for pair in pairs:
                    if new := dups(pair) - before[pair.name]:
                        failed[pair.name].append(f"round {round_}: {new} duplicates")
        finally:
            await gateway.stop()
        # The last gateway stopped on a quiet stream: an unacknowledged message now is
        # a lost (or late) ack, which JetStream would redeliver after ack_wait.
        pending = await scenario.jetstream_pending(jetstream)
        elapsed = time.monotonic() - began
        for pair in pairs:
            fault_report.add(
                f"{ROUNDS} stops with events arriving",
                pair,
                f"{ROUNDS - len(failed[pair.name])}/{ROUNDS} rounds without duplicates; "
                f"catch-up median {statistics.median(catch_up[pair.name]):.1f}s, max "
                f"{max(catch_up[pair.name]):.1f}s; {elapsed:.0f}s in all",
            )
        print(
            f"rounds clean: { {name: ROUNDS - len(f) for name, f in failed.items()} }; "
            f"in flight at the stops: {in_flight}; catch-up s: "
            f"{ {name: [round(s, 1) for s in times] for name, times in catch_up.items()} }; "
            f"JetStream (pending, ack pending) {pending}"
        )
        for pair in pairs:
            tally = pair.tally()
            assert tally["lost"] == 0 and tally["unexpected"] == 0, (pair.name, tally)
        assert not any(failed.values()), failed
        slow = [round(s, 1) for s in catch_up[jetstream.name] if s >= STRANDED_S]
        assert not slow, f"JetStream rounds that waited for ack_wait redeliveries: {slow}"
        assert pending == (0, 0), f"JetStream messages left unacknowledged: {pending}"
        for pair in pairs:
            assert pair.tally()["dups"] == 0, (pair.name, pair.tally())
