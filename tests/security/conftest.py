"""Session-wide certificates and private TLS/auth brokers (see ``tests.security.brokers``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.security.brokers import (
    JetStreamUsersNats,
    Operator,
    OperatorNats,
    Pki,
    PlainNats,
    SecureMosquitto,
    SecureNats,
    SecureRabbit,
    make_nkey_user,
    make_operator,
    make_pki,
)


@pytest.fixture(scope="session")
def secdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("security")


@pytest.fixture(scope="session")
def pki(secdir: Path) -> Pki:
    return make_pki(secdir / "pki")


@pytest.fixture(scope="session")
def nkey_user(secdir: Path) -> tuple[str, Path]:
    return make_nkey_user(secdir)


@pytest.fixture(scope="session")
def nats_users(pki: Pki, nkey_user: tuple[str, Path]) -> Iterator[SecureNats]:
    """TLS (server verified), users gw/password and an nkey, both limited to ok.>."""
    broker = SecureNats(pki, verify=False, nkey=nkey_user[0])
    with broker:
        yield broker


@pytest.fixture(scope="session")
def nats_mtls(pki: Pki) -> Iterator[SecureNats]:
    """Mutual TLS (verify: true) and a token."""
    broker = SecureNats(pki, verify=True)
    with broker:
        yield broker


@pytest.fixture(scope="session")
def operator(secdir: Path) -> Operator:
    return make_operator(secdir / "operator")


@pytest.fixture(scope="session")
def nats_operator(pki: Pki, operator: Operator) -> Iterator[OperatorNats]:
    """Operator mode: users log in with .creds files (JWT + seed), over verified TLS."""
    broker = OperatorNats(pki, operator)
    with broker:
        yield broker


@pytest.fixture
def nats_js_users() -> Iterator[JetStreamUsersNats]:
    """JetStream; user gw may not create consumers until ``grant_consumers()``. Per
    test: the test changes the server's permissions."""
    broker = JetStreamUsersNats()
    with broker:
        yield broker


@pytest.fixture(scope="session")
def plain_nats() -> Iterator[PlainNats]:
    broker = PlainNats()
    with broker:
        yield broker


@pytest.fixture(scope="session")
def mosquitto(pki: Pki) -> Iterator[SecureMosquitto]:
    broker = SecureMosquitto(pki)
    with broker:
        yield broker


@pytest.fixture(scope="session")
def rabbit(pki: Pki) -> Iterator[SecureRabbit]:
    """A private RabbitMQ node with TLS, users and permissions (~5-10 s to boot)."""
    missing = SecureRabbit.available()
    if missing is not None:
        pytest.fail(f"{missing} (scripts/ensure-brokers.sh installs RabbitMQ)")
    broker = SecureRabbit(pki)
    with broker:
        yield broker
