"""The admin HTTP server and the metrics, on real brokers (docs/observability.md).

An in-process gateway reads two JetStream subjects on the loopback NATS server and
publishes to core NATS and RabbitMQ; the test sends events of every outcome and reads
every endpoint back: ``/metrics`` through prometheus_client's own text parser, the
counters compared with what was sent. Readiness turns 503 and back to 200 around the
outage of a private nats-server that one route reads from.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import nats
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from gateway.admin import AdminServer, observed
from gateway.config import load_config
from gateway.localbrokers import free_port
from gateway.runtime import Gateway
from routing.bindings import Mode
from routing.bindings import nats as nats_binding
from routing.event import CloudEvent
from tests.faults.brokers import PrivateNats

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "s3cret-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def until(check: Callable[[], Any], seconds: float = 30.0) -> Any:
    """Poll an (async) condition until it is truthy; fail after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {seconds} s")
        await asyncio.sleep(0.1)


def event(run: str, n: int, kind: str = "com.acme.order.created") -> CloudEvent:
    return CloudEvent(
        id=f"{run}-{n}",
        source="urn:test:admin",
        type=kind,
        datacontenttype="application/json",
        data=b'{"n":%d}' % n,
    )


@contextlib.asynccontextmanager
async def running(config: dict[str, Any], tmp_path: Path) -> AsyncIterator[AdminServer]:
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    gateway = Gateway(load_config(path))
    async with observed(gateway) as admin:
        assert admin is not None
        await gateway.start()
        try:
            yield admin
        finally:
            await gateway.stop()


async def get(session: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with session.get(url, headers=AUTH) as response:
        if response.content_type == "application/json":
            return response.status, await response.json()
        return response.status, await response.text()


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a Prometheus exposition, parsed by prometheus_client."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(
    parsed: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return parsed.get((name, frozenset(labels.items())), -1.0)


async def read_events(
    stream: aiohttp.ClientResponse, count: int, seconds: float = 30.0
) -> list[dict[str, Any]]:
    """The next ``count`` Server-Sent Events of ``stream`` (their JSON data)."""
    events: list[dict[str, Any]] = []
    kind = ""
    async with asyncio.timeout(seconds):
        while len(events) < count:
            line = (await stream.content.readline()).decode().rstrip("\n")
            if line.startswith("event: "):
                kind = line.removeprefix("event: ")
            elif line.startswith("data: "):
                body = json.loads(line.removeprefix("data: "))
                assert body["outcome"] == kind
                events.append(body)
    return events


async def test_every_endpoint_on_real_brokers(
    tmp_path: Path, nats_url: str, rabbitmq_url: str
) -> None:
    run = uuid.uuid4().hex[:8]
    stream = f"ADMIN_{run}"
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    client = await nats.connect(nats_url)
    js = client.jetstream()
    await js.add_stream(name=stream, subjects=[f"adm.{run}.in.>"])
    outputs: dict[str, list[bytes]] = {"out": [], "dlq": []}

    async def collect(msg: Any) -> None:
        outputs[msg.subject.rsplit(".", 1)[-1]].append(msg.data)

    await client.subscribe(f"adm.{run}.out", cb=collect)
    await client.subscribe(f"adm.{run}.dlq", cb=collect)
    await client.flush()
    config = {
        "gateway": {
            "id": f"admin-{run}",
            "drain_timeout_seconds": 5,
            "state_dir": str(tmp_path / "state"),
            "admin": {"listen": "127.0.0.1:0", "token_file": str(token_file)},
        },
        "connectors": {
            "edge": {"type": "nats", "servers": [nats_url]},
            "ops": {"type": "amqp", "url": rabbitmq_url},
        },
        "routes": [
            {
                "name": "orders",
                "from": {
                    "connector": "edge",
                    "subject": f"adm.{run}.in.orders",
                    "jetstream": {"stream": stream, "durable": "gw-orders"},
                },
                "filter": "type LIKE 'com.acme.order.%'",
                "to": [{"connector": "edge", "subject": f"adm.{run}.out", "jetstream": False}],
                "dead_letter": {
                    "connector": "edge",
                    "subject": f"adm.{run}.dlq",
                    "jetstream": False,
                },
            },
            {
                "name": "audit",
                "from": {
                    "connector": "edge",
                    "subject": f"adm.{run}.in.audit",
                    "jetstream": {
                        "stream": stream,
                        "durable": "gw-audit",
                        "ack_wait_seconds": 600,
                    },
                },
                "to": [
                    {
                        "connector": "ops",
                        "exchange": "amq.topic",
                        "routing_key": f"adm.{run}.audit",
                        "mandatory": False,
                    }
                ],
            },
        ],
    }
    try:
        async with running(config, tmp_path) as admin, aiohttp.ClientSession() as http:
            base = admin.url
            # The token is enforced on every endpoint.
            for path in (
                "/healthz",
                "/readyz",
                "/metrics",
                "/api/routes",
                "/api/connectors",
                "/api/events",
            ):
                async with http.get(base + path) as response:
                    assert response.status == 401, path
                    assert response.headers["WWW-Authenticate"].startswith("Bearer")
                async with http.get(base + path, headers={"Authorization": "Bearer wrong"}) as r:
                    assert r.status == 401, path

            assert await get(http, base + "/healthz") == (200, {"status": "ok"})

            async def ready() -> bool:
                status, body = await get(http, base + "/readyz")
                return status == 200 and body["ready"]

            await until(ready)
            status, body = await get(http, base + "/readyz")
            assert body["connectors"]["edge"]["state"] == "up"
            assert body["connectors"]["ops"]["state"] == "up"
            assert body["routes"] == {
                "orders": {"state": "consuming", "reason": ""},
                "audit": {"state": "consuming", "reason": ""},
            }

            # A client follows /api/events from here on (delivered and filtered outcomes
            # are recorded only while one does).
            sse = await http.get(base + "/api/events?route=orders", headers=AUTH)
            assert sse.status == 200
            assert sse.headers["Content-Type"].startswith("text/event-stream")

            # orders: 10 delivered, 3 filtered, 2 malformed (dead-lettered);
            # audit: 4 delivered, 2 malformed without a dead letter (to the local store).
            n = 0
            for kind, count, subject in (
                ("com.acme.order.created", 10, "orders"),
                ("com.acme.other", 3, "orders"),
                ("bad", 2, "orders"),
                ("com.acme.audit", 4, "audit"),
                ("bad", 2, "audit"),
            ):
                for _ in range(count):
                    n += 1
                    message = nats_binding.to_message(
                        event(run, n, "x" if kind == "bad" else kind), Mode.BINARY
                    )
                    headers = dict(message.headers or {})
                    if kind == "bad":
                        headers["ce-time"] = "yesterday"  # invalid: a malformed CloudEvent
                    await js.publish(f"adm.{run}.in.{subject}", message.data, headers=headers)
            await until(lambda: len(outputs["out"]) == 10 and len(outputs["dlq"]) == 2)

            async def metrics() -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
                status, text = await get(http, base + "/metrics")
                assert status == 200
                return samples(text)

            async def settled() -> bool:
                parsed = await metrics()
                return (
                    value(parsed, "meshgate_events_total", route="audit", outcome="undeliverable")
                    == 2
                    and value(parsed, "meshgate_events_total", route="audit", outcome="delivered")
                    == 4
                )

            await until(settled)
            async with http.get(base + "/metrics", headers=AUTH) as response:
                assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            parsed = await metrics()
            expected = {
                ("orders", "received"): 15,
                ("orders", "delivered"): 10,
                ("orders", "filtered"): 3,
                ("orders", "dead_lettered"): 2,
                ("orders", "undeliverable"): 0,
                ("orders", "failed"): 0,
                ("audit", "received"): 6,
                ("audit", "delivered"): 4,
                ("audit", "filtered"): 0,
                ("audit", "dead_lettered"): 0,
                ("audit", "undeliverable"): 2,
                ("audit", "failed"): 0,
            }
            for (route, outcome), count in expected.items():
                got = value(parsed, "meshgate_events_total", route=route, outcome=outcome)
                assert got == count, (route, outcome, got)
            for route in ("orders", "audit"):
                assert value(parsed, "meshgate_route_in_flight", route=route) == 0
                assert value(parsed, "meshgate_route_retries_total", route=route) == 0
                assert value(parsed, "meshgate_route_duration_seconds_count", route=route) == (
                    10 if route == "orders" else 4
                )
                assert value(parsed, "meshgate_route_duration_seconds_sum", route=route) > 0
                assert value(
                    parsed, "meshgate_route_duration_seconds_bucket", route=route, le="+Inf"
                ) == value(parsed, "meshgate_route_duration_seconds_count", route=route)
            for connector in ("edge", "ops"):
                assert value(parsed, "meshgate_connector_up", connector=connector) == 1
                assert (
                    value(parsed, "meshgate_connector_reconnects_total", connector=connector) == 0
                )
            # edge published 10 events and 2 dead letters, ops 4 events.
            assert (
                value(parsed, "meshgate_connector_publish_duration_seconds_count", connector="edge")
                == 12
            )
            assert (
                value(parsed, "meshgate_connector_publish_duration_seconds_count", connector="ops")
                == 4
            )
            send = {
                "messaging_operation_name": "publish",
                "messaging_operation_type": "send",
            }
            assert (
                value(
                    parsed,
                    "messaging_client_sent_messages_total",
                    messaging_system="nats",
                    meshgate_connector="edge",
                    error_type="",
                    **send,
                )
                == 12
            )
            assert (
                value(
                    parsed,
                    "messaging_client_sent_messages_total",
                    messaging_system="rabbitmq",
                    meshgate_connector="ops",
                    error_type="",
                    **send,
                )
                == 4
            )
            consumed = {
                labels: v
                for (name, labels), v in parsed.items()
                if name == "messaging_client_consumed_messages_total"
            }
            by_destination = {
                dict(labels)["messaging_destination_name"]: v for labels, v in consumed.items()
            }
            assert by_destination == {f"adm.{run}.in.orders": 15, f"adm.{run}.in.audit": 6}
            process = {
                dict(labels)["meshgate_route"]: v
                for (name, labels), v in parsed.items()
                if name == "messaging_process_duration_seconds_count"
            }
            assert process == {"orders": 10, "audit": 4}
            operation = {
                dict(labels)["meshgate_connector"]: v
                for (name, labels), v in parsed.items()
                if name == "messaging_client_operation_duration_seconds_count"
            }
            assert operation == {"edge": 12, "ops": 4}

            status, routes = await get(http, base + "/api/routes")
            assert status == 200
            by_name = {route["name"]: route for route in routes["routes"]}
            orders = by_name["orders"]
            assert orders["counters"]["delivered"] == 10
            assert orders["counters"]["dead_lettered"] == 2
            assert orders["state"] == "consuming"
            assert orders["in_flight"] == 0
            assert orders["filter"] == "type LIKE 'com.acme.order.%'"
            assert orders["source"]["subject"] == f"adm.{run}.in.orders"
            assert "InvalidEvent" in orders["last_error"] or "time" in orders["last_error"]
            assert orders["latency"]["count"] == 10
            assert 0 < orders["latency"]["p50_ms"] <= orders["latency"]["p99_ms"]
            assert by_name["audit"]["counters"]["undeliverable"] == 2

            status, connectors = await get(http, base + "/api/connectors")
            assert status == 200
            by_name = {c["name"]: c for c in connectors["connectors"]}
            assert by_name["ops"]["type"] == "amqp"
            assert by_name["ops"]["state"] == "up"
            assert by_name["ops"]["published"] == 4
            assert by_name["edge"]["published"] == 12
            assert by_name["edge"]["publish_latency"]["count"] == 12
            # Credentials never leave the process: the RabbitMQ URL's password is masked.
            assert "guest:***@" in by_name["ops"]["options"]["url"]
            for path in ("/api/connectors", "/api/routes", "/readyz", "/metrics"):
                _status, body = await get(http, base + path)
                assert ":guest@" not in str(body), path
                assert TOKEN not in str(body), path

            # /api/events: what the follower got, then a live one; no data.
            seen = await read_events(sse, 15)
            outcomes = [e["outcome"] for e in seen]
            assert outcomes.count("delivered") == 10
            assert outcomes.count("filtered") == 3
            assert outcomes.count("dead_lettered") == 2
            assert all(e["route"] == "orders" and "data" not in e for e in seen)
            delivered = [e for e in seen if e["outcome"] == "delivered"]
            assert delivered[0]["attributes"]["type"] == "com.acme.order.created"
            assert delivered[0]["attributes"]["id"].startswith(run)
            lettered = [e for e in seen if e["outcome"] == "dead_lettered"]
            assert "time" in lettered[0]["error"]
            message = nats_binding.to_message(event(run, 999), Mode.BINARY)
            await js.publish(f"adm.{run}.in.orders", message.data, headers=message.headers)
            (live,) = await read_events(sse, 1)
            assert live["outcome"] == "delivered"
            assert live["attributes"]["id"] == f"{run}-999"
            sse.close()
            # A later client first gets what was kept, of every route: the audit route's
            # two undeliverable events among them.
            async with http.get(base + "/api/events", headers=AUTH) as later:
                kept = await read_events(later, 16 + 6)
            assert {e["route"] for e in kept} == {"orders", "audit"}
            stored = [e for e in kept if e["outcome"] == "undeliverable"]
            assert len(stored) == 2 and all(e["route"] == "audit" for e in stored)
            async with http.get(base + "/api/events?route=nope", headers=AUTH) as response:
                assert response.status == 404
    finally:
        with contextlib.suppress(Exception):
            await js.delete_stream(stream)
        await client.close()


async def test_readyz_follows_a_connector_outage(tmp_path: Path, nats_url: str) -> None:
    """503 (with the reason) while a route's broker is down, 200 again once it is back."""
    run = uuid.uuid4().hex[:8]
    private = PrivateNats().start()
    try:
        config = {
            "gateway": {
                "id": f"ready-{run}",
                "drain_timeout_seconds": 2,
                "state_dir": str(tmp_path / "state"),
                "admin": {"listen": "127.0.0.1:0"},
            },
            "connectors": {
                "edge": {"type": "nats", "servers": [nats_url]},
                "lab": {
                    "type": "nats",
                    "servers": [private.url],
                    "reconnect_wait": 0.2,
                    "reconnect_jitter": 0.1,
                },
            },
            "routes": [
                {
                    "name": "steady",
                    "from": {"connector": "edge", "subject": f"rdy.{run}.a"},
                    "to": [{"connector": "edge", "subject": f"rdy.{run}.b", "jetstream": False}],
                },
                {
                    "name": "outage",
                    "from": {"connector": "lab", "subject": f"rdy.{run}.c"},
                    "to": [{"connector": "edge", "subject": f"rdy.{run}.d", "jetstream": False}],
                },
            ],
        }
        async with running(config, tmp_path) as admin, aiohttp.ClientSession() as http:
            url = admin.url + "/readyz"

            async def status_is(code: int) -> dict[str, Any] | None:
                async with http.get(url) as response:
                    body: dict[str, Any] = await response.json()
                    return body if response.status == code else None

            await until(lambda: status_is(200))
            await asyncio.to_thread(private.stop)
            body = await until(lambda: status_is(503))
            assert body["ready"] is False
            assert body["connectors"]["lab"]["state"] == "reconnecting"
            assert body["connectors"]["edge"]["state"] == "up"
            assert body["routes"]["steady"]["state"] == "consuming"
            assert body["routes"]["outage"]["state"] != "consuming"
            assert "lab" in body["routes"]["outage"]["reason"]
            async with http.get(admin.url + "/metrics") as response:
                parsed = samples(await response.text())
            assert value(parsed, "meshgate_connector_up", connector="lab") == 0
            assert value(parsed, "meshgate_connector_up", connector="edge") == 1
            async with http.get(admin.url + "/healthz") as response:
                assert response.status == 200  # alive, though not ready

            await asyncio.to_thread(private.start)
            body = await until(lambda: status_is(200), seconds=60)
            assert body["connectors"]["lab"]["state"] == "up"
            assert body["connectors"]["lab"]["reconnects"] >= 1
            async with http.get(admin.url + "/metrics") as response:
                parsed = samples(await response.text())
            assert value(parsed, "meshgate_connector_up", connector="lab") == 1
            assert value(parsed, "meshgate_connector_reconnects_total", connector="lab") >= 1
    finally:
        await asyncio.to_thread(private.close)


async def test_meshgate_run_with_admin_flag(tmp_path: Path, nats_url: str) -> None:
    """``meshgate run --admin`` serves the API of a real gateway process; an unreadable
    token file stops it with status 2 and names the key."""
    run = uuid.uuid4().hex[:8]
    config: dict[str, Any] = {
        "gateway": {
            "id": f"cli-{run}",
            "drain_timeout_seconds": 2,
            "state_dir": str(tmp_path / "state"),
        },
        "connectors": {"edge": {"type": "nats", "servers": [nats_url]}},
        "routes": [
            {
                "name": "r",
                "from": {"connector": "edge", "subject": f"cli.{run}.a"},
                "to": [{"connector": "edge", "subject": f"cli.{run}.b", "jetstream": False}],
            }
        ],
    }
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    port = free_port()
    command = [sys.executable, "-m", "gateway.cli", "run", "--no-watch", str(path)]
    process = await asyncio.create_subprocess_exec(
        *command,
        "--admin",
        f"127.0.0.1:{port}",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with aiohttp.ClientSession() as http:

            async def ready() -> bool:
                assert process.returncode is None, "the gateway exited"
                try:
                    async with http.get(f"http://127.0.0.1:{port}/readyz") as response:
                        return response.status == 200
                except aiohttp.ClientError:
                    return False

            await until(ready)
            async with http.get(f"http://127.0.0.1:{port}/metrics") as response:
                parsed = samples(await response.text())
            assert value(parsed, "meshgate_connector_up", connector="edge") == 1
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()

    config["gateway"]["admin"] = {"listen": ":0", "token_file": str(tmp_path / "missing")}
    path.write_text(yaml.safe_dump(config))
    failed = await asyncio.create_subprocess_exec(
        *command, cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    async with asyncio.timeout(60):
        _out, err = await failed.communicate()
    assert failed.returncode == 2, err
    assert b"gateway.admin.token_file" in err and b"cannot read" in err


async def test_readyz_with_a_broker_down_at_start(tmp_path: Path, nats_url: str) -> None:
    """A connector whose broker is down at start: the gateway runs (partial
    availability), /readyz is 503 naming it, its route waits, the other consumes."""
    run = uuid.uuid4().hex[:8]
    closed = free_port()  # nothing listens here
    config = {
        "gateway": {
            "id": f"down-{run}",
            "drain_timeout_seconds": 2,
            "state_dir": str(tmp_path / "state"),
            "admin": {"listen": "127.0.0.1:0"},
        },
        "connectors": {
            "edge": {"type": "nats", "servers": [nats_url]},
            "nowhere": {"type": "nats", "servers": [f"nats://127.0.0.1:{closed}"]},
        },
        "routes": [
            {
                "name": "steady",
                "from": {"connector": "edge", "subject": f"down.{run}.a"},
                "to": [{"connector": "edge", "subject": f"down.{run}.b", "jetstream": False}],
            },
            {
                "name": "stranded",
                "from": {"connector": "nowhere", "subject": f"down.{run}.c"},
                "to": [{"connector": "edge", "subject": f"down.{run}.d", "jetstream": False}],
            },
        ],
    }
    async with running(config, tmp_path) as admin, aiohttp.ClientSession() as http:

        async def steady_consumes() -> dict[str, Any] | None:
            async with http.get(admin.url + "/readyz") as response:
                body: dict[str, Any] = await response.json()
                assert response.status == 503
                return body if body["routes"]["steady"]["state"] == "consuming" else None

        body = await until(steady_consumes)
        assert body["ready"] is False
        assert body["connectors"]["edge"]["state"] == "up"
        assert body["connectors"]["nowhere"]["state"] in {"starting", "reconnecting"}
        stranded = body["routes"]["stranded"]
        assert stranded["state"] == "waiting"
        assert "'nowhere'" in stranded["reason"]
        async with http.get(admin.url + "/metrics") as response:
            parsed = samples(await response.text())
        assert value(parsed, "meshgate_connector_up", connector="nowhere") == 0
        assert value(parsed, "meshgate_connector_up", connector="edge") == 1
