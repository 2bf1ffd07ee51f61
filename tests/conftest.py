"""Session-wide broker fixtures (see tests/brokers.py).

* ``kafka_bootstrap``: one librdkafka mock cluster per session, in a child process.
* ``rabbitmq_url``, ``mqtt_host_port``, ``nats_url``: the loopback brokers; a test
  using one FAILS (never skips) when it is down: run scripts/ensure-brokers.sh.
* ``wheelhouse``: meshgate's wheel and every wheel it and the example plugin need,
  made once per session for the tests that install into a clean venv (see
  tests/wheelhouse.py).
* Tests marked ``@pytest.mark.docker`` are skipped unless a Docker engine answers.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.localbrokers import KafkaMockCluster
from tests.brokers import (
    KAFKA_MOCK_REBALANCE_DELAY_MS,
    MQTT_HOST_PORT,
    NATS_PORT,
    NATS_URL,
    RABBITMQ_PORT,
    RABBITMQ_URL,
    require_docker,
    require_port,
)
from tests.wheelhouse import Wheelhouse, make_wheelhouse, shared_wheelhouse


def pytest_configure(config: pytest.Config) -> None:
    # Gateways started by tests (in-process or as child processes, which inherit the
    # environment) keep their local dead-letter store under here, one directory per
    # gateway id (the default layout), never in the user's home.
    os.environ.pop("MESHGATE_STATE_DIR", None)
    os.environ["XDG_STATE_HOME"] = tempfile.mkdtemp(prefix="meshgate-test-state-")


@pytest.fixture(scope="session")
def kafka_mock(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaMockCluster]:
    """The session's mock Kafka cluster (``.process`` is there for fault tests)."""
    log = tmp_path_factory.mktemp("kafka-mock") / "stderr.log"
    with KafkaMockCluster(
        brokers=1, log=log, rebalance_delay_ms=KAFKA_MOCK_REBALANCE_DELAY_MS
    ) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_mock: KafkaMockCluster) -> str:
    """``host:port`` of the session's mock Kafka cluster."""
    return kafka_mock.bootstrap_servers


@pytest.fixture(scope="session")
def rabbitmq_url() -> str:
    require_port("RabbitMQ", RABBITMQ_PORT)
    return RABBITMQ_URL


@pytest.fixture(scope="session")
def mqtt_host_port() -> tuple[str, int]:
    require_port("Mosquitto (MQTT)", MQTT_HOST_PORT[1])
    return MQTT_HOST_PORT


@pytest.fixture(scope="session")
def nats_url() -> str:
    require_port("NATS", NATS_PORT)
    return NATS_URL


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Wheelhouse:
    """Wheels to install meshgate and the example plugin from, without the index (one
    set for every pytest process of a ``make test``: ``MESHGATE_TEST_WHEELHOUSE``)."""
    if shared := os.environ.get("MESHGATE_TEST_WHEELHOUSE"):
        return shared_wheelhouse(Path(shared))
    return make_wheelhouse(tmp_path_factory.mktemp("wheelhouse"))


@pytest.fixture
def docker_engine() -> None:
    """Request this (or mark the test ``docker``) to skip where no Docker engine runs."""
    require_docker()


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("docker") is not None:
        require_docker()
