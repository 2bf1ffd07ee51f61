"""The batch path: what a source handed over in one go, processed as one batch.

The pipeline (``gateway.pipeline``) collects the deliveries it pulls without waiting
(a JetStream pull batch, an aiokafka ``getmany``, a burst in any source's buffer),
bounded by the free ``max_in_flight`` slots. ``Batcher.process`` then:

1. plans every delivery (decode, verify, match, render: ``gateway.plan``, as for one);
2. publishes every rendered target of the batch with one ``publish_many`` per target
   connector (``connectors.base.BatchPublisher``): all sent, then one wait for all
   confirmations;
3. acks every delivery whose targets all confirmed, in one go (JetStream: the
   ``+ACK``s leave in one write; Kafka: the commit point moves, committed once);
4. retries or dead-letters each failed event alone (``Deliverer.publish`` carries on
   from the failed first attempt), holding only its own slot.

A delivery the batch path does not take (not a CloudEvent, invalid, filtered by one
of its routes, a mesh loop, a template error, a target connector without
``publish_many``) is processed alone, exactly as without batches. A group with an
``ordered`` route or without any target that has ``publish_many``, a gateway tracing
each event, and a batch of one take the per-delivery path entirely
(``Batcher.takes``), so per-key order and spans are kept as they are.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from connectors.base import Delivery
from gateway.delivery import Failure, record
from gateway.plan import Forward, Rendered, decode, plan_route, verify
from routing.event import CloudEvent
from routing.router import Route
from routing.verifiability import SignatureError

if TYPE_CHECKING:
    from gateway.pipeline import Pipeline

__all__ = ["Batcher"]

log = logging.getLogger("meshgate.runtime")


@dataclass(slots=True)
class _Entry:
    """One delivery on the batch path: its forwarded routes and what failed."""

    delivery: Delivery
    forwards: list[tuple[Route, Forward]]
    failed: dict[int, list[tuple[Rendered, Exception]]] | None = None
    """Index in ``forwards`` -> the targets of that route that failed, with why (made
    for the first failure: most batches have none)."""


class Batcher:
    """Processes batches of deliveries for one pipeline (see the module docstring)."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.gateway = pipeline.gateway
        self.batches = 0  # batches processed on the batch path (tests, diagnostics)
        # Connector class -> whether it has publish_many (connectors.base.BatchPublisher):
        # looked up once per class, not per event.
        self._publishers: dict[type, bool] = {}
        self._routes: dict[str, bool] = {}  # route name -> _batches(route)
        self._connectors = self.gateway.connectors  # the ones _routes was made with

    def takes(self) -> bool:
        """Whether batches of this pipeline go the batch path now: not ordered, not
        traced, and a target of its routes can take a batch (else nothing would)."""
        if self.pipeline.ordered or self.gateway.tracing is not None:
            return False
        routes = self.pipeline.group.routes
        return any(self._publisher(t.connector) for route in routes for t in route.targets)

    async def process(self, batch: list[Delivery]) -> None:
        """Plan, publish, ack ``batch``; each delivery's slot is freed once it is settled."""
        pipeline = self.pipeline
        self.batches += 1
        started = time.perf_counter() if self.gateway.timed else 0.0
        entries: list[_Entry] = []
        settled: set[int] = set()  # ids of the deliveries whose slot was freed
        tasks: list[asyncio.Future[None]] = []
        try:
            for delivery in batch:
                if delivery.in_progress is not None:
                    pipeline.heartbeats.add(id(delivery), delivery.in_progress)
                try:
                    entry = self._plan(delivery)
                except Exception:  # the per-delivery way reports it; the batch goes on
                    log.debug("planning for the batch path failed; processed alone", exc_info=True)
                    entry = None
                if entry is None:
                    tasks.append(asyncio.ensure_future(self._alone(delivery, settled)))
                else:
                    entries.append(entry)
            if entries:
                await self._publish(entries)
                # The failed ones start retrying before the others are acked: an ack
                # that fails must not leave them without retry or dead letter.
                tasks += [
                    asyncio.ensure_future(self._recover(entry, started, settled))
                    for entry in entries
                    if entry.failed
                ]
                await self._ack([entry for entry in entries if not entry.failed], started, settled)
            if tasks:
                await _all(tasks)
        except asyncio.CancelledError:
            # Abandoned after the drain timeout: the deliveries' own tasks end first
            # (each gives its delivery back), then the rest not settled are given back,
            # all at once (each bounded), so the broker redelivers them; never one whose
            # ack was under way.
            await _cancel(tasks)
            await asyncio.gather(
                *(
                    pipeline.give_back(delivery)
                    for delivery in batch
                    if id(delivery) not in settled and id(delivery) not in pipeline.acking
                )
            )
            raise
        finally:
            await _cancel(tasks)
            for delivery in batch:
                if id(delivery) not in settled:
                    self._free(delivery, settled)

    def _free(self, delivery: Delivery, settled: set[int]) -> None:
        settled.add(id(delivery))
        if delivery.in_progress is not None:  # only those beat (see process)
            self.pipeline.heartbeats.remove(id(delivery))
        self.pipeline.free_slot()

    # -- planning -------------------------------------------------------------------

    def _plan(self, delivery: Delivery) -> _Entry | None:
        """The routes ``delivery`` is forwarded on, all to batch publishers; None when
        anything else happens to it (it is processed alone)."""
        pipeline = self.pipeline
        event, error = decode(pipeline.connector, delivery)
        if error is not None or event is None:
            return None
        if pipeline.verifier is not None:
            try:
                event = verify(pipeline.verifier, event)
            except SignatureError:
                return None
        routes, rejected = pipeline.group.split(event)
        if rejected or not routes:
            return None
        forwards: list[tuple[Route, Forward]] = []
        for route in routes:
            plan = plan_route(
                route,
                delivery,
                event,
                None,
                pipeline.connector.address_separator,
                self.gateway.loop_guard,
                matched=True,
            )
            if not isinstance(plan, Forward) or not self._batches(route):
                return None
            for rendered in plan.targets:  # a loop, not all(genexpr): this runs per event
                if rendered.error is not None:
                    return None
            forwards.append((route, plan))
        return _Entry(delivery, forwards)

    def _batches(self, route: Route) -> bool:
        """Whether every target of ``route`` is a batch publisher (known per route, until
        a reload replaces the connectors)."""
        if self._connectors is not self.gateway.connectors:
            self._connectors = self.gateway.connectors
            self._routes.clear()
        known = self._routes.get(route.name)
        if known is None:
            known = self._routes[route.name] = all(
                self._publisher(target.connector) for target in route.targets
            )
        return known

    def _publisher(self, name: str) -> bool:
        """Whether connector ``name`` has ``publish_many`` (``BatchPublisher``)."""
        connector = self.gateway.connectors[name]
        known = self._publishers.get(type(connector))
        if known is None:
            # Not isinstance(BatchPublisher): a runtime-checkable Protocol is an ABC,
            # which caches a class it matched once for the life of the process.
            known = callable(getattr(connector, "publish_many", None))
            self._publishers[type(connector)] = known
        return known

    # -- publishing -----------------------------------------------------------------

    async def _publish(self, entries: list[_Entry]) -> None:
        """One ``publish_many`` per target connector, all at once; failures noted."""
        stats = self.gateway.stats
        jobs, routed = _jobs(entries)
        for name, count in routed.items():
            counts = stats[name]
            counts.received += count
            counts.in_flight += count
        names = list(jobs)
        try:
            outcomes = await _all([self._publish_to(name, jobs[name]) for name in names])
        except BaseException:  # cancelled after the drain timeout: nothing settled
            for entry in entries:
                for route, _plan in entry.forwards:
                    stats[route.name].in_flight -= 1
                    stats[route.name].failed += 1
            raise
        for name, results in zip(names, outcomes, strict=True):
            for (entry, index, rendered), error in zip(jobs[name], results, strict=True):
                if error is not None:
                    if entry.failed is None:
                        entry.failed = {}
                    entry.failed.setdefault(index, []).append((rendered, error))

    async def _publish_to(self, name: str, jobs: list[_Job]) -> list[Exception | None]:
        connector: Any = self.gateway.connectors[name]
        begun = time.perf_counter() if self.gateway.timed else 0.0
        try:
            results: list[Exception | None] = await connector.publish_many(
                [(rendered.options, rendered.event) for _entry, _index, rendered in jobs]
            )
        except Exception as exc:  # a connector bug: each event retries alone
            results = [exc] * len(jobs)
        sent = self.gateway.connector_stats[name]
        confirmed = results.count(None)
        sent.published += confirmed
        if begun and confirmed:
            took = time.perf_counter() - begun
            for _ in range(confirmed):
                sent.duration.observe(took)
        return results

    # -- settling -------------------------------------------------------------------

    async def _ack(self, entries: list[_Entry], started: float, settled: set[int]) -> None:
        """Count and ack the deliveries whose every target confirmed."""
        stats = self.gateway.stats
        if started or self.gateway.follower is not None:
            for entry in entries:
                for route, plan in entry.forwards:
                    stats[route.name].in_flight -= 1
                    self._delivered(route, plan.event, entry.delivery, started)
        else:  # nothing per event to record: counted once per route
            done: dict[str, int] = {}
            for entry in entries:
                for route, _plan in entry.forwards:
                    done[route.name] = done.get(route.name, 0) + 1
            for name, count in done.items():
                counts = stats[name]
                counts.in_flight -= count
                counts.delivered += count
        for entry in entries:
            delivery = entry.delivery
            if not delivery.settles:  # at-most-once: no ack to send, only the slot to free
                self._free(delivery, settled)
                continue
            try:
                await self._settle(delivery, settled)
            except Exception as exc:  # a connector bug: the others are still acked
                log.warning("ack failed (will be redelivered): %r", exc)

    async def _settle(self, delivery: Delivery, settled: set[int]) -> None:
        try:
            await self.pipeline.ack(delivery)
        finally:
            self.pipeline.acking.discard(id(delivery))
            self._free(delivery, settled)

    def _delivered(
        self, route: Route, event: CloudEvent, delivery: Delivery, started: float
    ) -> None:
        stats = self.gateway.stats[route.name]
        stats.delivered += 1
        if started:
            stats.duration.observe(time.perf_counter() - started)
        if self.gateway.follower is not None:
            self.gateway.follower(route.name, "delivered", event, delivery, None)

    async def _recover(self, entry: _Entry, started: float, settled: set[int]) -> None:
        """Retry (or dead-letter) the failed targets of one delivery, then ack it."""
        deliverer = self.pipeline.deliverer
        may_ack = True
        for index, (route, plan) in enumerate(entry.forwards):
            stats = self.gateway.stats[route.name]
            failed = (entry.failed or {}).get(index)
            try:
                if not failed:
                    self._delivered(route, plan.event, entry.delivery, started)
                    continue
                outcomes = await _all(
                    [deliverer.publish(route, rendered, error) for rendered, error in failed]
                )
                failures: list[Failure] = [outcome for outcome in outcomes if outcome]
                if not failures:
                    self._delivered(route, plan.event, entry.delivery, started)
                    continue
                error, attempts, target = failures[0]
                stored = await deliverer.dead_letter(
                    route, entry.delivery, plan.event, error, attempts, target
                )
                may_ack = may_ack and stored
            except BaseException as exc:  # cancelled after the drain timeout, or a bug
                stats.failed += 1
                record(self.gateway, route.name, "failed", plan.event, entry.delivery, exc)
                raise
            finally:
                stats.in_flight -= 1
        if may_ack:
            await self._settle(entry.delivery, settled)
        else:
            self._free(entry.delivery, settled)

    async def _alone(self, delivery: Delivery, settled: set[int]) -> None:
        """The per-delivery path, for a delivery the batch path does not take."""
        try:
            await self.pipeline.process(delivery)
        finally:
            self._free(delivery, settled)


_Job = tuple[_Entry, int, Rendered]
"""One publish of a batch: the entry, the index of its route in ``forwards``, the target."""


def _jobs(entries: list[_Entry]) -> tuple[dict[str, list[_Job]], dict[str, int]]:
    """(target connector -> its publishes, route name -> entries forwarded on it)."""
    jobs: dict[str, list[_Job]] = {}
    routed: dict[str, int] = {}
    for entry in entries:
        for index, (route, plan) in enumerate(entry.forwards):
            routed[route.name] = routed.get(route.name, 0) + 1
            for rendered in plan.targets:
                job = jobs.get(rendered.target.connector)
                if job is None:  # not setdefault: it would make a list per event
                    job = jobs[rendered.target.connector] = []
                job.append((entry, index, rendered))
    return jobs, routed


async def _cancel(tasks: Sequence[asyncio.Future[None]]) -> None:
    """Cancel ``tasks`` and wait until they ended (a no-op for those done)."""
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)


async def _all(awaitables: list[Any]) -> list[Any]:
    """Await every one; the first error is raised once all are done (none is left
    running behind a failure, so no delivery is settled twice or left unsettled)."""
    if len(awaitables) == 1:
        return [await awaitables[0]]
    results = await asyncio.gather(*awaitables, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results
