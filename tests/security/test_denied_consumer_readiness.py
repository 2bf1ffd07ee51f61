"""A JetStream consumer the server's permissions refuse, through a running gateway:
the route is not ready and /readyz says why, the source keeps retrying with backoff,
and it consumes as soon as the server grants the permission (config reload, SIGHUP),
without a gateway restart."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import nats
import pytest
import yaml
from nats.js.api import StreamConfig

from gateway.admin import observed
from gateway.config import load_config
from gateway.runtime import Gateway
from tests.brokers import unique_name
from tests.security.brokers import PASSWORD, USER, JetStreamUsersNats

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


async def until(check: Callable[[], Awaitable[Any]], seconds: float) -> Any:
    deadline = time.monotonic() + seconds
    while not (result := await check()):
        assert time.monotonic() < deadline, f"condition not met within {seconds} s"
        await asyncio.sleep(0.1)
    return result


async def test_denied_consumer_makes_the_route_not_ready_until_granted(
    nats_js_users: JetStreamUsersNats, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    stream, durable = unique_name("S"), unique_name("gw")
    admin_user, admin_password = JetStreamUsersNats.ADMIN
    admin = await nats.connect(nats_js_users.url, user=admin_user, password=admin_password)
    await admin.jetstream().add_stream(StreamConfig(name=stream, subjects=[f"{stream}.>"]))
    out: list[bytes] = []

    async def collect(msg: nats.aio.msg.Msg) -> None:
        out.append(msg.data)

    await admin.subscribe(f"{stream}-out", cb=collect)
    await admin.jetstream().publish(f"{stream}.in", b"first")
    (tmp_path / "gw-password").write_text(PASSWORD + "\n")
    (tmp_path / "admin-password").write_text(admin_password + "\n")
    config = {
        "gateway": {
            "id": unique_name("deny"),
            "drain_timeout_seconds": 5,
            "state_dir": str(tmp_path / "state"),
            "admin": {"listen": "127.0.0.1:0"},
        },
        "connectors": {
            "limited": {
                "type": "nats",
                "servers": [nats_js_users.url],
                "user": USER,
                "password_file": str(tmp_path / "gw-password"),
            },
            "full": {
                "type": "nats",
                "servers": [nats_js_users.url],
                "user": admin_user,
                "password_file": str(tmp_path / "admin-password"),
            },
        },
        "routes": [
            {
                "name": "guarded",
                "from": {
                    "connector": "limited",
                    "subject": f"{stream}.in",
                    "jetstream": {"stream": stream, "durable": durable},
                },
                "ingress": {"type": "com.example.raw", "source": "urn:test:deny"},
                "to": [{"connector": "full", "subject": f"{stream}-out", "jetstream": False}],
            }
        ],
    }
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    gateway = Gateway(load_config(path))
    try:
        async with observed(gateway) as server, aiohttp.ClientSession() as http:
            assert server is not None
            await gateway.start()

            async def readiness() -> tuple[int, dict[str, Any]]:
                async with http.get(server.url + "/readyz") as response:
                    return response.status, await response.json()

            async def refused() -> dict[str, Any] | None:
                status, body = await readiness()
                route = body["routes"]["guarded"]
                return route if status == 503 and "refused" in route["reason"] else None

            with caplog.at_level(logging.ERROR, logger="meshgate"):
                route = await until(refused, 20)
                assert route["state"] == "waiting"
                assert repr(durable) in route["reason"] and "permission" in route["reason"]
                # Retrying with backoff (0.5 s, 1 s, ...), each refusal logged at ERROR.
                await until(lambda: asyncio.sleep(0, caplog.text.count("resubscribing") >= 2), 20)
            assert out == []

            nats_js_users.grant_consumers()
            await until(lambda: asyncio.sleep(0, out == [b"first"]), 45)
            _status, body = await until(_ready(readiness), 20)
            assert body["routes"]["guarded"] == {"state": "consuming", "reason": ""}
    finally:
        await gateway.stop()
        await admin.close()


def _ready(
    readiness: Callable[[], Awaitable[tuple[int, dict[str, Any]]]],
) -> Callable[[], Awaitable[tuple[int, dict[str, Any]] | None]]:
    async def check() -> tuple[int, dict[str, Any]] | None:
        status, body = await readiness()
        return (status, body) if status == 200 else None

    return check
