"""End-to-end matrix: a real gateway, built from a YAML file, against the real brokers.

``MatrixScenarios`` holds the scenarios; ``TestMatrix`` runs them against the
loopback brokers (Kafka = librdkafka's mock cluster) and
``test_matrix_containers.py`` runs the very same class against brokers started by
testcontainers. Every scenario prints a per-route table (run with ``-s``).

1. ``test_matrix``: Kafka, AMQP, MQTT 5 and NATS JetStream sources to every target
   protocol (16 pairs) in binary and structured target mode (32 routes), plus an
   MQTT 3.1.1 source and target, a core NATS target, legacy (non-CloudEvents)
   payloads wrapped by ``ingress`` on every source protocol, and Kafka record keys
   rendered from a ``key`` template. Every event is checked attribute by attribute.
2. ``test_refusal_dead_letter_and_local_store``: an unroutable AMQP target with a
   Kafka dead letter (original bytes and error arrive; the JetStream source is acked,
   so a second gateway gets nothing again), and one without a dead letter (the AMQP
   source message goes to the local dead-letter store and is acked; once the target
   accepts, ``meshgate dlq``'s redrive puts it back on its source and a second
   gateway delivers it).
3. ``test_graceful_restart_mid_stream``: ``Gateway.stop()`` with events in flight and
   a new gateway, while 500 events per source keep coming into Kafka and AMQP: no
   loss and, the stop being graceful, no duplicates.
4. ``test_crash_mid_stream``: ``meshgate run`` in a subprocess, SIGKILLed while 1000
   events per route flow (NATS JetStream, MQTT 5, Kafka and AMQP sources), then a new
   one: nothing is lost, duplicates are counted. "Held" routes (one per source
   protocol) whose target refuses until after the kill write every event to the
   local dead-letter store (synced before the ack, so it survives the kill); once the
   target accepts, they are redriven to their sources (every protocol's raw
   republish) and the second gateway delivers each of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import signal
import sys
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.config import load_config
from gateway.dlq import Workbench
from gateway.runtime import Gateway
from routing.event import CloudEvent
from tests.integration.matrix_support import (
    AMQP,
    KAFKA,
    MQTT,
    MQTT4,
    NATS,
    NATSCORE,
    PROBE,
    Arrival,
    Endpoints,
    Mesh,
    Spec,
    within,
)

pytestmark = [pytest.mark.integration]

N = 20  # events per matrix route
RESTART_N = 500
CRASH_N = 1000
HELD_N = 10  # events per route whose target refuses until the crash
GRACE = 1.0  # seconds to keep listening for late duplicates
ROOT = Path(__file__).resolve().parents[2]
SHORT = {KAFKA: "k", AMQP: "a", MQTT: "m", NATS: "n"}
LEGACY_TYPES = ("application/json", "text/plain; charset=utf-8", "application/octet-stream")


def rich_event(run: str, route: str, n: int, total: int) -> CloudEvent:
    """A CloudEvent using every context attribute, typed extensions and odd data."""
    binary = n % 2 == 1
    if binary:
        data = bytes((n * 7 + i) % 256 for i in range(61)) + b"\xff\xfe\x00\xc3"
        if n == total - 1:
            data *= 800  # ~52 KiB: below the 64 KiB every intermediary must forward
    else:
        data = orjson.dumps({"n": n, "route": route, "text": "grüße ✓", "list": [1, None]})
    return CloudEvent(
        id=f"{route}-{n:05d}",
        source=f"urn:meshgate:matrix:{run}",
        type="com.example.matrix.v1",
        subject=f"{route}/item {n}",
        time=f"2026-02-{1 + n % 28:02d}T{n % 24:02d}:34:56.{n:06d}"
        + ("789Z" if n % 3 else "+05:30"),
        dataschema="https://schemas.example.com/matrix/v1.json?n=1",
        datacontenttype="application/octet-stream" if binary else "application/json",
        extensions={
            "strext": f"välue {n} ✓ 100% a+b=c; x,y",
            "intext": n * 1000 - 7,
            "boolext": n % 2 == 0,
            "traceparent": f"00-{n + 1:032x}-{n + 7:016x}-01",
        },
        data=data,
    )


def legacy_payload(route: str, n: int) -> tuple[bytes, str]:
    """A non-CloudEvent payload and the content type ingress should guess for it."""
    kind = n % 3
    if kind == 0:
        return orjson.dumps({"legacy": n, "route": route}), LEGACY_TYPES[0]
    if kind == 1:
        return f"legacy {route} #{n} ✓".encode(), LEGACY_TYPES[1]
    return b"\xff\x00\xfe" + route.encode() + n.to_bytes(4, "big"), LEGACY_TYPES[2]


@dataclass
class Row:
    route: str
    pair: str
    mode: str
    sent: int
    unique: int
    dups: int
    lost: int
    problems: list[str] = field(default_factory=list)


def table(title: str, rows: list[Row]) -> str:
    """The per-route table printed by every scenario (visible with ``pytest -s``)."""
    lines = [
        f"== {title}",
        f"{'route':<14} {'source -> target':<22} {'mode':<10} "
        f"{'sent':>5} {'unique':>6} {'dups':>5} {'lost':>5}  problems",
    ]
    for r in rows:
        lines.append(
            f"{r.route:<14} {r.pair:<22} {r.mode:<10} {r.sent:>5} {r.unique:>6} "
            f"{r.dups:>5} {r.lost:>5}  {len(r.problems)}"
        )
    total = [sum(getattr(r, k) for r in rows) for k in ("sent", "unique", "dups", "lost")]
    lines.append(f"{'TOTAL':<48} {total[0]:>5} {total[1]:>6} {total[2]:>5} {total[3]:>5}")
    return "\n".join(lines)


async def send(
    mesh: Mesh, spec: Spec, count: int, pace: tuple[int, float] | None = None, start: int = 0
) -> dict[Any, CloudEvent]:
    """Publish events ``start``..``count - 1`` (or legacy payloads) into ``spec``'s source
    in concurrent bursts of ``pace[0]``, ``pace[1]`` s apart; returns what must arrive,
    by match key (the event id; the payload for legacy messages)."""
    expected: dict[Any, CloudEvent] = {}

    async def one(n: int) -> None:
        if spec.legacy:
            payload, content_type = legacy_payload(spec.name, n)
            native_id = await mesh.publish_legacy(spec, payload, n)
            expected[payload] = CloudEvent(
                id=native_id,
                source=f"urn:legacy:{mesh.run}/{spec.name}",
                type=f"com.example.legacy.{spec.name}",
                subject="in",
                datacontenttype=content_type,
                data=payload,
            )
        else:
            event = rich_event(mesh.run, spec.name, n, count)
            await mesh.publish(spec, event)
            expected[event.id] = event

    burst = pace[0] if pace else count
    for first in range(start, count, burst):
        await asyncio.gather(*(one(n) for n in range(first, min(first + burst, count))))
        if pace is not None:
            await asyncio.sleep(pace[1])
    return expected


async def stream(
    mesh: Mesh, specs: list[Spec], count: int, pace: tuple[int, float] = (25, 0.1)
) -> tuple[Any, asyncio.Future[Any]]:
    """Send event 0 of every route and wait for it (consumer groups joined, paths live),
    then keep publishing the rest in the background; (first events, producer)."""
    first = await asyncio.gather(*(send(mesh, spec, 1) for spec in specs))
    assert await mesh.until_received({spec.name: 1 for spec in specs}), "paths never came up"
    rest = asyncio.gather(*(send(mesh, spec, count, pace, start=1) for spec in specs))
    return first, rest


def verify(
    spec: Spec, expected: dict[Any, CloudEvent], arrivals: list[Arrival], gateway_id: str
) -> Row:
    """Compare what arrived with what was sent; legacy events are matched by their data.

    Every event arrives with the gateway's mesh provenance (``meshpath`` = its id,
    ``meshhops`` = 1, whatever the bindings on the way), unless the target strips it.
    """
    stamp = {} if spec.target.get("mesh") == "strip" else {"meshpath": gateway_id, "meshhops": "1"}
    row = Row(spec.name, f"{spec.src} -> {spec.dst}", spec.mode, len(expected), 0, 0, 0)
    seen: dict[Any, int] = defaultdict(int)
    for arrival in arrivals:
        event = arrival.event
        if event is None:
            row.problems.append(f"undecodable at {arrival.address}: {arrival.error}")
            continue
        if event.type == PROBE:
            continue
        key = event.data if spec.legacy else event.id
        want = expected.get(key)
        if want is None:
            row.problems.append(f"unexpected event {event.id!r} at {arrival.address}")
            continue
        seen[key] += 1
        attrs = {**want.canonical_attributes(), **stamp}
        if want.id == "*":  # no native id: ingress made a UUID
            attrs["id"] = event.id if len(event.id) == 36 else "<a UUID>"
        got = event.canonical_attributes()
        if got != attrs:
            diff = {
                k: (attrs.get(k), got.get(k))
                for k in attrs.keys() | got.keys()
                if attrs.get(k) != got.get(k)
            }
            row.problems.append(f"{want.id}: attributes differ (want, got): {diff}")
        if event.data != want.data:
            row.problems.append(f"{want.id}: data differs: {event.data!r:.80} != {want.data!r:.80}")
        if spec.dst == KAFKA and arrival.key != f"{spec.name}:{event.id}":
            row.problems.append(f"{want.id}: record key {arrival.key!r}")
    row.unique = len(seen)
    row.dups = sum(seen.values()) - row.unique
    row.lost = len(expected) - row.unique
    return row


def matrix_specs() -> list[Spec]:
    specs = [
        Spec(f"{SHORT[src]}2{SHORT[dst]}-{mode[:3]}", src, dst, mode)
        for src, dst, mode in itertools.product(SHORT, SHORT, ("binary", "structured"))
    ]
    return [
        *specs,
        Spec("m42n-bin", MQTT4, NATS, "binary"),  # MQTT 3.1.1 source (structured JSON)
        Spec("k2m4-str", KAFKA, MQTT4, "structured"),  # MQTT 3.1.1 target
        Spec("a2nc-bin", AMQP, NATSCORE, "binary"),  # core NATS target (at-most-once)
        Spec("strip-n2k", NATS, KAFKA, "binary", target={"mesh": "strip"}),  # leaves the mesh
        Spec("strip-k2m", KAFKA, MQTT, "structured", target={"mesh": "strip"}),
        Spec("lg-k2a", KAFKA, AMQP, "binary", legacy=True),
        Spec("lg-a2m", AMQP, MQTT, "structured", legacy=True),
        Spec("lg-m2n", MQTT, NATS, "binary", legacy=True),
        Spec("lg-n2k", NATS, KAFKA, "structured", legacy=True),
    ]


@contextlib.asynccontextmanager
async def gateway(path: Path) -> AsyncIterator[Gateway]:
    """The in-process gateway, built the way ``meshgate run`` builds it."""
    running = Gateway(load_config(path))
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


@contextlib.asynccontextmanager
async def gateway_process(path: Path, log: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    """``python -m gateway.cli run <path>`` (what ``meshgate run`` is); killed at exit."""
    with log.open("ab") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "gateway.cli",
            "run",
            str(path),
            cwd=ROOT,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
        )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def stored(path: Path) -> dict[str, int]:
    """Entries per route in the local dead-letter store of the config at ``path``."""
    async with Workbench(load_config(path), brokers=False) as bench:
        counts: dict[str, int] = defaultdict(int)
        for letter in await bench.letters():
            counts[letter.route] += 1
        return dict(counts)


async def redrive_stored(path: Path) -> None:
    """``meshgate dlq redrive --all``: every stored message back onto its source."""
    async with Workbench(load_config(path), brokers=False) as bench:
        results = await bench.redrive(await bench.letters())
    failed = [f"{letter.id}: {error}" for letter, error in results if error is not None]
    assert not failed, failed


def report(title: str, rows: list[Row], *, duplicates_allowed: bool = False) -> None:
    print("\n" + table(title, rows))
    problems = [f"{r.route}: {p}" for r in rows for p in r.problems[:5]]
    assert not problems, "\n".join(problems)
    assert all(r.lost == 0 for r in rows), f"{title}: events lost"
    if not duplicates_allowed:
        assert all(r.dups == 0 for r in rows), f"{title}: duplicates"


class MatrixScenarios:
    """The scenarios; a subclass provides the ``endpoints`` fixture."""

    @pytest.fixture
    def endpoints(self) -> Endpoints:
        raise NotImplementedError

    @pytest.mark.timeout(180)
    async def test_matrix(self, endpoints: Endpoints, tmp_path: Path) -> None:
        specs = matrix_specs()
        async with Mesh(endpoints, specs) as mesh:
            async with gateway(mesh.write(tmp_path)):
                await mesh.sources_ready()
                sent = await asyncio.gather(*(send(mesh, spec, N) for spec in specs))
                await mesh.until_received({spec.name: N for spec in specs})
                await asyncio.sleep(GRACE)
            rows = [
                verify(s, want, mesh.received(s), mesh.run)
                for s, want in zip(specs, sent, strict=True)
            ]
        pairs = {(s.src, s.dst, s.mode) for s in specs if s.dst != NATSCORE}
        assert len(pairs) >= 32
        report(f"matrix ({N} events per route)", rows)

    @pytest.mark.timeout(120)
    async def test_refusal_dead_letter_and_local_store(
        self, endpoints: Endpoints, tmp_path: Path
    ) -> None:
        mesh = Mesh(endpoints)
        void, void2, dlq = f"{mesh.run}-void", f"{mesh.run}-void2", f"{mesh.run}.dlq"
        refused = {"routing_key": "nowhere", "mandatory": True}
        dead = Spec(
            "dlq",
            NATS,
            AMQP,
            "structured",  # the source gets binary mode: payload == data
            route={
                "retry": {"max_attempts": 2, "initial_backoff_seconds": 0.05},
                "dead_letter": {"connector": KAFKA, "topic": dlq},
            },
            source={"ack_wait_seconds": 2},
            target={"exchange": void, **refused},
        )
        stuck = Spec(
            "refuse",
            AMQP,
            AMQP,
            "binary",
            route={"retry": {"max_attempts": 1}},
            target={"exchange": void2},
        )
        mesh.specs, mesh.kafka_topics = [dead, stuck], [dlq]
        mesh.exchanges += [void, void2]
        count = 5
        async with mesh:
            path = mesh.write(tmp_path)
            async with gateway(path) as first:
                await mesh.sources_ready()
                sent_dead, sent_stuck = await asyncio.gather(
                    send(mesh, dead, count), send(mesh, stuck, count)
                )
                stats = first.stats["refuse"]
                assert await within(
                    lambda: len(mesh.arrivals[dlq]) >= count and stats.undeliverable >= count
                )
            # First gateway gone: the dead-lettered JetStream messages were acked ...
            info = await mesh.jetstream_consumer(mesh.queue(dead))
            assert (info.num_ack_pending, info.num_pending) == (0, 0), info
            # ... and so were the refused AMQP messages, once in the local store.
            assert (await mesh.amqp_counts(mesh.queue(stuck)))[0] == 0
            assert await stored(path) == {"refuse": count}
            await mesh.bind(void2, mesh.address(stuck, "out"))  # the target accepts now
            async with gateway(path) as second:
                await redrive_stored(path)
                assert await mesh.until_received({"refuse": count})
                await asyncio.sleep(3.0)  # > ack_wait: an unacked JetStream message returns
                assert second.stats["dlq"].received == 0, "acked source message came back"
        letters = mesh.arrivals[dlq]
        assert len(letters) == count, f"{len(letters)} dead letters for {count} events"
        for letter in letters:
            assert letter.event is not None
            attrs = letter.event.canonical_attributes()
            original = sent_dead[attrs["dloriginalid"]]
            assert letter.event.data == original.data  # the original bytes
            assert attrs["type"] == "io.meshgate.deadletter"
            assert attrs["datacontenttype"] == original.datacontenttype
            assert attrs["dlreason"] == "PublishRejected", attrs
            assert "unroutable" in attrs["dlerror"] and void in attrs["dlerror"], attrs
            # PublishRejected is not retriable: dead-lettered after the first attempt.
            assert (attrs["dlattempts"], attrs["dlroute"]) == ("1", "dlq"), attrs
        ids = {letter.event.id for letter in letters if letter.event}
        dead_row = Row(
            "dlq",
            "nats -> kafka (DLQ)",
            "-",
            count,
            len(ids),
            len(letters) - len(ids),
            count - len(ids),
        )
        report("refusals", [dead_row, verify(stuck, sent_stuck, mesh.received(stuck), mesh.run)])

    @pytest.mark.timeout(150)
    async def test_graceful_restart_mid_stream(self, endpoints: Endpoints, tmp_path: Path) -> None:
        specs = [Spec("rs-k2k", KAFKA, KAFKA, "binary"), Spec("rs-a2k", AMQP, KAFKA, "structured")]
        mesh = Mesh(endpoints, specs)
        # Each Kafka publish waits linger_ms for its batch, so that a stop always finds
        # plenty of events in flight (what the drain is for).
        mesh.options[KAFKA] = {"linger_ms": 250}
        async with mesh:
            path = mesh.write(tmp_path)
            first = Gateway(load_config(path))
            await first.start()
            try:
                await mesh.sources_ready()
                warm, producer = await stream(mesh, specs, RESTART_N)
                assert await mesh.until_received({s.name: RESTART_N // 5 for s in specs})
                assert await within(lambda: first.in_flight() >= 20), "nothing in flight"
                in_flight = first.in_flight()
                assert not producer.done(), "the producer finished before the restart"
            finally:
                await first.stop()
            async with gateway(path):
                sent = [a | b for a, b in zip(warm, await producer, strict=True)]
                await mesh.until_received({s.name: RESTART_N for s in specs}, 60)
                await asyncio.sleep(GRACE)
            rows = [
                verify(s, want, mesh.received(s), mesh.run)
                for s, want in zip(specs, sent, strict=True)
            ]
        print(f"\nin flight when the first gateway stopped: {in_flight}")
        # Stop = stop pulling, drain in-flight work (acks included), then close the
        # sources and commit: the next gateway sees every event exactly once.
        report(f"graceful restart ({RESTART_N} per route)", rows)

    @pytest.mark.timeout(180)
    async def test_crash_mid_stream(self, endpoints: Endpoints, tmp_path: Path) -> None:
        """kill -9 while events flow; plus "held" routes whose target refuses until the
        crash (no dead letter): their events are in the local store, which survives the
        kill, and are redriven to every source protocol afterwards."""
        specs = [
            Spec("cr-n2k", NATS, KAFKA, "binary", source={"ack_wait_seconds": 3}),
            Spec("cr-m2n", MQTT, NATS, "structured"),
            Spec("cr-k2a", KAFKA, AMQP, "structured"),
            Spec("cr-a2m", AMQP, MQTT, "binary"),
        ]
        mesh = Mesh(endpoints, specs)
        void = f"{mesh.run}-held"
        held = [
            Spec(
                f"held-{SHORT[p]}",
                p,
                AMQP,
                "binary",
                route={"retry": {"max_attempts": 1}},
                source={"ack_wait_seconds": 3} if p == NATS else {},
                target={"exchange": void},
            )
            for p in SHORT
        ]
        mesh.specs, mesh.exchanges = specs + held, [*mesh.exchanges, void]
        logs = [tmp_path / "gateway-1.log", tmp_path / "gateway-2.log"]
        async with mesh:
            path = mesh.write(tmp_path)
            async with gateway_process(path, logs[0]) as first:
                await mesh.sources_ready()
                sent_held = await asyncio.gather(*(send(mesh, s, HELD_N) for s in held))
                warm, producer = await stream(mesh, specs, CRASH_N)
                started = await mesh.until_received({s.name: CRASH_N // 5 for s in specs})
                refused = await within(
                    lambda: all(
                        _tail(logs[0], 0).count(f"route {s.name}: UNDELIVERABLE") >= HELD_N
                        for s in held
                    )
                )
                first.send_signal(signal.SIGKILL)
                assert await first.wait() == -signal.SIGKILL
                at_kill = {s.name: mesh.unique(s) for s in specs + held}
                assert started and refused, _tail(logs[0])
                assert not producer.done(), "the producer finished before the crash"
            assert await stored(path) == {s.name: HELD_N for s in held}
            for spec in held:  # the held routes' target accepts from now on
                await mesh.bind(void, mesh.address(spec, "out"))
            async with gateway_process(path, logs[1]) as second:
                await redrive_stored(path)
                sent = [a | b for a, b in zip(warm, await producer, strict=True)]
                counts = {s.name: CRASH_N for s in specs} | {s.name: HELD_N for s in held}
                await mesh.until_received(counts, 60)
                await asyncio.sleep(GRACE)
                second.send_signal(signal.SIGTERM)
                await asyncio.wait_for(second.wait(), 30)
            rows = [
                verify(s, want, mesh.received(s), mesh.run)
                for s, want in zip(specs + held, sent + sent_held, strict=True)
            ]
        print(f"\ndistinct events at each target when SIGKILLed: {at_kill}")
        assert not any(at_kill[s.name] for s in held), "a refused target delivered"
        report(
            f"crash (kill -9) mid-stream ({CRASH_N} per route, {HELD_N} per held route)",
            rows,
            duplicates_allowed=True,
        )


def _tail(log: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a gateway log (0: all of it)."""
    text = log.read_text(errors="replace") if log.exists() else "(no log)"
    return "\n".join(text.splitlines()[-lines:])


class TestMatrix(MatrixScenarios):
    """Against the loopback brokers and the session's mock Kafka cluster."""

    @pytest.fixture
    def endpoints(
        self,
        kafka_bootstrap: str,
        rabbitmq_url: str,
        mqtt_host_port: tuple[str, int],
        nats_url: str,
    ) -> Endpoints:
        # The mock Kafka takes a 3 s group session (see Endpoints.kafka_session_ms); no
        # gateway here is frozen, so none misses its heartbeats (every second).
        return Endpoints(
            kafka_bootstrap, rabbitmq_url, mqtt_host_port, nats_url, kafka_session_ms=3000
        )
