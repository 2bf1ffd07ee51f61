"""The mqtt connector against a private Mosquitto: TLS + password_file, mTLS, acl_file.

One Mosquitto (``tests.security.brokers.SecureMosquitto``) listens three times: TLS
with user/password, TLS with ``require_certificate`` (the certificate's CN is the user
name) and plaintext (for the downgrade test). One ACL file: ``gw`` may read and write
``ok/#`` and only read ``ro/#``; the certificate user may read and write ``ok/#``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from connectors.errors import ConnectionLost, ConnectorError, PublishRejected
from connectors.mqtt import MqttConnector, MqttOptions, MqttSource, MqttTarget
from connectors.testing import sample_event
from gateway.localbrokers import LOOPBACK
from tests.brokers import unique_name
from tests.security.brokers import PASSWORD, USER, Pki, SecureMosquitto

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]
WAIT = 10.0


def connector(port: int, **options: Any) -> MqttConnector:
    options.setdefault("connect_timeout", 3.0)
    options.setdefault("publish_timeout", 5.0)
    name = unique_name("mqtt-sec")
    opts = MqttOptions(url=f"mqtts://{LOOPBACK}:{port}", client_id=name, **options)
    return MqttConnector(name, opts)


@asynccontextmanager
async def running(conn: MqttConnector) -> AsyncIterator[MqttConnector]:
    await asyncio.wait_for(conn.start(), WAIT)
    try:
        yield conn
    finally:
        await conn.close()


async def round_trip(conn: MqttConnector, topic: str = "ok/a") -> None:
    """A QoS 1 publish arrives at a subscription of the same connector."""
    source = MqttSource(connector=conn.name, topic=topic, qos=1)
    stream = aiter(conn.consume(source))
    first = asyncio.ensure_future(anext(stream))
    target = MqttTarget(connector=conn.name, topic=topic, qos=1)
    try:
        deadline = asyncio.get_running_loop().time() + WAIT
        while not first.done():  # until the subscription is live
            await conn.publish(target, sample_event(1))
            await asyncio.wait({first}, timeout=0.3)
            assert asyncio.get_running_loop().time() < deadline, "no message came back"
        await (await first).ack()
    finally:
        first.cancel()
        await stream.aclose()  # type: ignore[attr-defined]


async def test_tls_user_password_server_verified(mosquitto: SecureMosquitto, pki: Pki) -> None:
    conn = connector(mosquitto.port, tls={"ca_file": pki.ca}, username=USER, password=PASSWORD)
    async with running(conn):
        await round_trip(conn)


@pytest.mark.parametrize("protocol", [5, 4])
async def test_mutual_tls_identity_as_user(
    mosquitto: SecureMosquitto, pki: Pki, protocol: int
) -> None:
    tls = {"ca_file": pki.ca, "cert_file": pki.client_cert, "key_file": pki.client_key}
    async with running(connector(mosquitto.mtls_port, tls=tls, protocol=protocol)) as conn:
        await round_trip(conn)


async def test_mutual_tls_refuses_a_client_without_certificate(
    mosquitto: SecureMosquitto, pki: Pki
) -> None:
    conn = connector(mosquitto.mtls_port, tls={"ca_file": pki.ca})
    with pytest.raises(ConnectorError, match=conn.name):
        await asyncio.wait_for(conn.start(), WAIT)
    await conn.close()


async def test_unknown_ca_is_refused(mosquitto: SecureMosquitto, pki: Pki) -> None:
    conn = connector(
        mosquitto.port, tls={"ca_file": pki.other_ca}, username=USER, password=PASSWORD
    )
    with pytest.raises(ConnectionLost, match=rf"{conn.name}.*CERTIFICATE_VERIFY_FAILED"):
        await asyncio.wait_for(conn.start(), WAIT)
    await conn.close()


async def test_mqtts_against_a_plaintext_listener_is_refused(
    mosquitto: SecureMosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    conn = connector(mosquitto.plain_port, username=USER, password=PASSWORD)
    with pytest.raises(ConnectionLost, match=rf"{conn.name}.*TLS required"):
        await asyncio.wait_for(conn.start(), WAIT)
    await conn.close()
    assert "connected to" not in caplog.text and PASSWORD not in caplog.text


async def test_insecure_skip_verify_warns_each_start(
    mosquitto: SecureMosquitto, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    tls = {"ca_file": pki.other_ca, "insecure_skip_verify": True}
    with caplog.at_level(logging.WARNING, logger="meshgate.connectors.mqtt"):
        async with running(connector(mosquitto.port, tls=tls, username=USER, password=PASSWORD)):
            pass
    assert "insecure_skip_verify is on" in caplog.text


async def test_wrong_password_is_refused_without_echoing_it(
    mosquitto: SecureMosquitto, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    conn = connector(mosquitto.port, tls={"ca_file": pki.ca}, username=USER, password="bad-Pw31")
    with pytest.raises(ConnectorError, match=r"(?i)not authori|bad user name or password"):
        await asyncio.wait_for(conn.start(), WAIT)
    await conn.close()
    assert "bad-Pw31" not in caplog.text


async def test_publish_the_acl_refuses_is_rejected_on_mqtt5(
    mosquitto: SecureMosquitto, pki: Pki
) -> None:
    conn = connector(mosquitto.port, tls={"ca_file": pki.ca}, username=USER, password=PASSWORD)
    async with running(conn):
        target = MqttTarget(connector=conn.name, topic="ro/x", qos=1)
        with pytest.raises(PublishRejected, match=r"Not authorized.*0x87") as refused:
            await conn.publish(target, sample_event(2))
        assert not refused.value.retriable


async def test_publish_many_the_acl_refuses_fails_alone_in_its_batch_on_mqtt5(
    mosquitto: SecureMosquitto, pki: Pki
) -> None:
    conn = connector(mosquitto.port, tls={"ca_file": pki.ca}, username=USER, password=PASSWORD)
    async with running(conn):
        allowed = MqttTarget(connector=conn.name, topic="ok/batch", qos=1)
        read_only = MqttTarget(connector=conn.name, topic="ro/x", qos=1)
        items = [(read_only if n in (3, 7) else allowed, sample_event(n)) for n in range(12)]
        outcomes = await conn.publish_many(items)
        for n, outcome in enumerate(outcomes):
            if n in (3, 7):
                assert isinstance(outcome, PublishRejected), outcome
                assert "0x87" in str(outcome)
            else:
                assert outcome is None


async def test_publish_the_acl_refuses_is_dropped_silently_on_mqtt311(
    mosquitto: SecureMosquitto, pki: Pki
) -> None:
    """MQTT 3.1.1 has no failure code in PUBACK: the broker acks and drops (documented)."""
    conn = connector(
        mosquitto.port, tls={"ca_file": pki.ca}, username=USER, password=PASSWORD, protocol=4
    )
    async with running(conn):
        await conn.publish(MqttTarget(connector=conn.name, topic="ro/x", qos=1), sample_event(3))


# A subscription the ACL does not allow: Mosquitto 2.0 (acl_file) grants it and then
# delivers nothing, so there is nothing to map; a broker that answers SUBACK 0x87/0x80
# makes the source fail naming the connector (SubscriptionRefused, docs/security.md).
