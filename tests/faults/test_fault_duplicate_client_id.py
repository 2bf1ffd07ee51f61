"""Two gateway processes started from one file: the same MQTT client ids, on the
loopback Mosquitto (1883).

Each process's MQTT sessions (the publisher and the source) take the session over
from the other's on every connect. The gateways must say so (one ERROR line
"MQTT session taken over" naming the connector and the client id, not one per
reconnect), back off instead of reconnecting ~12 times a second, and still deliver
what is published to the shared source (at-least-once: duplicates are allowed).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.brokers import MQTT_HOST_PORT, NATS_URL
from tests.faults.conftest import FaultReport
from tests.faults.gateway import GatewayProcess
from tests.faults.harness import MQTT, NATS, Pair, Scenario, until

pytestmark = [pytest.mark.integration, pytest.mark.faults]

MQTT_URL = "mqtt://{}:{}".format(*MQTT_HOST_PORT)
WINDOW_S = 6.0
# Reconnects of both processes together (two sessions each) in WINDOW_S once the
# takeover was reported; each logs one INFO line. Before the fix: ~150.
MAX_RECONNECTS_IN_WINDOW = 30
RECONNECTED = ("publisher reconnected", ": consuming '")


def reconnects(*gateways: GatewayProcess) -> int:
    return sum(
        line.count(marker)
        for gateway in gateways
        for line in gateway.current_log().splitlines()
        for marker in RECONNECTED
    )


def takeover_errors(gateway: GatewayProcess) -> list[str]:
    return [
        line
        for line in gateway.current_log().splitlines()
        if " ERROR " in line and "MQTT session taken over" in line
    ]


@pytest.mark.timeout(150)
async def test_two_gateways_with_one_client_id_report_it_and_back_off(
    gateways: Callable[[Path, str], GatewayProcess],
    tmp_path: Path,
    fault_report: FaultReport,
) -> None:
    pair = Pair(MQTT, MQTT_URL, NATS, NATS_URL, label="dup")
    async with Scenario([pair]) as scenario:
        path = scenario.write(tmp_path)  # one file, one gateway id: the same client ids
        first, second = gateways(path, "first"), gateways(path, "second")
        await asyncio.gather(first.wait_started(), second.wait_started())

        assert await until(lambda: bool(takeover_errors(first) or takeover_errors(second)), 30), (
            first.current_log()[-2000:] + second.current_log()[-2000:]
        )
        client_id = scenario.mqtt_client_id(scenario.gateway_id, "in-mqtt-0")
        reported = takeover_errors(first) + takeover_errors(second)
        assert all("connector in-mqtt-0 (mqtt " in line for line in reported), reported
        assert all(f"client id '{client_id}" in line for line in reported), reported

        before, began = reconnects(first, second), time.monotonic()
        await asyncio.sleep(WINDOW_S)  # the measuring window (not a synchronisation)
        counted = reconnects(first, second) - before
        rate = counted / (time.monotonic() - began)
        assert counted <= MAX_RECONNECTS_IN_WINDOW, (counted, second.current_log()[-3000:])
        # one ERROR per process and session (publisher, source), not one per reconnect
        assert len(takeover_errors(first)) <= 2 and len(takeover_errors(second)) <= 2

        await scenario.feed(pair, 50)
        delivered = await scenario.until_delivered(60)
        fault_report.add(
            "two gateways, one MQTT client id",
            pair,
            f"{counted} reconnects in {WINDOW_S:.0f} s ({rate:.1f}/s) after the takeover ERROR",
        )
        assert delivered, pair.tally()
        assert pair.tally()["lost"] == 0
        assert first.running() and second.running()
