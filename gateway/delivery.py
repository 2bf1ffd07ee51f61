"""Delivering one event of one route: publish with retries, dead letter, local store.

``Deliverer.publish`` publishes to one target, retrying a retriable failure with
backoff (past ``max_attempts`` when the route has no dead letter: an outage then
holds the slot, which is the backpressure). ``Deliverer.dead_letter`` hands a
failed message to the route's dead-letter target and, when there is none or it
refuses too, ``Deliverer.store`` writes it to the local dead-letter store
(``gateway.dlstore``). Each returns only once it is safe to ack the source
(docs/delivery.md); the pipeline (``gateway.pipeline``) decides what to call.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from connectors.backoff import Backoff
from connectors.base import Connector, Delivery
from connectors.errors import ConnectorError
from gateway.dlstore import StoreError
from gateway.plan import Rendered, source_values
from gateway.stats import ConnectorStats
from routing.deadletter import dead_letter_event, reason_of
from routing.errors import InvalidEvent, TemplateError
from routing.event import CloudEvent
from routing.router import Route, SourceGroup

if TYPE_CHECKING:
    from gateway.runtime import Gateway

__all__ = ["Deliverer", "Failure", "record"]

# The runtime's logger (docs/operations.md names it), whichever runtime module logs.
log = logging.getLogger("meshgate.runtime")

Failure = tuple[Exception, int, str]
"""Why a target was not reached: (last error, attempts, the target described)."""


def record(
    gateway: Gateway,
    route: str,
    outcome: str,
    event: CloudEvent | None,
    delivery: Delivery,
    error: BaseException | None = None,
) -> None:
    """Tell the admin server's event log (``/api/events``) of a rare outcome."""
    if gateway.recorder is not None:
        gateway.recorder(route, outcome, event, delivery, error)


class Deliverer:
    """Publishes, dead-letters and stores for the routes of one source group.

    ``flowing`` is the pipeline's pull switch: cleared while the local dead-letter
    store refuses writes, so the source stops pulling until one is stored again.
    """

    def __init__(
        self, gateway: Gateway, group: SourceGroup, separator: str, flowing: asyncio.Event
    ) -> None:
        self.gateway = gateway
        self.group = group
        self.separator = separator
        self.flowing = flowing

    async def publish(
        self, route: Route, rendered: Rendered, failed: Exception | None = None
    ) -> Failure | None:
        """Publish with retries; None on success, else (last error, attempts, target).

        ``failed``: the first attempt was made already (a batch, ``publish_many``) and
        failed with this error; it is handled as this loop's first attempt.
        """
        target, options, event = rendered.target, rendered.options, rendered.event
        if rendered.error is not None:
            return rendered.error, 0, target.describe()
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
            try:
                if failed is None:
                    await self._send(connector, sent, options, event, route)
                    return None
                first, failed = failed, None
                sent.failed += 1  # counted as _send counts a failed attempt
                sent.last_error = f"{type(first).__name__}: {first}"
                raise first
            except (ConnectorError, InvalidEvent) as exc:
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
                # A connector bug (an untranslated client exception): retrying is unlikely
                # to help, and the message must not be stranded; dead-letter it.
                log.exception("route %s: bug: publish to %s raised", route.name, target.describe())
                return exc, attempt, target.describe()
            self.gateway.stats[route.name].retries += 1
            if backoff is None:
                backoff = Backoff(policy.initial_backoff, policy.max_backoff)
            await backoff.sleep()

    async def _send(
        self,
        connector: Connector[Any, Any, Any],
        sent: ConnectorStats,
        options: Any,
        event: CloudEvent,
        route: Route,
        dead_letter_of: BaseException | None = None,
    ) -> None:
        """One publish attempt, counted in the target connector's stats (either outcome)."""
        begun = time.perf_counter() if self.gateway.timed else 0.0
        try:
            if self.gateway.tracing is None:
                await connector.publish(options, event)
            else:  # inside a send span whose context the message carries
                await self.gateway.tracing.send(connector, options, event, route, dead_letter_of)
        except Exception as exc:
            sent.failed += 1
            sent.last_error = f"{type(exc).__name__}: {exc}"
            raise
        sent.published += 1
        if begun:
            sent.duration.observe(time.perf_counter() - begun)

    async def dead_letter(
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
            return await self.store(route, delivery, event, error, attempts, failed_target)
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
            options = target.render(source_values(delivery, self.separator, letter))
        except TemplateError as exc:
            return await self.store(
                route, delivery, event, error, attempts, failed_target, dead_letter_error=exc
            )
        connector = self.gateway.connectors[target.connector]
        sent = self.gateway.connector_stats[target.connector]
        backoff = Backoff(route.retry.initial_backoff, route.retry.max_backoff)
        attempt = 0
        while True:
            attempt += 1
            try:
                await self._send(connector, sent, options, letter, route, error)
            except (ConnectorError, InvalidEvent) as exc:
                if isinstance(exc, InvalidEvent) or not exc.retriable:
                    return await self.store(
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
                log.exception("route %s: bug: dead-letter publish raised", route.name)
                return await self.store(route, delivery, event, error, attempts, failed_target, exc)
            stats.dead_lettered += 1
            record(self.gateway, route.name, "dead_lettered", event, delivery, error)
            if self.gateway.tracing is not None:
                self.gateway.tracing.outcome("dead_lettered", error)
            log.warning(
                "route %s: message on %s dead-lettered to %s: %s: %s",
                route.name,
                delivery.address,
                target.describe(),
                reason_of(error),
                error,
            )
            return True

    async def store(
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
                    reason=reason_of(error),
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
        record(self.gateway, route.name, "undeliverable", event, delivery, error)
        if self.gateway.tracing is not None:
            self.gateway.tracing.outcome("undeliverable", error)
        log.error(
            "route %s: UNDELIVERABLE message on %s:%s stored in the local dead-letter store as "
            "entry %d (see `meshgate dlq show`): %s: %s",
            route.name,
            self.group.connector,
            delivery.address,
            entry,
            reason_of(error),
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
