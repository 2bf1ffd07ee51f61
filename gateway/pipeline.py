"""One pipeline per distinct route source: consume, then process each delivery.

The consume loop pulls a delivery only when one of the group's ``max_in_flight``
slots is free (backpressure) and starts one task per delivery. Processing a
delivery: plan it (``gateway.plan``: decode and verify once, then per route ingress
-> filter -> mesh loop guard -> rendered targets), then act on each route's plan:
publish to its targets (``gateway.delivery``: retries, dead letter, local store),
count, and ack the source once every route said it may be (docs/delivery.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING

from connectors.base import Delivery
from connectors.errors import ConnectorError
from gateway.batch import Batcher
from gateway.delivery import Deliverer, Failure, record
from gateway.inflight import Heartbeats, Lanes, Slots
from gateway.plan import (
    Filtered,
    Forward,
    Looped,
    Rejected,
    decode,
    plan_route,
    source_verifier,
    verify,
)
from routing.errors import InvalidEvent
from routing.event import CloudEvent
from routing.router import Route, SourceGroup
from routing.verifiability import SignatureError

if TYPE_CHECKING:
    from gateway.runtime import Gateway

__all__ = ["Pipeline"]

# The runtime's logger (docs/operations.md names it), whichever runtime module logs.
log = logging.getLogger("meshgate.runtime")

GIVE_BACK_SECONDS = 2.0
"""Longest wait for one ``nack(requeue=True)`` of a delivery given back."""
_SETTLED = 5.0
"""Seconds a resubscribed source must run without failing before a source failure no
longer counts against readiness (or until it delivers a message, whichever is first)."""


class Pipeline:
    """Consumes one source and processes its deliveries for all routes reading it."""

    def __init__(self, gateway: Gateway, group: SourceGroup) -> None:
        self.gateway = gateway
        self.group = group
        self.connector = gateway.connectors[group.connector]
        self.slots = Slots(group.max_in_flight)
        self.ordered = group.ordered  # read per delivery; computed from the routes
        self.tasks: set[asyncio.Task[None]] = set()
        self.acking: set[int] = set()  # deliveries whose ack is under way (by id)
        self.lanes = Lanes()
        self.heartbeats = Heartbeats()
        self.consumer: asyncio.Task[None] | None = None
        self.stream: AsyncIterator[Delivery] | None = None
        self.stopping = False
        self.pulling = False
        # Cleared while the local dead-letter store refuses writes: no new deliveries
        # are pulled (the route stops, loudly) until one is stored again.
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.deliverer = Deliverer(gateway, group, self.connector.address_separator, self.flowing)
        self.consumed = 0  # deliveries pulled from the source (metrics)
        # Deliveries pulled in this event-loop turn, processed together (gateway.batch).
        self.batch: list[Delivery] = []
        self.held = 0  # deliveries in flight (pulled, not settled): each holds a slot
        self.batcher = Batcher(self)
        self.source_error = ""  # why the source iterator last failed ("" once it recovered)
        self.subscribed_at = 0.0  # monotonic time the current source iterator was made
        self.verifier, self.strict = source_verifier(group.source)
        self.signature_failures = 0  # passthrough: events forwarded despite a bad signature

    def start(self) -> None:
        self._log_guarantees()
        self.consumer = asyncio.create_task(self._supervise(), name=f"consume:{self.group.name}")

    def _log_guarantees(self) -> None:
        """Say at start where routes read and which of their ends are at-most-once
        (the connectors' per-source and per-target capabilities)."""
        group, connector = self.group, self.connector
        caps = type(connector).source_capabilities(connector.options, group.source)
        weak = [] if caps.acknowledgements else ["the source does not acknowledge"]
        for route in group.routes:
            for target in route.targets:
                end = self.gateway.connectors[target.connector]
                if not type(end).target_capabilities(end.options, target.options).confirmed_publish:
                    weak.append(f"route {route.name}: {target.describe()} is not confirmed")
        what = "at-most-once: " + "; ".join(weak) if weak else "at-least-once"
        log.info(
            "routes %s read %s (%s)", group.name, connector.describe_source(group.source), what
        )

    async def _supervise(self) -> None:
        """Keep consuming. A lost connection never gets here: ``consume`` is the core's
        supervision, which subscribes again after the connector's declared connection
        errors. What does (a refused subscription, a plugin bug) is logged and
        subscribed again after the shared reconnect backoff."""
        backoff = self.connector.new_backoff()
        while True:
            try:
                await self._consume()
                return
            except (ConnectorError, OSError) as exc:
                self.source_error = str(exc) or type(exc).__name__
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

    def source_problem(self) -> str:
        """Why the source is not consuming after a failure (a denied subscription, a
        refused consumer), or "": readiness (``/readyz``) shows it while the source
        retries, until the resubscribed source delivers or runs ``_SETTLED`` seconds."""
        if not self.source_error:
            return ""
        if self.stream is not None and time.monotonic() - self.subscribed_at >= _SETTLED:
            self.source_error = ""
        return self.source_error

    async def _consume(self) -> None:
        self.subscribed_at = time.monotonic()
        self.stream = stream = aiter(self.connector.consume(self.group.source))
        while not self.stopping:
            # Take a slot first: the next message is pulled only when one is free.
            if not self.slots.take_now():
                await self.slots.take()
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
            self.source_error = ""  # delivering again
            if self.stopping:
                # Pulled while stopping: never processed. Given back (JetStream -NAK,
                # AMQP requeue, Kafka rewind; MQTT never acks it), so the next consumer
                # gets it soon: left unacknowledged, JetStream would hold it until
                # ack_wait_seconds (30 s) after the restart.
                await self._give_back(delivery)
                self.slots.release()
                return
            self.consumed += 1
            # What the source had buffered arrives without a trip through the event
            # loop: collected here and launched as one batch once this loop waits.
            if not self.batch:
                asyncio.get_running_loop().call_soon(self._launch)
            self.batch.append(delivery)
            self.held += 1

    def _launch(self) -> None:
        """Process the deliveries pulled since the last launch: as one batch when the
        batch path takes them (``gateway.batch``), else one task each."""
        batch, self.batch = self.batch, []
        if not batch:
            return
        if len(batch) > 1 and self.batcher.takes():
            task = asyncio.create_task(self.batcher.process(batch))
            self.tasks.add(task)
            task.add_done_callback(self._batch_finished)
            return
        for delivery in batch:
            self.spawn(delivery)

    def spawn(self, delivery: Delivery) -> None:
        """Process ``delivery`` alone in a task of its own, which frees its slot when done."""
        task = asyncio.create_task(self._process(delivery))
        self.tasks.add(task)
        task.add_done_callback(self._finished)

    def _batch_finished(self, task: asyncio.Task[None]) -> None:
        # A batch frees its deliveries' slots itself, each as it is settled.
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("bug: batch processing task failed", exc_info=task.exception())

    async def give_back(self, delivery: Delivery) -> None:
        """``nack(requeue=True)`` of a delivery abandoned unsettled (see ``_give_back``)."""
        await self._give_back(delivery)

    async def _give_back(self, delivery: Delivery) -> None:
        """``nack(requeue=True)``: the broker redelivers it now (AMQP requeue, JetStream
        -NAK, Kafka rewind, MQTT redelivery on the next connection) instead of when the
        connection closes or JetStream's ack_wait runs out. Bounded: a broker that is
        gone gets the same outcome from the unacknowledged message."""
        try:
            async with asyncio.timeout(GIVE_BACK_SECONDS):
                await delivery.nack(requeue=True)
        except (ConnectorError, TimeoutError) as exc:  # unacknowledged: redelivered later
            log.debug("nack of an unfinished delivery failed: %s", exc)

    def free_slot(self) -> None:
        """A delivery is settled (or given up at shutdown): its slot is free."""
        self.held -= 1
        self.slots.release()

    def _finished(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        self.free_slot()
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
        self._launch()  # pulled in this loop turn: in flight too
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        # Looped: a batch may start tasks of its own while it runs.
        while self.tasks and (left := deadline - loop.time()) > 0:
            await asyncio.wait(set(self.tasks), timeout=left)
        pending = set(self.tasks)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        return len(pending)

    # -- per delivery -------------------------------------------------------------------

    async def process(self, delivery: Delivery) -> None:
        """Process one delivery alone (the per-delivery path); its slot stays taken."""
        await self._process(delivery)

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
        except asyncio.CancelledError:
            # Abandoned: still unfinished after the drain timeout (stop, or its routes
            # removed by a reload), e.g. a route without a dead letter retrying a
            # target outage until it ends. Given back so the broker redelivers it;
            # never once its ack was under way (a nack after an ack is refused).
            if token not in self.acking:
                await self._give_back(delivery)
            raise
        finally:
            self.acking.discard(token)
            self.heartbeats.remove(token)

    async def _process_now(self, delivery: Delivery, started: float) -> None:
        decoded, decode_error = decode(self.connector, delivery)
        if self.verifier is not None and decode_error is None:
            try:
                decoded = verify(self.verifier, decoded)
            except SignatureError as exc:
                decoded, decode_error = self._refused(decoded, delivery, exc)
        routes: Sequence[Route] = self.group.routes
        if decoded is not None:  # one event for every route: match them all at once
            routes, rejected = self.group.split(decoded)
            if rejected:
                self._filtered(rejected, decoded, delivery)
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
            await self.ack(delivery)

    async def ack(self, delivery: Delivery) -> None:
        """Ack ``delivery`` (every route said it may be); a failed ack is logged. From
        here on it is never given back (``acking``: a nack after an ack is refused);
        the caller discards it from ``acking`` once the delivery is done."""
        if not delivery.settles:  # at-most-once: the ack would tell the broker nothing
            return
        self.acking.add(id(delivery))
        try:
            await delivery.ack()
        except ConnectorError as exc:
            # The broker will redeliver: a duplicate, never a loss.
            log.warning("ack failed on %s (will be redelivered): %s", self.group.connector, exc)

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

    def _filtered(self, routes: Sequence[Route], event: CloudEvent, delivery: Delivery) -> None:
        """Count ``routes``, whose filter rejected ``event`` (``SourceGroup.split``), as
        received and filtered; nothing else happens for them."""
        stats = self.gateway.stats
        for route in routes:
            skipped = stats[route.name]
            skipped.received += 1
            skipped.filtered += 1
            if self.gateway.follower is not None:
                self.gateway.follower(route.name, "filtered", event, delivery, None)

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
            plan = plan_route(
                route,
                delivery,
                decoded,
                decode_error,
                self.connector.address_separator,
                self.gateway.loop_guard,
                matched=decoded is not None,  # SourceGroup.split chose this route
            )
            if isinstance(plan, Forward):
                return await self._forward(route, plan, delivery, started)
            return await self._settle(route, plan, delivery)
        except BaseException as exc:  # cancelled after the drain timeout, or a bug
            stats.failed += 1
            record(self.gateway, route.name, "failed", decoded, delivery, exc)
            raise
        finally:
            stats.in_flight -= 1

    async def _forward(
        self, route: Route, plan: Forward, delivery: Delivery, started: float
    ) -> bool:
        """Publish to every target of ``plan``; dead-letter the first failure."""
        targets = plan.targets
        deliverer = self.deliverer
        if len(targets) == 1:  # no gather (a task per target) for the common case
            outcomes = [await deliverer.publish(route, targets[0])]
        else:
            outcomes = await asyncio.gather(
                *(deliverer.publish(route, target) for target in targets)
            )
        failures: list[Failure] = [outcome for outcome in outcomes if outcome is not None]
        if failures:
            error, attempts, failed = failures[0]
            return await deliverer.dead_letter(route, delivery, plan.event, error, attempts, failed)
        stats = self.gateway.stats[route.name]
        stats.delivered += 1
        if started:
            stats.duration.observe(time.perf_counter() - started)
        if self.gateway.follower is not None:
            self.gateway.follower(route.name, "delivered", plan.event, delivery, None)
        if self.gateway.tracing is not None:
            self.gateway.tracing.outcome("delivered")
        return True

    async def _settle(
        self, route: Route, plan: Rejected | Filtered | Looped, delivery: Delivery
    ) -> bool:
        """A delivery ``route`` does not forward: dead-lettered, or acked and counted."""
        if isinstance(plan, Rejected):
            return await self.deliverer.dead_letter(route, delivery, None, plan.error, 0)
        stats = self.gateway.stats[route.name]
        tracing = self.gateway.tracing
        if isinstance(plan, Filtered):
            stats.filtered += 1
            if tracing is not None:
                tracing.outcome("filtered")
            if self.gateway.follower is not None:
                self.gateway.follower(route.name, "filtered", plan.event, delivery, None)
            return True
        # A mesh loop (gateway/mesh.py): acked, never forwarded.
        self.gateway.loop_guard.dropped(route.name, plan.event, plan.why)
        stats.loop_dropped += 1
        record(self.gateway, route.name, "loop_dropped", plan.event, delivery)
        if tracing is not None:
            tracing.outcome("loop_dropped")
        return True
