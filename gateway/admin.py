"""The admin HTTP server, in the gateway's own event loop (aiohttp; see
docs/decisions/0003-admin-http-server.md and docs/observability.md).

Endpoints: ``/healthz`` (the loop answers), ``/readyz`` (every connector up and every
route's source consuming, else 503), ``/metrics`` (Prometheus text from
``gateway.telemetry``), ``/api/routes`` and ``/api/connectors`` (config summary and
live counters, never credentials), ``/api/mesh`` (the mesh view's peer table),
``/api/events`` (Server-Sent Events of each route's outcomes, ``gateway.events``),
``/api/deadletters`` (the local dead-letter store's entries, without payloads),
``/ui`` (the live web view: static files from ``gateway/ui``, which read the API).
With ``token_file`` every request needs ``Authorization: Bearer <token>``, except the
static files of ``/ui`` (they hold no data; the page sends the token on each API call).

Everything here only reads the runtime's state; it never changes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import re
from collections.abc import AsyncIterator
from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp import web

from connectors.base import HealthState
from connectors.redact import redact_url
from gateway.config import AdminSection
from gateway.dlstore import StoreError
from gateway.errors import ConfigError, ConfigProblem
from gateway.events import EventLog, Recorded, to_json
from gateway.runtime import Gateway, RouteStats
from gateway.stats import DurationHistogram
from gateway.telemetry import OUTCOMES, Telemetry, otlp_requested

__all__ = ["AdminServer", "observed", "readiness"]

log = logging.getLogger("meshgate.admin")

PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"
"""The classic text format that ``prometheus_client.generate_latest`` writes (every
Prometheus version reads it)."""

DEAD_LETTERS_SHOWN = 100
"""Entries of the local dead-letter store /api/deadletters lists (the newest)."""


def _ui_files() -> dict[str, tuple[str, bytes]]:
    """name -> (content type, bytes) of the web view, read once from the package."""
    types = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}
    folder = resources.files("gateway") / "ui"
    files: dict[str, tuple[str, bytes]] = {}
    for item in folder.iterdir():
        suffix = "." + item.name.rpartition(".")[2]
        if suffix in types:
            files[item.name] = (types[suffix], item.read_bytes())
    return files


UI_FILES = _ui_files()


def _is_ui(path: str) -> bool:
    return path == "/ui" or path.startswith("/ui/")


_SECRET_KEYS = re.compile(r"pass|secret|token|cred|seed|sasl_plain|private", re.IGNORECASE)


def _safe(value: Any, key: str = "") -> Any:
    """A JSON-ready copy of connector options without credentials: secret-looking keys
    masked, passwords (and NATS tokens) cut out of URLs."""
    if isinstance(value, dict):
        return {k: _safe(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_safe(item, key) for item in value]
    if _SECRET_KEYS.search(key) and value not in (None, "", False):
        return "***"
    if isinstance(value, str) and "://" in value:
        return redact_url(value, user_is_secret=True)
    return value


def _ms(histogram: DurationHistogram, q: float) -> float | None:
    value = histogram.quantile(q)
    return None if value is None else round(value * 1000, 3)


def _latency(histogram: DurationHistogram) -> dict[str, Any]:
    return {
        "count": histogram.count,
        "p50_ms": _ms(histogram, 0.5),
        "p90_ms": _ms(histogram, 0.9),
        "p99_ms": _ms(histogram, 0.99),
        "max_ms": round(histogram.maximum * 1000, 3) if histogram.count else None,
    }


def _connector_state(gateway: Gateway, name: str) -> dict[str, Any]:
    health = gateway.connectors[name].health
    return {
        "state": health.state.value,
        "reason": health.detail,
        "reconnects": health.reconnects,
        "dropped": health.dropped,
    }


def _down(gateway: Gateway, names: list[str]) -> str:
    """'a' is starting: detail; 'b' is reconnecting (the connectors not up, explained)."""
    parts = []
    for name in dict.fromkeys(names):
        connector = gateway.connectors.get(name)
        if connector is None:
            parts.append(f"connector {name!r} is missing")
        elif connector.health.state is not HealthState.UP:
            health = connector.health
            detail = f": {health.detail}" if health.detail else ""
            parts.append(f"connector {name!r} is {health.state.value}{detail}")
    return "; ".join(parts)


def _route_states(gateway: Gateway) -> dict[str, dict[str, Any]]:
    """Each route's source: consuming or not, and why not."""
    states: dict[str, dict[str, Any]] = {}
    for pipeline in list(gateway.pipelines):
        group = pipeline.group
        consumer = pipeline.consumer
        if pipeline.stopping:
            state, reason = "stopped", "stopping"
        elif consumer is None:
            # Not started: the runtime starts a route once its connectors are up.
            used = [group.connector]
            for route in group.routes:
                used += [target.connector for target in route.targets]
                if route.dead_letter is not None:
                    used.append(route.dead_letter.connector)
            state = "waiting"
            reason = _down(gateway, used) or "the source has not started yet"
        elif consumer.done():
            state, reason = "stopped", "the consume loop ended"
        elif reason := _down(gateway, [group.connector]):
            state = "waiting"
        elif problem := pipeline.source_problem():
            state, reason = "waiting", f"the source failed, retrying with backoff: {problem}"
        elif pipeline.stream is None:
            state, reason = "waiting", "resubscribing after a source failure"
        else:
            state, reason = "consuming", ""
        for route in group.routes:
            states[route.name] = {"state": state, "reason": reason}
    for name in gateway.stats:
        states.setdefault(name, {"state": "waiting", "reason": "no pipeline"})
    return states


def readiness(gateway: Gateway) -> tuple[bool, dict[str, Any]]:
    """(ready, body): ready when every connector is up and every route's source consumes."""
    connectors = {name: _connector_state(gateway, name) for name in list(gateway.connectors)}
    routes = _route_states(gateway)
    ready = all(c["state"] == HealthState.UP.value for c in connectors.values()) and all(
        r["state"] == "consuming" for r in routes.values()
    )
    return ready, {"ready": ready, "connectors": connectors, "routes": routes}


def _counters(stats: RouteStats) -> dict[str, int]:
    counters = {outcome: getattr(stats, field_name) for outcome, field_name in OUTCOMES}
    counters["retries"] = stats.retries
    return counters


def _read_token(path: Path, config_file: str) -> str:
    """The bearer token (surrounding whitespace removed); a ``ConfigError`` if unusable."""
    problem = ""
    try:
        text = path.expanduser().read_text(encoding="utf-8").strip()
    except OSError as exc:
        text, problem = "", f"cannot read the token file {str(path)!r}: {exc.strerror}"
    else:
        if not text:
            problem = f"the token file {str(path)!r} is empty"
    if problem:
        where = ConfigProblem(config_file, None, None, "gateway.admin.token_file", problem)
        raise ConfigError([where])
    return text


class AdminServer:
    """The aiohttp application and its listening socket: ``start``, ``url``, ``stop``."""

    def __init__(self, gateway: Gateway, telemetry: Telemetry, settings: AdminSection) -> None:
        self.gateway = gateway
        self.telemetry = telemetry
        self.settings = settings
        self._token = (
            _read_token(settings.token_file, gateway.config.file) if settings.token_file else None
        )
        self._runner: web.AppRunner | None = None
        self.events = EventLog()
        self._closing = asyncio.Event()
        self.url = ""

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._authorize])
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/api/routes", self._routes)
        app.router.add_get("/api/connectors", self._connectors)
        app.router.add_get("/api/events", self._events)
        app.router.add_get("/api/deadletters", self._deadletters)
        app.router.add_get("/ui", self._ui)
        app.router.add_get("/ui/{name}", self._ui)
        app.router.add_get("/api/mesh", self._mesh)
        return app

    async def start(self) -> None:
        host, port = self.settings.address()
        # Event streams end on _closing; nothing else takes long to finish.
        runner = web.AppRunner(
            self.app(), access_log=None, handle_signals=False, shutdown_timeout=2.0
        )
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner
        self.gateway.recorder = self.events.record
        bound = runner.addresses[0]
        shown = f"[{bound[0]}]" if ":" in str(bound[0]) else str(bound[0])
        self.url = f"http://{shown}:{bound[1]}"
        log.info("admin server listening on %s", self.url)

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if self.gateway.recorder == self.events.record:
            self.gateway.recorder = None
            self.gateway.follower = None
        self._closing.set()
        if runner is not None:
            await runner.cleanup()

    @web.middleware
    async def _authorize(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if self._token is not None and not _is_ui(request.path):
            given = request.headers.get("Authorization", "")
            scheme, _, credential = given.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                credential.strip().encode(), self._token.encode()
            ):
                return web.json_response(
                    {"error": "a bearer token is required"},
                    status=401,
                    headers={"WWW-Authenticate": 'Bearer realm="meshgate"'},
                )
        response: web.StreamResponse = await handler(request)
        return response

    async def _healthz(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _readyz(self, _request: web.Request) -> web.Response:
        ready, body = readiness(self.gateway)
        return web.json_response(body, status=200 if ready else 503)

    async def _metrics(self, _request: web.Request) -> web.Response:
        return web.Response(
            body=self.telemetry.prometheus_text(), headers={"Content-Type": PROMETHEUS_TEXT}
        )

    async def _routes(self, _request: web.Request) -> web.Response:
        gateway = self.gateway
        states = _route_states(gateway)
        routes = []
        for route in gateway.config.table.routes:
            stats = gateway.stats.get(route.name, RouteStats())
            routes.append(
                {
                    "name": route.name,
                    "source": {
                        "connector": route.source_connector,
                        **_safe(route.source.model_dump(mode="json", exclude={"connector"})),
                    },
                    "targets": [target.describe() for target in route.targets],
                    "dead_letter": route.dead_letter.describe() if route.dead_letter else None,
                    "filter": route.filter_text,
                    "max_in_flight": route.max_in_flight,
                    "ordered": route.ordered,
                    **states.get(route.name, {}),
                    "counters": _counters(stats),
                    "in_flight": stats.in_flight,
                    "last_error": stats.last_error or None,
                    "last_error_at": stats.last_error_at or None,
                    "latency": _latency(stats.duration),
                }
            )
        return web.json_response({"gateway": gateway.config.gateway.id, "routes": routes})

    async def _events(self, request: web.Request) -> web.StreamResponse:
        """Server-Sent Events: the kept recent outcomes, then live ones, one JSON object
        each (``event:`` is the outcome). ``?route=NAME`` follows one route."""
        route = request.query.get("route")
        if route is not None and route not in self.gateway.stats:
            return web.json_response({"error": f"no route named {route!r}"}, status=404)
        show_data = self.settings.show_data
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        subscriber = self.events.subscribe(route)
        self.gateway.follower = self.events.record
        closing: asyncio.Future[Any] = asyncio.ensure_future(self._closing.wait())
        getting: asyncio.Future[Any] | None = None
        try:
            for entry in self.events.backlog(route):
                await _write_event(response, to_json(entry, show_data))
            while not closing.done():
                if getting is None:  # kept across heartbeats: no event is lost to a cancel
                    getting = asyncio.ensure_future(subscriber.queue.get())
                done, _ = await asyncio.wait(
                    {getting, closing}, timeout=HEARTBEAT, return_when=asyncio.FIRST_COMPLETED
                )
                if getting in done:
                    live: Recorded = getting.result()
                    getting = None
                    await _write_event(response, to_json(live, show_data))
                elif not done:
                    await response.write(b": keep-alive\n\n")
        except ConnectionResetError:
            pass  # the client went away
        finally:
            closing.cancel()
            if getting is not None:
                getting.cancel()
            self.events.unsubscribe(subscriber)
            if not self.events.subscribers:
                self.gateway.follower = None
        return response

    async def _deadletters(self, _request: web.Request) -> web.Response:
        """The local dead-letter store: per-route counts and the newest entries, never
        payloads or header values (``meshgate dlq show`` shows those)."""
        try:
            entries = await self.gateway.store.entries()
        except StoreError as exc:
            return web.json_response({"error": str(exc)}, status=503)
        counts: dict[str, int] = {}
        for entry in entries:
            counts[entry.route] = counts.get(entry.route, 0) + 1
        newest = entries[-DEAD_LETTERS_SHOWN:][::-1]
        return web.json_response(
            {
                "total": len(entries),
                "per_route": counts,
                "entries": [
                    {
                        "id": entry.id,
                        "stored_at": entry.stored_at,
                        "route": entry.route,
                        "connector": entry.connector,
                        "address": entry.address,
                        "event_id": entry.event_id,
                        "reason": entry.reason,
                        "error": entry.error,
                        "target": entry.target,
                        "attempts": entry.attempts,
                        "size": entry.size,
                    }
                    for entry in newest
                ],
            }
        )

    async def _ui(self, request: web.Request) -> web.StreamResponse:
        """The web view's files, from the package (works offline: no CDN)."""
        name = request.match_info.get("name", "index.html")
        found = UI_FILES.get(name)
        if found is None:
            raise web.HTTPNotFound()
        content_type, text = found
        return web.Response(
            body=text,
            content_type=content_type,
            charset="utf-8",
            headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
        )

    async def _connectors(self, _request: web.Request) -> web.Response:
        gateway = self.gateway
        connectors = []
        for name, connector in list(gateway.connectors.items()):
            sent = gateway.connector_stats.get(name)
            options = connector.options.model_dump(mode="json")
            connectors.append(
                {
                    "name": name,
                    "type": connector.options.type,
                    "options": _safe({k: v for k, v in options.items() if k != "type"}),
                    **_connector_state(gateway, name),
                    "published": sent.published if sent else 0,
                    "publish_failures": sent.failed if sent else 0,
                    "last_error": (sent.last_error if sent else "") or None,
                    "publish_latency": _latency(sent.duration if sent else DurationHistogram()),
                }
            )
        return web.json_response({"connectors": connectors})

    async def _mesh(self, _request: web.Request) -> web.Response:
        """The peer table of the mesh view (docs/mesh.md); ``enabled: false`` without
        ``gateway.mesh``."""
        from gateway.meshview import document

        return web.json_response(document(self.gateway))


@contextlib.asynccontextmanager
async def observed(gateway: Gateway) -> AsyncIterator[AdminServer | None]:
    """Metrics and the admin server for ``gateway`` while the block runs.

    Metrics are on when ``gateway.admin`` is configured or ``OTEL_METRICS_EXPORTER``
    names ``otlp``; the server listens only with ``gateway.admin``. It starts before
    the connectors, so ``/readyz`` answers 503 while they connect.
    """
    settings = gateway.config.gateway.admin
    if settings is None and not otlp_requested():
        yield None
        return
    telemetry = Telemetry(gateway)
    try:
        admin = AdminServer(gateway, telemetry, settings) if settings is not None else None
        if admin is not None:
            await admin.start()
        try:
            yield admin
        finally:
            if admin is not None:
                await admin.stop()
    finally:
        # In a thread: the last OTLP export may take its timeout, and must not stall
        # the loop (or deadlock with a receiver served by this very loop).
        await asyncio.to_thread(telemetry.shutdown)


HEARTBEAT = 15.0
"""Seconds between SSE comments on an idle stream (keeps proxies from closing it)."""


async def _write_event(response: web.StreamResponse, body: dict[str, Any]) -> None:
    data = json.dumps(body, separators=(",", ":"), default=str)
    await response.write(f"event: {body['outcome']}\ndata: {data}\n\n".encode())
