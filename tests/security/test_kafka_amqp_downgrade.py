"""Kafka's TLS/SASL plumbing (no TLS Kafka broker is reachable here) and the refused
downgrade of Kafka and AMQP against plaintext brokers.

librdkafka's mock cluster, the only Kafka here, has neither TLS nor SASL listeners, so
the Kafka tests check the aiokafka arguments built from the options (the context
verifies, presents the client certificate, names the server) and that SSL against the
plaintext mock fails instead of talking plaintext. The AMQP downgrade test points an
amqps:// url at the loopback RabbitMQ's plaintext port (a client connection only:
nothing of that broker changes).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any

import pytest

from connectors.amqp import AmqpConnector, AmqpOptions
from connectors.errors import ConnectionLost
from connectors.kafka import KafkaConnector, KafkaOptions
from connectors.tls import TlsConfigError
from tests.brokers import require_port, unique_name
from tests.security.brokers import Pki

WAIT = 20.0


def kafka(**options: Any) -> KafkaOptions:
    return KafkaOptions.model_validate(
        {"type": "kafka", "bootstrap_servers": "127.0.0.1:9", **options}
    )


def test_kafka_ssl_context_verifies_and_presents_the_client_certificate(pki: Pki) -> None:
    options = kafka(
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-256",
        sasl_username="gw",
        sasl_password="kafka-Pw11",
        tls={
            "ca_file": pki.ca,
            "cert_file": pki.client_cert,
            "key_file": pki.client_key_encrypted,
            "key_password_file": pki.key_password_file,
            "server_hostname": "kafka.internal",
        },
    )
    kwargs = options.client_kwargs("core")
    context = kwargs["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert getattr(context, "fixed_hostname", None) == "kafka.internal"
    assert len(context.get_ca_certs()) == 1  # the test CA, not the system store
    assert kwargs["security_protocol"] == "SASL_SSL"
    assert kwargs["sasl_mechanism"] == "SCRAM-SHA-256"
    assert kwargs["sasl_plain_username"] == "gw"
    assert kwargs["sasl_plain_password"] == "kafka-Pw11"
    assert "kafka-Pw11" not in repr(options)


@pytest.mark.parametrize("protocol", ["SSL", "SASL_SSL"])
def test_kafka_tls_protocol_alone_means_system_cas(protocol: str) -> None:
    extra = {"sasl_username": "u", "sasl_password": "p"} if protocol == "SASL_SSL" else {}
    context = kafka(security_protocol=protocol, **extra).client_kwargs()["ssl_context"]
    assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname


def test_kafka_plaintext_has_no_tls_and_refuses_a_tls_block(pki: Pki) -> None:
    assert "ssl_context" not in kafka().client_kwargs()
    with pytest.raises(ValueError, match="needs security_protocol SSL or SASL_SSL"):
        kafka(tls={"ca_file": pki.ca})
    with pytest.raises(ValueError, match=r"ssl_cafile was replaced by the tls: block"):
        kafka(security_protocol="SSL", ssl_cafile=str(pki.ca))


def test_kafka_insecure_skip_verify_is_explicit(pki: Pki) -> None:
    options = kafka(security_protocol="SSL", tls={"insecure_skip_verify": True})
    context = options.client_kwargs()["ssl_context"]
    assert context.verify_mode is ssl.CERT_NONE and not context.check_hostname


def test_kafka_wrong_key_password_names_the_connector_and_file(pki: Pki) -> None:
    wrong = pki.key_password_file.with_name("wrong-password")
    wrong.write_text("nope\n")
    options = kafka(
        security_protocol="SSL",
        tls={
            "cert_file": pki.client_cert,
            "key_file": pki.client_key_encrypted,
            "key_password_file": wrong,
        },
    )
    with pytest.raises(TlsConfigError, match=r"'core'.*tls\.cert_file/key_file"):
        options.client_kwargs("core")


@pytest.mark.integration
@pytest.mark.timeout(60)
async def test_kafka_ssl_against_the_plaintext_mock_is_refused(
    kafka_bootstrap: str, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    name = unique_name("kafka-sec")
    options = KafkaOptions.model_validate(
        {
            "type": "kafka",
            "bootstrap_servers": kafka_bootstrap,
            "security_protocol": "SSL",
            "tls": {"ca_file": pki.ca},
            "request_timeout_ms": 3000,
        }
    )
    conn = KafkaConnector(name, options)
    with pytest.raises(ConnectionLost, match=rf"{name}.*SSL") as failure:
        await asyncio.wait_for(conn.start(), WAIT)
    await conn.close()
    assert "connected to" not in caplog.text
    assert not failure.value.__class__.__name__.startswith("Publish")


@pytest.mark.integration
@pytest.mark.timeout(60)
async def test_amqps_against_a_plaintext_port_is_refused(
    caplog: pytest.LogCaptureFixture,
) -> None:
    require_port("RabbitMQ", 5672)
    name = unique_name("amqp-sec")
    options = AmqpOptions(url="amqps://guest:guest@127.0.0.1:5672/", connect_timeout=5)
    conn = AmqpConnector(name, options)
    with (
        caplog.at_level(logging.INFO, logger="meshgate.connectors.amqp"),
        pytest.raises(
            ConnectionLost, match=rf"{name}.*WRONG_VERSION_NUMBER.*TLS required"
        ) as failure,
    ):
        await asyncio.wait_for(conn.start(), WAIT)
    await conn.close()
    assert "guest:guest" not in str(failure.value)
    assert "connected to" not in caplog.text
