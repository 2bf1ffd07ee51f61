"""A graceful stop settles what it delivered, on the AMQP and Kafka sources; the feed's
own second copies are told apart from the gateway's duplicates.

``test_fault_sigterm.py`` failed under load (7-12) with duplicates on amqp -> mqtt and
kafka -> amqp. Traced (2026-12-03): every duplicated id was one the test's feed had
published again after a failed first attempt (``PublishTimeout``: RabbitMQ held the
confirms of ~100 publishes for over 10 s while the gateway consuming that queue was
frozen), and the first attempt had reached the queue all the same: two copies in the
source, each delivered once. The gateway had flushed every coalesced ack before
closing its channel (nothing it delivered before the stop came again). The harness
now counts such ids (``Pair.resent``) and ``Pair.tally`` keeps their extra copies out
of ``dups``.

The gateway runs in-process (``Gateway.stop()`` is what the CLI does on SIGTERM):

* the feed's resend: a publish that reaches the broker and then fails is fed again;
  both copies are delivered, and the tally calls neither a duplicate of the gateway;
* stops mid-backlog on AMQP (coalesced ``basic.ack multiple``) and Kafka (the final
  commit) sources: after each stop and restart, no event delivered before the stop
  comes again and none is delivered twice, and no drain deadline was hit.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from connectors.errors import PublishTimeout
from gateway.config import load_config
from gateway.runtime import Gateway
from tests.brokers import RABBITMQ_URL
from tests.faults.conftest import FaultReport
from tests.faults.harness import AMQP, KAFKA, Pair, Scenario, until

pytestmark = [pytest.mark.integration, pytest.mark.faults]

ROUNDS = 3
# The Kafka source's group session. librdkafka's mock (unlike Kafka, where a group the
# last member left is empty and the next join waits only the initial rebalance delay,
# 0 in the tests) rebalances after a LeaveGroup for the group's session timeout less
# 1 s before it answers the next JoinGroup: with the harness's 6 s every restart here
# waited 5 s (30 s of this test's 36). 3 s (a heartbeat every second) as the Kafka
# connector tests use; the gateway runs in-process and is never frozen here.
KAFKA_SESSION = {"session_timeout_ms": 3000}
BACKLOG = 600  # per route and round, fed before the gateway starts: full windows
STOP_AFTER = 40  # delivered in the round when the stop comes (mid-backlog)


def reached(pair: Pair, count: int) -> Callable[[], bool]:
    """Whether ``pair`` delivered ``count`` distinct events (an ``until`` check)."""
    return lambda: pair.unique() >= count


@pytest.mark.timeout(120)
async def test_a_resent_feed_publish_is_a_copy_in_the_source_not_a_duplicate(
    tmp_path: Path, fault_report: FaultReport
) -> None:
    pair = Pair(AMQP, RABBITMQ_URL, AMQP, RABBITMQ_URL)
    async with Scenario([pair]) as scenario:
        client = await scenario.client(AMQP, RABBITMQ_URL)
        publish = client.publish
        ambiguous = {f"{pair.name}-{n:06d}" for n in (3, 7, 11)}

        async def confirmed_too_late(target: Any, event: Any) -> None:
            await publish(target, event)  # on the broker, but the feed sees a failure
            if event.id in ambiguous:
                ambiguous.discard(event.id)
                raise PublishTimeout("no confirm within the test's patience")

        client.publish = confirmed_too_late  # type: ignore[method-assign]
        gateway = Gateway(load_config(scenario.write(tmp_path)))
        await gateway.start()
        try:
            await scenario.feed(pair, 20)
            assert await until(lambda: sum(pair.received.values()) >= 23, 30), pair.received
            await asyncio.sleep(0.5)  # a fourth copy would show up by now
        finally:
            await gateway.stop()
        tally = pair.tally()
        fault_report.add("feed resends after a failure", pair)
        assert tally["resent"] == 3 and tally["source_copies"] == 3, tally
        assert tally["dups"] == 0 and tally["lost"] == 0, tally


@pytest.mark.timeout(180)
@pytest.mark.parametrize("source", [AMQP, KAFKA])
async def test_stops_mid_backlog_settle_what_was_delivered(
    source: str,
    kafka_bootstrap: str,
    tmp_path: Path,
    fault_report: FaultReport,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="meshgate.runtime")
    pair = Pair(source, kafka_bootstrap if source == KAFKA else RABBITMQ_URL, AMQP, RABBITMQ_URL)
    async with Scenario([pair], source={KAFKA: KAFKA_SESSION}) as scenario:
        config = load_config(scenario.write(tmp_path))
        at_stop: list[int] = []  # delivered in the round when the stop came
        for round_ in range(ROUNDS):
            start = pair.unique()
            await scenario.feed(pair, BACKLOG)
            gateway = Gateway(config)
            await gateway.start()
            try:
                moving = await until(reached(pair, start + STOP_AFTER), 60, 0.01)
                assert moving, pair.tally()
            finally:
                await gateway.stop()  # what SIGTERM does, with deliveries in flight
            at_stop.append(pair.unique() - start)
            before = set(pair.received)
            gateway = Gateway(config)
            await gateway.start()
            try:
                assert await scenario.until_delivered(90), pair.tally()
                await asyncio.sleep(1.0)  # a redelivery would show up by now
            finally:
                await gateway.stop()
            again = sorted(i for i in before if pair.received[i] > 1 and not pair.resent[i])
            assert not again, f"round {round_}: delivered before the stop and again: {again[:10]}"
        fault_report.add(
            f"{ROUNDS} stops mid-backlog (in-process)",
            pair,
            f"delivered at the stops (of {BACKLOG}): {at_stop}",
        )
        tally = pair.tally()
        assert tally["dups"] == 0 and tally["lost"] == 0, tally
        assert "did not finish" not in caplog.text, caplog.text
        assert all(n < BACKLOG for n in at_stop), f"a stop came after the backlog: {at_stop}"
