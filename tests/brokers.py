"""Broker endpoints and helpers shared by the tests.

The loopback brokers (RabbitMQ, Mosquitto, NATS with JetStream) are started, when
missing, by ``scripts/ensure-brokers.sh`` (``make test`` runs it first); their ports
can be moved with ``MESHGATE_RABBITMQ_PORT``, ``MESHGATE_MQTT_PORT`` and
``MESHGATE_NATS_PORT``, read here and by that script alike. Kafka is librdkafka's mock
cluster, run by the tests themselves (see ``gateway.localbrokers.KafkaMockCluster``).
"""

from __future__ import annotations

import functools
import os
import uuid

import pytest

from gateway.localbrokers import LOOPBACK, port_open

RABBITMQ_PORT = int(os.environ.get("MESHGATE_RABBITMQ_PORT", "5672"))
MQTT_PORT = int(os.environ.get("MESHGATE_MQTT_PORT", "1883"))
NATS_PORT = int(os.environ.get("MESHGATE_NATS_PORT", "4222"))

RABBITMQ_URL = f"amqp://guest:guest@{LOOPBACK}:{RABBITMQ_PORT}/"
MQTT_HOST_PORT = (LOOPBACK, MQTT_PORT)
NATS_URL = f"nats://{LOOPBACK}:{NATS_PORT}"
# Every Kafka mock of the tests: a new consumer group gets its partitions at once, not
# after Kafka's default group.initial.rebalance.delay.ms of 3 s (0 is what Kafka's docs
# advise for tests). Rebalances of a group with members are unchanged (session timeout).
KAFKA_MOCK_REBALANCE_DELAY_MS = 0

DOCKER_SKIP_REASON = "no Docker engine reachable (testcontainers needs one)"


def unique_name(prefix: str = "t") -> str:
    """A fresh name (``<prefix>-<12 hex>``) for a topic, queue, stream or subject token.

    Only ``[A-Za-z0-9-]`` is added, which is valid for Kafka topics, AMQP queues and
    exchanges, MQTT topic levels, NATS subject tokens and JetStream stream names.
    """
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def require_port(name: str, port: int) -> None:
    """Fail (never skip) the test when a loopback broker does not accept connections."""
    if not port_open(port, timeout=2.0):
        pytest.fail(
            f"{name} is not reachable on {LOOPBACK}:{port}: run scripts/ensure-brokers.sh "
            "(make test does) to start the test brokers",
            pytrace=False,
        )


@functools.cache
def _docker_error() -> str | None:
    """None when a Docker engine answers a ping, else why not (asked once per session)."""
    try:
        import docker

        client = docker.from_env(timeout=5)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:  # any failure to reach the engine means "no Docker here"
        return f"{type(exc).__name__}: {exc}"
    return None


def docker_available() -> bool:
    return _docker_error() is None


def require_docker() -> None:
    """Skip the calling test unless a Docker engine is reachable."""
    if _docker_error() is not None:
        pytest.skip(DOCKER_SKIP_REASON)
