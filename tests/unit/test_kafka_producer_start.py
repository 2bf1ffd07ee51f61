"""The Kafka producer's idempotence fallback survives brokers that are down at start.

The gateway core retries a connector's first connection (partial availability). A
Kafka cluster that does not answer looks like a refusal of idempotence (a timeout)
to the producer's start; such an attempt must fail without switching idempotence off
for the attempts after it. A TCP listener that never answers stands in for it.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from connectors.errors import ConnectionLost
from connectors.kafka import KafkaOptions
from connectors.kafka.sink import Producer


async def test_silent_brokers_fail_the_start_but_keep_idempotence(
    caplog: pytest.LogCaptureFixture,
) -> None:
    held: list[asyncio.StreamWriter] = []

    async def silent(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # accept, never answer

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        options = KafkaOptions(
            type="kafka", bootstrap_servers=f"127.0.0.1:{port}", request_timeout_ms=300
        )
        producer = Producer(options)
        for _ in range(2):  # the core's retries
            with pytest.raises(ConnectionLost):
                await producer.start()
            assert producer.idempotent
        assert "refused the idempotent producer" not in caplog.text
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
