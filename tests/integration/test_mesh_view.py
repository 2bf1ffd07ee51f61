"""The mesh view on the real NATS server: announcements, the peer table, replicas,
expiry, ``meshgate mesh status`` and the admin API's ``/api/mesh``.

Gateway ``a`` forwards ``<run>.in`` to ``<run>.mid``; gateway ``b`` runs twice (two
replicas from one file, sharing ``<run>.mid`` through a NATS queue group) and forwards
it to ``<run>.out``. Announcements every 0.3 s, peers expire after 1.5 s of silence.
Every wait is on a condition with a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from connectors.nats import NatsConnector, NatsOptions, NatsTarget
from gateway.admin import observed
from gateway.config import load_config
from gateway.runtime import Gateway
from routing.event import CloudEvent
from tests.brokers import MQTT_HOST_PORT, NATS_URL, RABBITMQ_URL, unique_name
from tests.polling import until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
HOST, PORT = MQTT_HOST_PORT


def config(
    tmp_path: Path,
    run: str,
    gid: str,
    src: str,
    dst: str,
    copy: str = "",
    admin: bool = False,
    **source: Any,
) -> Path:
    body: dict[str, Any] = {
        "gateway": {
            "id": gid,
            "state_dir": str(tmp_path / f"{gid}{copy}"),  # each replica its own local state
            "drain_timeout_seconds": 5,
            "mesh": {
                "connector": "edge",
                "subject": f"{run}.control",
                "interval_seconds": 0.3,
                "expire_seconds": 1.5,
            },
        },
        "connectors": {"edge": {"type": "nats", "servers": [NATS_URL]}},
        "routes": [
            {
                "name": "fwd",
                "from": {"connector": "edge", "subject": f"{run}.{src}", **source},
                "to": [{"connector": "edge", "subject": f"{run}.{dst}", "jetstream": False}],
            }
        ],
    }
    if admin:
        body["gateway"]["admin"] = {"listen": "127.0.0.1:0"}
    path = tmp_path / f"{gid}{copy}.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


async def test_gateways_see_each_other_and_replicas(tmp_path: Path) -> None:
    run = unique_name("view")
    a_file = config(tmp_path, run, "a", "in", "mid", admin=True)
    b_file = config(tmp_path, run, "b", "mid", "out", queue_group="b")
    b_copy = config(tmp_path, run, "b", "mid", "out", copy="-2", queue_group="b")
    a, b1, b2 = (Gateway(load_config(p)) for p in (a_file, b_file, b_copy))
    stopped: list[Gateway] = []
    stack = contextlib.AsyncExitStack()
    server = await stack.enter_async_context(observed(a))  # /api/mesh
    assert server is not None
    for gateway in (a, b1, b2):
        await gateway.start()
    try:
        assert a.control is not None

        def instances() -> dict[str, int]:
            assert a.control is not None
            return {g: len(p) for g, p in a.control.table.gateways().items()}

        assert await until(lambda: instances() == {"a": 1, "b": 2}, 10), instances()

        publisher = NatsConnector("tx", NatsOptions(servers=(NATS_URL,)))
        await publisher.start()
        target = NatsTarget(connector="tx", subject=f"{run}.in", jetstream=False)
        for n in range(10):
            event = CloudEvent(id=f"e{n}", source="urn:test:view", type="com.example.view")
            await publisher.publish(target, event)
        await publisher.close()

        def delivered() -> tuple[int, int]:
            return a.stats["fwd"].delivered, b1.stats["fwd"].delivered + b2.stats["fwd"].delivered

        assert await until(lambda: delivered() == (10, 10), 10), delivered()

        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "gateway.cli",
            "mesh",
            "status",
            str(a_file),
            "--seconds",
            "1.5",
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), 60)
        text = out.decode()
        print("\n" + text)
        assert process.returncode == 0, err.decode()
        assert "2 gateways (3 instances)" in text
        assert "  b: meshgate " in text and "2 replicas sharing work" in text
        assert "  B1: nats nats://127.0.0.1:" in text
        assert f"  a:fwd: B1 {run}.in -> B1 {run}.mid  delivered 10 " in text
        assert f"  b:fwd: B1 {run}.mid -> B1 {run}.out  delivered 10 " in text
        assert f"  a:fwd -> b:fwd  (B1 {run}.mid)" in text

        async with aiohttp.ClientSession() as http, http.get(server.url + "/api/mesh") as got:
            assert got.status == 200
            view = await got.json()
        assert view["enabled"] and view["gateway"] == "a"
        assert {g: len(i) for g, i in view["gateways"].items()} == {"a": 1, "b": 2}

        # A reload that changes the control channel restarts it, same instance.
        assert a.control is not None
        table = a.control.table
        faster = yaml.safe_load(a_file.read_text())
        faster["gateway"]["mesh"]["interval_seconds"] = 0.2
        a_file.write_text(yaml.safe_dump(faster, sort_keys=False))
        await a.reload(load_config(a_file))
        assert a.control is not None and a.control.table is not table
        assert await until(lambda: instances() == {"a": 1, "b": 2}, 10), instances()

        await b2.stop()  # a silent replica expires from its peers' tables
        stopped.append(b2)
        assert await until(lambda: instances() == {"a": 1, "b": 1}, 10), instances()
    finally:
        for gateway in (a, b1, b2):
            if gateway not in stopped:
                await gateway.stop()
        await stack.aclose()


@pytest.mark.parametrize("kind", ["mqtt", "kafka", "amqp"])
async def test_control_channel_on_every_protocol(
    tmp_path: Path, kind: str, request: pytest.FixtureRequest
) -> None:
    """The same view over MQTT (QoS 0), Kafka and AMQP; mesh status listens with a
    client id, consumer group or queue of its own."""
    run = unique_name("viewc")
    connector: dict[str, Any]
    if kind == "mqtt":
        connector = {"type": "mqtt", "url": f"mqtt://{HOST}:{PORT}", "session_expiry": 0}
        channel = {"topic": f"{run}/control"}
        route = ({"topic": f"{run}/in", "qos": 1}, {"topic": f"{run}/out", "qos": 1})
    elif kind == "kafka":
        bootstrap = request.getfixturevalue("kafka_bootstrap")
        connector = {"type": "kafka", "bootstrap_servers": bootstrap}
        channel = {"topic": f"{run}.control"}
        route = ({"topics": [f"{run}.in"], "group_id": run}, {"topic": f"{run}.out"})
    else:
        connector = {"type": "amqp", "url": RABBITMQ_URL}
        channel = {"routing_key": f"{run}.control"}
        route = ({"queue": f"{run}-in", "declare": True}, {"routing_key": f"{run}.out"})
    body = {
        "gateway": {
            "id": "m",
            "state_dir": str(tmp_path / "m"),
            "mesh": {"connector": "c", **channel, "interval_seconds": 0.3},
        },
        "connectors": {"c": connector},
        "routes": [
            {
                "name": "fwd",
                "from": {"connector": "c", **route[0]},
                "to": [{"connector": "c", **route[1]}],
            }
        ],
    }
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    gateway = Gateway(load_config(path))
    await gateway.start()
    try:
        control = gateway.control
        assert control is not None
        # A Kafka listener hears announcements once its group joined (a few seconds).
        assert await until(lambda: set(control.table.gateways()) == {"m"}, 30)
        process = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "gateway.cli", "mesh", "status", str(path)),
            *("--seconds", "8" if kind == "kafka" else "1.5"),
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode == 0, err.decode()
        text = out.decode()
        print(f"\n{kind}:\n{text}")
        assert "1 gateways (1 instances)" in text, text
        assert "  m:fwd: B1 " in text
        # The running gateway kept its own sessions/consumers: it still hears itself.
        heard = len(control.table.peers)
        assert await until(lambda: len(control.table.peers) == heard and heard == 1, 10)
        assert gateway.connectors["c"].health.reconnects == 0
    finally:
        await gateway.stop()
        if kind == "amqp":
            import aio_pika

            connection = await aio_pika.connect(RABBITMQ_URL, timeout=10)
            async with connection:
                channel_ = await connection.channel()
                await channel_.queue_delete(f"{run}-in")
