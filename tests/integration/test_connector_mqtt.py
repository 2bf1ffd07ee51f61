"""The ``mqtt`` connector against the loopback Mosquitto: conformance plus MQTT specifics.

Conformance runs for MQTT 5 and 3.1.1. MQTT-specific tests: a crash before ack
(connection dropped without DISCONNECT, and a real ``kill -9``) gets the message
redelivered on both protocols and at QoS 1 and 2; acks are written in receive order
whatever order the runtime acks in; a shared subscription splits messages between
two connectors without loss; ``+``/``#`` filters; QoS 2 publishing; MQTT 5 reason
codes become ``PublishRejected``; Receive Maximum bounds deliveries in flight; the
consumer survives a dropped connection; binary mode on 3.1.1 is a config error.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal

import aiomqtt
import pytest

from connectors.base import Delivery, HealthState
from connectors.errors import PublishRejected
from connectors.mqtt import MqttConnector, MqttOptions, MqttSource, MqttTarget
from connectors.mqtt.config import subscriber_client_id
from connectors.mqtt.session import Session
from connectors.redact import redact_url
from connectors.testing import sample_event
from routing.bindings import Mode
from tests.brokers import MQTT_HOST_PORT, unique_name
from tests.integration.connector_hooks import HookedConformance, next_delivery, subscribed

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

HOST, PORT = MQTT_HOST_PORT
SETTLE = 0.3  # let acks written just now reach the broker before a simulated crash
QUIET = 1.0  # how long "nothing arrives" is watched
LOG = logging.getLogger("tests.mqtt")
ROOT = str(Path(__file__).resolve().parents[2])


Version = Literal[4, 5]
Qos = Literal[0, 1, 2]


def options(protocol: Version, client_id: str, **extra: Any) -> MqttOptions:
    settings: dict[str, Any] = {"session_expiry": 60, **extra}
    return MqttOptions(
        url=f"mqtt://{HOST}:{PORT}", protocol=protocol, client_id=client_id, **settings
    )


async def drop_sessions(protocol: Version, client_ids: set[str]) -> None:
    """Remove broker-side sessions the tests left (clean start, no expiry)."""
    opts = options(protocol, "cleanup", clean_start=True, session_expiry=0)
    for client_id in client_ids:
        session = Session(opts, client_id, clean_start=True, session_expiry=0, log=LOG)
        with contextlib.suppress(Exception):
            await session.connect()
        await session.close()


def subscriber(connector: MqttConnector) -> Session:
    """The (single) source session of ``connector``."""
    sessions = [s for s in connector._hub.sessions() if s.client_id != connector.client_id]
    assert len(sessions) == 1, sessions
    return sessions[0]


async def raw_publish(protocol: Version, topic: str, payload: bytes, qos: Qos = 1) -> None:
    version = aiomqtt.ProtocolVersion.V5 if protocol == 5 else aiomqtt.ProtocolVersion.V311
    async with aiomqtt.Client(HOST, PORT, protocol=version, timeout=10) as client:
        await client.publish(topic, payload, qos=qos)


async def quiet(stream: AsyncIterator[Delivery], within: float = QUIET) -> asyncio.Task[Delivery]:
    """Start waiting for the next delivery; fail if one arrives within ``within`` s."""
    task: asyncio.Task[Delivery] = asyncio.ensure_future(anext(stream))
    done, _ = await asyncio.wait({task}, timeout=within)
    if done:
        pytest.fail(f"unexpected delivery: {task.result().address} {task.result().payload!r}")
    return task


class MqttHarness:
    """Connectors with one base client id per test, and cleanup of their sessions."""

    protocol: Version = 5

    @pytest.fixture(autouse=True)
    async def _sessions(self) -> AsyncIterator[None]:
        self.base_id = unique_name("mg")
        self.client_ids: set[str] = set()
        self.running_connectors: list[MqttConnector] = []
        yield
        for connector in self.running_connectors:
            await connector.close()
        await drop_sessions(self.protocol, self.client_ids)

    def connector(self, client_id: str | None = None, **extra: Any) -> MqttConnector:
        client_id = client_id or self.base_id
        self.client_ids.add(client_id)
        return MqttConnector("mqtt", options(self.protocol, client_id, **extra))

    async def started(self, client_id: str | None = None, **extra: Any) -> MqttConnector:
        connector = self.connector(client_id, **extra)
        await connector.start()
        self.running_connectors.append(connector)
        return connector

    def source(self, topic: str, client_id: str | None = None, **extra: Any) -> MqttSource:
        source = MqttSource(connector="mqtt", topic=topic, **extra)
        self.client_ids.add(subscriber_client_id(client_id or self.base_id, source))
        return source

    def topic(self) -> str:
        return f"meshgate-test/{unique_name('t')}"


class TestMqttConformance(MqttHarness, HookedConformance):
    """The shared contract on MQTT 5."""

    def make_connector(self) -> MqttConnector:
        return self.connector()

    async def make_pair(self, mode: Mode) -> tuple[MqttSource, MqttTarget]:
        topic = self.topic()
        return self.source(topic), MqttTarget(connector="mqtt", topic=topic, mode=mode)

    async def publish_raw(self, target: Any, payload: bytes) -> None:
        await raw_publish(self.protocol, target.topic, payload)

    async def bounce(self, connector: MqttConnector) -> None:
        # Drop every connection of the connector without DISCONNECT, as a network
        # fault does: its subscriber sessions and its publisher.
        for session in connector._hub.sessions():
            session.abort("conformance bounce")
        if connector._publisher is not None:
            connector._publisher.abort("conformance bounce")

    def bounded(self, source: MqttSource, limit: int) -> tuple[MqttConnector, MqttSource]:
        return self.connector(receive_maximum=limit), source


class TestMqtt311Conformance(TestMqttConformance):
    """The shared contract on MQTT 3.1.1 (structured JSON only: binary mode is a config
    error there)."""

    protocol = 4


@pytest.mark.parametrize("protocol", [5, 4])
class TestMqttDelivery(MqttHarness):
    """At-least-once on the consuming side, for both protocol levels."""

    @pytest.fixture(autouse=True)
    def _protocol(self, protocol: Version) -> None:
        self.protocol = protocol

    @pytest.mark.parametrize("qos", [1, 2])
    async def test_dropped_connection_before_ack_redelivers(
        self, protocol: Version, qos: Qos
    ) -> None:
        topic = self.topic()
        source = self.source(topic, qos=qos)
        first = await self.started()
        stream = aiter(first.consume(source))
        receive = asyncio.ensure_future(next_delivery(stream))
        await subscribed(first, source)
        await raw_publish(protocol, topic, b"unacked", qos=qos)
        delivery = await receive
        assert delivery.coordinates["qos"] == qos
        subscriber(first).abort("simulated crash")  # no DISCONNECT, no PUBACK/PUBREC
        await first.close()

        second = await self.started()
        stream = aiter(second.consume(source))
        again = await next_delivery(stream)
        assert again.payload == b"unacked"
        await again.ack()
        await asyncio.sleep(SETTLE)  # PUBACK, or PUBREC -> PUBREL -> PUBCOMP
        subscriber(second).abort("simulated crash after ack")
        await second.close()

        third = await self.started()
        stream = aiter(third.consume(source))
        (await quiet(stream)).cancel()  # acked once: not redelivered again

    async def test_kill_9_before_ack_redelivers(self, protocol: Version, tmp_path: Path) -> None:
        topic = self.topic()
        source = self.source(topic)
        script = tmp_path / "consumer.py"
        script.write_text(
            textwrap.dedent(f"""
            import asyncio, sys, time
            from connectors.mqtt import MqttConnector, MqttOptions, MqttSource
            async def main():
                opts = MqttOptions(url="mqtt://{HOST}:{PORT}", protocol={protocol},
                                   client_id={self.base_id!r}, session_expiry=60)
                connector = MqttConnector("mqtt", opts)
                await connector.start()
                source = MqttSource(connector="mqtt", topic={topic!r})
                stream = aiter(connector.consume(source))
                receive = asyncio.ensure_future(anext(stream))
                await asyncio.wait_for(connector.wait_subscribed(source), 15)
                print("ready", flush=True)
                delivery = await receive
                print("got", delivery.payload.decode(), flush=True)
                time.sleep(60)  # never acks: killed here
            asyncio.run(main())
        """)
        )
        env = {**os.environ, "PYTHONPATH": ROOT}
        child = await asyncio.create_subprocess_exec(
            sys.executable, str(script), stdout=asyncio.subprocess.PIPE, env=env
        )
        try:
            assert child.stdout is not None
            line = await asyncio.wait_for(child.stdout.readline(), 15)
            assert line.strip() == b"ready"
            await raw_publish(protocol, topic, b"in flight")
            line = await asyncio.wait_for(child.stdout.readline(), 15)
            assert line.strip() == b"got in flight"
        finally:
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signal.SIGKILL)
            await child.wait()

        survivor = await self.started()
        again = await next_delivery(aiter(survivor.consume(source)))
        assert again.payload == b"in flight"
        await again.ack()

    async def test_acks_are_written_in_receive_order(self, protocol: Version) -> None:
        topic = self.topic()
        source = self.source(topic)
        first = await self.started()
        stream = aiter(first.consume(source))
        receive = asyncio.ensure_future(next_delivery(stream))
        await subscribed(first, source)
        for n in (1, 2, 3):
            await raw_publish(protocol, topic, b"m%d" % n)
        got = [await receive, await next_delivery(stream), await next_delivery(stream)]
        assert [d.payload for d in got] == [b"m1", b"m2", b"m3"]
        await got[2].ack()
        await got[1].ack()  # m1 still open: neither PUBACK may be written
        subscriber(first).abort("crash with m1 unacked")
        await first.close()

        second = await self.started()
        stream = aiter(second.consume(source))
        again = [await next_delivery(stream) for _ in range(3)]
        assert sorted(d.payload for d in again) == [b"m1", b"m2", b"m3"]  # all held back
        written: list[int] = []
        session = subscriber(second)
        release = session._client.release

        def spy(mid: int, qos: int) -> Any:
            written.append(mid)
            return release(mid, qos)

        session._client.release = spy  # type: ignore[method-assign]
        mids = session.acks.mids
        await again[1].ack()
        assert written == []
        await again[0].ack()
        assert written == mids[:2]
        await again[2].ack()
        assert written == mids
        await asyncio.sleep(SETTLE)
        subscriber(second).abort("crash after all acks")
        await second.close()

        third = await self.started()
        (await quiet(aiter(third.consume(source)))).cancel()

    async def test_consumer_survives_dropped_connection(self, protocol: Version) -> None:
        topic = self.topic()
        connector = await self.started()
        source = self.source(topic)
        stream = aiter(connector.consume(source))
        receive = asyncio.ensure_future(next_delivery(stream))
        await subscribed(connector, source)
        await raw_publish(protocol, topic, b"before")
        first = await receive
        subscriber(connector).abort("network glitch")
        again = await next_delivery(stream)  # reconnected, resubscribed, redelivered
        assert again.payload == b"before"
        await first.ack()  # from the dead connection: dropped, harmless
        await again.ack()
        await raw_publish(protocol, topic, b"after")
        assert (await next_delivery(stream)).payload == b"after"
        assert connector.health.reconnects >= 1

    async def test_wildcard_filters(self, protocol: Version) -> None:
        base = self.topic()
        connector = await self.started()
        source = self.source(f"{base}/+/telemetry/#")
        stream = aiter(connector.consume(source))
        receive = asyncio.ensure_future(next_delivery(stream))
        await subscribed(connector, source)
        for topic in (
            f"{base}/a/status",  # no: wrong level
            f"{base}/a/b/telemetry/x",  # no: '+' is one level
            f"{base}/a/telemetry/x/y",  # yes
            f"{base}/b/telemetry",  # yes: '#' also matches the parent level
        ):
            await raw_publish(protocol, topic, topic.encode())
        got = [await receive, await next_delivery(stream)]
        assert [d.address for d in got] == [f"{base}/a/telemetry/x/y", f"{base}/b/telemetry"]
        assert all(d.ordering_key == d.address for d in got)
        for delivery in got:
            await delivery.ack()
        (await quiet(stream, 0.5)).cancel()

    async def test_shared_subscription_splits_without_loss(self, protocol: Version) -> None:
        topic, group, count = self.topic(), unique_name("grp"), 40
        ids = [f"{self.base_id}-a", f"{self.base_id}-b"]
        connectors = [await self.started(client_id) for client_id in ids]
        received: list[list[bytes]] = [[], []]
        all_in = asyncio.Event()

        sources = [self.source(topic, ids[i], share_group=group) for i in (0, 1)]

        async def drain(index: int) -> None:
            async for delivery in connectors[index].consume(sources[index]):
                received[index].append(delivery.payload)
                await delivery.ack()
                if sum(map(len, received)) >= count:
                    all_in.set()

        tasks = [asyncio.create_task(drain(i)) for i in (0, 1)]
        for i in (0, 1):
            await subscribed(connectors[i], sources[i])
        publisher = await self.started(f"{self.base_id}-pub")
        target = MqttTarget(connector="mqtt", topic=topic, mode=Mode.STRUCTURED)
        for n in range(count):
            await publisher.publish(target, sample_event(n))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_in.wait(), 15)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert all(received), f"one member got nothing: {list(map(len, received))}"
        seen = [json.loads(payload)["id"] for part in received for payload in part]
        assert set(seen) == {f"evt-{n}" for n in range(count)}  # union = all, none lost


class TestMqttPublish(MqttHarness):
    """Publishing specifics (MQTT 5 unless stated)."""

    async def test_qos2_publish_and_consume(self) -> None:
        topic = self.topic()
        connector = await self.started()
        source = self.source(topic, qos=2)
        stream = aiter(connector.consume(source))
        receive = asyncio.ensure_future(next_delivery(stream))
        await subscribed(connector, source)
        target = MqttTarget(connector="mqtt", topic=topic, qos=2)
        await connector.publish(target, sample_event(5))  # returns after PUBCOMP
        delivery = await receive
        assert delivery.coordinates["qos"] == 2
        event = connector.decode(delivery)
        assert event is not None and event.id == "evt-5"
        await delivery.ack()

    @pytest.mark.parametrize("qos", [1, 2])
    async def test_reason_code_failure_is_publish_rejected(self, qos: Qos) -> None:
        connector = await self.started()
        forbidden = MqttTarget(connector="mqtt", topic="$SYS/meshgate-test", qos=qos)
        with pytest.raises(PublishRejected, match="Not authorized") as caught:
            await connector.publish(forbidden, sample_event())
        assert not caught.value.retriable
        # The connection is still usable afterwards.
        await connector.publish(MqttTarget(connector="mqtt", topic=self.topic()), sample_event())

    async def test_receive_maximum_bounds_unacked_deliveries(self) -> None:
        topic = self.topic()
        connector = await self.started(receive_maximum=2)
        source = self.source(topic)
        stream = aiter(connector.consume(source))
        receive = asyncio.ensure_future(next_delivery(stream))
        await subscribed(connector, source)
        for n in range(4):
            await raw_publish(5, topic, b"%d" % n)
        held = [await receive, await next_delivery(stream)]
        pending = await quiet(stream)  # two unacked: the broker sends no third
        await held[0].ack()
        third = await asyncio.wait_for(pending, 10)
        assert third.payload == b"2"

    async def test_qos0_stops_reading_while_consumer_does_not_pull(self) -> None:
        topic, count = self.topic(), 50
        connector = await self.started(receive_maximum=5)
        source = self.source(topic, qos=0)
        stream = aiter(connector.consume(source))
        receive = asyncio.ensure_future(next_delivery(stream))
        await subscribed(connector, source)
        version = aiomqtt.ProtocolVersion.V5
        async with aiomqtt.Client(HOST, PORT, protocol=version, timeout=10) as client:
            for n in range(count):
                await client.publish(topic, b"%d" % n, qos=0)
        first = await receive
        session = subscriber(connector)
        async with asyncio.timeout(10):
            while True:  # the session pauses reading once 5 wait unpulled
                if not session._reading:
                    break
                await asyncio.sleep(0.01)
        assert len(session._inbox) <= 5  # paused, bounded
        await first.ack()  # QoS 0: no-op
        rest = [await next_delivery(stream) for _ in range(count - 1)]
        assert [d.payload for d in [first, *rest]] == [b"%d" % n for n in range(count)]
        assert session._reading

    async def test_publisher_reconnects(self) -> None:
        connector = await self.started()
        assert connector._publisher is not None
        connector._publisher.abort("network glitch")
        target = MqttTarget(connector="mqtt", topic=self.topic())
        await connector.publish(target, sample_event())  # waits for the reconnect
        assert connector.health.reconnects == 1
        assert connector.health.state is HealthState.UP

    def test_credentials_never_shown(self) -> None:
        opts = MqttOptions(url="mqtt://gw:s3cret@127.0.0.1:1883", client_id="x")
        password = opts.endpoint().password
        assert password is not None and password.get_secret_value() == "s3cret"
        for text in (repr(opts), str(opts.endpoint()), redact_url(opts.url or "")):
            assert "s3cret" not in text
        opts = MqttOptions(host="127.0.0.1", username="gw", password="s3cret")  # type: ignore[arg-type]
        assert "s3cret" not in repr(opts) and "s3cret" not in str(opts.endpoint())

    async def test_binary_mode_on_311_is_a_config_error(self) -> None:
        opts = options(4, self.base_id)
        binary = MqttTarget(connector="mqtt", topic="a/b", mode=Mode.BINARY)
        problem = MqttConnector.validate_target(opts, binary)
        assert problem is not None and "protocol 4" in problem and "structured" in problem
        assert MqttConnector.validate_target(opts, MqttTarget(connector="mqtt", topic="a")) is None
        assert MqttConnector.validate_target(options(5, self.base_id), binary) is None
        self.protocol = 4
        connector = await self.started()
        with pytest.raises(PublishRejected, match=r"3\.1\.1"):
            await connector.publish(binary, sample_event())


def unread_bytes(sock: Any) -> int:
    """Bytes received by the kernel for ``sock`` that the client has not read yet."""
    import fcntl
    import struct
    import termios

    data = fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0")
    return int(struct.unpack("i", data)[0])


async def test_clean_close_with_unread_messages_keeps_every_puback() -> None:
    """PUBACKs written right before a clean close reach the broker although it was still
    sending: closing a socket with unread data sends a TCP RST, and Mosquitto dropped
    the PUBACKs it had not read yet, so it redelivered acked messages (duplicates after
    every graceful stop under traffic). The session now half-closes and waits for EOF."""
    topic = f"meshgate-test/{unique_name('t')}"
    client_id = unique_name("mg-close")
    opts = options(5, client_id, receive_maximum=10)
    first = Session(opts, client_id, clean_start=True, session_expiry=60, log=LOG)
    second = Session(opts, client_id, clean_start=False, session_expiry=60, log=LOG)
    try:
        await first.connect()
        await first.subscribe(topic, 1, no_local=False)
        async with aiomqtt.Client(HOST, PORT, protocol=aiomqtt.ProtocolVersion.V5) as client:
            for n in range(10):  # the Receive Maximum: all of them in flight
                await client.publish(topic, b"q1-%d" % n, qos=1)
            held = [await asyncio.wait_for(first.next_message(), 10) for _ in range(10)]
            assert all(message is not None and message.qos == 1 for message in held)
            # QoS 0 is not flow-controlled: once receive_maximum of them wait unpulled
            # the session stops reading, and the rest stay unread in the socket.
            for n in range(40):
                await client.publish(topic, b"q0-%d" % n, qos=0)
        sock = first._client.socket()
        deadline = asyncio.get_running_loop().time() + 10
        while unread_bytes(sock) == 0:
            assert asyncio.get_running_loop().time() < deadline, "nothing left unread"
            await asyncio.sleep(0.01)
        for message in held:
            assert message is not None
            first.acks.settle(first.acks.track(message.mid, message.qos))
        await first.close()

        await second.connect()
        assert second.session_present
        redelivered = asyncio.ensure_future(second.next_message())
        done, _ = await asyncio.wait({redelivered}, timeout=QUIET)
        assert not done, f"acked message redelivered: {redelivered.result().payload!r}"
        redelivered.cancel()
    finally:
        first.abort("test over")
        second.abort("test over")
        await drop_sessions(5, {client_id})
