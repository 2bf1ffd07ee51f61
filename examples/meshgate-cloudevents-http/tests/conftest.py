"""Fixtures of the plugin's tests: a started receiving connector, the test NATS server."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import pytest
from http_helpers import NATS_URL, http_connector
from meshgate_cloudevents_http import HttpConnector


@pytest.fixture
async def receiver() -> AsyncIterator[HttpConnector]:
    """A started http connector with a server on a free loopback port."""
    connector = http_connector()
    await connector.start()
    try:
        yield connector
    finally:
        await connector.close()


@pytest.fixture(scope="session")
def nats_url() -> str:
    host, port = NATS_URL.removeprefix("nats://").rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
    except OSError as exc:
        pytest.fail(
            f"NATS with JetStream is not reachable at {NATS_URL} ({exc}): start one "
            "(`make brokers` in the meshgate checkout, or `nats-server -js`), or set "
            "MESHGATE_TEST_NATS_URL"
        )
    return NATS_URL
