"""Connection supervision, owned by the core: one backoff, one health model, one count.

A connector only says how to connect once and which exceptions mean "connection
lost" (``Connector.connection_errors``). Everything around that lives here, the same
for every connector and plugin (Redpanda Connect's core retries ``Connect``; kombu's
``Connection.ensure`` retries on declared connection errors):

* ``Supervisor.retry(key, attempt)`` runs one "connect once" step until it succeeds,
  waiting the shared backoff (``gateway.reconnect``) between attempts;
* ``Supervisor.lost(key, ...)`` / ``connected(key)`` are the only health transitions:
  a connector with several connections (MQTT: one session per source) reports each
  under its own key, and ``Health`` shows RECONNECTING while any key is down;
* ``consume_supervised`` restarts a source: it runs ``Connector.subscribe`` again,
  after the backoff, whenever it ends with a declared connection error.

``Health.reconnects`` has one meaning for every connector: the number of times a
connection (a key) came back after a loss, i.e. RECONNECTING -> UP per key. Failed
attempts, first connections and re-opened subscriptions are not reconnects.

Pacing: each key has its own attempt counter. It starts over only once a connection
held for ``STEADY_SECONDS``, so a broker that accepts and drops at once makes the waits
grow instead of looping. A connector that recognises a loss as suspicious (an MQTT
session takeover: another client uses the same id) reports it with
``lost(key, ..., suspect=True)``; the waits of that key then keep growing until a
connection held ``CALM_SECONDS``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from connectors.backoff import Backoff, BackoffPolicy
from connectors.errors import ConnectionLost

if TYPE_CHECKING:
    from connectors.base import Connector, Delivery, Health

__all__ = [
    "CALM_SECONDS",
    "STEADY_SECONDS",
    "Supervisor",
    "SupervisorClosed",
    "consume_supervised",
    "source_key",
]

STEADY_SECONDS = 2.0
"""A connection that held this long resets its key's backoff when it is lost."""
CALM_SECONDS = 60.0
"""After a suspicious loss, a connection must hold this long before the waits shrink."""

_T = TypeVar("_T")


class SupervisorClosed(ConnectionLost):
    """The connector is closing: stop retrying (never retried itself)."""


@dataclass(slots=True)
class _Line:
    """One supervised connection (or subscription) of a connector."""

    backoff: Backoff
    connection: bool = True
    """Counts in ``Health.reconnects`` and ``Health.state``; False for subscriptions."""
    since: float | None = None
    """Loop time of the last ``connected``; None while down."""
    down: str | None = None
    """Why it is down (None while up or never tried)."""
    suspect: bool = False
    was_up: bool = False


@dataclass(slots=True)
class Supervisor:
    """The health and reconnect pacing of one connector (``Connector.supervisor``)."""

    health: Health
    describe: Callable[[], str]
    """How log lines name the connector (``Connector.label``, read when logging)."""
    log: logging.Logger
    errors: tuple[type[BaseException], ...] = (ConnectionLost,)
    """The connector's declared connection errors: retried, never dead-lettered."""
    policy: BackoffPolicy = field(default_factory=BackoffPolicy)
    """The gateway's shared reconnect policy; the core sets it before ``start``."""
    closing: bool = False
    _lines: dict[str, _Line] = field(default_factory=dict)
    _up_detail: str = ""
    _closed: asyncio.Event | None = None
    _parts: dict[str, set[str]] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.describe()

    def use(self, policy: BackoffPolicy) -> None:
        """Follow ``policy`` from now on (a reload changed ``gateway.reconnect``)."""
        if policy != self.policy:
            self.policy = policy
            for line in self._lines.values():
                line.backoff = policy.backoff()

    def _line(self, key: str, connection: bool = True) -> _Line:
        line = self._lines.get(key)
        if line is None:
            line = self._lines[key] = _Line(self.policy.backoff(), connection)
        return line

    # -- health transitions ------------------------------------------------------------

    def starting(self, detail: str = "") -> None:
        """Not connected yet (a first attempt failed with ``detail``, or a restart)."""
        from connectors.base import HealthState  # base imports this module

        self.closing = False
        self._closed = None
        self.health.state = HealthState.STARTING
        self.health.detail = detail

    def connected(self, key: str = "", detail: str = "", *, connection: bool = True) -> None:
        """Connection ``key`` is up (again): a reconnect if it was lost."""
        line = self._line(key, connection)
        if line.down is not None and line.was_up and line.connection:
            self.health.reconnects += 1
        if line.down is not None or line.since is None:  # since: when it came up
            line.since = asyncio.get_running_loop().time()
        line.down, line.was_up = None, True
        if detail:
            self._up_detail = detail
        self._fold()

    def lost(
        self, key: str, detail: str, *, suspect: bool = False, connection: bool = True
    ) -> None:
        """Connection ``key`` is down (lost, or an attempt failed) because of ``detail``.

        ``suspect``: the connector recognised the loss as one that repeats (a session
        takeover), so the waits keep growing until a connection held ``CALM_SECONDS``.
        """
        line = self._line(key, connection)
        if line.since is not None:
            lived = asyncio.get_running_loop().time() - line.since
            if lived >= max(CALM_SECONDS, 3 * line.backoff.maximum):
                line.suspect = False
            if lived >= STEADY_SECONDS and not (line.suspect or suspect):
                line.backoff.reset()
        line.suspect = line.suspect or suspect
        line.since = None
        line.down = detail
        self._fold()

    def is_down(self, key: str) -> bool:
        """Whether ``key`` was lost and has not connected since."""
        line = self._lines.get(key)
        return line is not None and line.down is not None

    def attach(self, parent: str, key: str) -> None:
        """Connection ``key`` belongs to ``parent`` (a source's own session belongs to
        its ``source_key``): forgetting the parent forgets it too."""
        self._parts.setdefault(parent, set()).add(key)

    def forget(self, key: str) -> None:
        """Connection ``key`` (and what is attached to it) is gone on purpose (a source
        stopped): no longer part of the health."""
        self._lines.pop(key, None)
        for part in self._parts.pop(key, ()):
            self._lines.pop(part, None)
        self._fold()

    def closed(self) -> None:
        """The connector closed on purpose: CLOSED, and every ``retry`` stops."""
        from connectors.base import HealthState

        self.closing = True
        if self._closed is not None:
            self._closed.set()
        self._lines.clear()
        self.health.state = HealthState.CLOSED
        self.health.detail = ""

    def _fold(self) -> None:
        from connectors.base import HealthState

        health = self.health
        if health.state is HealthState.CLOSED and self.closing:
            return
        down = next(
            (
                (k, ln.down)
                for k, ln in self._lines.items()
                if ln.down is not None and ln.connection
            ),
            None,
        )
        if health.state is HealthState.STARTING:
            if down is not None:
                health.detail = down[1]
            elif any(ln.was_up for ln in self._lines.values() if ln.connection):
                health.state, health.detail = HealthState.UP, self._up_detail
            return
        if down is not None:
            key, detail = down
            health.state = HealthState.RECONNECTING
            health.detail = f"{key}: {detail}" if key else detail
        else:
            health.state, health.detail = HealthState.UP, self._up_detail

    # -- pacing --------------------------------------------------------------------------

    def next_delay(self, key: str = "") -> float:
        """The next wait of ``key``'s backoff (and count the attempt)."""
        return self._line(key).backoff.next_delay()

    async def pause(self, key: str = "", stop: asyncio.Event | None = None) -> None:
        """Wait before the next attempt of ``key``; ``SupervisorClosed`` once closing
        (``closed()`` ends the wait at once) or once ``stop`` (one source's) is set."""
        delay = self.next_delay(key)
        if self._closed is None:
            self._closed = asyncio.Event()
        if self.closing:
            self._closed.set()
        waits = [asyncio.ensure_future(self._closed.wait())]
        if stop is not None:
            waits.append(asyncio.ensure_future(stop.wait()))
        try:
            await asyncio.wait(waits, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
        if self.closing or (stop is not None and stop.is_set()):
            raise SupervisorClosed(f"{self.label}: closed")

    def backoff(self) -> Backoff:
        """A fresh attempt counter following the shared policy (for a core loop)."""
        return self.policy.backoff()

    async def retry(
        self,
        key: str,
        attempt: Callable[[], Awaitable[_T]],
        *,
        connection: bool = True,
        first_wait: bool = True,
        attempts: int | None = None,
        stop: asyncio.Event | None = None,
    ) -> _T:
        """Run ``attempt`` (connect once) until it succeeds; retries the declared
        connection errors after the key's backoff, and raises anything else.

        ``SupervisorClosed`` once the connector is closing. ``first_wait=False`` makes
        the first attempt at once; ``attempts`` bounds the tries (the last error is
        raised then); ``stop`` ends the retries of one source early.
        """
        line = self._line(key, connection)
        wait = first_wait
        tried = 0
        while True:
            tried += 1
            if wait:
                await self.pause(key, stop)
            wait = True
            if self.closing or (stop is not None and stop.is_set()):
                raise SupervisorClosed(f"{self.label}: closed")
            try:
                result = await attempt()
            except self.errors as exc:
                if self.closing:
                    raise SupervisorClosed(f"{self.label}: closed") from exc
                self.lost(key, str(exc), suspect=_suspect(exc), connection=connection)
                if attempts is not None and tried >= attempts:
                    raise
                self.log.log(
                    logging.DEBUG if _suspect(exc) else logging.WARNING,  # said once already
                    "%s: %s failed (attempt %d): %s",
                    self.label,
                    key or "reconnect",
                    line.backoff.attempt,
                    exc,
                )
                continue
            self.connected(key, connection=connection)
            return result


def source_key(connector: Connector[Any, Any, Any], source: Any) -> str:
    """The supervisor's key of ``source``'s subscription (see ``Supervisor.attach``)."""
    return f"source {connector.describe_source(source)}"


def _suspect(error: BaseException) -> bool:
    return bool(getattr(error, "suspect", False))


async def consume_supervised(
    connector: Connector[Any, Any, Any], source: Any
) -> AsyncIterator[Delivery]:
    """Deliveries of ``connector.subscribe(source)``, subscribing again after the shared
    backoff whenever it ends with one of the connector's declared connection errors.

    Ends when ``subscribe`` returns (the connector closed) or the connector closes.
    In-flight deliveries of an ended subscription keep their ack/nack: settling them
    may fail (the broker then redelivers, a duplicate, never a loss).
    """
    supervisor = connector.supervisor
    key = source_key(connector, source)
    try:
        while not supervisor.closing:
            stream = connector.subscribe(source)
            # Paced like a connection (a subscription that held resets the waits), but
            # not one: no health state, no reconnect count.
            supervisor.connected(key, connection=False)
            try:
                async for delivery in stream:
                    yield delivery
                return
            except supervisor.errors as exc:
                if supervisor.closing or isinstance(exc, SupervisorClosed):
                    return
                supervisor.lost(key, str(exc), suspect=_suspect(exc), connection=False)
                # Usually the consequence of a connection loss the connector logged: a
                # WARNING only once re-subscribing keeps failing.
                repeated = supervisor._line(key).backoff.attempt >= 2
                supervisor.log.log(
                    logging.WARNING if repeated else logging.INFO,
                    "%s: %s ended, subscribing again: %s",
                    connector.label,
                    key,
                    exc,
                )
            finally:
                close = getattr(stream, "aclose", None)
                if close is not None:
                    await close()
            try:
                await supervisor.pause(key)
            except SupervisorClosed:
                return
    finally:
        supervisor.forget(key)
