"""The /ui web view in headless Chromium (Debian ``chromium``, driven by Playwright).

A gateway on the loopback NATS and RabbitMQ, with a bearer token: the page gets the
token from its URL fragment, shows both connectors up, the mesh graph, counters that
follow the events sent, each event in the live stream, a dead letter and an entry of
the local dead-letter store. ``MESHGATE_UI_SCREENSHOT=path`` saves a screenshot there
(docs/img/ui.png is made that way).

Chromium missing is a FAILURE, not a skip: ``scripts/bootstrap.sh`` installs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import nats
import pytest
import yaml

from gateway.admin import AdminServer, observed
from gateway.config import load_config
from gateway.runtime import Gateway
from routing.bindings import Mode
from routing.bindings import nats as nats_binding
from routing.event import CloudEvent

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

CHROMIUM = os.environ.get("MESHGATE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TOKEN = "ui-test-token"


def chromium() -> str:
    path = shutil.which(CHROMIUM) or (CHROMIUM if os.access(CHROMIUM, os.X_OK) else None)
    if path is None:
        pytest.fail(
            f"the /ui test needs Debian's chromium at {CHROMIUM} (or MESHGATE_CHROMIUM): "
            "run scripts/bootstrap.sh as root, or `apt-get install -y chromium`"
        )
    return path


async def until(check: Callable[[], Any], seconds: float = 30.0, what: str = "") -> Any:
    deadline = time.monotonic() + seconds
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"not seen within {seconds} s: {what}")
        await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def gateway_with_admin(config: dict[str, Any], tmp_path: Path) -> AsyncIterator[AdminServer]:
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


async def test_ui_shows_the_live_mesh(tmp_path: Path, nats_url: str, rabbitmq_url: str) -> None:
    from playwright.async_api import async_playwright

    executable = chromium()
    run = uuid.uuid4().hex[:8]
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    config = {
        "gateway": {
            "id": f"ui-{run}",
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
                "from": {"connector": "edge", "subject": f"ui.{run}.orders"},
                "to": [
                    {
                        "connector": "ops",
                        "exchange": "amq.topic",
                        "routing_key": f"ui.{run}.orders",
                        "mandatory": False,
                    },
                    {"connector": "edge", "subject": f"ui.{run}.copy", "jetstream": False},
                ],
                "dead_letter": {
                    "connector": "edge",
                    "subject": f"ui.{run}.dlq",
                    "jetstream": False,
                },
            },
            {
                "name": "legacy",
                "from": {"connector": "edge", "subject": f"ui.{run}.legacy"},
                "to": [{"connector": "edge", "subject": f"ui.{run}.never", "jetstream": False}],
            },
        ],
    }
    client = await nats.connect(nats_url)
    try:
        async with (
            gateway_with_admin(config, tmp_path) as admin,
            async_playwright() as playwright,
        ):
            # The page's files need no token (a browser cannot send one to open a
            # page, and they hold no data); the API still does.
            async with aiohttp.ClientSession() as http:
                for path, status in (
                    ("/ui", 200),
                    ("/ui/ui.js", 200),
                    ("/ui/ui.css", 200),
                    ("/ui/missing.js", 404),
                    ("/api/deadletters", 401),
                    ("/api/routes", 401),
                ):
                    async with http.get(admin.url + path) as response:
                        assert response.status == status, path
            browser = await playwright.chromium.launch(
                executable_path=executable, args=CHROMIUM_ARGS, headless=True
            )
            try:
                page = await browser.new_page(viewport={"width": 1280, "height": 1000})
                await page.goto(f"{admin.url}/ui#token={TOKEN}")
                # The token left the address bar; both connectors are shown up.
                await until(lambda: "#token" not in page.url, what="token removed from the URL")
                for name in ("edge", "ops"):
                    state = page.locator(
                        f'#connectors tr[data-connector="{name}"] [data-field="state"]'
                    )
                    await until(state.count, what=f"connector {name} row")
                    assert (await state.text_content()) == "up"
                await until(lambda: _text_is(page, "#readiness", "ready"), what="ready badge")
                # The graph: a node per connector and side, an edge per target.
                # (drawn once the page has the routes: wait for it, do not race it)
                edge_nodes = page.locator('#graph g.node[data-connector="edge"]')
                orders_edges = page.locator('#graph g[data-route="orders"]')

                async def graph_drawn() -> bool:
                    return await edge_nodes.count() == 2 and await orders_edges.count() == 3

                await until(graph_drawn, what="graph: 2 edge nodes, 3 orders edges")
                # The stream is live before events are sent.
                await until(lambda: _text_is(page, "#events-state", "(live)"), what="stream")

                for n in range(3):
                    event = CloudEvent(
                        id=f"ui-{run}-{n}",
                        source="urn:test:ui",
                        type="com.acme.order.created",
                        datacontenttype="application/json",
                        data=b'{"n":%d}' % n,
                    )
                    message = nats_binding.to_message(event, Mode.BINARY)
                    await client.publish(
                        f"ui.{run}.orders", message.data, headers=dict(message.headers or {})
                    )
                await client.publish(f"ui.{run}.orders", b"not a cloudevent")
                await client.publish(f"ui.{run}.legacy", b"not a cloudevent either")
                await client.flush()

                delivered = page.locator('#routes tr[data-route="orders"] [data-field="delivered"]')
                await until(
                    lambda: _text_is(page, delivered, "3"), what="orders delivered counter = 3"
                )
                for n in range(3):
                    item = page.locator(f'#events li[data-id="ui-{run}-{n}"]')
                    await until(item.count, what=f"event ui-{run}-{n} in the stream")
                    assert "delivered" in (await item.first.text_content() or "")
                dead = page.locator(
                    '#dead-letter-counts tr[data-route="orders"] [data-field="dead_lettered"]'
                )
                await until(lambda: _text_is(page, dead, "1"), what="one dead letter")
                stored = page.locator(
                    '#dead-letter-counts tr[data-route="legacy"] [data-field="stored"]'
                )
                await until(lambda: _text_is(page, stored, "1"), what="one local store entry")
                async with (
                    aiohttp.ClientSession() as http,
                    http.get(
                        admin.url + "/api/deadletters",
                        headers={"Authorization": f"Bearer {TOKEN}"},
                    ) as response,
                ):
                    letters = await response.json()
                assert letters["total"] == 1 and letters["per_route"] == {"legacy": 1}
                (entry,) = letters["entries"]
                assert entry["route"] == "legacy" and entry["reason"] == "NotACloudEvent"
                assert "payload" not in entry and "headers" not in entry
                store_entry = page.locator("#store li").first
                assert "NotACloudEvent" in (await store_entry.text_content() or "")
                failures = page.locator('#events li[data-outcome="undeliverable"]')
                await until(failures.count, what="the undeliverable outcome in the stream")
                shot = os.environ.get("MESHGATE_UI_SCREENSHOT")
                await page.screenshot(path=shot or str(tmp_path / "ui.png"), full_page=True)

                # Without a token (a new browser context: no sessionStorage) the page
                # asks for one, and shows the gateway once it is given.
                fresh = await browser.new_context()
                asking = await fresh.new_page()
                await asking.goto(f"{admin.url}/ui")
                await asking.locator("#login").wait_for(state="visible", timeout=15_000)
                assert await asking.locator("#connectors tbody tr").count() == 0
                await asking.fill("#token", "wrong")
                await asking.click("#login button")
                await until(
                    lambda: _text_is(asking, "#login-error", "that token was refused"),
                    what="a wrong token refused",
                )
                await asking.fill("#token", TOKEN)
                await asking.click("#login button")
                await asking.locator("#login").wait_for(state="hidden", timeout=15_000)
                rows = asking.locator('#connectors tr[data-connector="ops"]')
                await until(rows.count, what="connectors shown after the token was given")
                await fresh.close()
            finally:
                await browser.close()
    finally:
        await client.close()


async def test_ui_shows_the_whole_mesh(tmp_path: Path, nats_url: str, rabbitmq_url: str) -> None:
    """Two gateways announce themselves on one control channel; the /ui of the first
    draws both: each gateway, its routes and the brokers they read and write."""
    from playwright.async_api import async_playwright

    executable = chromium()
    run = uuid.uuid4().hex[:8]
    mesh = {"connector": "edge", "subject": f"ui.{run}.control", "interval_seconds": 0.5}
    first = {
        "gateway": {
            "id": f"edge-{run}",
            "drain_timeout_seconds": 5,
            "admin": {"listen": "127.0.0.1:0"},
            "mesh": mesh,
        },
        "connectors": {
            "edge": {"type": "nats", "servers": [nats_url]},
            "ops": {"type": "amqp", "url": rabbitmq_url},
        },
        "routes": [
            {
                "name": "orders",
                "from": {"connector": "edge", "subject": f"ui.{run}.orders"},
                "to": [{"connector": "ops", "exchange": "amq.topic", "routing_key": "orders"}],
            }
        ],
    }
    second = {
        "gateway": {
            "id": f"core-{run}",
            "drain_timeout_seconds": 5,
            "admin": {"listen": "127.0.0.1:0"},
            "mesh": mesh,
        },
        "connectors": {"edge": {"type": "nats", "servers": [nats_url]}},
        "routes": [
            {
                "name": "telemetry",
                "from": {"connector": "edge", "subject": f"ui.{run}.telemetry"},
                "to": [{"connector": "edge", "subject": f"ui.{run}.core", "jetstream": False}],
            }
        ],
    }
    (tmp_path / "second").mkdir()
    async with (
        gateway_with_admin(first, tmp_path) as admin,
        gateway_with_admin(second, tmp_path / "second"),
        async_playwright() as playwright,
    ):
        browser = await playwright.chromium.launch(
            executable_path=executable, args=CHROMIUM_ARGS, headless=True
        )
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 1000})
            await page.goto(f"{admin.url}/ui")
            for gid, route in ((f"edge-{run}", "orders"), (f"core-{run}", "telemetry")):
                row = page.locator(f'#mesh-gateways tr[data-gateway="{gid}"]')
                await until(row.count, what=f"gateway {gid} in the mesh table")
                routes = row.locator('[data-field="routes"]')
                await until(lambda r=routes, n=route: _text_is(page, r, n), what=f"{gid} routes")
                node = page.locator(f'#mesh-graph g.node[data-gateway="{gid}"]')
                assert await node.count() == 1
                edges = page.locator(f'#mesh-graph g[data-gateway="{gid}"][data-route="{route}"]')
                assert await edges.count() == 2  # broker -> gateway -> broker
            # the brokers: NATS read by both, RabbitMQ written by the first only
            first_row = f'#mesh-gateways tr[data-gateway="edge-{run}"]'
            brokers = await page.locator(f'{first_row} [data-field="brokers"]').text_content()
            assert brokers is not None and "amqp" in brokers and "nats" in brokers
            assert await page.locator('#mesh-graph g.node[data-side="target"]').count() == 2
            state = await page.locator("#mesh-state").text_content()
            assert state is not None and state.startswith("(2 gateways on edge")
            shot = os.environ.get("MESHGATE_UI_MESH_SCREENSHOT")
            await page.screenshot(path=shot or str(tmp_path / "mesh.png"), full_page=True)
        finally:
            await browser.close()


async def _text_is(page: Any, selector: Any, expected: str) -> bool:
    locator = page.locator(selector) if isinstance(selector, str) else selector
    if await locator.count() == 0:
        return False
    return (await locator.first.text_content() or "").strip() == expected
