"""The one AMQP connection of a connector, reconnected by meshgate itself.

aio-pika's robust connection restores channels and consumers in the background,
but it has open reports of coming back with zero consumers (mosquito/aio-pika
#231, #626, #334) and it silently reuses channel numbers, so the connector uses a
plain ``aio_pika.connect`` and this link instead: on loss it hands "connect once"
to the core's ``Supervisor`` (shared backoff, health, reconnect count); consumers
end with ``ConnectionLost`` and the core subscribes them again, re-declaring their
queues on the new connection (see ``source``); the publisher opens a new channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import AbstractConnection

from connectors.amqp.config import AmqpOptions
from connectors.errors import ConnectionLost
from connectors.redact import redact_url
from connectors.supervision import Supervisor, SupervisorClosed
from connectors.tls import warn_insecure

__all__ = ["CONNECT_ERRORS", "Link", "LinkClosed"]

# What a failed connection attempt raises (refused, TLS, auth, timeout).
CONNECT_ERRORS = (aiormq.exceptions.AMQPError, OSError, TimeoutError, RuntimeError)


def _not_a_transport_error(record: logging.LogRecord) -> bool:
    # aiormq logs every failed TCP connect at ERROR, without saying for which
    # connector; the error is raised to us too and logged as "connector NAME (amqp
    # URL): connect failed" (or "reconnect failed"), so its own line is dropped.
    return not str(record.msg).startswith("error when creating transport")


logging.getLogger("aiormq.connection").addFilter(_not_a_transport_error)


class LinkClosed(ConnectionLost):
    """The connector was closed on purpose; consumers stop instead of retrying."""


class Link:
    """Holds the current connection and replaces it when the broker drops it."""

    def __init__(
        self,
        options: AmqpOptions,
        name: str,
        supervisor: Supervisor,
        log: logging.Logger,
    ):
        self._options = options
        self.label = supervisor.label
        """How log lines name the connector (``connector NAME (amqp URL)``)."""
        self._name = options.connection_name or f"meshgate:{name}"
        self._label = name
        self._supervisor = supervisor
        self._log = log
        self._where = redact_url(options.url)
        self._connection: AbstractConnection | None = None
        self._up = asyncio.Event()
        self._lost = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.closing = False

    @property
    def connection_name(self) -> str:
        """Name of the connection in RabbitMQ management (client property)."""
        return self._name

    async def start(self) -> None:
        """Connect once (raising ``ConnectionLost``), then supervise in the background."""
        if self._task is not None:
            return
        self.closing = False
        warn_insecure(self._options.tls, self._log, self._label)
        self._install(await self._connect())
        self._log.info("%s: connected as %r", self.label, self._name)
        self._task = asyncio.create_task(self._supervise(), name=f"amqp-link:{self._name}")
        self._task.add_done_callback(self._supervisor_done)

    @property
    def detail(self) -> str:
        """Why the link is down (empty while it is up)."""
        return self._supervisor.health.detail

    async def connection(self) -> AbstractConnection:
        """The open connection, waiting for a reconnect if there is none right now."""
        await self._up.wait()
        if self.closing or self._connection is None:
            raise LinkClosed(f"connector {self._name!r} is closed")
        return self._connection

    async def close(self) -> None:
        """Stop reconnecting and close the connection. Idempotent."""
        self.closing = True
        self._up.set()  # wake waiters so they see ``closing``
        self._lost.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        connection, self._connection = self._connection, None
        if connection is not None and not connection.is_closed:
            try:
                await connection.close()
            except CONNECT_ERRORS as exc:
                self._log.debug("closing the connection to %s failed: %r", self._where, exc)
        self._supervisor.closed()

    async def _connect(self) -> AbstractConnection:
        options = self._options
        # Built at every connection: renewed certificate files apply without a restart.
        context = options.ssl_context(self._label)  # TlsConfigError names the file
        try:
            return await aio_pika.connect(
                options.connection_url(),
                ssl_context=context,
                client_properties={"connection_name": self._name},
                timeout=options.connect_timeout_seconds,
            )
        except CONNECT_ERRORS as exc:
            detail = (
                f"connector {self._label!r}: cannot connect to {self._where}: "
                f"{type(exc).__name__}: {exc}"
            )
            if context is not None:
                # A plaintext listener behind an amqps:// url fails here too: no downgrade.
                detail += " (TLS required: a TLS listener? a certificate valid for the name?)"
            raise ConnectionLost(detail) from exc

    def _install(self, connection: AbstractConnection) -> None:
        self._connection = connection
        self._lost.clear()
        connection.close_callbacks.add(self._on_close)
        self._up.set()

    def _on_close(self, sender: Any, exc: BaseException | None) -> None:
        if sender is not self._connection or self.closing:
            return
        self._up.clear()
        self._lost.set()
        self._supervisor.lost("", f"connection lost: {exc!r}")
        self._log.warning("%s: connection lost: %r", self.label, exc)

    def _supervisor_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self._supervisor.lost("", f"reconnect loop failed: {task.exception()!r}")
            self._log.error("%s: reconnect loop failed", self.label, exc_info=task.exception())

    async def _supervise(self) -> None:
        """After each loss, the core retries one connect at a time (shared backoff)."""
        while not self.closing:
            await self._lost.wait()
            try:
                connection = await self._supervisor.retry("", self._connect)
            except SupervisorClosed:
                return
            if self.closing:
                await connection.close()
                return
            self._install(connection)
            self._log.info("%s: reconnected", self.label)
