"""The ``nats`` connector against the loopback NATS server: conformance plus NATS specifics.

The conformance suite runs twice: JetStream (durable pull source, PubAck publish)
and core NATS (plain subscription, publish + flush), where the ack tests skip
because core NATS is at-most-once. NATS-specific tests: queue groups share core
messages, a shared durable shares JetStream work, ``Nats-Msg-Id`` makes the stream
drop duplicates, ``in_progress`` holds off redelivery past ``ack_wait``, nack
without requeue terminates, publishing where no stream listens is rejected, the
first connection fails cleanly without leaking credentials, and a private
nats-server restart is survived both by nats-py's reconnect and, when the client
gives up, by the connector's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.client import Client
from nats.js.api import StreamConfig
from pydantic import SecretStr

from connectors.base import Delivery, HealthState
from connectors.errors import ConnectionLost, ConnectorError, PublishRejected, PublishTimeout
from connectors.nats import JetStreamSource, NatsConnector, NatsOptions, NatsSource, NatsTarget
from connectors.nats import source as nats_source
from connectors.redact import redact_url
from connectors.testing import sample_event
from connectors.tls import TlsConfigError
from gateway.localbrokers import LOOPBACK, free_port, nats_server_binary, wait_for_port
from routing.bindings import Mode
from tests.brokers import NATS_URL, unique_name
from tests.integration.connector_hooks import HookedConformance, subscribed

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

WAIT = 15.0


async def eventually(check: Callable[[], Awaitable[bool]], within: float = WAIT) -> None:
    """Poll ``check`` until it is true; fail after ``within`` seconds."""
    deadline = asyncio.get_running_loop().time() + within
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"condition not met within {within}s")
        await asyncio.sleep(0.05)


class Broker:
    """Raw nats-py access: streams per test (deleted afterwards), raw publishes, inspection."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.streams: list[str] = []
        self._nc: Client | None = None

    async def client(self) -> Client:
        if self._nc is None:
            self._nc = await nats.connect(self.url, connect_timeout=5)
        return self._nc

    async def stream(self, subjects: list[str] | None = None, **config: Any) -> tuple[str, str]:
        """A fresh stream; returns (stream name, a subject it captures)."""
        name = unique_name("NATS")
        prefix = unique_name("nt")
        js = (await self.client()).jetstream()
        await js.add_stream(StreamConfig(name=name, subjects=subjects or [f"{prefix}.>"], **config))
        self.streams.append(name)
        return name, f"{prefix}.events"

    async def publish(self, subject: str, payload: bytes) -> None:
        nc = await self.client()
        await nc.publish(subject, payload)
        await nc.flush()

    async def stored(self, stream: str) -> int:
        info = await (await self.client()).jetstream().stream_info(stream)
        return info.state.messages

    async def cleanup(self) -> None:
        if self._nc is None:
            return
        js = self._nc.jetstream()
        for name in self.streams:
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await js.delete_stream(name)
        await self._nc.close()


@pytest.fixture
async def broker(nats_url: str) -> AsyncIterator[Broker]:
    raw = Broker(nats_url)
    try:
        yield raw
    finally:
        await raw.cleanup()


def connector(servers: tuple[str, ...] = (NATS_URL,), **options: Any) -> NatsConnector:
    name = unique_name("nats-conn")
    return NatsConnector(name, NatsOptions(servers=servers, **options))


@contextlib.asynccontextmanager
async def running(conn: NatsConnector) -> AsyncIterator[NatsConnector]:
    await conn.start()
    try:
        yield conn
    finally:
        await conn.close()


def js_source(
    subject: str, stream: str | None, durable: str | None = None, **js: Any
) -> NatsSource:
    block = JetStreamSource(stream=stream, durable=durable or unique_name("dur"), **js)
    return NatsSource(connector="nats", subject=subject, jetstream=block)


class Pump:
    """Pulls deliveries in a task (cancelling ``anext`` would end the generator)."""

    def __init__(self, stream: AsyncIterator[Delivery], ack: bool = False) -> None:
        self.got: list[Delivery] = []
        self.ack = ack
        self.task = asyncio.create_task(self._run(stream))

    async def _run(self, stream: AsyncIterator[Delivery]) -> None:
        async for delivery in stream:
            if self.ack:
                await delivery.ack()
            self.got.append(delivery)

    async def wait_for(self, count: int, within: float = WAIT) -> list[Delivery]:
        async def enough() -> bool:
            return len(self.got) >= count

        await eventually(enough, within)
        return self.got[:count]

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


async def pulling(
    conn: NatsConnector, source: NatsSource
) -> tuple[AsyncIterator[Delivery], asyncio.Future[Delivery]]:
    """``source``'s iterator and its first pull (which starts the subscription), once the
    server has the subscription."""
    stream_it = aiter(conn.consume(source))
    first = asyncio.ensure_future(anext(stream_it))
    await subscribed(conn, source)
    return stream_it, first


def ids(conn: NatsConnector, deliveries: list[Delivery]) -> list[str]:
    events = [conn.decode(d) for d in deliveries]
    return [e.id for e in events if e is not None]


async def drop_transport(conn: NatsConnector) -> None:
    """Close the client's socket under it, as a network fault does: nats-py sees EOF and
    reconnects (replaying subscriptions), the connector carries on."""
    nc = conn._link._nc
    assert nc is not None and nc._transport is not None
    nc._transport.close()


class TestNatsJetStreamConformance(HookedConformance):
    """JetStream source (durable pull, ack_wait 2 s) and JetStream publish (PubAck)."""

    # A missing ack or a nack that settles nothing shows only after ack_wait (2 s): the
    # suite's 1.5 s windows (two in a row where it restarts) outlast it, 0.5 s would not.
    quiet = 1.5

    @pytest.fixture(autouse=True)
    def _broker(self, broker: Broker) -> None:
        self.broker = broker

    def make_connector(self) -> NatsConnector:
        return connector()

    async def make_pair(self, mode: Mode) -> tuple[NatsSource, NatsTarget]:
        stream, subject = await self.broker.stream()
        source = js_source(subject, stream, ack_wait_seconds=2.0)
        return source, NatsTarget(connector="nats", subject=subject, mode=mode)

    async def publish_raw(self, target: Any, payload: bytes) -> None:
        await self.broker.publish(target.subject, payload)

    async def bounce(self, connector: NatsConnector) -> None:
        await drop_transport(connector)

    def bounded(self, source: NatsSource, limit: int) -> tuple[NatsConnector, NatsSource]:
        assert source.jetstream is not None
        # ack_wait beyond the test's quiet periods: a redelivery is not a bound breach.
        changes = {"max_ack_pending": limit, "ack_wait_seconds": 30.0}
        jetstream = source.jetstream.model_copy(update=changes)
        return self.make_connector(), source.model_copy(update={"jetstream": jetstream})


class TestNatsCoreConformance(HookedConformance):
    """Core NATS: plain subscription and publish + flush; the ack tests do not apply."""

    @pytest.fixture(autouse=True)
    def _broker(self, broker: Broker) -> None:
        self.broker = broker

    def make_connector(self) -> NatsConnector:
        return connector()

    async def make_pair(self, mode: Mode) -> tuple[NatsSource, NatsTarget]:
        subject = f"{unique_name('core')}.events"
        source = NatsSource(connector="nats", subject=subject.replace(".events", ".*"))
        return source, NatsTarget(connector="nats", subject=subject, mode=mode, jetstream=False)

    async def publish_raw(self, target: Any, payload: bytes) -> None:
        await self.broker.publish(target.subject, payload)

    async def bounce(self, connector: NatsConnector) -> None:
        await drop_transport(connector)


async def test_queue_group_members_share_core_messages(broker: Broker) -> None:
    subject = f"{unique_name('qg')}.work"
    source = NatsSource(connector="nats", subject=subject, queue_group=unique_name("grp"))
    target = NatsTarget(connector="nats", subject=subject, jetstream=False)
    async with running(connector()) as first, running(connector()) as second:
        pumps = [Pump(first.consume(source)), Pump(second.consume(source))]
        await subscribed(first, source)
        await subscribed(second, source)
        for n in range(200):
            await first.publish(target, sample_event(n))

        async def all_in() -> bool:
            return sum(len(p.got) for p in pumps) >= 200

        await eventually(all_in)
        await asyncio.sleep(0.2)  # a duplicate would show up now
        got = ids(first, pumps[0].got) + ids(second, pumps[1].got)
        for pump in pumps:
            await pump.stop()
    assert sorted(got) == sorted(f"evt-{n}" for n in range(200))
    assert pumps[0].got and pumps[1].got, "a queue group member got nothing"


async def test_shared_durable_shares_jetstream_work(broker: Broker) -> None:
    stream, subject = await broker.stream()
    source = js_source(subject.replace(".events", ".*"), stream, batch=5)  # filter: wildcard
    target = NatsTarget(connector="nats", subject=subject)
    async with running(connector()) as first, running(connector()) as second:
        pumps = [Pump(first.consume(source), ack=True), Pump(second.consume(source), ack=True)]
        await subscribed(first, source)
        await subscribed(second, source)
        await asyncio.gather(*(first.publish(target, sample_event(n)) for n in range(100)))

        async def all_in() -> bool:
            return sum(len(p.got) for p in pumps) >= 100

        await eventually(all_in)
        await asyncio.sleep(0.3)
        got = ids(first, pumps[0].got) + ids(second, pumps[1].got)
        for pump in pumps:
            await pump.stop()
    assert sorted(got) == sorted(f"evt-{n}" for n in range(100))
    assert pumps[0].got and pumps[1].got, "one durable member got no work"
    delivery = pumps[0].got[0]
    assert delivery.native_id == f"{stream}/{delivery.coordinates['seq']}"
    assert delivery.coordinates["stream"] == stream
    assert delivery.coordinates["num_delivered"] == 1
    assert delivery.ordering_key == delivery.address == subject


async def test_nats_msg_id_deduplicates_retried_publishes(broker: Broker) -> None:
    stream, subject = await broker.stream()
    other_subject = subject.replace(".events", ".other")
    target = NatsTarget(connector="nats", subject=subject)
    async with running(connector()) as conn:
        event = sample_event(5)
        await conn.publish(target, event)
        await conn.publish(target, event)  # a retry after a lost PubAck
        assert await broker.stored(stream) == 1
        # Ids are unique per source, and one event routed to two subjects is two messages.
        await conn.publish(target, event.replace(source="urn:other"))
        await conn.publish(target.model_copy(update={"subject": other_subject}), event)
        assert await broker.stored(stream) == 3


async def test_in_progress_extends_ack_wait(broker: Broker) -> None:
    stream, subject = await broker.stream()
    source = js_source(subject, stream, ack_wait_seconds=2.0)
    target = NatsTarget(connector="nats", subject=subject)
    async with running(connector()) as conn:
        stream_it, first = await pulling(conn, source)
        await conn.publish(target, sample_event(1))
        await conn.publish(target, sample_event(2))
        held = await asyncio.wait_for(first, WAIT)
        idle = await asyncio.wait_for(anext(stream_it), WAIT)
        assert ids(conn, [held, idle]) == ["evt-1", "evt-2"]
        for _ in range(4):  # hold evt-1 for 4 s (twice ack_wait), reporting progress
            await held.in_progress()
            await asyncio.sleep(1.0)
        # evt-2 (no progress reports) came back, maybe twice by now; evt-1 never did.
        redelivered = []
        with contextlib.suppress(TimeoutError):
            while True:
                redelivered.append(await asyncio.wait_for(anext(stream_it), 0.5))
        assert redelivered and set(ids(conn, redelivered)) == {"evt-2"}
        assert all(int(d.coordinates["num_delivered"]) >= 2 for d in redelivered)
        await held.ack()
        for delivery in redelivered:
            await delivery.ack()


async def test_nack_without_requeue_terminates(broker: Broker) -> None:
    stream, subject = await broker.stream()
    source = js_source(subject, stream, ack_wait_seconds=1.0)
    target = NatsTarget(connector="nats", subject=subject)
    async with running(connector()) as conn:
        stream_it, first = await pulling(conn, source)
        await conn.publish(target, sample_event(1))
        await (await asyncio.wait_for(first, WAIT)).nack(requeue=False)
        with pytest.raises(TimeoutError):  # 2 x ack_wait: a +TERM'ed message never returns
            await asyncio.wait_for(anext(stream_it), 2.0)


async def test_publish_without_stream_is_rejected() -> None:
    target = NatsTarget(connector="nats", subject=f"{unique_name('nostream')}.x")
    async with running(connector()) as conn:
        with pytest.raises(PublishRejected, match="no JetStream stream"):
            await conn.publish(target, sample_event())
        await conn.publish(target.model_copy(update={"jetstream": False}), sample_event())
        bad = target.model_copy(update={"subject": "a.*"})  # a rendered template gone wrong
        with pytest.raises(PublishRejected, match="wildcards"):
            await conn.publish(bad, sample_event())


async def test_publish_without_pub_ack_times_out(broker: Broker) -> None:
    # A stream that stores without acknowledging (no_ack) stands in for one that does
    # not answer: the publish must fail in time, retriably. (A core subscriber alone,
    # with no stream, is refused instead: test_nats_core_listener_no_stream.py.)
    _stream, subject = await broker.stream(no_ack=True)
    nc = await broker.client()
    swallowed: list[object] = []

    async def swallow(msg: Any) -> None:
        swallowed.append(msg)

    await nc.subscribe(subject, cb=swallow)
    await nc.flush()
    target = NatsTarget(connector="nats", subject=subject)
    async with running(connector(publish_timeout=0.5)) as conn:
        started = asyncio.get_running_loop().time()
        with pytest.raises(PublishTimeout, match="no confirmation") as failure:
            await conn.publish(target, sample_event())
        elapsed = asyncio.get_running_loop().time() - started
    assert failure.value.retriable
    assert 0.45 <= elapsed < 1.5
    assert len(swallowed) == 1


async def test_pub_ack_errors_are_refusals(broker: Broker) -> None:
    # A responder answering with a JetStream API error (as a stream does for a failed
    # expectation) is a refusal, with the server's description.
    subject = f"{unique_name('refusing')}.x"
    nc = await broker.client()

    async def refuse(msg: Any) -> None:
        error = {"code": 400, "err_code": 10071, "description": "wrong last sequence: 7"}
        await nc.publish(msg.reply, json.dumps({"error": error}).encode())

    await nc.subscribe(subject, cb=refuse)
    await nc.flush()
    target = NatsTarget(connector="nats", subject=subject)
    async with running(connector()) as conn:
        with pytest.raises(PublishRejected, match="wrong last sequence") as failure:
            await conn.publish(target, sample_event())
    assert not failure.value.retriable


async def test_concurrent_jetstream_publishes_are_each_confirmed(broker: Broker) -> None:
    stream, subject = await broker.stream()
    target = NatsTarget(connector="nats", subject=subject)
    async with running(connector()) as conn:
        # The first publishes race to set up the PubAck subscription.
        await asyncio.gather(*(conn.publish(target, sample_event(n)) for n in range(300)))
    assert await broker.stored(stream) == 300


@pytest.fixture
def nats_without_jetstream() -> Iterator[str]:
    """A private nats-server without -js: every JetStream request finds no responders."""
    port = free_port()
    cmd = [str(nats_server_binary()), "-a", LOOPBACK, "-p", str(port)]
    server = subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        assert wait_for_port(port, 15)
        yield f"nats://{LOOPBACK}:{port}"
    finally:
        server.terminate()
        server.wait(10)


async def test_publish_while_jetstream_is_away_is_retriable(nats_without_jetstream: str) -> None:
    # "No responders" is also what a server answers while it shuts down or recovers its
    # streams after a restart: an outage to retry (found by tests/faults), not a
    # missing stream, unless the stream-names API says none captures the subject.
    target = NatsTarget(connector="nats", subject=f"{unique_name('away')}.x")
    async with running(connector((nats_without_jetstream,))) as conn:
        with pytest.raises(ConnectionLost, match="JetStream unavailable") as failure:
            await conn.publish(target, sample_event())
        assert failure.value.retriable


async def test_first_connection_failure_is_clean_and_redacted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"nats://gw:s3cret@{LOOPBACK}:{free_port()}"
    conn = connector((url,), connect_timeout=0.5, connect_attempts=2, reconnect_wait=0.1)
    with (
        caplog.at_level(logging.DEBUG, logger="meshgate.connectors.nats"),
        pytest.raises(ConnectionLost, match="cannot connect") as failure,
    ):
        await asyncio.wait_for(conn.start(), 10)
    await conn.close()
    assert "s3cret" not in str(failure.value) and "gw:***@" in str(failure.value)
    assert "s3cret" not in caplog.text
    assert redact_url("nats://tok@h:1", user_is_secret=True) == "nats://***@h:1"
    assert conn.health.state is HealthState.CLOSED


async def test_local_prerequisites_fail_fast(tmp_path: Path) -> None:
    ca = tmp_path / "gone-ca.pem"
    ca.write_text("not a certificate\n")  # readable at config load, unusable at start
    missing = connector((f"tls://{LOOPBACK}:4222",), tls={"ca_file": ca})
    with pytest.raises(TlsConfigError, match=r"tls\.ca_file .*gone-ca\.pem"):
        await asyncio.wait_for(missing.start(), 5)
    creds = connector(creds_file=tmp_path / "no.creds")
    with pytest.raises(ConnectionLost, match=r"nkeys|no such file"):
        await asyncio.wait_for(creds.start(), 5)


async def test_core_overflow_drops_beyond_pending_limit() -> None:
    subject = f"{unique_name('slow')}.x"
    source = NatsSource(connector="nats", subject=subject, pending_msgs_limit=10)
    target = NatsTarget(connector="nats", subject=subject, jetstream=False)
    async with running(connector()) as conn:
        stream_it, first = await pulling(conn, source)
        for n in range(50):  # nobody pulls while these arrive
            await conn.publish(target, sample_event(n))
        got = [await asyncio.wait_for(first, WAIT)]
        with contextlib.suppress(TimeoutError):
            while True:
                got.append(await asyncio.wait_for(anext(stream_it), 0.5))
    # One was handed out while pulling, ten waited in the bounded buffer: the rest is gone.
    assert len(got) == 11 and conn.slow_consumer_drops == conn.health.dropped == 39


def test_options_are_validated() -> None:
    with pytest.raises(ValueError, match="one authentication method"):
        NatsOptions(user="u", token=SecretStr("t"))
    with pytest.raises(ValueError, match="expected nats://"):
        NatsOptions(servers=("http://x",))
    with pytest.raises(ValueError, match="'>' only as its last token"):
        NatsSource(connector="n", subject="a.>.b")
    with pytest.raises(ValueError, match="queue_group is for core NATS"):
        NatsSource.model_validate(
            {"connector": "n", "subject": "a", "queue_group": "g", "jetstream": {"durable": "d"}}
        )
    assert NatsTarget(connector="n", subject="x.{topic}").subject == "x.{topic}"
    assert NatsSource(connector="n", subject="a").acknowledged is False


# -- surviving a server restart (a private nats-server; the shared one is never touched) --


class PrivateNats:
    """``nats-server -js`` on a free port whose store survives restarts."""

    def __init__(self, store: Path) -> None:
        self.port = free_port()
        self.store = store
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://{LOOPBACK}:{self.port}"

    def start(self) -> None:
        cmd = [str(nats_server_binary()), "-a", LOOPBACK, "-p", str(self.port), "-js"]
        self.process = subprocess.Popen(
            [*cmd, "-sd", str(self.store), "-l", str(self.store / "server.log")],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if not wait_for_port(self.port, 15):
            pytest.fail(f"private nats-server did not listen on {self.port}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None


@pytest.fixture
def private_nats(tmp_path: Path) -> Iterator[PrivateNats]:
    try:
        nats_server_binary()
    except FileNotFoundError:
        pytest.skip("no nats-server binary for a private server")
    server = PrivateNats(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def publish_eventually(conn: NatsConnector, target: NatsTarget, n: int) -> None:
    async def sent() -> bool:
        try:
            await conn.publish(target, sample_event(n))
        except ConnectorError:
            return False
        return True

    await eventually(sent, 20)


@pytest.mark.parametrize("max_reconnect_attempts", [-1, 1], ids=["client-reconnects", "revive"])
async def test_jetstream_source_survives_server_restart(
    private_nats: PrivateNats, max_reconnect_attempts: int
) -> None:
    subject = f"{unique_name('rs')}.events"
    source = js_source(  # ack_sync: evt-1's ack is on the server before it stops
        subject, "RESTART", create_stream=True, subjects=(subject,), ack_sync=True
    )
    target = NatsTarget(connector="nats", subject=subject)
    conn = connector(
        (private_nats.url,),
        reconnect_wait=0.2,
        reconnect_jitter=0.2,
        connect_timeout=1.0,
        max_reconnect_attempts=max_reconnect_attempts,
    )
    async with running(conn):
        pump = Pump(conn.consume(source), ack=True)
        await subscribed(conn, source)  # the stream and the durable exist
        await conn.publish(target, sample_event(1))
        await pump.wait_for(1)
        private_nats.stop()

        async def noticed() -> bool:
            return conn.health.state is HealthState.RECONNECTING

        await eventually(noticed, 5)
        await asyncio.sleep(1.5)  # with one reconnect attempt allowed, nats-py gives up
        private_nats.start()
        await publish_eventually(conn, target, 2)
        await pump.wait_for(2, within=20)
        assert ids(conn, pump.got) == ["evt-1", "evt-2"]
        # One client connection, back once, whether nats-py or the core reconnected it.
        assert conn.health.state is HealthState.UP and conn.health.reconnects == 1
        await pump.stop()


@pytest.fixture
def long_pulls(monkeypatch: pytest.MonkeyPatch) -> float:
    """Pull requests that last 10 s: a -NAK deferred by a request's expiry shows."""
    monkeypatch.setattr(nats_source, "_PULL_EXPIRES", 10.0)
    return 10.0


async def _delivered(broker: Broker, stream: str, durable: str, count: int) -> None:
    js = (await broker.client()).jetstream()

    async def all_out() -> bool:
        return (await js.consumer_info(stream, durable)).num_ack_pending == count

    await eventually(all_out)


async def test_nack_waits_only_for_its_pull_request(broker: Broker, long_pulls: float) -> None:
    """A delivery given back while its pull request is outstanding comes back once that
    request is over (here: its last message arrived), not after the request's expiry
    (a -NAK waits for the request to end: see connectors/nats/source.py, _Pull)."""
    stream, subject = await broker.stream()
    source = js_source(subject, stream, ack_wait_seconds=30.0, batch=2)
    target = NatsTarget(connector="nats", subject=subject)
    async with running(connector()) as conn:
        stream_it, first = await pulling(conn, source)
        await conn.publish(target, sample_event(1))
        await (await asyncio.wait_for(first, WAIT)).nack(requeue=True)
        await conn.publish(target, sample_event(2))  # the request's last message
        second = await asyncio.wait_for(anext(stream_it), WAIT)
        await second.ack()
        again = await asyncio.wait_for(anext(stream_it), long_pulls / 2)
        assert ids(conn, [second, again]) == ["evt-2", "evt-1"]
        assert again.coordinates["num_delivered"] == 2
        await again.ack()
        await stream_it.aclose()  # type: ignore[attr-defined]


async def test_ending_a_pull_gives_back_at_once(broker: Broker, long_pulls: float) -> None:
    """Ending a pull subscription (a graceful stop) waits for its outstanding request to
    be over, so nothing the server sent into it can be lost on its way (it would come
    back only after ack_wait_seconds), then gives back what it holds: the next consumer
    gets those at once, not after the request's expiry."""
    stream, subject = await broker.stream()
    durable = unique_name("dur")
    source = js_source(subject, stream, durable, ack_wait_seconds=30.0, batch=3)
    target = NatsTarget(connector="nats", subject=subject)
    async with running(connector()) as conn:
        stream_it, first = await pulling(conn, source)
        for n in range(3):
            await conn.publish(target, sample_event(n))
        handed_out = await asyncio.wait_for(first, WAIT)
        await _delivered(broker, stream, durable, 3)  # two more wait in the client
        await handed_out.nack(requeue=True)
        await stream_it.aclose()  # type: ignore[attr-defined]
        began = asyncio.get_running_loop().time()
        pump = Pump(conn.consume(source), ack=True)
        try:
            again = await pump.wait_for(3, within=long_pulls / 2)
        finally:
            await pump.stop()
        took = asyncio.get_running_loop().time() - began
    assert sorted(ids(conn, again)) == ["evt-0", "evt-1", "evt-2"], took
    assert all(d.coordinates["num_delivered"] == 2 for d in again)
