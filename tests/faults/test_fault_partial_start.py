"""A broker is down when the gateway starts: the other routes run, the missing ones
start when it appears; ``--fail-fast`` exits instead, naming the connector.

Partial availability: the gateway (a child process) gets two routes, "alive" on the
system brokers (NATS JetStream -> RabbitMQ) and "late", one of whose connectors
points at a private broker (Mosquitto or RabbitMQ as the late route's target, or
NATS as its source). The private broker is prepared (stream, persistent MQTT sessions) and then
stopped before the gateway starts, so the gateway only ever sees a closed port
until the test starts the broker again on that port. The gateway must deliver on
"alive" within 15 s, keep running, start "late" within 15 s of the broker
listening, and deliver the events published to "late" after that. Its
"gateway ... started: ..." line (the fault harness's "everything consumes") comes
only then.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from connectors.mqtt import MqttTarget
from gateway.localbrokers import free_port
from routing.event import CloudEvent
from tests.brokers import NATS_URL, RABBITMQ_URL
from tests.faults import admin
from tests.faults.brokers import ROOT, BrokerProcess, restart_all, stop_all
from tests.faults.conftest import FaultReport
from tests.faults.gateway import GatewayProcess
from tests.faults.harness import AMQP, MQTT, NATS, Pair, Scenario, until

pytestmark = [pytest.mark.integration, pytest.mark.faults]

DEADLINE_S = 15.0  # the bound, for both the healthy and the late routes
EVENTS = 50
GROWN = {MQTT: 6, AMQP: 6, NATS: 2}  # failed first attempts before the broker appears
FIXTURE = {MQTT: "private_mosquitto", AMQP: "private_rabbit", NATS: "private_nats"}


async def collector_receives(scenario: Scenario, pair: Pair, seconds: float = 60) -> list[str]:
    """Publish probes to ``pair``'s target topic until its collector counts one; returns
    the probe ids (``forget`` them before the tally: probes queued earlier arrive late)."""
    client = await scenario.client(pair.dst, pair.dst_url)
    target = MqttTarget(connector="x", topic=pair.address("out"), qos=1)
    deadline = time.monotonic() + seconds
    probes: list[str] = []
    while not any(probe in pair.received for probe in probes):
        assert time.monotonic() < deadline, "the test's collector never received again"
        probe = CloudEvent(id=f"probe-{len(probes)}", source="urn:probe", type="probe")
        probes.append(probe.id)
        await client.publish(target, probe)
        await until(lambda: any(p in pair.received for p in probes), 0.5)
    return probes


def forget(pair: Pair, probes: list[str]) -> None:
    for probe in probes:
        pair.received.pop(probe, None)
        pair.arrived_at.pop(probe, None)


@pytest.mark.parametrize("down", [MQTT, AMQP, NATS])
@pytest.mark.timeout(180)
async def test_routes_of_a_down_broker_wait_while_the_others_run(
    down: str,
    request: pytest.FixtureRequest,
    gateways: Callable[[Path, str], GatewayProcess],
    tmp_path: Path,
    fault_report: FaultReport,
) -> None:
    broker: BrokerProcess = request.getfixturevalue(FIXTURE[down])
    url = broker.url  # type: ignore[attr-defined]
    alive = Pair(NATS, NATS_URL, AMQP, RABBITMQ_URL, label="alive")
    if down == NATS:  # the late route's source is down
        late = Pair(NATS, url, AMQP, RABBITMQ_URL, label="late")
    else:  # the late route's target is down
        late = Pair(NATS, NATS_URL, down, url, label="late")
    async with Scenario([alive, late]) as scenario:
        role = "in" if down == NATS else "out"
        missing = scenario.connector_name(role, down, url)
        if down == AMQP:  # the test's collector must consume before the broker goes away
            deadline = time.monotonic() + 30
            while (await admin.queue_depth(url, late.address("out")))[1] < 1:
                assert time.monotonic() < deadline, "the collector never consumed"
                await asyncio.sleep(0.1)
        await stop_all(broker)  # prepared; from now on a closed port
        gateway = gateways(scenario.write(tmp_path), "gw")
        began = time.monotonic()

        await scenario.feed(alive, EVENTS)
        assert await scenario.until_delivered(DEADLINE_S - (time.monotonic() - began), [alive]), (
            f"healthy route not delivered within {DEADLINE_S} s of the gateway start: "
            f"{alive.tally()}\n{gateway.current_log()[-3000:]}"
        )
        alive_after = time.monotonic() - began
        assert await until(lambda: " connectors down (" in gateway.current_log(), 30)
        log = gateway.current_log()
        assert f"connectors down ({missing})" in log, log[-3000:]
        assert f"connector {missing} ({down} " in log and "connect failed" in log, log[-3000:]
        assert " started: " not in log  # the harness's "everything consumes" is not true
        # Keep the broker away until the backoff has grown (a NATS attempt itself lasts
        # one connect budget, ~7.5 s), so the late start is measured against long waits.
        attempts = f"connect failed (attempt {GROWN[down]},"
        assert await until(lambda: attempts in gateway.current_log(), 60)
        assert gateway.running()

        await restart_all(broker)  # the broker appears on the same port
        appeared = time.monotonic()
        consuming = f"routes {late.name} now consuming"
        assert await until(lambda: consuming in gateway.current_log(), DEADLINE_S), (
            f"late route not started within {DEADLINE_S} s of the broker appearing:\n"
            f"{gateway.current_log()[-3000:]}"
        )
        late_after = time.monotonic() - appeared
        assert await until(lambda: " started: " in gateway.current_log(), 5)
        probes: list[str] = []
        if down == MQTT:
            # The test's own collector reconnects to the restarted broker on its own
            # backoff: the gateway may be back first, and an MQTT message published
            # while the collector's session is not restored reaches nobody. Wait until
            # a probe published straight to the target topic gets through.
            probes = await collector_receives(scenario, late)

        await scenario.feed(late, EVENTS)  # published after the broker appeared
        await scenario.feed(alive, EVENTS)
        delivered = await scenario.until_delivered(60)
        forget(late, probes)
        for pair in (alive, late):
            fault_report.add(
                f"{down} broker down at start",
                pair,
                f"alive delivered after {alive_after:.1f} s; late route started "
                f"{late_after:.1f} s after the broker appeared",
            )
        if not delivered and late.dst == AMQP:  # where they are: still queued, or never sent
            depth = await admin.queue_depth(late.dst_url, late.address("out"))
            print(f"late target queue (ready, consumers): {depth}")
        assert delivered, {p.name: p.tally() for p in (alive, late)}
        for pair in (alive, late):
            tally = pair.tally()
            assert tally["lost"] == 0 and tally["unexpected"] == 0, (pair.name, tally)
        assert gateway.terminate(60) == 0


def _fail_fast_config(tmp_path: Path, kind: str, port: int, in_config: bool) -> Path:
    if kind == MQTT:
        down = {"type": MQTT, "url": f"mqtt://meshgate:s3cret@127.0.0.1:{port}"}
        target = {"connector": "plant", "topic": "ff/out"}
    else:
        down = {"type": AMQP, "url": f"amqp://guest:s3cret@127.0.0.1:{port}/"}
        target = {"connector": "plant", "routing_key": "ff.out"}
    config = {
        "gateway": {"id": "ff-gw", "fail_fast": in_config},
        "connectors": {"edge": {"type": NATS, "servers": [NATS_URL]}, "plant": down},
        "routes": [
            {"name": "r", "from": {"connector": "edge", "subject": "ff.in"}, "to": [target]}
        ],
    }
    path = tmp_path / "fail-fast.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.mark.parametrize(
    ("kind", "how"), [(MQTT, "--fail-fast"), (AMQP, "gateway.fail_fast")], ids=["mqtt", "amqp"]
)
@pytest.mark.timeout(60)
def test_fail_fast_exits_1_naming_the_connector(kind: str, how: str, tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    path = _fail_fast_config(tmp_path, kind, port, in_config=how == "gateway.fail_fast")
    flags = ["--fail-fast"] if how == "--fail-fast" else []
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "run", "--no-watch", *flags, str(path)],
        capture_output=True,
        text=True,
        timeout=45,
        cwd=ROOT,
        check=False,
    )
    took = time.monotonic() - began
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    where = (
        f"mqtt://meshgate@127.0.0.1:{port}"
        if kind == MQTT
        else f"amqp://guest:***@127.0.0.1:{port}/"
    )
    assert f"cannot start: connector plant ({kind} {where}): connect failed:" in output, output
    assert "s3cret" not in output
    errors = [line for line in output.splitlines() if " ERROR " in line]
    assert errors and all("connector plant (" in line for line in errors), errors
    assert took < 30, took
