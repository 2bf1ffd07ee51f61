"""The batch path (gateway.batch) with the in-memory connector given ``publish_many``.

A burst is planned, published and acked as batches; one failing event is retried or
dead-lettered alone while the rest of its batch is acked; ordered routes keep the
per-delivery path.
"""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from connectors.errors import ConnectionLost, PublishRejected
from connectors.memory import MemoryBroker, MemoryConnector
from gateway.config import load_config
from gateway.runtime import Gateway
from routing.bindings import Mode
from routing.bindings import nats as binding
from routing.event import CloudEvent
from tests.polling import eventually

HEADER = """
gateway: {id: batch-gw, drain_timeout_seconds: 5, state_dir: 'STATE'}
connectors:
  mem: {type: memory}
routes:
"""


def event(n: int) -> CloudEvent:
    return CloudEvent(id=f"e{n}", source="urn:test", type="com.acme.thing", data=b"{}")


def put(topic: str, ev: CloudEvent) -> None:
    MemoryBroker.get("default").put(topic, binding.to_message(ev, Mode.BINARY))


def ids(topic: str) -> list[str]:
    out = []
    for message in MemoryBroker.get("default").drain(topic):
        decoded = binding.from_message(message)
        assert decoded is not None
        out.append(decoded.id)
    return out


class Faults:
    """What the patched ``publish_many`` fails: event id -> errors to raise in turn."""

    def __init__(self) -> None:
        self.errors: dict[str, list[Exception]] = {}
        self.calls: list[int] = []  # items per publish_many call


@pytest.fixture
def faults(monkeypatch: pytest.MonkeyPatch) -> Faults:
    MemoryBroker.reset()
    faults = Faults()

    async def publish_many(
        self: MemoryConnector, items: Sequence[tuple[Any, CloudEvent]]
    ) -> list[Exception | None]:
        faults.calls.append(len(items))
        outcomes: list[Exception | None] = []
        for target, ev in items:
            pending = faults.errors.get(ev.id)
            if pending:
                outcomes.append(pending.pop(0))
                continue
            await self.publish(target, ev)
            outcomes.append(None)
        return outcomes

    # The published path is also taken by the retries: those go through publish().
    original = MemoryConnector.publish

    async def publish(self: MemoryConnector, target: Any, ev: CloudEvent) -> None:
        pending = faults.errors.get(ev.id)
        if pending:
            raise pending.pop(0)
        await original(self, target, ev)

    monkeypatch.setattr(MemoryConnector, "publish_many", publish_many, raising=False)
    monkeypatch.setattr(MemoryConnector, "publish", publish)
    return faults


@pytest.fixture
async def gateway_for(tmp_path: Path) -> AsyncIterator[Callable[[str], Any]]:
    started: list[Gateway] = []

    async def start(routes: str) -> Gateway:
        path = tmp_path / "config.yaml"
        header = HEADER.replace("STATE", str(tmp_path / "state"))
        path.write_text(header + textwrap.indent(textwrap.dedent(routes), "  "))
        gw = Gateway(load_config(path))
        await gw.start()
        started.append(gw)
        return gw

    yield start
    for gw in started:
        await gw.stop()


ROUTE = """
    - name: r
      max_in_flight: 16
      from: {connector: mem, topic: in}
      to: [{connector: mem, topic: out}]
      dead_letter: {connector: mem, topic: dlq}
      retry: {max_attempts: 3, initial_backoff_seconds: 0.01, max_backoff_seconds: 0.02}
"""


async def test_a_burst_is_published_in_batches_and_all_acked(faults: Faults, gateway_for) -> None:
    for n in range(40):
        put("in", event(n))
    gw = await gateway_for(ROUTE)
    broker = MemoryBroker.get("default")
    await eventually(lambda: len(broker.acked) == 40)
    assert sorted(ids("out")) == sorted(f"e{n}" for n in range(40))
    assert max(faults.calls) > 1  # several events per publish_many
    assert max(faults.calls) <= 16  # never more than the in-flight window
    assert gw.pipelines[0].batcher.batches >= 1
    assert gw.stats["r"].delivered == 40
    assert gw.stats["r"].in_flight == 0
    assert gw.in_flight() == 0


async def test_one_rejected_event_is_dead_lettered_alone(faults: Faults, gateway_for) -> None:
    faults.errors["e5"] = [PublishRejected("refused")]
    for n in range(12):
        put("in", event(n))
    gw = await gateway_for(ROUTE)
    broker = MemoryBroker.get("default")
    await eventually(lambda: len(broker.acked) == 12)
    assert sorted(ids("out")) == sorted(f"e{n}" for n in range(12) if n != 5)
    assert len(MemoryBroker.get("default").drain("dlq")) == 1
    stats = gw.stats["r"]
    assert (stats.delivered, stats.dead_lettered, stats.retries) == (11, 1, 0)
    assert stats.in_flight == 0


async def test_a_retriable_failure_is_retried_alone(faults: Faults, gateway_for) -> None:
    faults.errors["e3"] = [ConnectionLost("blip"), ConnectionLost("blip again")]
    for n in range(12):
        put("in", event(n))
    gw = await gateway_for(ROUTE)
    broker = MemoryBroker.get("default")
    await eventually(lambda: len(broker.acked) == 12)
    assert sorted(ids("out")) == sorted(f"e{n}" for n in range(12))
    stats = gw.stats["r"]
    # The batch attempt, one retry that fails, one that succeeds.
    assert (stats.delivered, stats.dead_lettered, stats.retries) == (12, 0, 2)


async def test_a_failure_holds_only_its_own_slot(faults: Faults, gateway_for) -> None:
    # e0 keeps failing (no dead letter: retried until it succeeds); the others go on.
    faults.errors["e0"] = [ConnectionLost("down")] * 1000
    for n in range(30):
        put("in", event(n))
    gw = await gateway_for("""
        - name: r
          max_in_flight: 4
          from: {connector: mem, topic: in}
          to: [{connector: mem, topic: out}]
          retry: {max_attempts: 3, initial_backoff_seconds: 0.01, max_backoff_seconds: 0.02}
    """)
    broker = MemoryBroker.get("default")
    await eventually(lambda: len(broker.acked) == 29)
    assert gw.in_flight() == 1
    assert "e0" not in ids("out")
    faults.errors["e0"].clear()
    await eventually(lambda: len(broker.acked) == 30)
    assert ids("out") == ["e0"]


async def test_ordered_routes_keep_the_per_delivery_path(faults: Faults, gateway_for) -> None:
    for n in range(10):
        put("in", event(n))
    gw = await gateway_for("""
        - name: r
          ordered: true
          from: {connector: mem, topic: in}
          to: [{connector: mem, topic: out}]
    """)
    broker = MemoryBroker.get("default")
    await eventually(lambda: len(broker.acked) == 10)
    assert ids("out") == [f"e{n}" for n in range(10)]
    assert gw.pipelines[0].batcher.batches == 0
    assert faults.calls == []


async def test_targets_without_publish_many_keep_the_per_delivery_path(gateway_for) -> None:
    MemoryBroker.reset()  # no `faults`: the memory connector has no publish_many here
    for n in range(10):
        put("in", event(n))
    gw = await gateway_for("""
        - name: r
          from: {connector: mem, topic: in}
          to: [{connector: mem, topic: out}]
    """)
    broker = MemoryBroker.get("default")
    await eventually(lambda: len(broker.acked) == 10)
    assert sorted(ids("out")) == sorted(f"e{n}" for n in range(10))
    assert gw.pipelines[0].batcher.batches == 0


async def test_a_batch_abandoned_at_the_drain_timeout_is_given_back(
    faults: Faults, tmp_path: Path
) -> None:
    # Every event of the batch fails retriably and the route has no dead letter: they
    # retry until the stop's drain timeout abandons them. Each is nacked with requeue,
    # none acked or published.
    for n in range(5):
        faults.errors[f"e{n}"] = [ConnectionLost("down")] * 10_000
    broker = MemoryBroker.get("default")
    numbers = [broker.put("in", binding.to_message(event(n), Mode.BINARY)) for n in range(5)]
    path = tmp_path / "config.yaml"
    header = HEADER.replace("STATE", str(tmp_path / "state")).replace(
        "drain_timeout_seconds: 5", "drain_timeout_seconds: 0.3"
    )
    path.write_text(
        header
        + textwrap.indent(
            textwrap.dedent("""
            - name: outage
              from: {connector: mem, topic: in}
              to: [{connector: mem, topic: out}]
              retry: {max_attempts: 2, initial_backoff_seconds: 0.01, max_backoff_seconds: 0.02}
            """),
            "  ",
        )
    )
    gw = Gateway(load_config(path))
    await gw.start()
    await eventually(lambda: gw.stats["outage"].retries >= 10)
    assert gw.pipelines[0].batcher.batches >= 1
    await gw.stop()
    assert broker.acked == []
    assert set(broker.nacked) == set(numbers)
    assert gw.stats["outage"].in_flight == 0
    assert ids("out") == []
