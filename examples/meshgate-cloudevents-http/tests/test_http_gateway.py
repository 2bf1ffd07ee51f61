"""End to end through a meshgate gateway: http -> NATS JetStream -> http, real sockets.

The gateway loads ``type: http`` through the ``meshgate.connectors`` entry point of the
installed plugin (no registration in code), like any deployment would.

Routes of the gateway under test::

    POST /in  (http source)  ->  NATS JetStream subject <run>.events
    NATS JetStream <run>.events  ->  POST http://<peer>/hook/<subject>  (http target)
    POST /reject -> a subject no stream captures (refused), dead letter <run>.dlq
    POST /webhook (a plain, non-CloudEvent request) -> ingress -> <run>.dlq

so one event crosses both directions of the plugin, and the HTTP answers are checked
against what the gateway did: 204 only after JetStream confirmed (or the dead letter
did), 400 for a malformed event.
"""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import nats
import orjson
import pytest
from aiohttp import web
from http_helpers import sample_event, unique, until
from meshgate_cloudevents_http import HttpConnector
from meshgate_cloudevents_http.binding import BATCH_CONTENT_TYPE, from_request, to_message
from nats.js.api import StreamConfig

from connectors import default_registry
from gateway.config import load_config
from gateway.runtime import Gateway
from routing.formats import json as json_format


class Hook:
    """The webhook the gateway delivers to (the http target's receiver)."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, str], bytes]] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append((request.path, dict(request.headers), await request.read()))
        return web.Response(status=204)


@pytest.fixture
async def hook() -> AsyncIterator[Hook]:
    hook = Hook()
    app = web.Application()
    app.router.add_post("/{tail:.*}", hook.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    hook.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield hook
    finally:
        await runner.cleanup()


@pytest.fixture
async def gateway(hook: Hook, nats_url: str, tmp_path: Path) -> AsyncIterator[tuple[Gateway, str]]:
    run = unique("httpe2e")
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name=run, subjects=[f"{run}.events", f"{run}.dlq"]))
    config = tmp_path / "gateway.yaml"
    config.write_text(
        textwrap.dedent(f"""
        gateway: {{id: {run}, state_dir: "{tmp_path / "state"}"}}
        connectors:
          web: {{type: http, host: 127.0.0.1, port: 0, retry_initial_seconds: 0.05}}
          edge: {{type: nats, servers: ["{nats_url}"]}}
        routes:
          - name: http-in
            from: {{connector: web, path: /in}}
            to: [{{connector: edge, subject: "{run}.events"}}]
          - name: http-out
            from:
              connector: edge
              subject: "{run}.events"
              jetstream: {{stream: {run}, durable: {run}-out}}
            to: [{{connector: web, url: "{hook.url}/hook/{{subject}}"}}]
          - name: refused
            from: {{connector: web, path: /reject}}
            to: [{{connector: edge, subject: "{run}.nowhere"}}]
            dead_letter: {{connector: edge, subject: "{run}.dlq"}}
          - name: webhook
            from: {{connector: web, path: /webhook}}
            ingress: {{type: com.example.webhook, source: "https://hooks.example.com{{topic}}"}}
            to: [{{connector: edge, subject: "{run}.dlq"}}]
        """)
    )
    gateway = Gateway(load_config(config))
    await gateway.start()
    web_connector = gateway.connectors["web"]
    assert isinstance(web_connector, HttpConnector)
    base = f"http://127.0.0.1:{web_connector.port}"
    try:
        yield gateway, base
    finally:
        await gateway.stop()
        await js.delete_stream(run)
        await nc.close()


async def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    """POST, sending again while the route is still starting (503 + Retry-After)."""
    async with aiohttp.ClientSession() as session:
        for _ in range(100):
            async with session.post(url, data=body, headers=headers) as answer:
                text = await answer.text()
                if answer.status != 503 or "yet" not in text:
                    return answer.status, text
            await asyncio.sleep(0.05)  # the route starts within milliseconds
    return 503, text


def test_the_plugin_is_found_through_its_entry_point() -> None:
    assert default_registry.get("http") is HttpConnector
    (installed,) = [t for t in default_registry.installed() if t.name == "http"]
    assert installed.distribution == "meshgate-cloudevents-http" and not installed.builtin


async def test_http_to_nats_to_http(gateway: tuple[Gateway, str], hook: Hook) -> None:
    _, base = gateway
    event = sample_event(1, subject="orders")
    message = to_message(event)
    status, text = await post(f"{base}/in", message.body, message.headers)
    assert status == 204, text  # JetStream confirmed before the answer
    assert await until(lambda: len(hook.received) == 1, timeout=15)
    ((path, headers, body),) = hook.received
    assert path == "/hook/orders"  # the target url template, rendered per event
    (received,) = from_request(headers.items(), body) or []
    got = received.event
    assert got.data == event.data and got.datacontenttype == "application/json"
    for name, value in event.canonical_attributes().items():
        assert got.canonical_attributes()[name] == value, name  # nothing lost or rewritten


async def test_batch_through_the_gateway(gateway: tuple[Gateway, str], hook: Hook) -> None:
    _, base = gateway
    events = [sample_event(n, subject=f"b{n}") for n in range(5)]
    body = orjson.dumps([json_format.encode_object(e) for e in events])
    status, text = await post(f"{base}/in", body, {"Content-Type": BATCH_CONTENT_TYPE})
    assert status == 204, text
    assert await until(lambda: len(hook.received) == 5, timeout=15)
    assert sorted(path for path, _, _ in hook.received) == [f"/hook/b{n}" for n in range(5)]


async def test_dead_lettered_event_is_answered_2xx(
    gateway: tuple[Gateway, str], nats_url: str
) -> None:
    """Refused by its target (no stream captures the subject) and dead-lettered: the
    gateway took responsibility, so the sender gets 204, and the dead letter holds it."""
    running, base = gateway
    message = to_message(sample_event(9))
    status, text = await post(f"{base}/reject", message.body, message.headers)
    assert status == 204, text
    assert running.stats["refused"].dead_lettered == 1
    run = running.config.gateway.id
    nc = await nats.connect(nats_url)
    try:
        dead = await nc.jetstream().get_last_msg(run, f"{run}.dlq")
        headers = dead.headers or {}
        assert headers.get("ce-type") == "io.meshgate.deadletter"
        assert headers.get("ce-dloriginalid") == "evt-9" and dead.data == b'{"n":9}'
        assert headers.get("ce-dladdress") == "/reject"
    finally:
        await nc.close()


async def test_malformed_event_is_400_through_the_gateway(gateway: tuple[Gateway, str]) -> None:
    _, base = gateway
    headers = {"ce-specversion": "1.0", "ce-id": "1", "ce-source": "/s", "ce-type": "t"}
    status, text = await post(f"{base}/in", b"x", {**headers, "ce-time": "yesterday"})
    assert status == 400 and "time" in text


async def test_plain_webhook_is_wrapped_by_ingress(
    gateway: tuple[Gateway, str], nats_url: str
) -> None:
    """A POST that is no CloudEvent (a legacy webhook) becomes one by the route's
    ingress rules, data and content type unchanged."""
    running, base = gateway
    status, text = await post(
        f"{base}/webhook", b'{"order": 42}', {"Content-Type": "application/json"}
    )
    assert status == 204, text
    run = running.config.gateway.id
    nc = await nats.connect(nats_url)
    try:
        wrapped = await nc.jetstream().get_last_msg(run, f"{run}.dlq")
    finally:
        await nc.close()
    headers = wrapped.headers or {}
    assert headers.get("ce-type") == "com.example.webhook"
    assert headers.get("ce-source") == "https://hooks.example.com/webhook"
    assert headers.get("ce-datacontenttype") == "application/json"
    assert wrapped.data == b'{"order": 42}'
