"""The gateway runtime: one bounded pipeline per distinct route source.

For every delivery: decode (or wrap with the route's ingress rules) -> match the
routes of its source -> render targets -> publish to all targets concurrently,
each with bounded retries and backoff -> ack the source once every target of
every matching route confirmed, or once the dead letter was confirmed.

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
import contextlib
import logging
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from connectors.backoff import Backoff, BackoffPolicy
from connectors.base import Connector, Delivery, HealthState
from connectors.errors import ConnectorError
from connectors.signing import VerifyOptions, VerifyPolicy
from gateway.config import GatewayConfig
from gateway.dlstore import DeadLetterStore, StoreError
from gateway.mesh import MESH_ATTRIBUTES, LoopGuard
from gateway.stats import ConnectorStats, DurationHistogram
from gateway.throttle import LogThrottle
from routing.deadletter import dead_letter_event
from routing.errors import InvalidEvent, MeshgateError, TemplateError
from routing.event import CloudEvent
from routing.router import Route, SourceGroup, TargetSpec
from routing.templates import TemplateValues
from routing.verifiability import SignatureError, Verifier

if TYPE_CHECKING:
    from gateway.meshview import ControlChannel
    from gateway.tracing import Tracing  # OpenTelemetry is imported only when tracing is on

__all__ = ["ConnectorStartFailed", "Gateway", "NotACloudEvent", "ReloadResult", "RouteStats"]

log = logging.getLogger("meshgate.runtime")

AnyConnector = Connector[Any, Any, Any]
Recorder = Callable[[str, str, CloudEvent | None, Delivery, BaseException | None], None]
"""(route, outcome, event or None, delivery, error or None)"""

_NO_VALUES = TemplateValues()


class NotACloudEvent(MeshgateError):
    """A message is not a CloudEvent and its route has no ingress rules to wrap it."""


@dataclass
class RouteStats:
    """Counters per route, read by the demo, the admin API and the metrics
    (``gateway.telemetry`` reads them at collection time: no per-event metric call)."""

    received: int = 0
    delivered: int = 0
    filtered: int = 0
    retries: int = 0
    dead_lettered: int = 0
    undeliverable: int = 0
    """Written to the local dead-letter store (neither delivered nor dead-lettered)."""
    loop_dropped: int = 0
    """Acked without forwarding: looped back through the mesh, or past max_hops."""
    failed: int = 0
    """Ended without an outcome (cancelled after the drain timeout, or a bug): left
    unacknowledged, so the broker redelivers it."""
    in_flight: int = 0
    duration: DurationHistogram = field(default_factory=DurationHistogram)
    """Source receive -> every target confirmed, of delivered events (when timed)."""
    last_error: str = ""
    last_error_at: float = 0.0
    """Wall-clock time (``time.time()``) of ``last_error``."""

    def note_error(self, error: BaseException) -> None:
        self.last_error = f"{type(error).__name__}: {error}"
        self.last_error_at = time.time()


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
        # Cleared while the local dead-letter store refuses writes: no new deliveries
        # are pulled (the route stops, loudly) until one is stored again.
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.consumed = 0  # deliveries pulled from the source (metrics)
        verify: VerifyOptions | None = getattr(group.source, "verify", None)
        # Keys were checked when the config was loaded; read again per pipeline.
        self.verifier = None if verify is None else Verifier.from_files(verify.public_key_files)
        self.strict = verify is None or verify.policy is VerifyPolicy.STRICT
        self.signature_failures = 0  # passthrough: events forwarded despite a bad signature

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
            if not self.flowing.is_set():
                await self.flowing.wait()
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
            self.consumed += 1
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
        # Durations are measured only when metrics are on (gateway.telemetry).
        started = time.perf_counter() if self.gateway.timed else 0.0
        if delivery.in_progress is not None:
            self.heartbeats.add(token, delivery.in_progress)
        try:
            if self.ordered and delivery.ordering_key is not None:
                async with self.lanes.hold(delivery.ordering_key):
                    await self._process_now(delivery, started)
            else:
                await self._process_now(delivery, started)
        finally:
            self.heartbeats.remove(token)

    async def _process_now(self, delivery: Delivery, started: float) -> None:
        decoded: CloudEvent | None = None
        decode_error: Exception | None = None
        try:
            decoded = self.connector.decode(delivery)
        except InvalidEvent as exc:
            decode_error = exc
        if self.verifier is not None and decode_error is None:
            decoded, decode_error = self._verified(decoded, delivery)
        routes: Sequence[Route] = self.group.routes
        if len(routes) > 1 and decoded is not None:
            routes = self._candidates(decoded, delivery)
        # Tracing off costs this one check per delivery: no span, no extra call.
        step = self._route if self.gateway.tracing is None else self._traced_route
        if len(routes) == 1:  # no gather (a task per route) for the common case
            may_ack = await step(routes[0], delivery, decoded, decode_error, started)
        else:
            results = await asyncio.gather(
                *(step(route, delivery, decoded, decode_error, started) for route in routes)
            )
            may_ack = all(results)
        if may_ack:
            try:
                await delivery.ack()
            except ConnectorError as exc:
                # The broker will redeliver: a duplicate, never a loss.
                log.warning("ack failed on %s (will be redelivered): %s", self.group.connector, exc)

    def _verified(
        self, event: CloudEvent | None, delivery: Delivery
    ) -> tuple[CloudEvent | None, InvalidEvent | None]:
        """The verified event (signed attributes only), or the refusal (``verify:``)."""
        if self.verifier is None:
            return event, None
        try:
            if event is None:
                raise SignatureError("missing: not a CloudEvent, so nothing is signed")
            verified = self.verifier.verify(event)
        except SignatureError as exc:
            return self._refused(event, delivery, exc)
        # The mesh provenance is the gateways' own bookkeeping, changed at every hop and
        # never signed: keep it, or loop detection would go blind behind verify:.
        provenance = {
            name: event.extensions[name]
            for name in MESH_ATTRIBUTES
            if name in event.extensions and name not in verified.extensions
        }
        if provenance:
            verified = verified.replace(extensions={**verified.extensions, **provenance})
        return verified, None

    def _refused(
        self, event: CloudEvent | None, delivery: Delivery, exc: SignatureError
    ) -> tuple[CloudEvent | None, InvalidEvent | None]:
        """Strict: the refusal (dead letter); passthrough: the event, counted and logged."""
        if self.strict:
            return None, exc  # dead-lettered like any invalid event
        self.signature_failures += 1
        failures = self.signature_failures
        if failures & (failures - 1) == 0:  # 1, 2, 4, ...: visible without flooding
            log.warning(
                "%s: %s on %s (policy passthrough: forwarded; %d so far)",
                self.group.name,
                exc,
                delivery.address,
                failures,
            )
        return event, None

    def _candidates(self, event: CloudEvent, delivery: Delivery) -> list[Route]:
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
            if self.gateway.follower is not None:
                self.gateway.follower(route.name, "filtered", event, delivery, None)
        return [routes[position] for position in positions]

    def _record(
        self,
        route: str,
        outcome: str,
        event: CloudEvent | None,
        delivery: Delivery,
        error: BaseException | None = None,
    ) -> None:
        """Tell the admin server's event log (``/api/events``) of a rare outcome."""
        if self.gateway.recorder is not None:
            self.gateway.recorder(route, outcome, event, delivery, error)

    def _values(self, delivery: Delivery, event: CloudEvent | None) -> TemplateValues:
        key = delivery.coordinates.get("key")
        return TemplateValues(
            address=delivery.address,
            separator=self.connector.address_separator,
            headers=delivery.headers,
            key=None if key is None else str(key),
            event=event,
        )

    async def _traced_route(
        self,
        route: Route,
        delivery: Delivery,
        decoded: CloudEvent | None,
        decode_error: Exception | None,
        started: float = 0.0,
    ) -> bool:
        """``_route`` inside a process span (only while tracing is on)."""
        tracing = self.gateway.tracing
        if tracing is None:  # switched off meanwhile
            return await self._route(route, delivery, decoded, decode_error, started)
        return await tracing.process(
            self._route, self.connector, route, delivery, decoded, decode_error, started
        )

    async def _route(
        self,
        route: Route,
        delivery: Delivery,
        decoded: CloudEvent | None,
        decode_error: Exception | None,
        started: float = 0.0,
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
                if self.gateway.tracing is not None:
                    self.gateway.tracing.outcome("filtered")
                if self.gateway.follower is not None:
                    self.gateway.follower(route.name, "filtered", event, delivery, None)
                return True
            admitted = self.gateway.loop_guard.admit(route.name, event, guard=route.loop_guard)
            if admitted is None:  # a mesh loop (gateway/mesh.py): acked, never forwarded
                stats.loop_dropped += 1
                self._record(route.name, "loop_dropped", event, delivery)
                if self.gateway.tracing is not None:
                    self.gateway.tracing.outcome("loop_dropped")
                return True
            event = admitted
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
                if started:
                    stats.duration.observe(time.perf_counter() - started)
                if self.gateway.follower is not None:
                    self.gateway.follower(route.name, "delivered", event, delivery, None)
                if self.gateway.tracing is not None:
                    self.gateway.tracing.outcome("delivered")
                return True
            error, attempts, failed = failures[0]
            return await self._dead_letter(route, delivery, event, error, attempts, failed)
        except BaseException as exc:  # cancelled after the drain timeout, or a bug
            stats.failed += 1
            self._record(route.name, "failed", decoded, delivery, exc)
            raise
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
        sent = self.gateway.connector_stats[target.connector]
        while True:
            attempt += 1
            begun = time.perf_counter() if self.gateway.timed else 0.0
            try:
                if self.gateway.tracing is None:
                    await connector.publish(options, event)
                else:  # inside a send span whose context the message carries
                    await self.gateway.tracing.send(connector, options, event, route)
                sent.published += 1
                if begun:
                    sent.duration.observe(time.perf_counter() - begun)
                return None
            except (ConnectorError, InvalidEvent) as exc:
                sent.failed += 1
                sent.last_error = f"{type(exc).__name__}: {exc}"
                retriable = isinstance(exc, ConnectorError) and exc.retriable
                # One WARNING per route and target every few seconds: an outage fails
                # every in-flight event the same way (the rest go to DEBUG).
                held = None
                if attempt <= policy.max_attempts:
                    held = self.gateway.publish_warnings.admit(f"{route.name}\0{target.connector}")
                log.log(
                    logging.DEBUG if held is None else logging.WARNING,
                    "route %s: publish to %s failed (attempt %d/%d%s): %s%s",
                    route.name,
                    target.describe(),
                    attempt,
                    policy.max_attempts,
                    "; no dead_letter: retrying until it succeeds" if until_it_ends else "",
                    exc,
                    f" ({held} more failed attempts since the last warning)" if held else "",
                )
                if not retriable or (attempt >= policy.max_attempts and not until_it_ends):
                    return exc, attempt, target.describe()
            except Exception as exc:
                sent.failed += 1
                sent.last_error = f"{type(exc).__name__}: {exc}"
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
        """Hand a failed message to the route's dead letter, else to the local store.

        True once it is safe to ack: the dead letter was confirmed, or the message is
        in the local store. Retriable dead-letter failures are retried with backoff
        (the slot is held) until they succeed or shutdown cancels the task.
        """
        stats = self.gateway.stats[route.name]
        stats.note_error(error)
        target = route.dead_letter
        if target is None:
            return await self._store(route, delivery, event, error, attempts, failed_target)
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
        try:
            options = target.render(self._values(delivery, letter))
        except TemplateError as exc:
            return await self._store(
                route, delivery, event, error, attempts, failed_target, dead_letter_error=exc
            )
        connector = self.gateway.connectors[target.connector]
        sent = self.gateway.connector_stats[target.connector]
        backoff = Backoff(route.retry.initial_backoff, route.retry.max_backoff)
        attempt = 0
        while True:
            attempt += 1
            begun = time.perf_counter() if self.gateway.timed else 0.0
            try:
                if self.gateway.tracing is None:
                    await connector.publish(options, letter)
                else:
                    await self.gateway.tracing.send(connector, options, letter, route, error)
            except (ConnectorError, InvalidEvent) as exc:
                sent.failed += 1
                sent.last_error = f"{type(exc).__name__}: {exc}"
                if isinstance(exc, InvalidEvent) or not exc.retriable:
                    return await self._store(
                        route, delivery, event, error, attempts, failed_target, exc
                    )
                delay = backoff.next_delay()
                log.log(
                    logging.ERROR if attempt == 1 else logging.WARNING,
                    "route %s: dead-letter publish to %s failed (attempt %d), retrying in "
                    "%.1fs: %s",
                    route.name,
                    target.describe(),
                    attempt,
                    delay,
                    exc,
                )
                await asyncio.sleep(delay)
                continue
            except Exception as exc:
                sent.failed += 1
                sent.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("route %s: bug: dead-letter publish raised", route.name)
                return await self._store(
                    route, delivery, event, error, attempts, failed_target, exc
                )
            sent.published += 1
            if begun:
                sent.duration.observe(time.perf_counter() - begun)
            stats.dead_lettered += 1
            self._record(route.name, "dead_lettered", event, delivery, error)
            if self.gateway.tracing is not None:
                self.gateway.tracing.outcome("dead_lettered", error)
            log.warning(
                "route %s: message on %s dead-lettered to %s: %s: %s",
                route.name,
                delivery.address,
                target.describe(),
                type(error).__name__,
                error,
            )
            return True

    async def _store(
        self,
        route: Route,
        delivery: Delivery,
        event: CloudEvent | None,
        error: Exception,
        attempts: int,
        failed_target: str | None,
        dead_letter_error: Exception | None = None,
    ) -> bool:
        """Write the original message to the local dead-letter store; True once synced.

        While the store refuses (full, or the disk fails) the source stops pulling and
        this retries with backoff: the message keeps its slot and stays unacknowledged,
        so nothing is lost; shutdown cancels the wait and the broker redelivers it.
        """
        text = str(error)
        if dead_letter_error is not None and route.dead_letter is not None:
            text += (
                f" [the dead letter to {route.dead_letter.describe()} failed too: "
                f"{type(dead_letter_error).__name__}: {dead_letter_error}]"
            )
        key = delivery.coordinates.get("key")
        backoff: Backoff | None = None
        while True:
            try:
                entry = await self.gateway.store.put(
                    route=route.name,
                    connector=self.group.connector,
                    address=delivery.address,
                    headers=delivery.headers,
                    payload=delivery.payload,
                    content_type=delivery.content_type,
                    key=None if key is None else str(key),
                    native_id=delivery.native_id,
                    coordinates=delivery.coordinates,
                    reason=type(error).__name__,
                    error=text,
                    target=failed_target,
                    attempts=attempts,
                    event_id=None if event is None else event.id,
                )
            except StoreError as exc:
                self._hold(str(exc))
                if backoff is None:
                    backoff = Backoff(1.0, 30.0)
                await backoff.sleep()
                continue
            break
        self._resume()
        self.gateway.stats[route.name].undeliverable += 1
        self._record(route.name, "undeliverable", event, delivery, error)
        if self.gateway.tracing is not None:
            self.gateway.tracing.outcome("undeliverable", error)
        log.error(
            "route %s: UNDELIVERABLE message on %s:%s stored in the local dead-letter store as "
            "entry %d (see `meshgate dlq show`): %s: %s",
            route.name,
            self.group.connector,
            delivery.address,
            entry,
            type(error).__name__,
            text,
        )
        return True

    def _hold(self, why: str) -> None:
        if self.flowing.is_set():
            self.flowing.clear()
            log.error(
                "routes %s STOPPED: an undeliverable message cannot be stored locally: %s. "
                "Make room with `meshgate dlq redrive` or `meshgate dlq purge`; the routes "
                "resume by themselves once it is stored",
                self.group.name,
                why,
            )

    def _resume(self) -> None:
        if not self.flowing.is_set():
            self.flowing.set()
            log.warning(
                "routes %s resumed: the local dead-letter store accepts again", self.group.name
            )


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


def _names(pipelines: Iterable[_Pipeline]) -> str:
    return ", ".join(route.name for p in pipelines for route in p.group.routes)


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
        self.pipelines = [_Pipeline(self, group) for group in config.table.groups]
        self.store = DeadLetterStore(
            config.gateway.resolved_state_dir(), config.gateway.dead_letter_store.max_bytes
        )
        self.publish_warnings = LogThrottle(PUBLISH_WARNING_SECONDS)
        self._stopped = asyncio.Event()
        self._reloading = asyncio.Lock()
        self._ready: set[str] = set()  # connectors that connected (started) at least once
        self._connecting: dict[str, asyncio.Task[None]] = {}  # first connection, retried
        self._waiting: list[_Pipeline] = []  # source groups waiting for a connector
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
        backoff = connector.new_backoff()
        health = connector.health
        attempt = 0
        failure = ""
        while True:
            attempt += 1
            try:
                await connector.start()
                break
            except Exception as exc:
                delay = backoff.next_delay()
                health.state = HealthState.STARTING
                health.detail = failure = f"connect failed: {exc}"
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
                await asyncio.sleep(delay)
        if health.state is HealthState.STARTING:  # a plugin that does not report UP
            health.state = HealthState.UP
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
            await asyncio.gather(task, return_exceptions=True)

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
            fail_fast = self._fail_fast(config)
            if fail_fast:
                await self._start_connectors(to_start)

            # Old pipelines finish with the old connectors before those may close.
            await asyncio.gather(*(p.stop_consuming() for p in retiring))
            timeout = config.gateway.drain_timeout_seconds
            await asyncio.gather(*(p.drain(timeout) for p in retiring))
            await _bounded("closing sources", (p.close_stream() for p in retiring))
            retired = [c for name, c in self.connectors.items() if connectors.get(name) is not c]
            await self._retire_control(config, retired)
            for connector in retired:
                await self._forget_connector(connector)
                self._ready.discard(connector.name)
            self.connectors = connectors
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
            await _bounded("closing connectors", (c.close() for c in retired))
            fresh = [_Pipeline(self, group) for group in fresh_groups]
            self.pipelines = kept + fresh
            self._waiting = [p for p in self._waiting if p in kept] + fresh
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

    async def stop(self) -> None:
        """Graceful stop: stop consuming, drain in-flight work, close connectors."""
        if self.control is not None:
            await self.control.stop()
        self._stopping = True  # routes still waiting for a connector never start
        for name in list(self._connecting):
            await self._forget_connector(self.connectors[name])
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
        await self.store.close()
        self._stopped.set()
        log.info("gateway %s stopped", self.config.gateway.id)

    def in_flight(self) -> int:
        return sum(len(p.tasks) for p in self.pipelines)

    async def wait_stopped(self) -> None:
        await self._stopped.wait()
