"""The amqp connector against a private RabbitMQ node with TLS, users and permissions.

``tests.security.brokers.SecureRabbit``: a TLS listener (client certificates verified
when presented), the EXTERNAL mechanism (user = certificate CN), users ``gw``
(password) and ``meshgate-client`` (certificate) limited to ``ok.*`` queues and
exchanges plus the default exchange, and a plaintext listener for the downgrade test.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from connectors.amqp import AmqpConnector, AmqpOptions, AmqpSource, AmqpTarget
from connectors.errors import ConnectionLost, NotAuthorized, PublishRejected
from connectors.testing import sample_event
from gateway.localbrokers import LOOPBACK
from tests.brokers import unique_name
from tests.security.brokers import PASSWORD, USER, Pki, SecureRabbit

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]
WAIT = 15.0


def connector(url: str, **options: Any) -> AmqpConnector:
    options.setdefault("connect_timeout", 5.0)
    return AmqpConnector(unique_name("amqp-sec"), AmqpOptions(url=url, **options))


def password_url(rabbit: SecureRabbit, password: str = PASSWORD) -> str:
    return f"amqps://{USER}:{password}@{LOOPBACK}:{rabbit.port}/"


@asynccontextmanager
async def running(conn: AmqpConnector) -> AsyncIterator[AmqpConnector]:
    await asyncio.wait_for(conn.start(), WAIT)
    try:
        yield conn
    finally:
        await conn.close()


async def round_trip(conn: AmqpConnector) -> None:
    """Publish to an ``ok.*`` queue through the default exchange and consume it."""
    queue = unique_name("ok.q")
    stream = aiter(conn.consume(AmqpSource(connector=conn.name, queue=queue, declare=True)))
    first = asyncio.ensure_future(anext(stream))
    try:
        target = AmqpTarget(connector=conn.name, exchange="", routing_key=queue)
        deadline = asyncio.get_running_loop().time() + WAIT
        while not first.done():  # mandatory: unroutable until the queue is declared
            try:
                await conn.publish(target, sample_event(1))
            except PublishRejected as exc:
                assert "unroutable" in str(exc), exc
            await asyncio.wait({first}, timeout=0.3)
            assert asyncio.get_running_loop().time() < deadline, "no message came back"
        await (await first).ack()
    finally:
        first.cancel()
        await stream.aclose()  # type: ignore[attr-defined]


async def test_tls_password_server_verified(rabbit: SecureRabbit, pki: Pki) -> None:
    async with running(connector(password_url(rabbit), tls={"ca_file": pki.ca})) as conn:
        await round_trip(conn)


async def test_mutual_tls_with_the_external_mechanism(rabbit: SecureRabbit, pki: Pki) -> None:
    tls = {"ca_file": pki.ca, "cert_file": pki.client_cert, "key_file": pki.client_key}
    url = f"amqps://{LOOPBACK}:{rabbit.port}/?auth=external"  # user = certificate CN
    async with running(connector(url, tls=tls)) as conn:
        await round_trip(conn)


async def test_mutual_tls_with_an_encrypted_key_and_password(
    rabbit: SecureRabbit, pki: Pki
) -> None:
    tls = {
        "ca_file": pki.ca,
        "cert_file": pki.client_cert,
        "key_file": pki.client_key_encrypted,
        "key_password_file": pki.key_password_file,
    }
    async with running(connector(password_url(rabbit), tls=tls)):
        pass


async def test_unknown_ca_is_refused(rabbit: SecureRabbit, pki: Pki) -> None:
    conn = connector(password_url(rabbit), tls={"ca_file": pki.other_ca})
    with pytest.raises(ConnectionLost, match=rf"{conn.name}.*CERTIFICATE_VERIFY_FAILED"):
        await asyncio.wait_for(conn.start(), WAIT)
    await conn.close()


async def test_amqps_against_the_plaintext_listener_is_refused(
    rabbit: SecureRabbit, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"amqps://{USER}:{PASSWORD}@{LOOPBACK}:{rabbit.plain_port}/"
    conn = connector(url, tls={"ca_file": pki.ca})
    with pytest.raises(ConnectionLost, match=rf"{conn.name}.*TLS required") as failure:
        await asyncio.wait_for(conn.start(), WAIT)
    await conn.close()
    assert PASSWORD not in str(failure.value) and PASSWORD not in caplog.text


async def test_insecure_skip_verify_warns_each_start(
    rabbit: SecureRabbit, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    tls = {"ca_file": pki.other_ca, "insecure_skip_verify": True}
    with caplog.at_level(logging.WARNING, logger="meshgate.connectors.amqp"):
        async with running(connector(password_url(rabbit), tls=tls)):
            pass
    assert "insecure_skip_verify is on" in caplog.text


async def test_wrong_password_is_refused_without_echoing_it(
    rabbit: SecureRabbit, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    conn = connector(password_url(rabbit, "bad-Pw52"), tls={"ca_file": pki.ca})
    with pytest.raises(ConnectionLost, match=r"ACCESS_REFUSED|PLAIN login refused") as failure:
        await asyncio.wait_for(conn.start(), WAIT)
    await conn.close()
    assert "bad-Pw52" not in str(failure.value) and "bad-Pw52" not in caplog.text


async def test_publish_without_write_permission_is_rejected(rabbit: SecureRabbit, pki: Pki) -> None:
    async with running(connector(password_url(rabbit), tls={"ca_file": pki.ca})) as conn:
        target = AmqpTarget(connector=conn.name, exchange="amq.topic", routing_key="x")
        denied = r"not authorized.*write permission.*ACCESS_REFUSED"
        with pytest.raises(PublishRejected, match=denied) as refused:
            await conn.publish(target, sample_event(2))
        assert not refused.value.retriable
        await round_trip(conn)  # the connector carries on


async def test_consume_without_permission_fails_naming_the_connector(
    rabbit: SecureRabbit, pki: Pki
) -> None:
    async with running(connector(password_url(rabbit), tls={"ca_file": pki.ca})) as conn:
        source = AmqpSource(connector=conn.name, queue="secret.q", declare=True)
        stream = aiter(conn.consume(source))
        with pytest.raises(NotAuthorized, match=rf"{conn.name}.*'secret\.q'.*ACCESS_REFUSED"):
            await asyncio.wait_for(anext(stream), WAIT)
