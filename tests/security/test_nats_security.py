"""The nats connector against private nats-servers with TLS, mTLS, users, nkeys, a token.

Every connection here is TLS verified by the test CA unless the test says otherwise;
the downgrade tests point tls:// URLs at a plaintext nats-server and at a fake server
that records what it receives, to prove nothing (CONNECT, credentials) is sent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.js.api import StreamConfig

from connectors.errors import ConnectionLost, NotAuthorized, PublishRejected
from connectors.nats import NatsConnector, NatsOptions, NatsSource, NatsTarget
from connectors.nats.link import TlsNotOffered
from connectors.testing import sample_event
from gateway.localbrokers import LOOPBACK
from tests.brokers import unique_name
from tests.security.brokers import (
    PASSWORD,
    TOKEN,
    USER,
    JetStreamUsersNats,
    Operator,
    OperatorNats,
    Pki,
    PlainNats,
    SecureNats,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]
WAIT = 10.0


def connector(url: str, **options: Any) -> NatsConnector:
    options.setdefault("connect_attempts", 1)
    options.setdefault("connect_timeout", 1.0)
    options.setdefault("reconnect_wait", 0.1)  # a refused connection fails in ~1 s
    return NatsConnector(unique_name("nats-sec"), NatsOptions(servers=(url,), **options))


@asynccontextmanager
async def running(conn: NatsConnector) -> AsyncIterator[NatsConnector]:
    await asyncio.wait_for(conn.start(), WAIT)
    try:
        yield conn
    finally:
        await conn.close()


def encrypted(conn: NatsConnector) -> bool:
    writer = getattr(conn._link.current()._transport, "_io_writer", None)
    return writer is not None and writer.get_extra_info("ssl_object") is not None


async def round_trip(conn: NatsConnector, subject: str = "ok.a") -> None:
    """A core publish arrives at a core subscription over the same connection."""
    stream = aiter(conn.consume(NatsSource(connector=conn.name, subject=subject)))
    first = asyncio.ensure_future(anext(stream))
    try:
        await asyncio.sleep(0)  # let the subscription go out before the publish
        target = NatsTarget(connector=conn.name, subject=subject, jetstream=False)
        event = sample_event(1)
        deadline = asyncio.get_running_loop().time() + WAIT
        while not first.done():  # core NATS: publish until the subscription is live
            await conn.publish(target, event)
            await asyncio.wait({first}, timeout=0.2)
            assert asyncio.get_running_loop().time() < deadline, "no message came back"
        assert (await first).payload or (await first).headers
    finally:
        first.cancel()
        await stream.aclose()  # type: ignore[attr-defined]


async def test_tls_user_password_server_verified(nats_users: SecureNats, pki: Pki) -> None:
    conn = connector(nats_users.url, tls={"ca_file": pki.ca}, user=USER, password=PASSWORD)
    async with running(conn):
        assert encrypted(conn)
        await round_trip(conn)


async def test_tls_nkey_seed_file(
    nats_users: SecureNats, pki: Pki, nkey_user: tuple[str, Path]
) -> None:
    conn = connector(nats_users.url, tls={"ca_file": pki.ca}, nkey_seed_file=nkey_user[1])
    async with running(conn):
        assert encrypted(conn)
        await round_trip(conn)


async def test_mutual_tls_and_token(nats_mtls: SecureNats, pki: Pki) -> None:
    conn = connector(
        nats_mtls.url,
        tls={"ca_file": pki.ca, "cert_file": pki.client_cert, "key_file": pki.client_key},
        token=TOKEN,
    )
    async with running(conn):
        assert encrypted(conn)
        await round_trip(conn)


async def test_mutual_tls_with_an_encrypted_key(nats_mtls: SecureNats, pki: Pki) -> None:
    tls = {
        "ca_file": pki.ca,
        "cert_file": pki.client_cert,
        "key_file": pki.client_key_encrypted,
        "key_password_file": pki.key_password_file,
    }
    async with running(connector(nats_mtls.url, tls=tls, token=TOKEN)) as conn:
        assert encrypted(conn)


async def test_mutual_tls_refuses_a_client_without_certificate(
    nats_mtls: SecureNats, pki: Pki
) -> None:
    conn = connector(nats_mtls.url, tls={"ca_file": pki.ca}, token=TOKEN)
    with pytest.raises(ConnectionLost, match=conn.name):
        await asyncio.wait_for(conn.start(), WAIT)
    await conn.close()


@pytest.mark.parametrize(
    ("tls", "why"),
    [
        ({"ca_file": "other_ca"}, "CERTIFICATE_VERIFY_FAILED"),
        ({"ca_file": "ca", "server_hostname": "wrong.example"}, "CERTIFICATE_VERIFY_FAILED"),
        ({}, "CERTIFICATE_VERIFY_FAILED"),  # system CAs do not know the test CA
    ],
)
async def test_unverifiable_server_is_refused(
    nats_users: SecureNats, pki: Pki, tls: dict[str, str], why: str
) -> None:
    resolved = {k: getattr(pki, v) if k == "ca_file" else v for k, v in tls.items()}
    conn = connector(nats_users.url, tls=resolved or None, user=USER, password=PASSWORD)
    with pytest.raises(ConnectionLost, match=why):
        await asyncio.wait_for(conn.start(), WAIT)
    await conn.close()


async def test_server_hostname_names_the_certificate(nats_users: SecureNats, pki: Pki) -> None:
    # The server certificate names localhost and 127.0.0.1: connect by IP, check "localhost".
    tls = {"ca_file": pki.ca, "server_hostname": "localhost"}
    async with running(connector(nats_users.url, tls=tls, user=USER, password=PASSWORD)) as c:
        assert encrypted(c)


async def test_insecure_skip_verify_connects_and_warns_each_start(
    nats_users: SecureNats, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    tls = {"ca_file": pki.other_ca, "insecure_skip_verify": True}
    with caplog.at_level(logging.WARNING, logger="meshgate.connectors.nats"):
        for _ in range(2):
            conn = connector(nats_users.url, tls=tls, user=USER, password=PASSWORD)
            async with running(conn):
                assert encrypted(conn)
    assert caplog.text.count("insecure_skip_verify is on") == 2


async def test_tls_url_against_a_plaintext_server_is_refused(
    plain_nats: PlainNats, caplog: pytest.LogCaptureFixture
) -> None:
    """The reproduced bug: tls:// to a plaintext server connected in plaintext."""
    conn = connector(f"tls://{LOOPBACK}:{plain_nats.port}", token=TOKEN)
    started = asyncio.get_running_loop().time()
    with pytest.raises(ConnectionLost, match="does not offer TLS") as failure:
        await asyncio.wait_for(conn.start(), WAIT)
    await conn.close()
    assert conn.name in str(failure.value)
    assert asyncio.get_running_loop().time() - started < 3  # refused at once, not retried
    assert "connected to" not in caplog.text and TOKEN not in caplog.text


async def test_nothing_is_sent_to_a_server_that_offers_no_tls() -> None:
    """A fake server sends a plaintext INFO and records every byte it receives."""
    received = bytearray()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b'INFO {"server_id":"fake","version":"2.10.0","max_payload":1048576}\r\n')
        await writer.drain()
        received.extend(await reader.read(4096))
        writer.close()

    server = await asyncio.start_server(serve, LOOPBACK, 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        conn = connector(f"tls://{LOOPBACK}:{port}", user=USER, password=PASSWORD)
        with pytest.raises(ConnectionLost, match="does not offer TLS"):
            await asyncio.wait_for(conn.start(), WAIT)
        await conn.close()
    assert b"CONNECT" not in received and PASSWORD.encode() not in received
    assert issubclass(TlsNotOffered, Exception)


async def test_publish_without_permission_is_rejected(nats_users: SecureNats, pki: Pki) -> None:
    conn = connector(nats_users.url, tls={"ca_file": pki.ca}, user=USER, password=PASSWORD)
    async with running(conn):
        target = NatsTarget(connector=conn.name, subject="denied.x", jetstream=False)
        with pytest.raises(PublishRejected, match="permission") as refused:
            await conn.publish(target, sample_event(2))
        assert not refused.value.retriable
        await round_trip(conn)  # the connection stays usable


async def test_concurrent_publishes_to_a_denied_subject_are_each_rejected(
    nats_users: SecureNats, pki: Pki
) -> None:
    """The server answers each denied PUB with its own -ERR: each waiting publish takes
    one. (They were kept per subject: one of three got the refusal, two reported sent.)"""
    conn = connector(nats_users.url, tls={"ca_file": pki.ca}, user=USER, password=PASSWORD)
    async with running(conn):
        target = NatsTarget(connector=conn.name, subject="denied.many", jetstream=False)
        results = await asyncio.gather(
            *(conn.publish(target, sample_event(i)) for i in range(3)), return_exceptions=True
        )
        assert all(isinstance(result, PublishRejected) for result in results), results
        await round_trip(conn)


async def test_a_core_batch_refuses_each_denied_item_and_delivers_the_others(
    nats_users: SecureNats, pki: Pki
) -> None:
    """publish_many writes a batch's core items back to back and flushes once: the
    flush's PONG comes after every -ERR, so each denied item is refused, the others sent."""
    conn = connector(nats_users.url, tls={"ca_file": pki.ca}, user=USER, password=PASSWORD)
    async with running(conn):
        subject = "ok.batch"
        await round_trip(conn, subject)  # checks the route both ways first
        stream = aiter(conn.consume(NatsSource(connector=conn.name, subject=subject)))
        received: list[str] = []

        async def listen() -> None:
            async for message in stream:
                received.append(message.headers.get("ce-id", ""))

        listener = asyncio.ensure_future(listen())
        try:
            # Core NATS: the subscription is live once a probe comes back through it.
            ok = NatsTarget(connector=conn.name, subject=subject, jetstream=False)
            probe = sample_event(99)
            deadline = asyncio.get_running_loop().time() + WAIT
            while probe.id not in received:
                await conn.publish(ok, probe)
                await _until(lambda: probe.id in received, 0.2)
                assert asyncio.get_running_loop().time() < deadline, "the listener got nothing"
            denied = NatsTarget(connector=conn.name, subject="denied.batch", jetstream=False)
            events = [sample_event(i) for i in range(6)]
            items = [(denied if i % 2 else ok, event) for i, event in enumerate(events)]
            outcomes = await conn.publish_many(items)
            for (target, _event), outcome in zip(items, outcomes, strict=True):
                if target is denied:
                    assert isinstance(outcome, PublishRejected), outcomes
                else:
                    assert outcome is None, outcomes
            wanted = {event.id for target, event in items if target is ok}
            await _until(lambda: wanted <= set(received), WAIT)
            assert wanted <= set(received), (wanted, received)
        finally:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)  # it closed the stream
            await stream.aclose()  # type: ignore[attr-defined]


async def _until(check: Callable[[], bool], within: float) -> None:
    """Poll ``check`` until it is true or ``within`` seconds passed (the caller asserts)."""
    deadline = asyncio.get_running_loop().time() + within
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            return
        await asyncio.sleep(0.01)


async def test_jetstream_publish_without_permission_is_rejected(
    nats_users: SecureNats, pki: Pki
) -> None:
    """The denied PUB gets no PubAck: the timeout turns into the server's refusal."""
    conn = connector(
        nats_users.url,
        tls={"ca_file": pki.ca},
        user=USER,
        password=PASSWORD,
        publish_timeout=1.0,
    )
    async with running(conn):
        target = NatsTarget(connector=conn.name, subject="denied.js", jetstream=True)
        with pytest.raises(PublishRejected, match="permission") as refused:
            await conn.publish(target, sample_event(3))
        assert not refused.value.retriable


async def test_subscribe_without_permission_fails_naming_the_connector(
    nats_users: SecureNats, pki: Pki
) -> None:
    conn = connector(nats_users.url, tls={"ca_file": pki.ca}, user=USER, password=PASSWORD)
    async with running(conn):
        stream = aiter(conn.consume(NatsSource(connector=conn.name, subject="secret.>")))
        with pytest.raises(NotAuthorized, match=rf"{conn.name}.*'secret\.>'.*subscribe"):
            await asyncio.wait_for(anext(stream), WAIT)


async def test_wrong_password_is_a_clear_error_without_the_password(
    nats_users: SecureNats, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    conn = connector(nats_users.url, tls={"ca_file": pki.ca}, user=USER, password="wrong-Pw77")
    # The server's -ERR 'Authorization Violation' races its close of the socket: the
    # client may see either first, so only the connector name is certain.
    with pytest.raises(ConnectionLost, match=conn.name) as failure:
        await asyncio.wait_for(conn.start(), WAIT)
    await conn.close()
    assert "wrong-Pw77" not in str(failure.value) and "wrong-Pw77" not in caplog.text


async def test_tls_creds_file_operator_jwt(
    nats_operator: OperatorNats, pki: Pki, operator: Operator
) -> None:
    """Decentralized auth: a .creds file (user JWT signed by the account + nkey seed)."""
    conn = connector(nats_operator.url, tls={"ca_file": pki.ca}, creds_file=operator.creds)
    async with running(conn):
        assert encrypted(conn)
        await round_trip(conn)
        # The permissions come from the user JWT: outside ok.> is refused.
        target = NatsTarget(connector=conn.name, subject="denied.x", jetstream=False)
        with pytest.raises(PublishRejected, match="permission"):
            await conn.publish(target, sample_event(4))


async def test_creds_of_an_account_the_operator_did_not_sign_are_refused(
    nats_operator: OperatorNats, pki: Pki, operator: Operator, caplog: pytest.LogCaptureFixture
) -> None:
    conn = connector(nats_operator.url, tls={"ca_file": pki.ca}, creds_file=operator.stranger_creds)
    with pytest.raises(ConnectionLost, match=conn.name) as failure:
        await asyncio.wait_for(conn.start(), WAIT)
    await conn.close()
    seed = operator.stranger_creds.read_text().split("SEED-----\n")[1].split("\n")[0]
    for text in (str(failure.value), caplog.text):
        assert seed not in text and operator.user_seed not in text


async def test_denied_jetstream_consumer_fails_at_once_then_consumes_once_granted(
    nats_js_users: JetStreamUsersNats,
) -> None:
    """No CONSUMER.CREATE permission: NotAuthorized naming the durable and the refused
    API subject, at once (not after the API timeout); after the server's config grants
    it (SIGHUP reload, same connection), a new consume gets the messages."""
    stream, durable = unique_name("S"), unique_name("d")
    admin_user, admin_password = JetStreamUsersNats.ADMIN
    admin = await nats.connect(nats_js_users.url, user=admin_user, password=admin_password)
    js = admin.jetstream()
    await js.add_stream(StreamConfig(name=stream, subjects=[f"{stream}.>"]))
    for n in range(3):
        await js.publish(f"{stream}.in", b"m%d" % n)
    await admin.close()
    conn = connector(nats_js_users.url, user=USER, password=PASSWORD)
    source = NatsSource(
        connector=conn.name,
        subject=f"{stream}.in",
        jetstream={"stream": stream, "durable": durable},
    )
    async with running(conn):
        started = asyncio.get_running_loop().time()
        stream_iter = aiter(conn.consume(source))
        with pytest.raises(NotAuthorized) as refused:
            await asyncio.wait_for(anext(stream_iter), WAIT)
        assert asyncio.get_running_loop().time() - started < 2  # publish_timeout is 5 s
        text = str(refused.value)
        assert conn.name in text and repr(durable) in text and "$js.api.consumer.create." in text
        await stream_iter.aclose()  # type: ignore[attr-defined]

        nats_js_users.grant_consumers()
        deadline = asyncio.get_running_loop().time() + WAIT
        payloads: list[bytes] = []
        while not payloads:  # the reload is asynchronous: retry like the runtime does
            stream_iter = aiter(conn.consume(source))
            try:
                delivery = await asyncio.wait_for(anext(stream_iter), WAIT)
            except NotAuthorized:
                assert asyncio.get_running_loop().time() < deadline, "never granted"
                await asyncio.sleep(0.2)
                continue
            finally:
                await stream_iter.aclose()  # type: ignore[attr-defined]
            payloads.append(delivery.payload)
        assert payloads == [b"m0"]
