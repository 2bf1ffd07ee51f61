"""The core's connection supervision: health transitions, one meaning of reconnects,
pacing (steady connections reset the waits, suspicious losses keep them growing), and
consumers restarted after a declared connection error."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest

from connectors.backoff import BackoffPolicy
from connectors.base import Delivery, Health, HealthState
from connectors.errors import ConnectionLost, PublishRejected
from connectors.memory import MemoryConnector, MemoryOptions, MemorySource
from connectors.supervision import Supervisor, SupervisorClosed
from routing.bindings.nats import NatsMessage

FAST = BackoffPolicy(initial=0.001, maximum=0.004)


def supervisor() -> Supervisor:
    return Supervisor(Health(), lambda: "connector t (test)", logging.getLogger("t"), policy=FAST)


async def test_first_connection_then_loss_and_return_counts_one_reconnect() -> None:
    sup = supervisor()
    sup.starting()
    sup.lost("", "refused")  # a failed first attempt: still starting
    assert (sup.health.state, sup.health.detail) == (HealthState.STARTING, "refused")
    sup.connected("")
    assert sup.health.state is HealthState.UP and sup.health.reconnects == 0
    sup.lost("", "reset by peer")
    assert sup.health.state is HealthState.RECONNECTING and sup.health.detail == "reset by peer"
    sup.lost("", "refused")  # failed attempts are not reconnects
    sup.connected("")
    assert sup.health.state is HealthState.UP and sup.health.reconnects == 1


async def test_several_connections_fold_into_one_state_and_count_each() -> None:
    sup = supervisor()
    sup.starting()
    sup.connected("publisher")
    sup.connected("source a")
    sup.lost("publisher", "gone")
    sup.lost("source a", "gone")
    sup.connected("publisher")
    assert sup.health.state is HealthState.RECONNECTING
    assert sup.health.detail == "source a: gone"
    sup.connected("source a")
    assert sup.health.state is HealthState.UP and sup.health.reconnects == 2


async def test_subscriptions_pace_but_neither_count_nor_change_health() -> None:
    sup = supervisor()
    sup.starting()
    sup.connected("")
    sup.connected("queue q", connection=False)
    sup.lost("queue q", "channel closed", connection=False)
    assert sup.health.state is HealthState.UP
    sup.connected("queue q", connection=False)
    assert sup.health.reconnects == 0


async def test_a_source_stopped_while_its_session_is_down_leaves_the_health() -> None:
    sup = supervisor()
    sup.starting()
    sup.connected("publisher")
    sup.attach("source a", "session a")  # the source's own connection (MQTT)
    sup.connected("session a")
    sup.lost("session a", "gone")
    assert sup.health.state is HealthState.RECONNECTING
    sup.forget("source a")  # the route was removed meanwhile
    assert sup.health.state is HealthState.UP and not sup.is_down("session a")


async def test_retry_runs_the_step_until_it_succeeds_and_raises_undeclared_errors() -> None:
    sup = supervisor()
    sup.starting()
    sup.connected("")
    sup.lost("", "dropped")
    calls = 0

    async def connect_once() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionLost(f"refused {calls}")
        return "link"

    assert await sup.retry("", connect_once) == "link"
    assert calls == 3 and sup.health.reconnects == 1 and sup.health.state is HealthState.UP

    async def refused() -> None:
        raise PublishRejected("not a connection error")

    with pytest.raises(PublishRejected):
        await sup.retry("", refused)


async def test_retry_stops_when_the_connector_closes() -> None:
    sup = supervisor()

    async def never() -> None:
        raise ConnectionLost("down")

    task = asyncio.create_task(sup.retry("", never))
    await asyncio.sleep(0.02)
    sup.closed()
    with pytest.raises(SupervisorClosed):
        await asyncio.wait_for(task, 5)
    assert sup.health.state is HealthState.CLOSED


async def test_quick_losses_grow_the_waits_and_a_steady_connection_resets_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sup = supervisor()
    now = [0.0]
    loop = asyncio.get_running_loop()
    monkeypatch.setattr(loop, "time", lambda: now[0])
    for _ in range(3):  # dropped right after connecting: no reset
        sup.connected("s")
        sup.lost("s", "closed")
        sup.next_delay("s")
    line = sup._lines["s"]
    assert line.backoff.attempt == 3
    sup.connected("s")
    now[0] += 5.0  # held: the next loss starts from a short wait
    sup.lost("s", "closed")
    assert line.backoff.attempt == 0

    sup.next_delay("s")
    sup.connected("s")
    now[0] += 5.0
    sup.lost("s", "taken over", suspect=True)  # held, but suspicious: keeps growing
    assert line.backoff.attempt == 1
    sup.connected("s")
    now[0] += 5.0
    sup.lost("s", "closed")
    assert line.backoff.attempt == 1  # not calm yet
    sup.connected("s")
    now[0] += 61.0
    sup.lost("s", "closed")
    assert line.backoff.attempt == 0  # calm again


class _Flaky(MemoryConnector):
    """A memory connector whose subscription is lost after each delivery."""

    subscribed = 0

    def consume(self, source: MemorySource) -> AsyncIterator[Delivery]:  # the core's
        return super(MemoryConnector, self).consume(source)

    async def subscribe(self, source: MemorySource) -> AsyncIterator[Delivery]:
        type(self).subscribed += 1
        async for delivery in super().consume(source):
            yield delivery
            raise ConnectionLost("dropped after one")


async def test_the_core_subscribes_again_after_a_declared_connection_error() -> None:
    connector = _Flaky("flaky", MemoryOptions(type="memory", namespace="sup-test"))
    connector.reconnect = FAST
    await connector.start()
    for n in range(3):
        connector.broker.put("t", NatsMessage(str(n).encode(), {}))
    stream = aiter(connector.consume(MemorySource(connector="flaky", topic="t")))
    got = []
    for _ in range(3):
        delivery = await asyncio.wait_for(anext(stream), 5)
        await delivery.ack()
        got.append(delivery.payload)
    assert got == [b"0", b"1", b"2"]
    assert _Flaky.subscribed == 3
    assert connector.health.state is HealthState.UP and connector.health.reconnects == 0
    await connector.close()
    await stream.aclose()  # type: ignore[attr-defined]
