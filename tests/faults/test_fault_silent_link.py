"""A NATS link that goes silent without breaking is replaced by the link watchdog.

Reproduction: a NATS connector reaches a private nats-server through ``FaultyProxy``;
``proxy.silence()`` then blackholes the open connection: the proxy keeps it open and
keeps reading both sides but forwards nothing (not even a close). nats-py sees no
error and stays "connected" while every PubAck and flush times out; its own PINGs
would notice only after minutes (2 x ``ping_interval``, 120 s by default). Without the
watchdog (``watchdog_timeouts: 0``) the publishes keep timing out for as long as
anyone waits.

With the watchdog the connector replaces the client after ``watchdog_timeouts``
timeouts and an unanswered probe, and then, through the fresh connection (the proxy
passes new connections):

- every event published before, during and after the silence is confirmed and in the
  target stream (publishes are retried as the runtime does; ``Nats-Msg-Id`` stores a
  retry once), none lost;
- the connector's JetStream source (durable pull consumer) and core subscription on
  the same connection resume: everything fed into the source stream arrives, and
  core messages flow again;
- one WARNING names the connector, Health is UP again with the replacement counted in
  ``reconnects``.

A connector with only a JetStream source is covered too (its unanswered pull and
durable lookups are the timeouts). The gateway test does the same through a gateway
process (a JetStream -> JetStream
route whose target connection goes through the proxy): everything fed before and
through the silence arrives, none lost, and the gateway stops cleanly. With
``watchdog_timeouts: 0`` it delivers nothing of what was fed after the silence
(observed: 0 of 400 within 30 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client
from nats.js.api import StreamConfig

from connectors.base import Delivery, HealthState
from connectors.errors import ConnectorError
from connectors.nats import JetStreamSource, NatsConnector, NatsOptions, NatsSource, NatsTarget
from gateway.localbrokers import LOOPBACK
from routing.event import CloudEvent
from tests.brokers import unique_name
from tests.faults.brokers import PrivateNats
from tests.faults.conftest import FaultReport
from tests.faults.gateway import GatewayProcess
from tests.faults.harness import NATS, Pair, Scenario
from tests.faults.proxy import FaultyProxy
from tests.polling import until

pytestmark = [pytest.mark.integration, pytest.mark.faults]

EVENTS = 300  # published through the proxied connector: a third before the silence
WINDOW = 20  # publishes in flight at once, as a route's in-flight window
PUBLISH_TIMEOUT = 1.0  # short, so the run is short; the default 5 s works the same way
RECOVERY_BOUND = 30.0  # seconds from the silence until everything is through


def event(run: str, n: int) -> CloudEvent:
    return CloudEvent(
        id=f"{run}-{n:05d}",
        source=f"urn:meshgate:faults:{run}",
        type="com.example.faults.silent",
        datacontenttype="application/octet-stream",
        data=n.to_bytes(4, "big") + b"x" * 200,
    )


def ce_headers(item: CloudEvent) -> dict[str, str]:
    """Binary-mode headers of ``item`` for a raw publish (no escaping needed here)."""
    return {
        "ce-specversion": "1.0",
        "ce-id": item.id,
        "ce-source": item.source,
        "ce-type": item.type,
    }


class Collector:
    """Event ids read from a source of a connector, counted (ack after counting)."""

    def __init__(self, conn: NatsConnector, source: NatsSource) -> None:
        self.conn = conn
        self.ids: dict[str, int] = {}
        self.redelivered = 0  # JetStream deliveries after the first (num_delivered > 1)
        self.task = asyncio.create_task(self._run(conn.consume(source)))

    async def _run(self, deliveries: AsyncIterator[Delivery]) -> None:
        async for delivery in deliveries:
            decoded = self.conn.decode(delivery)
            delivered = delivery.coordinates.get("num_delivered", 1)
            self.redelivered += isinstance(delivered, int) and delivered > 1
            if decoded is not None:
                self.ids[decoded.id] = self.ids.get(decoded.id, 0) + 1
            await delivery.ack()

    def has(self, ids: set[str]) -> bool:
        return ids <= self.ids.keys()

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


class Publisher:
    """Publishes events in a bounded window, retrying retriable failures like the runtime."""

    def __init__(self, conn: NatsConnector, target: NatsTarget) -> None:
        self.conn = conn
        self.target = target
        self.confirmed: set[str] = set()
        self.failures: dict[str, int] = {}  # error type -> count
        self.refused: list[str] = []
        self._window = asyncio.Semaphore(WINDOW)
        self._tasks: set[asyncio.Task[None]] = set()

    def send(self, events: list[CloudEvent]) -> None:
        for item in events:
            task = asyncio.create_task(self._one(item))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _one(self, item: CloudEvent) -> None:
        async with self._window:
            delay = 0.05
            while True:
                try:
                    await self.conn.publish(self.target, item)
                except ConnectorError as exc:
                    name = type(exc).__name__
                    self.failures[name] = self.failures.get(name, 0) + 1
                    if not exc.retriable:
                        self.refused.append(f"{item.id}: {exc}")
                        return
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 1.0)
                else:
                    self.confirmed.add(item.id)
                    return

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


@contextlib.contextmanager
def captured(logger: str) -> Iterator[list[logging.LogRecord]]:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep(logging.INFO)
    log = logging.getLogger(logger)
    log.addHandler(handler)
    level = log.level
    log.setLevel(logging.INFO)
    try:
        yield records
    finally:
        log.removeHandler(handler)
        log.setLevel(level)


@pytest.mark.timeout(120)
async def test_silent_nats_link_is_replaced_and_nothing_is_lost(
    private_nats: PrivateNats,
) -> None:
    run = unique_name("silent")
    out_subject, src_subject, core_subject = f"{run}.out", f"{run}.src", f"{run}.core"
    admin: Client = await nats.connect(private_nats.url, connect_timeout=5)
    js = admin.jetstream()
    await js.add_stream(StreamConfig(name=f"{run}-out", subjects=[out_subject]))
    await js.add_stream(StreamConfig(name=f"{run}-src", subjects=[src_subject]))
    collector_conn = NatsConnector(f"{run}-rx", NatsOptions(servers=(private_nats.url,)))
    await collector_conn.start()
    out = Collector(
        collector_conn,
        NatsSource(
            connector="x",
            subject=out_subject,
            jetstream=JetStreamSource(stream=f"{run}-out", durable="rx", batch=500),
        ),
    )
    async with FaultyProxy(private_nats.port, seed=5) as proxy:
        conn = NatsConnector(
            f"{run}-edge",
            NatsOptions(
                servers=(f"nats://{proxy.url_host_port}",),
                publish_timeout=PUBLISH_TIMEOUT,
                reconnect_wait=0.2,
                reconnect_jitter=0.2,
                watchdog_timeouts=3,
            ),
        )
        await conn.start()
        # The connector's own sources, on the connection that will go silent.
        js_in = Collector(
            conn,
            NatsSource(
                connector="edge",
                subject=src_subject,
                # Deliveries swallowed by the silent connection come back after ack_wait.
                jetstream=JetStreamSource(
                    stream=f"{run}-src", durable="edge", ack_wait_seconds=3.0, batch=16
                ),
            ),
        )
        core_in = Collector(conn, NatsSource(connector="edge", subject=core_subject))
        publisher = Publisher(conn, NatsTarget(connector="edge", subject=out_subject))
        fed: set[str] = set()

        async def feed(first: int, count: int) -> None:
            """Events into the source stream, straight to the server (not proxied)."""
            for n in range(first, first + count):
                item = event(f"{run}-in", n)
                await js.publish(src_subject, item.data or b"", headers=ce_headers(item))
                fed.add(item.id)

        core_sent = 0

        async def core_flows(within: float) -> bool:
            """Core messages sent straight to the server reach the connector's subscription."""
            nonlocal core_sent
            deadline = time.monotonic() + within
            while time.monotonic() < deadline:
                core_sent += 1
                item = event(f"{run}-core", core_sent)
                await admin.publish(
                    core_subject,
                    item.data or b"",
                    headers=ce_headers(item),
                )
                await admin.flush()
                if await until(lambda i=item.id: i in core_in.ids, 0.5):
                    return True
            return False

        events = [event(run, n) for n in range(EVENTS)]
        all_ids = {item.id for item in events}
        with captured("meshgate.connectors.nats") as records:
            try:
                # Before: everything flows through the proxy.
                assert await core_flows(10), "core subscription never received"
                publisher.send(events[:100])
                await feed(0, 50)
                assert await until(lambda: len(publisher.confirmed) == 100, 20)
                assert await until(lambda: js_in.has(set(fed)), 20)
                assert conn.health.state is HealthState.UP
                reconnects = conn.health.reconnects

                # The link goes silent: nats-py keeps believing it is connected.
                assert proxy.silence() == 1
                silenced_at = time.monotonic()
                publisher.send(events[100:200])
                await feed(50, 50)
                assert await until(lambda: conn.watchdog_replacements == 1, RECOVERY_BOUND)
                fired_after = time.monotonic() - silenced_at
                publisher.send(events[200:])
                await feed(100, 50)

                # After: all confirmed, all in the target stream, the sources resumed.
                assert await until(lambda: len(publisher.confirmed) == EVENTS, RECOVERY_BOUND), (
                    len(publisher.confirmed),
                    publisher.failures,
                    publisher.refused,
                )
                assert await until(lambda: out.has(all_ids), RECOVERY_BOUND), len(out.ids)
                assert await until(lambda: js_in.has(set(fed)), RECOVERY_BOUND), len(
                    set(fed) - js_in.ids.keys()
                )
                assert await core_flows(10), "core subscription did not resume"
                recovered_after = time.monotonic() - silenced_at
                health = (conn.health.state, conn.health.reconnects - reconnects)
            finally:
                await publisher.stop()
                for collector in (js_in, core_in, out):
                    await collector.stop()
                await conn.close()
                await collector_conn.close()
                await admin.close()

        print(
            f"silent link: watchdog fired after {fired_after:.1f} s, everything through "
            f"after {recovered_after:.1f} s; publish failures retried {publisher.failures}; "
            f"target stream dups {sum(out.ids.values()) - len(out.ids)}; source: "
            f"{js_in.redelivered} redelivered (swallowed by the silent link), "
            f"{sum(js_in.ids.values()) - len(js_in.ids)} seen twice; "
            f"proxy connections {proxy.connections}"
        )
        assert not publisher.refused
        assert publisher.confirmed == all_ids
        assert set(out.ids) == all_ids  # nothing lost, nothing unexpected
        # Nats-Msg-Id: a publish retried after its PubAck was lost is stored once.
        assert all(count == 1 for count in out.ids.values()), "target stored a duplicate"
        warnings = [
            r.getMessage()
            for r in records
            if r.levelno == logging.WARNING and "silent" in r.getMessage()
        ]
        assert len(warnings) == 1 and warnings[0].startswith(f"{run}-edge: "), warnings
        assert conn.watchdog_replacements == 1
        assert health == (HealthState.UP, 1)  # the replacement, counted as a reconnect
        assert proxy.connections == 2  # the first connection and its replacement


@pytest.mark.timeout(150)
async def test_gateway_route_recovers_from_a_silent_nats_target(
    private_nats: PrivateNats,
    gateways: Callable[[Path, str], GatewayProcess],
    tmp_path: Path,
    fault_report: FaultReport,
) -> None:
    """The same through a gateway: JetStream -> JetStream, the target link goes silent."""
    async with FaultyProxy(private_nats.port, seed=6) as proxy:
        pair = Pair(
            NATS,
            private_nats.url,
            NATS,
            private_nats.url,
            label="silent-nats",
            via=f"nats://{proxy.url_host_port}",
        )
        options = {"publish_timeout": 1.0, "reconnect_wait": 0.2, "reconnect_jitter": 0.2}
        async with Scenario([pair], connector={NATS: options}, drain_timeout=5) as scenario:
            gateway = gateways(scenario.write(tmp_path), "gw")
            await gateway.wait_started()
            await scenario.feed(pair, 200)
            assert await scenario.until_delivered(30), pair.tally()
            assert proxy.silence() == 1  # the target connection; the source is direct
            silenced_at = time.monotonic()
            await scenario.feed(pair, 400, rate=100)  # through the silence, 4 s
            assert await scenario.until_delivered(RECOVERY_BOUND), pair.tally()
            recovered_after = time.monotonic() - silenced_at
            # In a thread: the proxies run in this event loop and must keep forwarding
            # while the gateway stops (a blocked loop made every proxied link silent).
            code = await asyncio.to_thread(gateway.terminate, 60)
            log = gateway.current_log()
            silent = [line for line in log.splitlines() if "silent (" in line]
            tally = pair.tally()
            fault_report.add(
                "silent NATS target link",
                pair,
                f"watchdog replaced the client; all through {recovered_after:.1f} s after "
                f"the silence; proxy connections {proxy.connections}",
            )
            print(f"silent NATS target via gateway: {tally}, {recovered_after:.1f} s")
            assert tally["lost"] == 0 and tally["unexpected"] == 0, tally
            assert len(silent) == 1 and "WARNING" in silent[0], silent
            assert proxy.connections == 2
            assert code == 0


async def test_proxy_passes_a_reset_on() -> None:
    """An upstream RST reaches the client (the proxy made silent links when it did not)."""

    async def upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()  # RST

    server = await asyncio.start_server(upstream, LOOPBACK, 0)
    try:
        async with FaultyProxy(server.sockets[0].getsockname()[1]) as proxy:
            reader, writer = await asyncio.open_connection(LOOPBACK, proxy.port)
            writer.write(b"PING\r\n")
            try:
                assert await asyncio.wait_for(reader.read(100), 5) == b""
            except ConnectionResetError:
                pass  # the reset itself: what a broken path shows
            finally:
                writer.transport.abort()
    finally:
        server.close()


@pytest.mark.timeout(90)
async def test_silent_link_under_a_jetstream_source_alone_is_replaced(
    private_nats: PrivateNats,
) -> None:
    """No publishes at all: the source's unanswered pull and durable lookups fire it."""
    run = unique_name("silent-src")
    subject = f"{run}.src"
    admin: Client = await nats.connect(private_nats.url, connect_timeout=5)
    js = admin.jetstream()
    await js.add_stream(StreamConfig(name=f"{run}-src", subjects=[subject]))
    fed: set[str] = set()

    async def feed(first: int, count: int) -> None:
        for n in range(first, first + count):
            item = event(run, n)
            await js.publish(subject, item.data or b"", headers=ce_headers(item))
            fed.add(item.id)

    async with FaultyProxy(private_nats.port, seed=7) as proxy:
        conn = NatsConnector(
            f"{run}-edge",
            NatsOptions(
                servers=(f"nats://{proxy.url_host_port}",),
                publish_timeout=PUBLISH_TIMEOUT,
                reconnect_wait=0.2,
                reconnect_jitter=0.2,
            ),
        )
        await conn.start()
        source = Collector(
            conn,
            NatsSource(
                connector="edge",
                subject=subject,
                jetstream=JetStreamSource(
                    stream=f"{run}-src", durable="edge", ack_wait_seconds=3.0, batch=16
                ),
            ),
        )
        try:
            await feed(0, 20)
            assert await until(lambda: source.has(set(fed)), 20)
            assert proxy.silence() == 1
            silenced_at = time.monotonic()
            await feed(20, 40)
            assert await until(lambda: source.has(set(fed)), 45), len(set(fed) - source.ids.keys())
            recovered_after = time.monotonic() - silenced_at
            replacements = conn.watchdog_replacements
        finally:
            await source.stop()
            await conn.close()
            await admin.close()
    print(f"source alone: everything through {recovered_after:.1f} s after the silence")
    assert replacements == 1
    assert proxy.connections == 2
