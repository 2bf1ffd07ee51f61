"""``meshgate top --admin URL --once`` against a running gateway on the loopback NATS:
one plain snapshot with the route's counters, the connector's state and the recent
events; 1 with a clear message when the token is missing or the gateway is gone."""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from pathlib import Path

import nats
import pytest
import yaml

from gateway.admin import observed
from gateway.config import load_config
from gateway.localbrokers import free_port
from gateway.runtime import Gateway
from routing.bindings import Mode
from routing.bindings import nats as nats_binding
from routing.event import CloudEvent

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

ROOT = Path(__file__).resolve().parents[2]


async def top(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway.cli",
        "top",
        *args,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(30):
        out, err = await process.communicate()
    return process.returncode or 0, out.decode(), err.decode()


async def test_top_once_shows_routes_connectors_and_events(tmp_path: Path, nats_url: str) -> None:
    run = uuid.uuid4().hex[:8]
    token_file = tmp_path / "token"
    token_file.write_text("top-token\n")
    config = {
        "gateway": {
            "id": f"top-{run}",
            "drain_timeout_seconds": 5,
            "state_dir": str(tmp_path / "state"),
            "admin": {"listen": "127.0.0.1:0", "token_file": str(token_file)},
        },
        "connectors": {"edge": {"type": "nats", "servers": [nats_url]}},
        "routes": [
            {
                "name": "orders",
                "from": {"connector": "edge", "subject": f"top.{run}.in"},
                "to": [{"connector": "edge", "subject": f"top.{run}.out", "jetstream": False}],
                "dead_letter": {
                    "connector": "edge",
                    "subject": f"top.{run}.dlq",
                    "jetstream": False,
                },
            }
        ],
    }
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    gateway = Gateway(load_config(path))
    client = await nats.connect(nats_url)
    try:
        async with observed(gateway) as admin:
            assert admin is not None
            await gateway.start()
            deadline = time.monotonic() + 30
            while not all(p.stream is not None for p in gateway.pipelines):
                assert time.monotonic() < deadline, "the route never started consuming"
                await asyncio.sleep(0.05)
            for n in range(2):
                event = CloudEvent(id=f"top-{run}-{n}", source="urn:t", type="com.acme.t")
                message = nats_binding.to_message(event, Mode.BINARY)
                await client.publish(
                    f"top.{run}.in", message.data, headers=dict(message.headers or {})
                )
            await client.publish(f"top.{run}.in", b"no cloudevent")
            await client.flush()
            stats = gateway.stats["orders"]
            while stats.delivered < 2 or stats.dead_lettered < 1:
                assert time.monotonic() < deadline, "events not processed in time"
                await asyncio.sleep(0.05)

            code, out, err = await top(
                "--admin", admin.url, "--token-file", str(token_file), "--once"
            )
            assert code == 0, err
            lines = out.splitlines()
            assert lines[0].startswith(f"meshgate top-{run}  READY")
            header = next(line for line in lines if line.startswith("ROUTE"))
            row = next(line for line in lines if line.startswith("orders "))
            columns = dict(zip(header.split(), row.split(), strict=True))
            assert columns["STATE"] == "consuming"
            assert columns["RECV"] == "3" and columns["DELIV"] == "2" and columns["DLQ"] == "1"
            assert columns["EV/S"] == "-"  # one snapshot: no rate
            assert any(line.startswith("edge ") and " up " in line for line in lines)
            assert "last error: NotACloudEvent" in out
            # The dead letter is in the kept backlog of /api/events.
            assert any("dead_lettered" in line and "orders" in line for line in lines)

            code, out, err = await top("--admin", admin.url, "--once")
            assert code == 1 and "401" in err and "--token-file" in err
            await gateway.stop()
    finally:
        await client.close()
    code, _out, err = await top("--admin", f"http://127.0.0.1:{free_port()}", "--once")
    assert code == 1 and "cannot read" in err
