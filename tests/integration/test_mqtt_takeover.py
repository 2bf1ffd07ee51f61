"""Two connectors with the same MQTT client id on the loopback Mosquitto (1883).

The broker closes the older connection whenever the other one connects. Before the
fix both sides reconnected about 12 times a second each, logging only
"disconnected (Unspecified error)". Now each side recognises the takeover, logs one
ERROR naming its connector and the duplicate client id, and backs off with the
shared, growing backoff: the reconnects over a measuring window stay few.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import pytest

from connectors.base import Delivery
from connectors.mqtt import MqttConnector, MqttOptions, MqttSource
from tests.brokers import MQTT_HOST_PORT, unique_name
from tests.polling import until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

HOST, PORT = MQTT_HOST_PORT
WINDOW_S = 6.0
# Reconnects of both connectors together (4 sessions: two publishers, two sources)
# in WINDOW_S once the takeover was recognised: measured 9-16; before the fix ~150.
MAX_RECONNECTS_IN_WINDOW = 30


async def consume(connector: MqttConnector, source: MqttSource) -> None:
    delivery: Delivery
    async for delivery in connector.consume(source):
        await delivery.ack()


@pytest.mark.parametrize("protocol", [5, 4], ids=["mqtt5", "mqtt311"])
async def test_duplicate_client_id_is_reported_once_and_backed_off(
    protocol: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="meshgate")
    client_id = unique_name("dup")
    # Sessions end at disconnect: the test leaves nothing on the shared broker.
    settings = {"session_expiry": 0, "clean_start": True, "protocol": protocol}
    url = f"mqtt://{HOST}:{PORT}"
    first, second = (
        MqttConnector(name, MqttOptions(url=url, client_id=client_id, **settings))  # type: ignore[arg-type]
        for name in ("first", "second")
    )
    source = MqttSource(connector="x", topic=unique_name("takeover"), qos=1)
    tasks: list[asyncio.Task[None]] = []
    try:
        await first.start()
        await second.start()
        tasks = [asyncio.create_task(consume(c, source)) for c in (first, second)]

        def errors() -> list[str]:
            return [
                r.getMessage()
                for r in caplog.records
                if r.levelno == logging.ERROR and "MQTT session taken over" in r.getMessage()
            ]

        details: set[str] = set()

        def recognised() -> bool:
            details.update(c.health.detail for c in (first, second))
            return bool(errors())

        assert await until(recognised, 30), caplog.text[-3000:]
        message = errors()[0]
        assert f"client id '{client_id}" in message, message
        assert any(f"connector {n} (mqtt {url})" in message for n in ("first", "second"))

        before = first.health.reconnects + second.health.reconnects
        began = time.monotonic()
        await asyncio.sleep(WINDOW_S)  # the measuring window (not a synchronisation)
        reconnects = first.health.reconnects + second.health.reconnects - before
        rate = reconnects / (time.monotonic() - began)
        print(f"MQTT {protocol}: {reconnects} reconnects in {WINDOW_S:.0f} s ({rate:.1f}/s)")
        assert reconnects <= MAX_RECONNECTS_IN_WINDOW, (reconnects, caplog.text[-3000:])
        assert first.health.reconnects + second.health.reconnects > 0  # still trying
        # One ERROR per connector and client id (publisher and source sessions), not
        # one per reconnect.
        assert len(errors()) <= 4, errors()
        assert await until(
            lambda: recognised() and any("session taken over" in d for d in details), 10
        ), details
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        await asyncio.gather(first.close(), second.close(), return_exceptions=True)
