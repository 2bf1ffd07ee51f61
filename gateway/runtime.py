"""The gateway runtime: one bounded pipeline per distinct route source.

For every delivery: decode (or wrap with the route's ingress rules) -> match the
routes of its source -> render targets -> publish to all targets concurrently,
each with bounded retries and backoff -> ack the source once every target of
every matching route confirmed, or once the dead letter was confirmed.

Invariants (docs/delivery.md):
- nothing is acked before it is safe: a failure without a dead-letter target
  leaves the message unacknowledged (and logs it as an error); without one, a
  retriable publish failure (an outage) is retried past ``max_attempts`` until it
  succeeds, so it holds its slot (backpressure) instead of stalling the source;
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
import contextlib
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from connectors.backoff import Backoff
from connectors.base import Connector, Delivery
from connectors.errors import ConnectorError
from gateway.config import GatewayConfig
from routing.deadletter import dead_letter_event
from routing.errors import InvalidEvent, MeshgateError, TemplateError
from routing.event import CloudEvent
from routing.router import Route, SourceGroup, TargetSpec
from routing.templates import TemplateValues

__all__ = ["Gateway", "NotACloudEvent", "ReloadResult", "RouteStats"]

log = logging.getLogger("meshgate.runtime")

AnyConnector = Connector[Any, Any, Any]

_NO_VALUES = TemplateValues()


class NotACloudEvent(MeshgateError):
    """A message is not a CloudEvent and its route has no ingress rules to wrap it."""


@dataclass
class RouteStats:
    """Counters per route, read by the demo and the tests (metrics are future work)."""

    received: int = 0
    delivered: int = 0
    filtered: int = 0
    retries: int = 0
    dead_lettered: int = 0
    unacked_failures: int = 0
    in_flight: int = 0


@dataclass
class _Lanes:
    """Per-key locks so ordered routes publish one event per key at a time."""

    locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    users: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock = self.locks.setdefault(key, asyncio.Lock())
        self.users[key] += 1
        try:
            async with lock:
                yield
        finally:
            self.users[key] -= 1
            if self.users[key] == 0:  # forget idle keys so the map stays small
                del self.users[key]
                del self.locks[key]


class _Heartbeats:
    """Sends ``in_progress`` about every ``PERIOD`` seconds for each delivery in flight.

    One timer loop per pipeline, not one timer per delivery: most deliveries finish
    long before the first beat, and then a heartbeat costs a dict insert and delete
    (no clock read). The loop ticks twice per period; a delivery gets its first beat
    0.5-1 period after it started, then one per period. A delivery's beats never
    overlap (a slow signal skips a beat instead).
    """

    PERIOD = 1.0

    def __init__(self) -> None:
        # token -> [signal, tick of the start or of the last beat]
        self._beating: dict[int, list[Any]] = {}
        self._sending: dict[int, asyncio.Task[None]] = {}
        self._ticker: asyncio.Task[None] | None = None
        self._ticks = 0

    def add(self, token: int, signal: Callable[[], Awaitable[None]]) -> None:
        self._beating[token] = [signal, self._ticks]
        if self._ticker is None:
            self._ticker = asyncio.get_running_loop().create_task(self._tick())

    def remove(self, token: int) -> None:
        self._beating.pop(token, None)

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._beating:
                await asyncio.sleep(self.PERIOD / 2)
                self._ticks += 1
                for token, entry in list(self._beating.items()):
                    if self._ticks - entry[1] >= 2 and token not in self._sending:
                        entry[1] = self._ticks
                        self._sending[token] = loop.create_task(self._send(token, entry[0]))
        finally:
            self._ticker = None

    async def _send(self, token: int, signal: Callable[[], Awaitable[None]]) -> None:
        try:
            await signal()
        except Exception as exc:  # a lost heartbeat only risks a redelivery (a duplicate)
            log.debug("in_progress signal failed: %s", exc)
        finally:
            self._sending.pop(token, None)


class _Pipeline:
    """Consumes one source and processes its deliveries for all routes reading it."""

    def __init__(self, gateway: Gateway, group: SourceGroup) -> None:
        self.gateway = gateway
        self.group = group
        self.connector = gateway.connectors[group.connector]
        self.slots = asyncio.Semaphore(group.max_in_flight)
        self.ordered = group.ordered  # read per delivery; computed from the routes
        self.tasks: set[asyncio.Task[None]] = set()
        self.lanes = _Lanes()
        self.heartbeats = _Heartbeats()
        self.consumer: asyncio.Task[None] | None = None
        self.stream: AsyncIterator[Delivery] | None = None
        self.stopping = False
        self.pulling = False

    def start(self) -> None:
        self.consumer = asyncio.create_task(self._supervise(), name=f"consume:{self.group.name}")

    async def _supervise(self) -> None:
        """Keep consuming: connectors reconnect by themselves, but if a source's
        iterator fails anyway, log it and subscribe again after a backoff."""
        backoff = Backoff(initial=0.5, maximum=30.0)
        while True:
            try:
                await self._consume()
                return
            except (ConnectorError, OSError) as exc:
                log.error(
                    "source %s of routes %s failed, resubscribing: %s",
                    self.group.connector,
                    self.group.name,
                    exc,
                )
            except Exception:
                log.exception(
                    "bug: source %s of routes %s crashed", self.group.connector, self.group.name
                )
            await self._close_iterator()
            if self.stopping:
                return
            await backoff.sleep()

    async def _consume(self) -> None:
        self.stream = stream = aiter(self.connector.consume(self.group.source))
        while not self.stopping:
            # Take a slot first: the next message is pulled only when one is free.
            await self.slots.acquire()
            if self.stopping:
                self.slots.release()
                return
            # Awaited directly, not in a task of its own: a source that has messages
            # buffered hands them over without a trip through the event loop, so a
            # burst is turned into tasks in one go and their publishes and acks leave
            # together (one socket write per burst instead of one per message).
            # stop_consuming() therefore never cancels a pull (that could end the
            # stream, and with it the channel/session in-flight deliveries must still
            # be acked on); close_stream() does, once the pipeline has drained.
            self.pulling = True
            try:
                delivery = await anext(stream)
            except StopAsyncIteration:
                self.slots.release()
                return
            except BaseException:
                self.slots.release()
                raise
            finally:
                self.pulling = False
            if self.stopping:
                # Pulled while stopping: never processed. Given back (JetStream -NAK,
                # AMQP requeue, Kafka rewind; MQTT never acks it), so the next consumer
                # gets it soon: left unacknowledged, JetStream would hold it until
                # ack_wait_seconds (30 s) after the restart.
                await self._give_back(delivery)
                self.slots.release()
                return
            task = asyncio.create_task(self._process(delivery))
            self.tasks.add(task)
            task.add_done_callback(self._finished)

    async def _give_back(self, delivery: Delivery) -> None:
        try:
            await delivery.nack(True)
        except ConnectorError as exc:  # unacknowledged: redelivered later, never lost
            log.debug("nack of an unprocessed delivery failed: %s", exc)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        self.slots.release()
        if not task.cancelled() and task.exception() is not None:
            log.error("bug: processing task failed", exc_info=task.exception())

    async def stop_consuming(self) -> None:
        """Stop taking new deliveries; in-flight ones go on (see ``drain``)."""
        self.stopping = True
        consumer = self.consumer
        if consumer is not None and not self.pulling:
            # Waiting for a slot or a backoff: safe to cancel. A pending pull is left
            # alone (see _consume): close_stream() ends it.
            consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await consumer

    async def close_stream(self) -> None:
        """End the source iterator (after draining, so in-flight acks still reach the
        broker). A delivery pulled meanwhile was never processed: it was given back
        (``_give_back``) and the broker redelivers it, which is not a duplicate."""
        consumer = self.consumer
        if consumer is not None and not consumer.done():
            consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await consumer
        await self._close_iterator()

    async def _close_iterator(self) -> None:
        stream, self.stream = self.stream, None
        close = getattr(stream, "aclose", None)
        if close is not None:
            with contextlib.suppress(Exception):
                await close()

    async def drain(self, timeout: float) -> int:  # noqa: ASYNC109 - a budget, not a cancel
        """Wait for in-flight work; cancel what is left after ``timeout``. Returns that count."""
        if self.tasks:
            _done, pending = await asyncio.wait(set(self.tasks), timeout=timeout)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
            return len(pending)
        return 0

    # -- per delivery -------------------------------------------------------------------

    async def _process(self, delivery: Delivery) -> None:
        token = id(delivery)
        if delivery.in_progress is not None:
            self.heartbeats.add(token, delivery.in_progress)
        try:
            if self.ordered and delivery.ordering_key is not None:
                async with self.lanes.hold(delivery.ordering_key):
                    await self._process_now(delivery)
            else:
                await self._process_now(delivery)
        finally:
            self.heartbeats.remove(token)

    async def _process_now(self, delivery: Delivery) -> None:
        decoded: CloudEvent | None = None
        decode_error: Exception | None = None
        try:
            decoded = self.connector.decode(delivery)
        except InvalidEvent as exc:
            decode_error = exc
        routes: Sequence[Route] = self.group.routes
        if len(routes) > 1 and decoded is not None:
            routes = self._candidates(decoded)
        if len(routes) == 1:  # no gather (a task per route) for the common case
            may_ack = await self._route(routes[0], delivery, decoded, decode_error)
        else:
            results = await asyncio.gather(
                *(self._route(route, delivery, decoded, decode_error) for route in routes)
            )
            may_ack = all(results)
        if may_ack:
            try:
                await delivery.ack()
            except ConnectorError as exc:
                # The broker will redeliver: a duplicate, never a loss.
                log.warning("ack failed on %s (will be redelivered): %s", self.group.connector, exc)

    def _candidates(self, event: CloudEvent) -> list[Route]:
        """The routes whose filter may hold (route index); the others count as filtered,
        exactly as if their filter had run."""
        routes = self.group.routes
        positions = self.group.candidates(event)
        if len(positions) == len(routes):
            return list(routes)
        stats = self.gateway.stats
        chosen = iter(positions)
        next_chosen = next(chosen, -1)
        for position, route in enumerate(routes):
            if position == next_chosen:
                next_chosen = next(chosen, -1)
                continue
            skipped = stats[route.name]
            skipped.received += 1
            skipped.filtered += 1
        return [routes[position] for position in positions]

    def _values(self, delivery: Delivery, event: CloudEvent | None) -> TemplateValues:
        key = delivery.coordinates.get("key")
        return TemplateValues(
            address=delivery.address,
            separator=self.connector.address_separator,
            headers=delivery.headers,
            key=None if key is None else str(key),
            event=event,
        )

    async def _route(
        self,
        route: Route,
        delivery: Delivery,
        decoded: CloudEvent | None,
        decode_error: Exception | None,
    ) -> bool:
        """Handle one route for one delivery; True when the delivery may be acked."""
        stats = self.gateway.stats[route.name]
        stats.received += 1
        stats.in_flight += 1
        try:
            event = decoded
            error: Exception | None = decode_error
            if event is None and error is None:
                if route.ingress is None:
                    error = NotACloudEvent(
                        f"message on {delivery.address!r} is not a CloudEvent and route "
                        f"{route.name!r} has no ingress rules to wrap it"
                    )
                else:
                    try:
                        event = route.ingress.wrap(
                            delivery.payload,
                            self._values(delivery, None),
                            native_id=delivery.native_id,
                            content_type=delivery.content_type,
                        )
                    except (TemplateError, InvalidEvent) as exc:
                        error = exc
            if error is not None or event is None:
                return await self._dead_letter(
                    route, delivery, None, error or NotACloudEvent("?"), 0
                )
            if not route.matches(event):
                stats.filtered += 1
                return True
            targets = route.targets
            values = (
                self._values(delivery, event)
                if route.reads_values
                else _NO_VALUES  # static targets without egress rules read nothing
            )
            if len(targets) == 1:  # no gather (a task per target) for the common case
                outcomes = [await self._publish(route, targets[0], event, values, delivery)]
            else:
                outcomes = await asyncio.gather(
                    *(self._publish(route, target, event, values, delivery) for target in targets)
                )
            failures = [outcome for outcome in outcomes if outcome is not None]
            if not failures:
                stats.delivered += 1
                return True
            error, attempts, failed = failures[0]
            return await self._dead_letter(route, delivery, event, error, attempts, failed)
        finally:
            stats.in_flight -= 1

    async def _publish(
        self,
        route: Route,
        target: TargetSpec,
        event: CloudEvent,
        values: TemplateValues,
        delivery: Delivery,
    ) -> tuple[Exception, int, str] | None:
        """Publish with retries; None on success, else (last error, attempts, target)."""
        try:
            options = target.render(values)
            event = target.prepare(event, values)
        except (TemplateError, InvalidEvent) as exc:
            return exc, 0, target.describe()
        connector = self.gateway.connectors[target.connector]
        policy = route.retry
        backoff: Backoff | None = None  # made on the first retry only: most never retry
        # Without a dead letter, giving up would only strand the message unacknowledged
        # (stalling AMQP and MQTT sources and Kafka commits): a retriable failure (an
        # outage) is then retried until it ends, i.e. backpressure. With a dead letter,
        # max_attempts hands the message over to it.
        until_it_ends = route.dead_letter is None
        attempt = 0
        while True:
            attempt += 1
            try:
                await connector.publish(options, event)
                return None
            except (ConnectorError, InvalidEvent) as exc:
                retriable = isinstance(exc, ConnectorError) and exc.retriable
                log.log(
                    logging.WARNING if attempt <= policy.max_attempts else logging.DEBUG,
                    "route %s: publish to %s failed (attempt %d/%d%s): %s",
                    route.name,
                    target.describe(),
                    attempt,
                    policy.max_attempts,
                    "; no dead_letter: retrying until it succeeds" if until_it_ends else "",
                    exc,
                )
                if not retriable or (attempt >= policy.max_attempts and not until_it_ends):
                    return exc, attempt, target.describe()
            except Exception as exc:
                # A connector bug (an untranslated client exception): retrying is unlikely
                # to help, and the message must not be stranded; dead-letter it.
                log.exception("route %s: bug: publish to %s raised", route.name, target.describe())
                return exc, attempt, target.describe()
            self.gateway.stats[route.name].retries += 1
            if backoff is None:
                backoff = Backoff(policy.initial_backoff, policy.max_backoff)
            await backoff.sleep()

    async def _dead_letter(
        self,
        route: Route,
        delivery: Delivery,
        event: CloudEvent | None,
        error: Exception,
        attempts: int,
        failed_target: str | None = None,
    ) -> bool:
        stats = self.gateway.stats[route.name]
        if route.dead_letter is None:
            stats.unacked_failures += 1
            log.error(
                "route %s: UNDELIVERABLE message on %s:%s left UNACKNOWLEDGED (no dead_letter "
                "target configured; the broker will redeliver it or keep it): %s: %s",
                route.name,
                self.group.connector,
                delivery.address,
                type(error).__name__,
                error,
            )
            return False
        letter = dead_letter_event(
            gateway_id=self.gateway.config.gateway.id,
            route=route.name,
            connector=self.group.connector,
            address=delivery.address,
            payload=delivery.payload,
            headers=delivery.headers,
            coordinates=delivery.coordinates,
            error=error,
            attempts=attempts,
            native_id=delivery.native_id,
            original=event,
            content_type=delivery.content_type,
            target=failed_target,
        )
        target = route.dead_letter
        try:
            options = target.render(self._values(delivery, letter))
        except TemplateError as exc:
            log.error(
                "route %s: dead_letter template failed, message left unacked: %s", route.name, exc
            )
            stats.unacked_failures += 1
            return False
        connector = self.gateway.connectors[target.connector]
        backoff = Backoff(route.retry.initial_backoff, route.retry.max_backoff)
        # The source is acked only once the dead letter is confirmed, so keep trying
        # (backpressure holds the slot) until it is, or until shutdown cancels us.
        while True:
            try:
                await connector.publish(options, letter)
                stats.dead_lettered += 1
                log.warning(
                    "route %s: message on %s dead-lettered to %s: %s: %s",
                    route.name,
                    delivery.address,
                    target.describe(),
                    type(error).__name__,
                    error,
                )
                return True
            except (ConnectorError, InvalidEvent) as exc:
                log.error("route %s: dead-letter publish failed, retrying: %s", route.name, exc)
                if isinstance(exc, InvalidEvent) or not exc.retriable:
                    stats.unacked_failures += 1
                    return False
            except Exception:
                log.exception("route %s: bug: dead-letter publish raised", route.name)
                stats.unacked_failures += 1
                return False
            await backoff.sleep()


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


class Gateway:
    """All connectors and pipelines of one config: ``start``, ``reload``, ``stop``."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.connectors: dict[str, AnyConnector] = {
            name: cls(name, options) for name, (cls, options) in config.connectors.items()
        }
        self.stats: dict[str, RouteStats] = {
            route.name: RouteStats() for route in config.table.routes
        }
        self.pipelines = [_Pipeline(self, group) for group in config.table.groups]
        self._stopped = asyncio.Event()
        self._reloading = asyncio.Lock()

    async def start(self) -> None:
        """Connect every connector, then start consuming."""
        await self._start_connectors(list(self.connectors.values()))
        for pipeline in self.pipelines:
            pipeline.start()
        log.info(
            "gateway %s started: %d connectors, %d routes",
            self.config.gateway.id,
            len(self.connectors),
            len(self.config.table.routes),
        )

    @staticmethod
    async def _start_connectors(connectors: list[AnyConnector]) -> None:
        started: list[AnyConnector] = []
        try:
            for connector in connectors:
                await connector.start()
                started.append(connector)
        except BaseException:
            await asyncio.gather(*(c.close() for c in started), return_exceptions=True)
            raise

    async def reload(self, config: GatewayConfig) -> ReloadResult:
        """Switch to ``config`` without touching unchanged routes.

        A source group whose routes (and the connectors they use) are unchanged keeps
        its pipeline: its in-flight events are neither dropped nor duplicated. Changed
        and removed groups stop consuming and drain (their in-flight events finish and
        are acked) before their replacements start. New connectors are started first:
        if one cannot start, nothing changes and the error propagates.
        """
        async with self._reloading:
            old = {(p.group.connector, p.group.source.model_dump_json()): p for p in self.pipelines}
            kept: list[_Pipeline] = []
            fresh_groups: list[SourceGroup] = []
            for group in config.table.groups:
                pipeline = old.get((group.connector, group.source.model_dump_json()))
                if pipeline is not None and _routes_of(pipeline.group) == _routes_of(group):
                    kept.append(pipeline)
                    del old[(group.connector, group.source.model_dump_json())]
                else:
                    fresh_groups.append(group)
            retiring = list(old.values())

            connectors: dict[str, AnyConnector] = {}
            to_start: list[AnyConnector] = []
            for name, (cls, options) in config.connectors.items():
                current = self.connectors.get(name)
                if current is not None and type(current) is cls and current.options == options:
                    connectors[name] = current
                else:
                    connectors[name] = cls(name, options)
                    to_start.append(connectors[name])
            await self._start_connectors(to_start)

            # Old pipelines finish with the old connectors before those may close.
            await asyncio.gather(*(p.stop_consuming() for p in retiring))
            timeout = config.gateway.drain_timeout_seconds
            await asyncio.gather(*(p.drain(timeout) for p in retiring))
            await _bounded("closing sources", (p.close_stream() for p in retiring))
            retired = [c for name, c in self.connectors.items() if connectors.get(name) is not c]
            self.connectors = connectors
            self.config = config
            unchanged = {route.fingerprint for p in kept for route in p.group.routes}
            self.stats = {
                route.name: self.stats.get(route.name, RouteStats())
                if route.fingerprint in unchanged
                else RouteStats()
                for route in config.table.routes
            }
            await _bounded("closing connectors", (c.close() for c in retired))
            fresh = [_Pipeline(self, group) for group in fresh_groups]
            for pipeline in fresh:
                pipeline.start()
            self.pipelines = kept + fresh
            result = ReloadResult(
                kept=tuple(r.name for p in kept for r in p.group.routes),
                restarted=tuple(r.name for p in fresh for r in p.group.routes),
                removed=tuple(
                    r.name
                    for p in retiring
                    for r in p.group.routes
                    if r.name not in {route.name for route in config.table.routes}
                ),
            )
            log.info(
                "config reloaded: %d routes kept, %d (re)started, %d removed",
                len(result.kept),
                len(result.restarted),
                len(result.removed),
            )
            return result

    async def stop(self) -> None:
        """Graceful stop: stop consuming, drain in-flight work, close connectors."""
        await asyncio.gather(*(p.stop_consuming() for p in self.pipelines))
        timeout = self.config.gateway.drain_timeout_seconds
        abandoned = sum(await asyncio.gather(*(p.drain(timeout) for p in self.pipelines)))
        await _bounded("closing sources", (p.close_stream() for p in self.pipelines))
        if abandoned:
            log.warning(
                "%d in-flight messages did not finish in %.0fs; they will be redelivered",
                abandoned,
                timeout,
            )
        await _bounded("closing connectors", (c.close() for c in self.connectors.values()))
        self._stopped.set()
        log.info("gateway %s stopped", self.config.gateway.id)

    def in_flight(self) -> int:
        return sum(len(p.tasks) for p in self.pipelines)

    async def wait_stopped(self) -> None:
        await self._stopped.wait()
