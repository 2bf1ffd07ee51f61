"""The NATS connection of one connector: connect, heal, report health, close.

nats-py reconnects by itself and replays core subscriptions; this module adds what
it lacks: a bounded first connection (nats-py would loop forever), jitter on every
reconnect wait (``reconnect_to_server_handler``), and a fresh connection when the
client gives up for good (``max_reconnect_attempts`` exhausted), connected by the
core's ``Supervisor`` (shared backoff, health, reconnect count), so sources keep
going across any outage. nats-py's own drops and reconnects are reported to the
supervisor too (``lost`` / ``connected``).

The watchdog: a TCP connection can go silent without breaking (a middlebox that
drops the flow, a half-dead peer). nats-py then stays "connected" while every PubAck
and flush times out, until its own PINGs notice (about 6 minutes with the defaults:
a PING every 120 s, stale once two go unanswered). The sink and the JetStream source
report their timeouts (``note_timeout``); ``watchdog_timeouts`` of them in a row,
with no message received from the server in between (``stats["in_msgs"]``, kept by
nats-py anyway: nothing is added per publish), start one probe: a request to a
subject nobody serves, which the server answers at once with "no responders" through
the whole read path. No answer within ``publish_timeout_seconds``, nothing else received
meanwhile and no reconnect by nats-py itself: the client is replaced. The publishes
still waiting on it fail with ``LinkReplaced`` (a ``ConnectionClosedError``,
retriable), it is closed in the background (aborted if closing hangs on the dead
socket), and a fresh client connects under the supervisor's backoff. Sources notice the old
client closed and subscribe again (core) or re-check their durable and pull again
(JetStream). An answered probe means the server is merely slow (JetStream busy, a
congested link): the client stays, and no new probe starts for ``publish_timeout_seconds``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import math
import random
import re
import ssl
from typing import Any

import nats.errors
from nats.aio.client import Client, Server
from nats.js import JetStreamContext

from connectors.errors import ConnectionLost
from connectors.nats.client import MeshClient
from connectors.nats.config import NatsOptions
from connectors.nats.drops import DropReport
from connectors.nats.pubacks import PubAcks, SharedFlush
from connectors.redact import redact_url
from connectors.supervision import Supervisor, SupervisorClosed
from connectors.tls import TlsConfigError, warn_insecure

__all__ = ["Link", "LinkReplaced", "TlsNotOffered"]

_ClientErrors = (OSError, nats.errors.Error, asyncio.TimeoutError)
_PERMISSION = re.compile(
    r"permissions violation for (publish|subscription) to \"?([^\"\s']+)", re.IGNORECASE
)
_DENIALS_KEPT = 1024
"""Denied subjects remembered (and -ERRs counted per subject) until someone takes them."""
_DROP_GRACE = 1.0
"""Seconds a replaced client gets to close before its socket is aborted."""


class LinkReplaced(nats.errors.ConnectionClosedError):
    """What a publish still waiting on a client replaced by the watchdog gets (retriable)."""

    def __str__(self) -> str:
        return "nats: link silent, client replaced"


class Link:
    """One self-healing NATS connection shared by a connector's sources and targets."""

    def __init__(
        self, label: str, options: NatsOptions, supervisor: Supervisor, log: logging.Logger
    ):
        self._label = label
        self._options = options
        self._supervisor = supervisor
        self._log = log
        self._nc: Client | None = None
        self._js: tuple[Client, JetStreamContext] | None = None
        self._pubacks: tuple[Client, PubAcks] | None = None
        self._flush: tuple[Client, SharedFlush] | None = None
        self._ready = asyncio.Event()
        self._closing = False
        self._revive: asyncio.Task[None] | None = None
        self._last_error: BaseException | None = None
        self._tls: ssl.SSLContext | None = None
        self._refused: asyncio.Future[TlsNotOffered] | None = None
        # (publish|subscription, subject) -> (server's text, -ERRs not taken yet): one per
        # denied PUB or SUB, so concurrent publishes to one denied subject each get theirs.
        self._denials: dict[tuple[str, str], tuple[str, int]] = {}
        self._drops = DropReport(label, supervisor.health, log)
        self.generation = 0
        """Bumped on every (re)connection: pull requests sent before are lost."""
        self.watchdog_replacements = 0
        """Clients the watchdog replaced because their link went silent."""
        self._timeouts = 0  # in a row on the current client, nothing received in between
        self._seen_in = -1  # the client's in_msgs at the last timeout
        self._probe: asyncio.Task[None] | None = None
        self._calm_until = 0.0  # no new probe before (loop time): the last one was answered
        self._dropping: set[asyncio.Task[None]] = set()

    @property
    def label(self) -> str:
        """The connector's name, for messages."""
        return self._label

    @property
    def servers(self) -> str:
        return ", ".join(redact_url(url, user_is_secret=True) for url in self._options.servers)

    @property
    def closing(self) -> bool:
        return self._closing

    async def open(self) -> None:
        """First connection: ``connect_attempts`` tries paced by the supervisor, then
        ``ConnectionLost`` (the core retries ``start`` itself)."""
        self._tls = self._prepare()
        attempts = self._options.connect_attempts
        self._adopt(
            await self._supervisor.retry("", self._connect, first_wait=False, attempts=attempts)
        )

    async def client(self) -> Client | None:
        """The live client, waiting through a full reconnect; None once closing."""
        while not self._closing:
            nc = self._nc
            if nc is not None and not nc.is_closed:
                return nc
            self._start_reviving()
            await self._ready.wait()
        return None

    def current(self) -> Client:
        """The client for a publish right now, or ``ConnectionLost``."""
        nc = self._nc
        if self._closing or nc is None or nc.is_closed:
            raise ConnectionLost(f"{self._label}: not connected to NATS ({self.servers})")
        return nc

    def jetstream(self, nc: Client) -> JetStreamContext:
        """A JetStream context of ``nc`` (cached for the current client)."""
        if self._js is None or self._js[0] is not nc:
            self._js = (nc, nc.jetstream(timeout=self._options.publish_timeout_seconds))
        return self._js[1]

    def pubacks(self, nc: Client) -> PubAcks:
        """The JetStream publisher of ``nc`` (cached for the current client)."""
        if self._pubacks is None or self._pubacks[0] is not nc:
            self._pubacks = (nc, PubAcks(nc))
        return self._pubacks[1]

    def flusher(self, nc: Client) -> SharedFlush:
        """The shared core-publish flush of ``nc`` (cached for the current client)."""
        if self._flush is None or self._flush[0] is not nc:
            self._flush = (nc, SharedFlush(nc))
        return self._flush[1]

    # -- the watchdog (see the module docstring) ----------------------------------------

    def note_timeout(self, nc: Client) -> None:
        """A PubAck, flush or JetStream API request on ``nc`` got no answer in time."""
        limit = self._options.watchdog_timeouts
        if limit == 0 or nc is not self._nc or self._closing or not nc.is_connected:
            return  # off, an old client, or nats-py knows the link is down
        seen = nc.stats["in_msgs"]
        if seen != self._seen_in:  # something came in since the last timeout: not silent
            self._seen_in, self._timeouts = seen, 0
        self._timeouts += 1
        if self._timeouts < limit or (self._probe is not None and not self._probe.done()):
            return
        loop = asyncio.get_running_loop()
        if loop.time() >= self._calm_until:
            self._probe = loop.create_task(self._probe_link(nc))

    async def _probe_link(self, nc: Client) -> None:
        timeouts, wait = self._timeouts, self._options.publish_timeout_seconds
        generation, seen = self.generation, nc.stats["in_msgs"]
        try:
            async with asyncio.timeout(wait):
                await nc.request(nc.new_inbox(), b"", timeout=wait)  # nobody serves it
        except nats.errors.NoRespondersError:
            answered = True  # the expected answer: the server and the read path are alive
        except TimeoutError:  # nats-py's TimeoutError too
            answered = False
        except _ClientErrors as exc:  # closed or reconnecting meanwhile: handled elsewhere
            self._log.debug("%s: link probe failed: %s", self._label, exc)
            return
        if nc is not self._nc or self._closing:
            return
        # Alive after all: messages came in while the probe waited (a congested link,
        # the probe queued behind its traffic), or nats-py reconnected by itself.
        alive = nc.stats["in_msgs"] != seen or generation != self.generation
        if answered or alive or not nc.is_connected:
            self._timeouts = 0
            self._calm_until = asyncio.get_running_loop().time() + wait  # no probe storm
            self._log.debug(
                "%s: %d request(s) timed out but the NATS link is alive: slow, not silent",
                self._label,
                timeouts,
            )
            return
        self._replace(nc, timeouts, wait)

    def _replace(self, nc: Client, timeouts: int, wait: float) -> None:
        self.watchdog_replacements += 1
        url = nc.connected_url
        where = redact_url(url.geturl(), user_is_secret=True) if url else self.servers
        self._log.warning(
            "%s: NATS link to %s silent (%d timeouts in a row, no answer to a probe in "
            "%ss) while the client reports connected; replacing the client",
            self._label,
            where,
            timeouts,
            wait,
        )
        self._nc = None  # publishes now fail fast (ConnectionLost); client() waits
        failed = 0
        if self._pubacks is not None and self._pubacks[0] is nc:
            failed += self._pubacks[1].fail_all(LinkReplaced)
        if self._flush is not None and self._flush[0] is nc:
            failed += self._flush[1].fail_all(LinkReplaced)
        self._pubacks = self._flush = self._js = None
        self._log.debug("%s: %d waiting publish(es) failed for a retry", self._label, failed)
        self._start_reviving(f"link to {where} went silent; reconnecting")
        task = asyncio.get_running_loop().create_task(self._drop(nc))
        self._dropping.add(task)
        task.add_done_callback(self._dropping.discard)

    async def _drop(self, nc: Client) -> None:
        """Close a replaced client without waiting on its silent peer for long."""
        closing = asyncio.ensure_future(_discard(nc))
        done, _ = await asyncio.wait({closing}, timeout=_DROP_GRACE)
        if not done:
            _abort(nc)  # close() waits for a peer that never reads: cut the socket
            done, _ = await asyncio.wait({closing}, timeout=_DROP_GRACE)
            if not done:
                closing.cancel()
        with contextlib.suppress(asyncio.CancelledError, *_ClientErrors):
            await closing

    async def close(self) -> None:
        """Flush what is buffered (acks, publishes), then disconnect. Idempotent."""
        if self._closing:
            return
        self._closing = True
        self._ready.set()  # wake waiters so they see the connector is closing
        if self._probe is not None:
            self._probe.cancel()
            await asyncio.gather(self._probe, return_exceptions=True)
        if self._revive is not None:
            self._revive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._revive
        await asyncio.gather(*self._dropping, return_exceptions=True)
        nc, self._nc = self._nc, None
        silent = False
        if nc is not None and nc.is_connected:
            try:
                await nc.flush(timeout=math.ceil(self._options.publish_timeout_seconds))
            except _ClientErrors as exc:
                silent = isinstance(exc, TimeoutError)
                self._log.warning("%s: flush on close failed: %s", self._label, exc)
        if nc is not None:
            # No PONG: closing may hang on the silent socket too (bounded, then cut).
            # Reconnecting (e.g. every TLS handshake failing): nats-py's close waits
            # for its reconnect loop, so it is bounded the same way.
            silent = silent or not nc.is_connected
            await (self._drop(nc) if silent else _discard(nc))
        self._drops.flush()  # the last drops of a burst, before the timer is lost
        self._supervisor.closed()

    # -- connecting -----------------------------------------------------------------

    def _prepare(self) -> ssl.SSLContext | None:
        """Check the local prerequisites once (no retry fixes them); the TLS context."""
        options = self._options
        files = {"creds_file": options.creds_file, "nkey_seed_file": options.nkey_seed_file}
        for field, path in files.items():
            if path is None:
                continue
            if importlib.util.find_spec("nkeys") is None:
                raise ConnectionLost(
                    f"{self._label}: {field} needs the nkeys package (pip install 'nats-py[nkeys]')"
                )
            if not path.is_file():
                raise ConnectionLost(f"{self._label}: {field}: no such file {str(path)!r}")
        warn_insecure(options.tls, self._log, self._label)
        return options.ssl_context(self._label)  # TlsConfigError names the file

    async def _connect(self) -> Client:
        options = self._options
        # Built at every connection: renewed certificate files apply without a restart.
        self._tls = self._options.ssl_context(self._label)
        nc = _Client(self._label) if self._tls is not None else MeshClient()
        self._last_error = None
        # nats-py retries the first connection forever when reconnects are unlimited:
        # bound it by one connect timeout per server (plus the waits between them).
        budget = (options.connect_timeout_seconds + options.reconnect_wait_seconds) * len(
            options.servers
        ) + 0.5
        # A server refused for offering no TLS ends the attempt at once: it is a
        # misconfiguration (or an attack), and waiting out the budget helps nobody.
        refused = self._refused = asyncio.get_running_loop().create_future()
        connecting = asyncio.ensure_future(nc.connect(**self._connect_kwargs(nc)))
        try:
            async with asyncio.timeout(budget):
                await asyncio.wait((connecting, refused), return_when=asyncio.FIRST_COMPLETED)
            if not connecting.done():
                await _end_connect(connecting)
                raise refused.result()
            connecting.result()
        except (*_ClientErrors, ImportError) as exc:
            await _end_connect(connecting)
            # Bounded: after a failed TLS handshake nats-py's close may wait forever for
            # the socket to close (seen under load: a refused mTLS client hung 10 s+).
            await self._drop(nc)
            cause = self._last_error or exc
            raise ConnectionLost(
                f"{self._label}: cannot connect to {self.servers}: {_describe(cause)}"
            ) from exc
        except asyncio.CancelledError:
            # Stopped mid-attempt (SIGTERM): nats-py's connect loop is a task of its own
            # that would retry forever, and asyncio.run's last cancel of it at exit can
            # be swallowed (see _end_connect): the process then never exits.
            await _end_connect(connecting)
            await self._drop(nc)
            raise
        return nc

    def _connect_kwargs(self, nc: Client) -> dict[str, Any]:
        options = self._options
        kwargs: dict[str, Any] = {
            "servers": list(options.servers),
            "name": options.name or f"meshgate-{self._label}",
            "connect_timeout": options.connect_timeout_seconds,
            "reconnect_time_wait": options.reconnect_wait_seconds,
            # Giving up is ours (see _pick_server): nats-py's own give-up path can leave
            # the client half-closed, with subscriptions never woken.
            "max_reconnect_attempts": -1,
            "reconnect_to_server_handler": self._pick_server,
            "pending_size": options.pending_size,
            **self._callbacks(nc),
        }
        if options.user is not None:
            kwargs["user"] = options.user
            if options.password is not None:
                kwargs["password"] = options.password.get_secret_value()
        if options.token is not None:
            kwargs["token"] = options.token.get_secret_value()
        if options.creds_file is not None:
            kwargs["user_credentials"] = str(options.creds_file)
        if options.nkey_seed_file is not None:
            kwargs["nkeys_seed"] = str(options.nkey_seed_file)
        if self._tls is not None:
            kwargs["tls"] = self._tls
            if options.tls is not None and options.tls.server_hostname is not None:
                kwargs["tls_hostname"] = options.tls.server_hostname
        return kwargs

    def _pick_server(self, pool: list[Server], _info: dict[str, Any]) -> tuple[Server, float]:
        # The least-tried server next; wait reconnect_wait_seconds plus 0..jitter seconds.
        self._renew_tls(self._nc)
        fewest = min(server.reconnects for server in pool)
        server = random.choice([s for s in pool if s.reconnects == fewest])
        delay = self._options.reconnect_wait_seconds + random.uniform(
            0, self._options.reconnect_jitter_seconds
        )
        limit = self._options.max_reconnect_attempts
        if 0 <= limit <= fewest and self._nc is not None and not self._closing:
            # Out of attempts: drop this client (which cancels this very wait) and
            # start over with fresh connections under our own backoff.
            task = asyncio.get_running_loop().create_task(self._give_up(self._nc))
            self._dropping.add(task)  # kept (not garbage-collected) and awaited on close
            task.add_done_callback(self._dropping.discard)
            delay = 3600.0
        return server, delay

    def _renew_tls(self, nc: Client | None) -> None:
        """A TLS context freshly built from the files for the next reconnect of ``nc``.

        nats-py reconnects with the context it was given at connect; without this, a
        rotated CA or certificate would apply only once the client is replaced, and
        with ``max_reconnect_attempts: -1`` (the default) never. A file broken by the
        rotation keeps the previous context for this attempt, loudly.
        """
        if nc is None or self._tls is None:
            return
        try:
            self._tls = self._options.ssl_context(self._label)
        except TlsConfigError as exc:
            self._log.error("%s: %s; reconnecting with the TLS files read before", self._label, exc)
            return
        nc.options["tls"] = self._tls

    async def _give_up(self, nc: Client) -> None:
        if nc is not self._nc or self._closing:
            return
        self._log.warning(
            "%s: no NATS server answered %d reconnect attempt(s); starting over",
            self._label,
            self._options.max_reconnect_attempts,
        )
        self._nc = None  # its callbacks fall silent; client() waits for the next one
        self._start_reviving()
        await _discard(nc)

    def _adopt(self, nc: Client) -> None:
        self._nc = nc
        self.generation += 1
        self._denials.clear()  # they answered the last client's publishes, not this one's
        self._timeouts, self._seen_in, self._calm_until = 0, -1, 0.0
        url = nc.connected_url
        detail = (
            f"connected to {redact_url(url.geturl(), user_is_secret=True)}" if url else "connected"
        )
        self._supervisor.connected("", detail)
        self._ready.set()
        self._log.info("%s: %s", self._label, detail)

    def _start_reviving(self, why: str = "client closed; reconnecting") -> None:
        if self._closing or (self._revive is not None and not self._revive.done()):
            return
        self._ready.clear()
        self._supervisor.lost("", why)
        self._revive = asyncio.get_running_loop().create_task(self._revive_forever())

    async def _revive_forever(self) -> None:
        """A fresh client, one connect at a time under the supervisor's backoff."""
        try:
            nc = await self._supervisor.retry("", self._connect)
        except SupervisorClosed:
            return
        if self._closing:
            await _discard(nc)
            return
        self._adopt(nc)

    # -- nats-py callbacks (bound to one client: a replaced client's events are ignored) --

    def _on_error(self, nc: Client, exc: Exception) -> None:
        """nats-py's error callback for client ``nc``."""
        # The reason a connect failed: a broken pipe right after the server said
        # why (authorization, TLS) must not hide that reason.
        said_why = (nats.errors.AuthorizationError, ssl.SSLCertVerificationError, TlsNotOffered)
        if not (isinstance(exc, OSError) and isinstance(self._last_error, said_why)):
            self._last_error = exc
        refused = self._refused
        if isinstance(exc, TlsNotOffered) and refused is not None and not refused.done():
            refused.set_result(exc)
        if nc is self._nc and self._note_denial(exc):
            return
        if isinstance(exc, nats.errors.SlowConsumerError):
            self.note_drop(exc.subject)
        elif nc is self._nc:
            # Failed attempts while reconnecting are expected: the drop was logged.
            level = logging.DEBUG if nc.is_reconnecting else logging.WARNING
            self._log.log(level, "%s: NATS error: %s", self._label, _describe(exc))

    def _note_denial(self, exc: Exception) -> bool:
        """Keep a permissions violation for whoever waits on its subject; True if it was one.

        Answered asynchronously (-ERR); the connection stays. Whoever waits on that
        subject (the sink after its flush or timeout, a new subscription after its
        flush) picks it up with take_denial.
        """
        denial = _PERMISSION.search(str(exc))
        if denial is None:
            return False
        # nats-py lowercases -ERR texts: subjects are matched case-insensitively.
        key = (denial.group(1).lower(), denial.group(2).lower())
        _text, count = self._denials.pop(key, ("", 0))
        self._denials[key] = (str(exc), min(count + 1, _DENIALS_KEPT))  # newest last
        if len(self._denials) > _DENIALS_KEPT:  # nobody asked for old ones: bounded
            self._denials.pop(next(iter(self._denials)))
        self._log.warning("%s: NATS %s", self._label, _describe(exc))
        return True

    def _callbacks(self, nc: Client) -> dict[str, Any]:
        async def on_error(exc: Exception) -> None:
            self._on_error(nc, exc)

        async def on_disconnected() -> None:
            if nc is self._nc and not self._closing:
                self._supervisor.lost("", "disconnected from NATS; nats-py reconnects")
                self._log.warning("%s: disconnected from NATS, reconnecting", self._label)

        async def on_reconnected() -> None:
            if nc is self._nc and not self._closing:
                self._adopt(nc)  # the supervisor counts the reconnect

        async def on_closed() -> None:
            if nc is self._nc and not self._closing:
                self._log.warning("%s: NATS client gave up; reconnecting afresh", self._label)
                self._start_reviving()

        return {
            "error_cb": on_error,
            "disconnected_cb": on_disconnected,
            "reconnected_cb": on_reconnected,
            "closed_cb": on_closed,
        }

    def has_denials(self) -> bool:
        """Whether any permissions violation waits to be taken (``take_denial``)."""
        return bool(self._denials)

    def take_denial(self, kind: str, subject: str) -> str | None:
        """The server's permissions violation for ``kind`` ("publish" or "subscription")
        on ``subject`` not taken yet, or None. The server answers each denied PUB (SUB)
        with its own -ERR: each call takes one of them."""
        if not self._denials:  # the common case, asked per publish and per delivery
            return None
        return self._take((kind, subject.lower()))

    def take_denied_prefix(self, kind: str, prefix: str) -> tuple[str, str] | None:
        """(subject in lower case, server's text) of a permissions violation for ``kind``
        on a subject starting with ``prefix`` since the last call, or None."""
        prefix = prefix.lower()
        for key in self._denials:
            if key[0] == kind and key[1].startswith(prefix):
                return key[1], self._take(key) or ""
        return None

    def _take(self, key: tuple[str, str]) -> str | None:
        found = self._denials.get(key)
        if found is None:
            return None
        text, count = found
        if count > 1:
            self._denials[key] = (text, count - 1)
        else:
            del self._denials[key]
        return text

    def note_drop(self, subject: str) -> None:
        """Count (and log, throttled) a core NATS message dropped by a slow consumer."""
        self._drops.note(subject)

    @property
    def slow_consumer_drops(self) -> int:
        """Core NATS messages dropped because a source fell behind (``Health.dropped``)."""
        return self._drops.total


class TlsNotOffered(nats.errors.Error):
    """A tls:// server answered without offering TLS: refused before any credential."""

    def __init__(self, label: str, url: str) -> None:
        super().__init__()
        self.text = (
            f"{label}: server {url} does not offer TLS but the connector requires it "
            "(tls:// URL): refused, nothing sent in plaintext"
        )

    def __str__(self) -> str:
        return self.text


class _Client(MeshClient):
    """A client that refuses a plaintext link when TLS is required.

    nats-py upgrades to TLS only when the server's INFO says ``tls_required``; a
    plaintext server (or a stripping middlebox) would get CONNECT, credentials
    included, in the clear. CONNECT is built after the upgrade decision and before
    anything is written, so the transport is checked there, on every (re)connect.
    """

    def __init__(self, label: str) -> None:
        super().__init__()
        self._label = label

    def _connect_command(self) -> bytes:
        writer = getattr(self._transport, "_io_writer", None)
        if writer is None or writer.get_extra_info("ssl_object") is None:
            server = self._current_server
            url = (
                redact_url(server.uri.geturl(), user_is_secret=True) if server is not None else "?"
            )
            raise TlsNotOffered(self._label, url)
        return super()._connect_command()


_END_CANCELS = 40
_END_PAUSE = 0.05


async def _end_connect(connecting: asyncio.Future[None]) -> None:
    """Cancel nats-py's ``connect`` until it has ended (at most ~2 s).

    With unlimited reconnects it never ends by itself, and one cancel is not enough:
    nats-py 2.16 swallows a cancel that lands in its clean-up between two attempts
    (``Client._close``: ``_flush_pending`` and a ``wait_for`` catch ``CancelledError``),
    then tries again (seen for about half the cancels with ``reconnect_wait_seconds: 0``).
    """
    for _ in range(_END_CANCELS):
        if connecting.done():
            break
        connecting.cancel()
        await asyncio.wait({connecting}, timeout=_END_PAUSE)
    if connecting.done() and not connecting.cancelled():
        connecting.exception()  # retrieved: no "exception was never retrieved" later


async def _discard(nc: Client) -> None:
    try:
        await nc.close()
    except _ClientErrors as exc:
        logging.getLogger("meshgate.connectors.nats").debug("close failed: %s", exc)


def _abort(nc: Client) -> None:
    # nats-py has no public abort: reach the socket through its transport, best effort.
    writer = getattr(getattr(nc, "_transport", None), "_io_writer", None)
    transport = getattr(writer, "transport", None)
    if isinstance(transport, asyncio.WriteTransport):
        transport.abort()


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if type(exc).__name__ in text else f"{type(exc).__name__}: {text}"
