"""Slow, unreliable targets: the gateway reaches them through ``FaultyProxy``.

Three routes whose target connection goes through a proxy (tests/faults/proxy.py):

    NATS JetStream (system) -> RabbitMQ (system, via proxy)
    RabbitMQ queue (system) -> NATS JetStream (system, via proxy)
    Kafka (session mock)    -> Mosquitto (private, via proxy)

Phase "clean": the proxies pass bytes straight through. Phase "slow": every chunk is
delayed, each direction is throttled, and a random proxied connection is reset every
couple of seconds. The same number of events goes through each phase; throughput
must drop in the slow phase, and nothing may be lost in either.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.brokers import NATS_PORT, NATS_URL, RABBITMQ_PORT, RABBITMQ_URL
from tests.faults.brokers import PrivateMosquitto
from tests.faults.conftest import FaultReport
from tests.faults.gateway import GatewayProcess
from tests.faults.harness import AMQP, KAFKA, MQTT, NATS, Pair, Scenario
from tests.faults.proxy import FaultyProxy

pytestmark = [pytest.mark.integration, pytest.mark.faults]

EVENTS = 400  # per route and phase
LATENCY = 0.05  # seconds per chunk, each direction
BANDWIDTH = 48 * 1024  # bytes per second, each direction and connection
RESET_EVERY = 3.0  # seconds, roughly, between connection resets (per proxy)


def rate(pair: Pair, ids: list[str]) -> float:
    """Events per second from the first publish to the last first arrival of ``ids``."""
    start = min(pair.sent_at[i] for i in ids)
    end = max(pair.arrived_at[i] for i in ids)
    return len(ids) / max(end - start, 1e-3)


@pytest.mark.timeout(180)
async def test_slow_resetting_target_degrades_throughput_but_loses_nothing(
    kafka_bootstrap: str,
    private_mosquitto: PrivateMosquitto,
    gateways: Callable[[Path, str], GatewayProcess],
    tmp_path: Path,
    fault_report: FaultReport,
) -> None:
    async with (
        FaultyProxy(RABBITMQ_PORT, seed=1) as to_rabbit,
        FaultyProxy(NATS_PORT, seed=2) as to_nats,
        FaultyProxy(private_mosquitto.port, seed=3) as to_mqtt,
    ):
        proxies = [to_rabbit, to_nats, to_mqtt]
        pairs = [
            Pair(
                NATS,
                NATS_URL,
                AMQP,
                RABBITMQ_URL,
                label="slow-rabbit",
                via=f"amqp://guest:guest@{to_rabbit.url_host_port}/",
            ),
            Pair(
                AMQP,
                RABBITMQ_URL,
                NATS,
                NATS_URL,
                label="slow-nats",
                via=f"nats://{to_nats.url_host_port}",
            ),
            Pair(
                KAFKA,
                kafka_bootstrap,
                MQTT,
                private_mosquitto.url,
                label="slow-mqtt",
                via=f"mqtt://{to_mqtt.url_host_port}",
            ),
        ]
        # NATS: reconnect and give up on a lost PubAck sooner than the defaults (2 s + up
        # to 1 s jitter, 5 s), or the resets alone would dominate the run time.
        nats_options = {"reconnect_wait": 0.5, "reconnect_jitter": 0.3, "publish_timeout": 2.0}
        async with Scenario(pairs, connector={NATS: nats_options}, drain_timeout=5) as scenario:
            gateway = gateways(scenario.write(tmp_path), "gw")
            await gateway.wait_started()
            rates: dict[str, dict[str, float]] = {pair.name: {} for pair in pairs}
            resets = 0
            for phase in ("clean", "slow"):
                if phase == "slow":
                    for proxy in proxies:
                        proxy.latency, proxy.bandwidth = LATENCY, BANDWIDTH
                        proxy.reset_every = RESET_EVERY
                first = {pair.name: len(pair.sent) for pair in pairs}
                began = time.monotonic()
                await asyncio.gather(*(scenario.feed(pair, EVENTS) for pair in pairs))
                assert await scenario.until_delivered(120), {p.name: p.tally() for p in pairs}
                for pair in pairs:
                    rates[pair.name][phase] = rate(pair, pair.sent[first[pair.name] :])
                if phase == "slow":
                    resets = sum(proxy.resets for proxy in proxies)
                    for proxy in proxies:
                        proxy.latency, proxy.bandwidth, proxy.reset_every = 0.0, None, None
                print(f"phase {phase}: {time.monotonic() - began:.1f} s, rates {rates}")
            # In a thread: the proxies run in this event loop and must keep forwarding
            # while the gateway stops (a blocked loop made every proxied link silent).
            code = await asyncio.to_thread(gateway.terminate, 60)
            # A NATS target link silent at shutdown was reported here in every run while
            # terminate() blocked this loop (and with it the proxies); kept as a check.
            # A link that goes silent for real is replaced by the connector's watchdog
            # (test_fault_silent_link.py).
            log = gateway.current_log()
            silent_nats = "flush on close failed" in log or "did not finish" in log
            for pair in pairs:
                r = rates[pair.name]
                note = (
                    f"{r['clean']:.0f} ev/s clean -> {r['slow']:.0f} ev/s slow "
                    f"({LATENCY * 1000:.0f} ms, {BANDWIDTH // 1024} KiB/s, resets {resets})"
                )
                if pair.dst == NATS and silent_nats:
                    note += "; NATS link silent at shutdown (drain timed out)"
                fault_report.add("slow target via proxy", pair, note)
            for pair in pairs:
                assert pair.tally()["lost"] == 0, (pair.name, pair.tally())
            assert resets > 0
            clean = sum(r["clean"] for r in rates.values())
            slow = sum(r["slow"] for r in rates.values())
            assert slow < clean, rates
            assert code == 0
