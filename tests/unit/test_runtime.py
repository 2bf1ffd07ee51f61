"""The runtime's delivery contract, proven with the in-memory connector (no network)."""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from connectors.errors import PublishRejected, PublishTimeout
from connectors.memory import MemoryBroker
from gateway.config import load_config
from gateway.runtime import Gateway
from routing.bindings import Mode
from routing.bindings import nats as binding
from routing.event import CloudEvent
from tests.polling import eventually

HEADER = """
gateway: {id: test-gw, drain_timeout_seconds: 5}
connectors:
  mem: {type: memory}
routes:
"""


STAMP = {"meshpath": "test-gw", "meshhops": "1"}  # what this gateway adds when forwarding


def event(n: int, **changes: object) -> CloudEvent:
    base = CloudEvent(id=f"e{n}", source="urn:test", type="com.acme.thing", data=b'{"n":%d}' % n)
    return base.replace(**changes) if changes else base


def put(topic: str, ev: CloudEvent) -> None:
    MemoryBroker.get("default").put(topic, binding.to_message(ev, Mode.BINARY))


def put_raw(topic: str, payload: bytes) -> None:
    MemoryBroker.get("default").put(topic, binding.NatsMessage(payload, None))


def received(topic: str) -> list[CloudEvent]:
    out = []
    for message in MemoryBroker.get("default").drain(topic):
        decoded = binding.from_message(message)
        assert decoded is not None
        out.append(decoded)
    return out


@pytest.fixture(autouse=True)
def fresh_broker() -> None:
    MemoryBroker.reset()


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[[str], Path]:
    def write(routes: str) -> Path:
        path = tmp_path / "config.yaml"
        # Each test its own local dead-letter store.
        header = HEADER.replace(
            "drain_timeout_seconds: 5",
            f"drain_timeout_seconds: 5, state_dir: '{tmp_path / 'state'}'",
        )
        path.write_text(header + textwrap.indent(textwrap.dedent(routes), "  "))
        return path

    return write


@pytest.fixture
async def gateway_for(
    write_config: Callable[[str], Path],
) -> AsyncIterator[Callable[[str], object]]:
    started: list[Gateway] = []

    async def start(routes: str) -> Gateway:
        gw = Gateway(load_config(write_config(routes)))
        await gw.start()
        started.append(gw)
        return gw

    yield start  # type: ignore[misc]
    for gw in started:
        await gw.stop()


async def test_cloudevent_is_delivered_then_acked(gateway_for) -> None:
    gw = await gateway_for("""
        - name: r1
          from: {connector: mem, topic: in}
          to: [{connector: mem, topic: "out.{type}"}]
    """)
    put("in", event(1))
    broker = MemoryBroker.get("default")
    await eventually(lambda: len(broker.acked) == 1)
    got = received("out.com.acme.thing")
    assert [e.id for e in got] == ["e1"]
    # Unchanged, except for this gateway's provenance (docs/mesh.md).
    assert got[0].canonical_attributes() == {**event(1).canonical_attributes(), **STAMP}
    assert gw.stats["r1"].delivered == 1


async def test_legacy_payload_is_wrapped_with_native_id(gateway_for) -> None:
    await gateway_for("""
        - name: wrap
          from: {connector: mem, topic: legacy}
          ingress: {type: "com.acme.legacy", source: "memory://{topic}"}
          to: [{connector: mem, topic: out}]
    """)
    put_raw("legacy", b'{"temp": 21}')
    broker = MemoryBroker.get("default")
    await eventually(lambda: len(broker.acked) == 1)
    (got,) = received("out")
    assert got.type == "com.acme.legacy"
    assert got.source == "memory://legacy"
    assert got.id == "legacy/1"  # the native id: a redelivery keeps it
    assert got.datacontenttype == "application/json"
    assert got.data == b'{"temp": 21}'


async def test_non_cloudevent_without_ingress_goes_to_dead_letter(gateway_for) -> None:
    gw = await gateway_for("""
        - name: strict
          from: {connector: mem, topic: in}
          to: [{connector: mem, topic: out}]
          dead_letter: {connector: mem, topic: dlq}
    """)
    put_raw("in", b"\x00garbage")
    broker = MemoryBroker.get("default")
    await eventually(lambda: len(broker.acked) == 1)
    (letter,) = received("dlq")
    assert letter.type == "io.meshgate.deadletter"
    assert letter.data == b"\x00garbage"
    assert letter.extensions["dlreason"] == "NotACloudEvent"
    assert letter.extensions["dladdress"] == "in"
    assert gw.stats["strict"].dead_lettered == 1
    assert received("out") == []


async def test_malformed_cloudevent_is_dead_lettered_and_good_traffic_flows(gateway_for) -> None:
    await gateway_for("""
        - name: mixed
          from: {connector: mem, topic: in}
          to: [{connector: mem, topic: out}]
          dead_letter: {connector: mem, topic: dlq}
    """)
    put("in", event(1))
    MemoryBroker.get("default").put(
        "in",
        binding.NatsMessage(
            b"x",
            {
                "ce-specversion": "1.0",
                "ce-id": "bad",
                "ce-source": "s",
                "ce-type": "t",
                "ce-time": "2020-01-01T18:31Z",
            },
        ),
    )
    put("in", event(2))
    broker = MemoryBroker.get("default")
    await eventually(lambda: len(broker.acked) == 3)
    assert sorted(e.id for e in received("out")) == ["e1", "e2"]
    (letter,) = received("dlq")
    assert letter.extensions["dlreason"] == "InvalidEvent"
    assert "time" in str(letter.extensions["dlerror"])


async def test_no_dead_letter_target_stores_the_message_locally_then_acks(gateway_for) -> None:
    gw = await gateway_for("""
        - name: nodlq
          from: {connector: mem, topic: in}
          to: [{connector: mem, topic: out}]
    """)
    put_raw("in", b"not an event")
    put("in", event(2))
    broker = MemoryBroker.get("default")
    await eventually(lambda: len(broker.acked) == 2)
    stats = gw.stats["nodlq"]
    assert (stats.delivered, stats.undeliverable) == (1, 1)
    (entry,) = await gw.store.entries()
    assert (entry.route, entry.connector, entry.address) == ("nodlq", "mem", "in")
    assert entry.payload == b"not an event"
    assert entry.reason == "NotACloudEvent"


async def test_dead_letter_refused_too_goes_to_the_local_store(gateway_for) -> None:
    broker = MemoryBroker.get("default")
    # The target refuses for good, then so does the dead letter: neither may stall
    # the route, and the message must not be lost.
    broker.fail_publishes.extend([PublishRejected("too big"), PublishRejected("too big too")])
    gw = await gateway_for("""
        - name: poison
          from: {connector: mem, topic: in}
          to: [{connector: mem, topic: out}]
          dead_letter: {connector: mem, topic: dlq}
    """)
    put("in", event(1))
    put("in", event(2))
    await eventually(lambda: len(broker.acked) == 2)
    assert [e.id for e in received("out")] == ["e2"]
    assert received("dlq") == []
    (entry,) = await gw.store.entries()
    assert entry.event_id == "e1"
    assert entry.reason == "PublishRejected"
    assert "too big" in entry.error and "failed too: PublishRejected: too big too" in entry.error
    assert entry.target is not None and "out" in entry.target
    assert gw.stats["poison"].undeliverable == 1


async def test_a_full_store_stops_the_route_until_room_is_made(gateway_for) -> None:
    broker = MemoryBroker.get("default")
    gw = await gateway_for("""
        - name: full
          from: {connector: mem, topic: in}
          to: [{connector: mem, topic: out}]
    """)
    gw.store.max_bytes = 1024
    put_raw("in", b"x" * 2000)  # not a CloudEvent, no dead letter: to the store
    (pipeline,) = gw.pipelines
    await eventually(lambda: not pipeline.flowing.is_set())
    put("in", event(1))  # not pulled while the route is stopped
    assert broker.acked == [] and gw.stats["full"].received == 1
    gw.store.max_bytes = 1 << 20  # room is made (as `meshgate dlq purge` would)
    await eventually(lambda: len(broker.acked) == 2, timeout=10)
    assert pipeline.flowing.is_set()
    assert [e.id for e in received("out")] == ["e1"]
    assert len(await gw.store.entries()) == 1


async def test_retriable_failures_are_retried_then_delivered(gateway_for) -> None:
    broker = MemoryBroker.get("default")
    broker.fail_publishes.extend([PublishTimeout("slow"), PublishTimeout("slow")])
    gw = await gateway_for("""
        - name: retry
          from: {connector: mem, topic: in}
          to: [{connector: mem, topic: out}]
          retry: {max_attempts: 5, initial_backoff_seconds: 0.01, max_backoff_seconds: 0.02}
    """)
    put("in", event(1))
    await eventually(lambda: len(broker.acked) == 1)
    assert gw.stats["retry"].retries == 2
    assert [e.id for e in received("out")] == ["e1"]


async def test_outage_longer_than_the_retry_budget_without_dead_letter_is_waited_out(
    gateway_for,
) -> None:
    # Found by tests/faults (a 30 s target outage): giving up after max_attempts left
    # the message unacked for good and stalled the source; without a dead letter a
    # retriable failure is retried until the target is back.
    broker = MemoryBroker.get("default")
    broker.fail_publishes.extend([PublishTimeout("down")] * 6)
    gw = await gateway_for("""
        - name: outage
          from: {connector: mem, topic: in}
          to: [{connector: mem, topic: out}]
          retry: {max_attempts: 2, initial_backoff_seconds: 0.01, max_backoff_seconds: 0.02}
    """)
    put("in", event(1))
    await eventually(lambda: len(broker.acked) == 1)
    assert gw.stats["outage"].retries == 6
    assert gw.stats["outage"].undeliverable == 0
    assert [e.id for e in received("out")] == ["e1"]


async def test_rejected_publish_goes_to_dead_letter_and_ack_follows_its_confirmation(
    gateway_for,
) -> None:
    broker = MemoryBroker.get("default")
    # The target refuses (not retriable); then the first dead-letter attempt times out.
    broker.fail_publishes.extend([PublishRejected("unroutable"), PublishTimeout("dlq slow")])
    gw = await gateway_for("""
        - name: reject
          from: {connector: mem, topic: in}
          to: [{connector: mem, topic: out}]
          dead_letter: {connector: mem, topic: dlq}
          retry: {max_attempts: 3, initial_backoff_seconds: 0.01, max_backoff_seconds: 0.02}
    """)
    put("in", event(5))
    await eventually(lambda: len(broker.acked) == 1)
    (letter,) = received("dlq")
    assert letter.extensions["dlreason"] == "PublishRejected"
    assert letter.extensions["dloriginalid"] == "e5"
    assert letter.extensions["dlattempts"] == "1"  # binary mode carries strings
    assert gw.stats["reject"].dead_lettered == 1


async def test_exhausted_retries_go_to_dead_letter(gateway_for) -> None:
    broker = MemoryBroker.get("default")
    broker.fail_publishes.extend([PublishTimeout("down")] * 3)
    await gateway_for("""
        - name: exhaust
          from: {connector: mem, topic: in}
          to: [{connector: mem, topic: out}]
          dead_letter: {connector: mem, topic: dlq}
          retry: {max_attempts: 3, initial_backoff_seconds: 0.01, max_backoff_seconds: 0.02}
    """)
    put("in", event(1))
    await eventually(lambda: len(broker.acked) == 1)
    (letter,) = received("dlq")
    assert letter.extensions["dlattempts"] == "3"
    assert letter.extensions["dlreason"] == "PublishTimeout"


async def test_filter_and_fan_out_and_shared_source(gateway_for) -> None:
    gw = await gateway_for("""
        - name: created
          from: {connector: mem, topic: in}
          filter: "type LIKE '%.created'"
          to: [{connector: mem, topic: a}, {connector: mem, topic: b}]
        - name: everything
          from: {connector: mem, topic: in}
          to: [{connector: mem, topic: c}]
    """)
    assert len(gw.pipelines) == 1  # one consumer for the shared source
    put("in", event(1, type="com.acme.created"))
    put("in", event(2, type="com.acme.deleted"))
    broker = MemoryBroker.get("default")
    await eventually(lambda: len(broker.acked) == 2)
    assert [e.id for e in received("a")] == ["e1"]
    assert [e.id for e in received("b")] == ["e1"]
    assert sorted(e.id for e in received("c")) == ["e1", "e2"]
    assert gw.stats["created"].filtered == 1


async def test_in_flight_is_bounded_when_target_hangs(
    gateway_for, monkeypatch: pytest.MonkeyPatch
) -> None:
    from connectors.memory import MemoryConnector

    release = asyncio.Event()
    original = MemoryConnector.publish

    async def hanging(self, target, ev):  # type: ignore[no-untyped-def]
        await release.wait()
        await original(self, target, ev)

    monkeypatch.setattr(MemoryConnector, "publish", hanging)
    gw = await gateway_for("""
        - name: slow
          max_in_flight: 3
          from: {connector: mem, topic: in}
          to: [{connector: mem, topic: out}]
    """)
    for n in range(10):
        put("in", event(n))
    broker = MemoryBroker.get("default")
    await asyncio.sleep(0.2)
    assert gw.in_flight() == 3
    assert len(broker.topics["in"].messages) == 7  # not pulled: backpressure on the source
    release.set()
    await eventually(lambda: len(broker.acked) == 10)


async def test_ordered_route_keeps_per_key_order(
    gateway_for, monkeypatch: pytest.MonkeyPatch
) -> None:
    import random

    from connectors.memory import MemoryConnector

    original = MemoryConnector.publish

    async def jittery(self, target, ev):  # type: ignore[no-untyped-def]
        await asyncio.sleep(random.uniform(0, 0.01))
        await original(self, target, ev)

    monkeypatch.setattr(MemoryConnector, "publish", jittery)
    await gateway_for("""
        - name: ordered
          ordered: true
          from: {connector: mem, topic: in}
          to: [{connector: mem, topic: out}]
    """)
    for n in range(50):
        put("in", event(n))
    broker = MemoryBroker.get("default")
    await eventually(lambda: len(broker.acked) == 50)
    assert [e.id for e in received("out")] == [f"e{n}" for n in range(50)]


async def test_stop_drains_in_flight_work(write_config) -> None:
    from connectors.memory import MemoryConnector

    original = MemoryConnector.publish

    async def slow(self, target, ev):  # type: ignore[no-untyped-def]
        await asyncio.sleep(0.2)
        await original(self, target, ev)

    MemoryConnector.publish = slow  # type: ignore[method-assign]
    try:
        gw = Gateway(
            load_config(
                write_config("""
            - name: drain
              from: {connector: mem, topic: in}
              to: [{connector: mem, topic: out}]
        """)
            )
        )
        await gw.start()
        for n in range(5):
            put("in", event(n))
        await asyncio.sleep(0.05)
        await gw.stop()
    finally:
        MemoryConnector.publish = original  # type: ignore[method-assign]
    assert len(MemoryBroker.get("default").acked) == 5
    assert len(received("out")) == 5


async def test_delivery_pulled_during_stop_is_given_back_unprocessed(write_config) -> None:
    from connectors.memory import MemoryConnector

    original = MemoryConnector.publish

    async def slow(self, target, ev):  # type: ignore[no-untyped-def]
        await asyncio.sleep(0.2)
        await original(self, target, ev)

    MemoryConnector.publish = slow  # type: ignore[method-assign]
    broker = MemoryBroker.get("default")
    try:
        gw = Gateway(
            load_config(
                write_config("""
            - name: late
              from: {connector: mem, topic: in}
              to: [{connector: mem, topic: out}]
        """)
            )
        )
        await gw.start()
        first = broker.put("in", binding.to_message(event(0), Mode.BINARY))
        await eventually(lambda: gw.in_flight() == 1)
        stopping = asyncio.create_task(gw.stop())  # drains e0; the pull is still pending
        await eventually(lambda: gw.pipelines[0].stopping)
        late = broker.put("in", binding.to_message(event(1), Mode.BINARY))
        await stopping
    finally:
        MemoryConnector.publish = original  # type: ignore[method-assign]
    # e1 was taken after the stop began: not published, nacked with requeue at once
    # (JetStream would otherwise hold it until ack_wait), e0 finished normally.
    assert broker.acked == [first]
    assert broker.nacked == [late]
    assert [e.id for e in received("out")] == ["e0"]
    assert [number for number, _ in broker.topics["in"].messages] == [late]


async def test_work_abandoned_at_the_drain_timeout_is_given_back_with_nack(
    tmp_path: Path,
) -> None:
    # A route without a dead letter retries a target outage until it ends; a stop that
    # outlasts the drain timeout abandons it. It is nacked with requeue (the broker
    # redelivers it at once), never acked, never published.
    broker = MemoryBroker.get("default")
    broker.fail_publishes.extend([PublishTimeout("target down")] * 10_000)
    path = tmp_path / "config.yaml"
    path.write_text(
        HEADER.replace(
            "drain_timeout_seconds: 5", f"drain_timeout_seconds: 0.3, state_dir: '{tmp_path}'"
        )
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
    stuck = broker.put("in", binding.to_message(event(7), Mode.BINARY))
    await eventually(lambda: gw.stats["outage"].retries >= 3)
    await gw.stop()
    assert broker.acked == []
    # Requeued at once, so the still pending pull may take it again: given back again.
    assert broker.nacked and set(broker.nacked) == {stuck}
    assert gw.stats["outage"].failed == 1
    assert [number for number, _ in broker.topics["in"].messages] == [stuck]  # redelivered
    assert received("out") == []


async def test_hot_reload_keeps_unchanged_routes_exactly_once(write_config) -> None:
    stay = """
        - name: stay
          from: {connector: mem, topic: a-in}
          to: [{connector: mem, topic: a-out}]
    """
    before = (
        stay
        + """
        - name: change
          from: {connector: mem, topic: b-in}
          to: [{connector: mem, topic: b-out}]
        - name: gone
          from: {connector: mem, topic: c-in}
          to: [{connector: mem, topic: c-out}]
    """
    )
    after = (
        stay
        + """
        - name: change
          from: {connector: mem, topic: b-in}
          to: [{connector: mem, topic: b-out2}]
        - name: new
          from: {connector: mem, topic: d-in}
          to: [{connector: mem, topic: d-out}]
    """
    )
    gw = Gateway(load_config(write_config(before)))
    await gw.start()
    stay_pipeline = next(p for p in gw.pipelines if p.group.routes[0].name == "stay")
    sent = 0

    async def produce(count: int) -> None:
        nonlocal sent
        for _ in range(count):
            put("a-in", event(sent))
            put("b-in", event(sent))
            sent += 1
            await asyncio.sleep(0.001)

    producer = asyncio.create_task(produce(600))
    await asyncio.sleep(0.2)
    result = await gw.reload(load_config(write_config(after)))
    await producer
    assert result.kept == ("stay",)
    assert sorted(result.restarted) == ["change", "new"]
    assert result.removed == ("gone",)
    assert stay_pipeline in gw.pipelines  # the same consumer kept running
    broker = MemoryBroker.get("default")
    await eventually(lambda: not broker.topics["a-in"].messages and gw.in_flight() == 0)
    await gw.stop()
    ids = [e.id for e in received("a-out")]
    assert sorted(ids, key=lambda i: int(i[1:])) == [f"e{n}" for n in range(600)]  # each once
    moved = [e.id for e in received("b-out")] + [e.id for e in received("b-out2")]
    assert sorted(moved, key=lambda i: int(i[1:])) == [f"e{n}" for n in range(600)]
    assert gw.stats["stay"].delivered == 600


async def test_invalid_reload_keeps_the_running_config(write_config, caplog) -> None:
    from gateway.reload import reload_from

    good = """
        - name: r
          from: {connector: mem, topic: in}
          to: [{connector: mem, topic: out}]
    """
    path = write_config(good)
    gw = Gateway(load_config(path))
    await gw.start()
    try:
        path.write_text(path.read_text().replace("topic: out", "topic: out, bogus: 1"))
        assert await reload_from(path, gw) is False
        assert "config reload rejected" in caplog.text and "bogus: unknown key" in caplog.text
        put("in", event(1))
        await eventually(lambda: len(MemoryBroker.get("default").acked) == 1)
        assert [e.id for e in received("out")] == ["e1"]
    finally:
        await gw.stop()


async def test_egress_rules_change_one_target_only(gateway_for) -> None:
    await gateway_for("""
        - name: egress
          from: {connector: mem, topic: in}
          to:
            - connector: mem
              topic: changed
              attributes:
                set: {region: "{topic}", type: "com.acme.renamed"}
                remove: [traceparent]
                rename: {subject: topic}
            - {connector: mem, topic: unchanged}
    """)
    put("in", event(1, subject="s-1", extensions={"traceparent": "00-ab-cd-01"}))
    await eventually(lambda: len(MemoryBroker.get("default").acked) == 1)
    (changed,) = received("changed")
    (unchanged,) = received("unchanged")
    assert changed.type == "com.acme.renamed"
    assert changed.subject is None and changed.extensions["topic"] == "s-1"
    assert changed.extensions["region"] == "in"
    assert "traceparent" not in changed.extensions
    assert unchanged == event(1, subject="s-1", extensions={"traceparent": "00-ab-cd-01", **STAMP})


async def test_native_headers_pass_to_the_target(gateway_for) -> None:
    await gateway_for("""
        - name: headers
          from: {connector: mem, topic: in}
          to:
            - connector: mem
              topic: out
              headers: {X-Request-Id: "{header.x-request-id}", X-Gateway: edge}
    """)
    message = binding.to_message(event(1), Mode.BINARY)
    headers = {**(message.headers or {}), "x-request-id": "req-7"}
    MemoryBroker.get("default").put("in", binding.NatsMessage(message.data, headers))
    await eventually(lambda: len(MemoryBroker.get("default").acked) == 1)
    (out,) = MemoryBroker.get("default").drain("out")
    assert out.headers is not None
    assert out.headers["X-Request-Id"] == "req-7" and out.headers["X-Gateway"] == "edge"
    decoded = binding.from_message(out)
    assert decoded is not None
    assert decoded.canonical_attributes() == {**event(1).canonical_attributes(), **STAMP}


async def test_heartbeats_signal_only_long_deliveries_and_never_overlap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from gateway.inflight import Heartbeats

    monkeypatch.setattr(Heartbeats, "PERIOD", 0.05)
    beats = {"slow": 0, "fast": 0, "stuck": 0}
    release_stuck = asyncio.Event()

    def signal(name: str) -> Callable[[], asyncio.Future[None]]:
        async def beat() -> None:
            beats[name] += 1
            if name == "stuck":
                await release_stuck.wait()  # a signal that hangs: no second one meanwhile

        return beat  # type: ignore[return-value]

    heartbeats = Heartbeats()
    heartbeats.add(1, signal("slow"))
    heartbeats.add(2, signal("fast"))
    heartbeats.add(3, signal("stuck"))
    heartbeats.remove(2)  # finished before its first beat
    await asyncio.sleep(0.33)
    heartbeats.remove(1)
    slow_beats = beats["slow"]
    assert 3 <= slow_beats <= 7  # the first after 0.5-1 period, then one per 0.05 s
    assert beats["fast"] == 0
    assert beats["stuck"] == 1
    release_stuck.set()
    heartbeats.remove(3)
    await asyncio.sleep(0.15)
    assert beats["slow"] == slow_beats  # nothing after remove()
    assert heartbeats._ticker is None  # the loop ends once nothing is in flight


def test_heap_settle_freezes_survivors_and_collects_cycles_on_every_call() -> None:
    import gc
    import weakref

    from gateway import heap

    class Node:
        other: object = None

    def cycle() -> Node:
        a, b = Node(), Node()
        a.other, b.other = b, a
        return a

    thresholds = gc.get_threshold()
    try:
        garbage = weakref.ref(cycle())
        live = cycle()  # alive at the freeze (a config), replaced later (a reload)
        replaced = weakref.ref(live)
        heap.settle()
        assert garbage() is None  # collected before freezing
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold()[0] == heap.YOUNG_THRESHOLD
        del live
        gc.collect()
        assert replaced() is not None  # frozen: a plain collection skips its cycle
        heap.resettle()  # a reload: thaw, collect, freeze again
        assert replaced() is None
        gc.unfreeze()
        heap.resettle()  # a process that never froze is left alone
        assert gc.get_freeze_count() == 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
