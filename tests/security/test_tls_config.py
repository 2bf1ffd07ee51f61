"""The tls: block as ``meshgate validate`` sees it: one model, same rules on all four
connectors, file problems with their path, old spellings refused with the new one."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from gateway.config import load_config
from gateway.errors import ConfigError
from tests.security.brokers import Pki

ROUTE = """
routes:
  - name: r
    from: {connector: probe, subject: a}
    to: [{connector: probe, subject: b}]
"""
PROBE = '  probe: {type: nats, servers: ["nats://127.0.0.1:4222"]}\n'


def problems(tmp_path: Path, connector: str) -> list[str]:
    path = tmp_path / "gw.yaml"
    path.write_text(f"gateway: {{id: t}}\nconnectors:\n{PROBE}  c: {connector}\n{ROUTE}")
    try:
        load_config(path)
    except ConfigError as exc:
        return [str(problem) for problem in exc.problems]
    return []


@pytest.mark.parametrize(
    ("connector", "message"),
    [
        ('{type: nats, servers: ["nats://h:4222"], tls: {}}', "needs tls:// server URLs"),
        ('{type: mqtt, url: "mqtt://h:1883", tls: {}}', "needs an mqtts:// url"),
        ('{type: amqp, url: "amqp://h/", tls: {}}', "needs an amqps:// url"),
        ("{type: kafka, bootstrap_servers: h:9092, tls: {}}", "needs security_protocol SSL"),
        ('{type: nats, servers: ["nats://a:1", "tls://b:1"]}', "plaintext one would downgrade"),
        ('{type: amqp, url: "amqps://h/?no_verify_ssl=1"}', "not the url query"),
    ],
)
def test_tls_block_with_a_plaintext_address_is_an_error(
    tmp_path: Path, connector: str, message: str
) -> None:
    found = problems(tmp_path, connector)
    assert any(message in text and "connectors.c" in text for text in found), found


@pytest.mark.parametrize(
    ("connector", "old", "new"),
    [
        ('{type: nats, servers: ["tls://h:1"], tls_ca: /x}', "tls_ca", "ca_file"),
        ('{type: mqtt, url: "mqtts://h", tls_cert_file: /x}', "tls_cert_file", "cert_file"),
        ('{type: amqp, url: "amqps://h/", tls_key_file: /x}', "tls_key_file", "key_file"),
        ("{type: kafka, bootstrap_servers: h:1, ssl_cafile: /x}", "ssl_cafile", "ca_file"),
        ("{type: mqtt, host: h, tls: true}", "tls: true", "tls: {}"),
    ],
)
def test_old_spellings_point_at_the_new_one(
    tmp_path: Path, connector: str, old: str, new: str
) -> None:
    found = problems(tmp_path, connector)
    assert any(old in text and new in text for text in found), found


@pytest.mark.parametrize(
    "connector",
    [
        '{type: nats, servers: ["tls://h:1"], tls: {ca_file: MISSING}}',
        '{type: mqtt, url: "mqtts://h", tls: {ca_file: MISSING}}',
        '{type: amqp, url: "amqps://h/", tls: {ca_file: MISSING}}',
        "{type: kafka, bootstrap_servers: h:1, security_protocol: SSL, tls: {ca_file: MISSING}}",
    ],
)
def test_unreadable_files_are_reported_with_their_path(tmp_path: Path, connector: str) -> None:
    missing = tmp_path / "no-such-ca.pem"
    found = problems(tmp_path, connector.replace("MISSING", str(missing)))
    assert any("tls.ca_file" in text and str(missing) in text for text in found), found


def test_pairs_are_checked(tmp_path: Path, pki: Pki) -> None:
    found = problems(
        tmp_path, f'{{type: nats, servers: ["tls://h:1"], tls: {{cert_file: "{pki.client_cert}"}}}}'
    )
    assert any("cert_file and key_file go together" in text for text in found), found


def test_tls_addresses_alone_mean_verified_tls(tmp_path: Path) -> None:
    path = tmp_path / "gw.yaml"
    path.write_text(
        "gateway: {id: t}\nconnectors:\n" + PROBE + '  n: {type: nats, servers: ["tls://h:1"]}\n'
        '  m: {type: mqtt, url: "mqtts://h"}\n'
        '  a: {type: amqp, url: "amqps://h/"}\n'
        "  k: {type: kafka, bootstrap_servers: h:1, security_protocol: SSL}\n" + ROUTE
    )
    config = load_config(path)
    contexts = [
        config.connectors["n"][1].ssl_context("n"),
        config.connectors["m"][1].ssl_context("m"),
        config.connectors["a"][1].ssl_context("a"),
        config.connectors["k"][1].client_kwargs("k")["ssl_context"],
    ]
    for context in contexts:
        assert isinstance(context, ssl.SSLContext)
        assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname
    assert config.connectors["probe"][1].ssl_context("probe") is None
