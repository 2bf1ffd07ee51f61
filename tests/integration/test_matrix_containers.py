"""The end-to-end matrix against real brokers started by testcontainers.

The scenarios are exactly those of ``test_matrix.py`` (``MatrixScenarios``); only
the broker addresses differ: Apache Kafka (Confluent's KRaft image) instead of
librdkafka's mock cluster, and containerized RabbitMQ, Mosquitto (MQTT 5) and NATS
with JetStream (``-js``) instead of the loopback brokers. Marked ``docker``:
tests/conftest.py skips them ("no Docker engine reachable (testcontainers needs
one)") where no Docker engine answers. Images are pulled on first use, so each test
gets a generous timeout.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.brokers import require_docker
from tests.integration.matrix_support import Endpoints
from tests.integration.test_matrix import MatrixScenarios

pytestmark = [pytest.mark.integration, pytest.mark.docker]

KAFKA_IMAGE = "confluentinc/cp-kafka:7.6.0"
RABBITMQ_IMAGE = "rabbitmq:3.13"
MOSQUITTO_IMAGE = "eclipse-mosquitto:2.0"
NATS_IMAGE = "nats:2.10"
TIMEOUT = 900  # image pulls and broker start-up count against the first test


@pytest.fixture(scope="module")
def container_endpoints() -> Iterator[Endpoints]:
    require_docker()
    # Imported here: collecting this module must not need Docker or the images.
    from testcontainers.community.kafka import KafkaContainer
    from testcontainers.community.mqtt import MosquittoContainer
    from testcontainers.community.nats import NatsContainer
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import wait_for_logs

    with contextlib.ExitStack() as stack:
        kafka = stack.enter_context(
            KafkaContainer(KAFKA_IMAGE)
            .with_kraft()
            .with_env("KAFKA_AUTO_CREATE_TOPICS_ENABLE", "true")
            .with_env("KAFKA_NUM_PARTITIONS", "4")  # as the mock cluster
        )
        rabbit = stack.enter_context(DockerContainer(RABBITMQ_IMAGE).with_exposed_ports(5672))
        wait_for_logs(rabbit, "Server startup complete", timeout=120)
        mqtt = stack.enter_context(MosquittoContainer(MOSQUITTO_IMAGE))
        nats = stack.enter_context(NatsContainer(NATS_IMAGE, jetstream=True))
        amqp_host, amqp_port = rabbit.get_container_host_ip(), rabbit.get_exposed_port(5672)
        yield Endpoints(
            kafka=kafka.get_bootstrap_server(),
            amqp=f"amqp://guest:guest@{amqp_host}:{amqp_port}/",
            mqtt=(mqtt.get_container_host_ip(), int(mqtt.get_exposed_port(mqtt.MQTT_PORT))),
            nats=nats.nats_uri(),
        )


class TestMatrixContainers(MatrixScenarios):
    """``MatrixScenarios`` with containerized brokers (longer timeouts, same checks)."""

    @pytest.fixture
    def endpoints(self, container_endpoints: Endpoints) -> Endpoints:
        return container_endpoints

    @pytest.mark.timeout(TIMEOUT)
    async def test_matrix(self, endpoints: Endpoints, tmp_path: Path) -> None:
        await super().test_matrix(endpoints, tmp_path)

    @pytest.mark.timeout(TIMEOUT)
    async def test_refusal_dead_letter_and_unacked(
        self, endpoints: Endpoints, tmp_path: Path
    ) -> None:
        await super().test_refusal_dead_letter_and_unacked(endpoints, tmp_path)

    @pytest.mark.timeout(TIMEOUT)
    async def test_graceful_restart_mid_stream(self, endpoints: Endpoints, tmp_path: Path) -> None:
        await super().test_graceful_restart_mid_stream(endpoints, tmp_path)

    @pytest.mark.timeout(TIMEOUT)
    async def test_crash_mid_stream(self, endpoints: Endpoints, tmp_path: Path) -> None:
        await super().test_crash_mid_stream(endpoints, tmp_path)
