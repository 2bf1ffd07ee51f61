"""The gateway: all connectors and pipelines of one config: start, reload, stop.

Where the rest of the runtime lives (docs/delivery.md describes the contract):

- ``gateway.pipeline``: one pipeline per distinct route source: the consume loop
  (bounded in-flight), then each delivery planned and acted on;
- ``gateway.plan``: the pure "plan this delivery" step (decode -> verify -> ingress
  -> filter -> loop guard -> rendered targets), shared with ``routes check``;
- ``gateway.delivery``: publish with retries, the dead letter, the local store;
- ``gateway.inflight``: ordering lanes per key, in-progress heartbeats;
- ``gateway.stats``: the counters the admin API and metrics read.

Invariants (docs/delivery.md):
- nothing is acked before it is safe: a message that can be neither delivered nor
  dead-lettered (a permanent failure without a dead-letter target, or one the
  dead-letter target refuses too) is written to the local dead-letter store
  (``gateway.dlstore``, synced to disk) before the ack, so one poison message never
  stalls a route; without a dead-letter target, a retriable publish failure (an
  outage) is retried past ``max_attempts`` until it succeeds, so it holds its slot
  (backpressure);
- in-flight deliveries per source are bounded by the routes' ``max_in_flight``;
  the consume loop takes the next message only when a slot is free, so a slow or
  dead target slows the source instead of growing memory;
- with ``ordered: true`` deliveries sharing an ordering key are published one at
  a time in arrival order;
- ``stop()`` stops consuming, lets in-flight work finish (bounded by the drain
  timeout), then closes connectors so they commit what was acked.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from connectors.backoff import BackoffPolicy
from connectors.base import Connector, Delivery, HealthState
from connectors.errors import ConnectorError
from gateway.config import GatewayConfig
from gateway.dlstore import DeadLetterStore
from gateway.mesh import LoopGuard
from gateway.pipeline import Pipeline
from gateway.plan import NotACloudEvent
from gateway.stats import ConnectorStats, RouteStats
from gateway.throttle import LogThrottle
from routing.event import CloudEvent
from routing.router import SourceGroup

if TYPE_CHECKING:
    from gateway.meshview import ControlChannel
    from gateway.tracing import Tracing  # OpenTelemetry is imported only when tracing is on

__all__ = ["ConnectorStartFailed", "Gateway", "NotACloudEvent", "ReloadResult", "RouteStats"]

log = logging.getLogger("meshgate.runtime")

AnyConnector = Connector[Any, Any, Any]
Recorder = Callable[[str, str, CloudEvent | None, Delivery, BaseException | None], None]
"""(route, outcome, event or None, delivery, error or None)"""


PUBLISH_WARNING_SECONDS = 5.0
"""At most one 'publish to T failed' WARNING per route and target connector this often."""

CLOSE_TIMEOUT = 15.0
"""Longest a shutdown step may wait for connectors: a broker link that went silent
must not keep the process from exiting (what was not acked is redelivered)."""


async def _bounded(what: str, steps: Iterable[Awaitable[None]]) -> None:
    """Run ``steps`` concurrently, giving up (with a warning) after ``CLOSE_TIMEOUT``."""
    tasks = [asyncio.ensure_future(step) for step in steps]
    if not tasks:
        return
    _done, pending = await asyncio.wait(tasks, timeout=CLOSE_TIMEOUT)
    for task in pending:
        task.cancel()
    if pending:
        log.warning(
            "%s: %d did not finish in %.0fs and were abandoned", what, len(pending), CLOSE_TIMEOUT
        )
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            log.warning("%s failed: %s", what, task.exception())


@dataclass(frozen=True)
class ReloadResult:
    """What a hot reload changed, by route name."""

    kept: tuple[str, ...]
    restarted: tuple[str, ...]
    removed: tuple[str, ...]


def _routes_of(group: SourceGroup) -> tuple[str, ...]:
    return tuple(route.fingerprint for route in group.routes)


class ConnectorStartFailed(ConnectorError):
    """With ``fail_fast``: a connector's first connection attempt failed (names it)."""

    retriable = False


def _connectors_of(group: SourceGroup) -> set[str]:
    """Every connector a source group needs: its source, all targets and dead letters."""
    names = {group.connector}
    for route in group.routes:
        names.update(target.connector for target in route.targets)
        if route.dead_letter is not None:
            names.add(route.dead_letter.connector)
    return names


def _policy(config: GatewayConfig) -> BackoffPolicy:
    section = config.gateway.reconnect
    return BackoffPolicy(section.initial_backoff_seconds, section.max_backoff_seconds)


def _names_of(pipelines: Iterable[Pipeline]) -> tuple[str, ...]:
    return tuple(route.name for p in pipelines for route in p.group.routes)


def _names(pipelines: Iterable[Pipeline]) -> str:
    return ", ".join(_names_of(pipelines))


async def _retire(pipelines: list[Pipeline], timeout: float) -> int:  # noqa: ASYNC109
    """Stop consuming, drain (cancelling what is left after ``timeout``), then end the
    source iterators, so in-flight acks still reach the broker. Returns the cancelled
    count (those are redelivered)."""
    await asyncio.gather(*(p.stop_consuming() for p in pipelines))
    abandoned = sum(await asyncio.gather(*(p.drain(timeout) for p in pipelines)))
    await _bounded("closing sources", (p.close_stream() for p in pipelines))
    return abandoned


class Gateway:
    """All connectors and pipelines of one config: ``start``, ``reload``, ``stop``.

    Partial availability (docs/operations.md): a connector that cannot connect is
    retried in the background with the shared reconnect policy (``gateway.reconnect``)
    while the routes whose connectors are all up run; a source group starts consuming
    once every connector it needs (source, targets, dead letters) has connected. The
    ``gateway ... started: ...`` line is logged once every connector is up and every
    source group consumes. ``gateway.fail_fast`` turns a failed first attempt into an
    error instead (``ConnectorStartFailed``).
    """

    def __init__(self, config: GatewayConfig, *, fail_fast: bool = False) -> None:
        self.config = config
        self.force_fail_fast = fail_fast
        """``meshgate run --fail-fast``: fail fast whatever the (reloaded) config says."""
        policy = _policy(config)
        self.connectors: dict[str, AnyConnector] = {}
        for name, (cls, options) in config.connectors.items():
            self.connectors[name] = connector = cls(name, options)
            connector.reconnect = policy
        self.stats: dict[str, RouteStats] = {
            route.name: RouteStats() for route in config.table.routes
        }
        self.loop_guard = LoopGuard(config.gateway.id, config.gateway.max_hops)
        self.control: ControlChannel | None = None
        """Announcements and the peer table (``gateway.mesh``), once started."""
        self.instance = uuid.uuid4().hex[:12]
        """This process's gateway among replicas with the same id (the mesh view)."""
        self.connector_stats: defaultdict[str, ConnectorStats] = defaultdict(ConnectorStats)
        self.timed = False
        """Measure durations per event; set by ``gateway.telemetry`` when metrics are on."""
        self.recorder: Recorder | None = None
        """Told the rare outcomes (dead-lettered, undeliverable, failed) while the admin
        server runs, for /api/events."""
        self.tracing: Tracing | None = None
        """Set by ``gateway.tracing`` while traces are on (docs/observability.md#traces)."""
        self.follower: Recorder | None = None
        """Told the frequent outcomes (delivered, filtered) too, but only while a client
        follows /api/events: they cost ~0.4 µs per event."""
        self.pipelines = [Pipeline(self, group) for group in config.table.groups]
        self.store = DeadLetterStore(
            config.gateway.resolved_state_dir(), config.gateway.dead_letter_store.max_bytes
        )
        self.publish_warnings = LogThrottle(PUBLISH_WARNING_SECONDS)
        self._stopped = asyncio.Event()
        self._reloading = asyncio.Lock()
        self._ready: set[str] = set()  # connectors that connected (started) at least once
        self._connecting: dict[str, asyncio.Task[None]] = {}  # first connection, retried
        self._waiting: list[Pipeline] = []  # source groups waiting for a connector
        self._starting = False  # inside start(): routes starting now are not "late"
        self._stopping = False
        self._announced = False  # the "started:" line was logged

    def waiting_routes(self) -> list[str]:
        """Names of the routes not consuming yet because a connector is not up."""
        return [route.name for p in self._waiting for route in p.group.routes]

    async def start(self) -> None:
        """Open the local dead-letter store, connect every connector, then start consuming.

        Without ``fail_fast``, each connector gets its first attempt concurrently and
        this returns once every one of them had it; those that failed go on retrying in
        the background, and their routes start when they come up. With ``fail_fast``
        the first failure closes what was started and raises ``ConnectorStartFailed``.
        """
        await self.store.open()  # a state directory we cannot write: refuse to start
        if self._fail_fast(self.config):
            await self._start_connectors(list(self.connectors.values()))
            self._ready.update(self.connectors)
            for pipeline in self.pipelines:
                pipeline.start()
            self._announce()
            self._start_control()
            return
        self._waiting = list(self.pipelines)
        self._starting = True
        try:
            firsts = [self._connect(c) for c in self.connectors.values()]
            await asyncio.gather(*(first.wait() for first in firsts))
        finally:
            self._starting = False
        self._start_control()  # after the first attempts: it retries a connector still down
        if not self._announce():
            down = [name for name in self.connectors if name not in self._ready]
            log.warning(
                "gateway %s running with %d of %d connectors down (%s), retried in the "
                "background; %d of %d routes wait for them (%s)",
                self.config.gateway.id,
                len(down),
                len(self.connectors),
                ", ".join(down),
                len(self.waiting_routes()),
                len(self.config.table.routes),
                ", ".join(self.waiting_routes()) or "none",
            )

    def _start_control(self) -> None:
        """The mesh view's control channel (gateway/meshview.py), when configured."""
        if self.config.gateway.mesh is not None and self.control is None and not self._stopping:
            from gateway.meshview import ControlChannel

            self.control = ControlChannel(self, self.instance)
            self.control.start()

    async def _retire_control(self, config: GatewayConfig, retired: list[AnyConnector]) -> None:
        """Stop the control channel when a reload changes it or replaces its connector."""
        control = self.control
        if control is None:
            return
        if config.gateway.mesh != self.config.gateway.mesh or control.connector in retired:
            self.control = None
            await control.stop()

    def _fail_fast(self, config: GatewayConfig) -> bool:
        return self.force_fail_fast or config.gateway.fail_fast

    def _announce(self) -> bool:
        """Log the "started:" line once everything is up and consuming; True if it was."""
        if self._announced or self._waiting or len(self._ready) < len(self.connectors):
            return self._announced
        self._announced = True
        log.info(
            "gateway %s started: %d connectors, %d routes",
            self.config.gateway.id,
            len(self.connectors),
            len(self.config.table.routes),
        )
        return True

    def _connect(self, connector: AnyConnector) -> asyncio.Event:
        """Start ``connector`` in the background, retrying until it connects; the
        returned event is set once its first attempt is over (either way)."""
        first = asyncio.Event()
        name = connector.name
        task = asyncio.create_task(self._keep_connecting(connector, first), name=f"connect:{name}")
        self._connecting[name] = task

        def done(finished: asyncio.Task[None]) -> None:
            first.set()  # also when cancelled before the first attempt ended
            if self._connecting.get(name) is finished:
                del self._connecting[name]

        task.add_done_callback(done)
        return first

    async def _keep_connecting(self, connector: AnyConnector, first: asyncio.Event) -> None:
        """The first connection: ``start`` (connect once) until it succeeds, paced and
        reported (STARTING, then UP) by the connector's supervisor. Any exception is
        retried here, a plugin's untranslated one too (logged with its traceback)."""
        supervisor = connector.supervisor
        health = connector.health
        attempt = 0
        failure = ""
        while True:
            attempt += 1
            try:
                await connector.start()
                break
            except Exception as exc:
                delay = supervisor.next_delay()
                supervisor.starting(failure := f"connect failed: {exc}")
                expected = isinstance(exc, ConnectorError | OSError)
                permanent = isinstance(exc, ConnectorError) and not exc.retriable
                log.log(
                    logging.ERROR if permanent or not expected else logging.WARNING,
                    "%s: connect failed (attempt %d, next in %.1f s): %s",
                    connector.label,
                    attempt,
                    delay,
                    exc,
                    exc_info=None if expected else exc,
                )
                first.set()
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    # A stop (or reload) cancelled us, but start() swallowed the cancel (client
                    # libraries do, in their clean-up): retrying would keep stop() waiting.
                    raise asyncio.CancelledError from exc
                await asyncio.sleep(delay)
        if health.state is HealthState.STARTING:  # a plugin that does not report UP
            supervisor.connected()
        if failure and health.detail == failure:  # the last error is history now
            health.detail = ""
        if attempt > 1:
            log.info("%s: connected after %d attempts", connector.label, attempt)
        first.set()
        self._connector_up(connector.name)

    def _connector_up(self, name: str) -> None:
        """``name`` connected: start the source groups that now have all their connectors."""
        self._ready.add(name)
        if self._stopping:
            return
        now = [p for p in self._waiting if _connectors_of(p.group) <= self._ready]
        if not now:
            return
        for pipeline in now:
            self._waiting.remove(pipeline)
            pipeline.start()
        if not self._starting:
            log.info(
                "connector %s is up: routes %s now consuming%s",
                name,
                _names(now),
                f" ({len(self.waiting_routes())} still waiting)" if self._waiting else "",
            )
            self._announce()

    @staticmethod
    async def _start_connectors(connectors: list[AnyConnector]) -> None:
        started: list[AnyConnector] = []
        try:
            for connector in connectors:
                try:
                    await connector.start()
                except ConnectorError as exc:
                    raise ConnectorStartFailed(f"{connector.label}: connect failed: {exc}") from exc
                started.append(connector)
        except BaseException:
            await asyncio.gather(*(c.close() for c in started), return_exceptions=True)
            raise

    async def _forget_connector(self, connector: AnyConnector) -> None:
        """Stop retrying the first connection of ``connector`` (being removed)."""
        task = self._connecting.pop(connector.name, None)
        if task is not None:
            task.cancel()
            # Bounded: a connect that ignores the cancel must not keep a stop waiting.
            await _bounded(f"{connector.label}: ending its connection attempts", [task])

    async def reload(self, config: GatewayConfig) -> ReloadResult:
        """Switch to ``config`` without touching unchanged routes.

        A source group whose routes (and the connectors they use) are unchanged keeps
        its pipeline: its in-flight events are neither dropped nor duplicated. Changed
        and removed groups stop consuming and drain (their in-flight events finish and
        are acked) before their replacements start. New connectors connect in the
        background like at start: a group waits until all its connectors are up. With
        ``fail_fast`` they are started first instead, and if one cannot start nothing
        changes and ``ConnectorStartFailed`` propagates.
        """
        async with self._reloading:
            kept, fresh_groups, retiring = self._sort_groups(config)
            connectors, to_start = self._reuse_connectors(config)
            fail_fast = self._fail_fast(config)
            if fail_fast:
                await self._start_connectors(to_start)
            # Old pipelines finish with the old connectors before those may close.
            await _retire(retiring, config.gateway.drain_timeout_seconds)
            retired = [c for name, c in self.connectors.items() if connectors.get(name) is not c]
            await self._retire_control(config, retired)
            for connector in retired:
                await self._forget_connector(connector)
                self._ready.discard(connector.name)
            self.connectors = connectors
            self._adopt(config, kept)
            await _bounded("closing connectors", (c.close() for c in retired))
            fresh = [Pipeline(self, group) for group in fresh_groups]
            self.pipelines = kept + fresh
            self._waiting = [p for p in self._waiting if p in kept] + fresh
            self._start_reloaded(to_start, fail_fast)
            names = {route.name for route in config.table.routes}
            result = ReloadResult(
                kept=_names_of(kept),
                restarted=_names_of(fresh),
                removed=tuple(name for name in _names_of(retiring) if name not in names),
            )
            log.info(
                "config reloaded: %d routes kept, %d (re)started, %d removed%s",
                len(result.kept),
                len(result.restarted),
                len(result.removed),
                f"; waiting for their connectors: {', '.join(self.waiting_routes())}"
                if self._waiting
                else "",
            )
            if not self._waiting and len(self._ready) == len(self.connectors):
                self._announce()
            return result

    def _sort_groups(
        self, config: GatewayConfig
    ) -> tuple[list[Pipeline], list[SourceGroup], list[Pipeline]]:
        """(pipelines kept as they are, source groups that need a new pipeline, pipelines
        to retire): a pipeline is kept when its source and its routes are unchanged."""
        old = {(p.group.connector, p.group.source.model_dump_json()): p for p in self.pipelines}
        kept: list[Pipeline] = []
        fresh: list[SourceGroup] = []
        for group in config.table.groups:
            key = (group.connector, group.source.model_dump_json())
            pipeline = old.get(key)
            if pipeline is not None and _routes_of(pipeline.group) == _routes_of(group):
                kept.append(pipeline)
                del old[key]
            else:
                fresh.append(group)
        return kept, fresh, list(old.values())

    def _reuse_connectors(
        self, config: GatewayConfig
    ) -> tuple[dict[str, AnyConnector], list[AnyConnector]]:
        """The connectors of ``config`` (the running one where its type and options are
        unchanged) and those of them that are new and must be started."""
        policy = _policy(config)
        connectors: dict[str, AnyConnector] = {}
        to_start: list[AnyConnector] = []
        for name, (cls, options) in config.connectors.items():
            current = self.connectors.get(name)
            if current is not None and type(current) is cls and current.options == options:
                connectors[name] = current
            else:
                connectors[name] = cls(name, options)
                to_start.append(connectors[name])
            connectors[name].reconnect = policy
        return connectors, to_start

    def _adopt(self, config: GatewayConfig, kept: list[Pipeline]) -> None:
        """Take over ``config``'s gateway settings; kept routes keep their counters."""
        if config.gateway.resolved_state_dir() != self.config.gateway.resolved_state_dir():
            log.warning(
                "config reloaded: state_dir changed to %s; the dead-letter store stays at "
                "%s until the gateway restarts",
                config.gateway.resolved_state_dir(),
                self.store.path.parent,
            )
        self.store.max_bytes = config.gateway.dead_letter_store.max_bytes
        self.loop_guard = LoopGuard(config.gateway.id, config.gateway.max_hops)
        self.config = config
        unchanged = {route.fingerprint for p in kept for route in p.group.routes}
        self.stats = {
            route.name: self.stats.get(route.name, RouteStats())
            if route.fingerprint in unchanged
            else RouteStats()
            for route in config.table.routes
        }

    def _start_reloaded(self, to_start: list[AnyConnector], fail_fast: bool) -> None:
        """Connect the new connectors (already started with ``fail_fast``) and start the
        source groups whose connectors are all up."""
        if fail_fast:
            self._ready.update(c.name for c in to_start)
        else:
            for connector in to_start:
                self._connect(connector)
        self._starting = True  # what starts right now is part of the reload line
        try:
            for name in list(self._ready):
                self._connector_up(name)
        finally:
            self._starting = False
        self._start_control()  # again, if the reload stopped it

    async def stop(self) -> None:
        """Graceful stop: stop consuming, drain in-flight work, close connectors."""
        if self.control is not None:
            await self.control.stop()
        self._stopping = True  # routes still waiting for a connector never start
        for name in list(self._connecting):
            await self._forget_connector(self.connectors[name])
        timeout = self.config.gateway.drain_timeout_seconds
        abandoned = await _retire(self.pipelines, timeout)
        if abandoned:
            log.warning(
                "%d in-flight messages did not finish in %gs; given back to the broker "
                "(nack with requeue), it redelivers them",
                abandoned,
                timeout,
            )
        await _bounded("closing connectors", (c.close() for c in self.connectors.values()))
        await self.store.close()
        self._stopped.set()
        log.info("gateway %s stopped", self.config.gateway.id)

    def in_flight(self) -> int:
        return sum(p.held for p in self.pipelines)

    async def wait_stopped(self) -> None:
        await self._stopped.wait()
