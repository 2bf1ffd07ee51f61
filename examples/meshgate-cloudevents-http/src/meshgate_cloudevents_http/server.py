"""The HTTP server behind the sources: one per connector, one inbox per route path.

A request is answered only once every event in it is settled, so the sender learns
whether the gateway took responsibility (at-least-once end to end):

=========================================  ===========================================
every event acked (delivered, filtered,    204 No Content
or dead-lettered: the gateway is
responsible for it now)
an event nack'ed with requeue (a target    503 + Retry-After: send it again
failed and the route has nowhere else to
put it), the gateway stopping, or the
path not being read right now (reload)
an event nack'ed without requeue           422: refused for good (a 4xx, so senders such
                                           as Knative do not retry; they dead-letter)
the path's in-flight bound reached         429 + Retry-After (backpressure)
malformed CloudEvent                       400 naming the header or member at fault
unknown CloudEvents media type             415
body over ``max_body_bytes``               413; not POST or PUT: 405
no route reads the path                    404 (503 in the first ``STARTUP_GRACE``
                                           seconds: its route may still be starting)
=========================================  ===========================================

A batch is all or nothing towards the sender: any failed event makes the whole
request 503, and the sender sends the batch again (its delivered events become
duplicates, never losses). Events wait in the inbox until the runtime pulls them;
the runtime pulls only while it has room, so a slow target fills the inbox, and the
in-flight bound turns that into 429s instead of memory.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict

from aiohttp import web

from connectors import ConnectionLost, ConnectorError
from meshgate_cloudevents_http.binding import (
    HttpMessage,
    Received,
    UnsupportedFormat,
    from_request,
    message_headers,
)
from meshgate_cloudevents_http.config import HttpOptions, HttpSource
from meshgate_cloudevents_http.inbox import (
    Inbox,
    Outcome,
    PathCounts,
    PathStream,
    give_back,
    make_delivery,
)
from routing.errors import InvalidEvent

__all__ = ["STARTUP_GRACE", "Server"]

STARTUP_GRACE = 5.0
"""Seconds after the server started during which an unknown path is answered 503
(its route may still be starting), not 404 (which some senders, e.g. Dapr, drop)."""


def _text(status: int, text: str, retry_after: int | None = None) -> web.Response:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return web.Response(status=status, text=text + "\n", headers=headers)


class Server:
    """The aiohttp server of one connector (started only when ``port`` is set)."""

    def __init__(self, name: str, options: HttpOptions, log: logging.Logger) -> None:
        self._name = name
        self._options = options
        self._log = log
        self._inboxes: dict[str, Inbox] = {}
        self._runner: web.AppRunner | None = None
        self.closed = False
        self._started_at = 0.0
        self.counts: defaultdict[str, PathCounts] = defaultdict(PathCounts)
        """How each path's requests were admitted."""
        self.port: int | None = None
        """The port listened on (the OS's choice when ``port: 0``), once started."""

    async def start(self) -> None:
        if self._options.port is None or self._runner is not None:
            return
        self.closed = False
        app = web.Application(client_max_size=self._options.max_body_bytes)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self._options.host, self._options.port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise ConnectionLost(
                f"connector {self._name!r}: cannot listen on "
                f"{self._options.host}:{self._options.port}: {exc.strerror or exc}"
            ) from exc
        self._runner = runner
        self._started_at = time.monotonic()
        addresses = runner.addresses  # (host, port, ...) of each listening socket
        self.port = addresses[0][1] if addresses else self._options.port
        self._log.info(
            "connector %s: listening on http://%s:%s", self._name, self._options.host, self.port
        )

    async def close(self) -> None:
        """Answer every unsettled event 503, then stop listening."""
        self.closed = True
        for inbox in self._inboxes.values():
            inbox.ended = True
            inbox.reading = False
            inbox.arrived.set()
            give_back(inbox)
        self._inboxes.clear()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    def drop_connections(self) -> int:
        """Abort every client connection, as a network fault would; returns how many.

        Requests cut off this way are not answered: their senders send them again
        (the events already queued are delivered anyway: a duplicate, never a loss).
        """
        if self._runner is None or self._runner.server is None:
            return 0
        handlers = self._runner.server.connections
        for handler in handlers:
            if handler.transport is not None:
                handler.transport.abort()
        return len(handlers)

    def open(self, source: HttpSource) -> PathStream:
        """Start reading ``source.path``; requests to it are accepted from now on."""
        if self._options.port is None:
            raise ConnectorError(
                f"connector {self._name!r} has no port: set port: in its connectors: entry "
                f"to receive events on {source.path}"
            )
        if self._runner is None:
            raise ConnectionLost(f"connector {self._name!r} is closed (or not started)")
        inbox = self._inboxes.get(source.path)
        if inbox is not None and inbox.reading:
            raise ConnectorError(
                f"connector {self._name!r}: path {source.path} is read by another route "
                "source already (give each source its own path)"
            )
        if inbox is None or inbox.source != source:
            inbox = Inbox(source)
            self._inboxes[source.path] = inbox
        inbox.reading = True
        return PathStream(inbox)

    # -- requests ------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        admitted = await self._admit(request)
        counts = self.counts[request.path]
        if isinstance(admitted, web.Response):
            if admitted.status in (429, 503):
                counts.deferred += 1
            elif admitted.status >= 400:
                counts.refused += 1
            return admitted
        counts.accepted += 1
        # asyncio.wait, not gather: a sender hanging up must not cancel the futures,
        # whose deliveries the runtime still processes and settles.
        await asyncio.wait(admitted)
        return self._answer([f.result() for f in admitted], self._options.retry_after_seconds)

    async def _admit(self, request: web.Request) -> web.Response | list[asyncio.Future[Outcome]]:
        """The answer to give at once, or the events of the request, queued."""
        inbox = self._inbox_for(request)
        if isinstance(inbox, web.Response):
            return inbox
        messages = await self._read(request)
        if isinstance(messages, web.Response):
            return messages
        limit = inbox.source.max_in_flight
        if len(messages) > limit:
            return _text(
                413,
                f"a batch of {len(messages)} events is more than this path takes at once "
                f"(max_in_flight {limit}): send smaller batches",
            )
        if inbox.in_flight + len(messages) > limit:
            return _text(
                429,
                f"{request.path} is full ({inbox.in_flight} events in flight, "
                f"max_in_flight {limit}): send again later",
                self._options.retry_after_seconds,
            )
        if not messages:
            return web.Response(status=204)  # an empty batch
        futures = [self._enqueue(inbox, request, message) for message in messages]
        inbox.arrived.set()
        return futures

    def _inbox_for(self, request: web.Request) -> Inbox | web.Response:
        """The inbox of the request's path, or why the request cannot go there."""
        retry = self._options.retry_after_seconds
        if self.closed:
            return _text(503, "the gateway is stopping: send again", retry)
        inbox = self._inboxes.get(request.path)
        if inbox is None:
            served = ", ".join(sorted(self._inboxes)) or "none yet"
            if time.monotonic() - self._started_at < STARTUP_GRACE:
                # The routes start right after their connectors: the path may come.
                return _text(503, f"no route reads {request.path} yet (starting)", retry)
            return _text(404, f"no route reads {request.path} (paths: {served})")
        if request.method not in ("POST", "PUT"):
            return web.Response(
                status=405, text="send events with POST or PUT\n", headers={"Allow": "POST, PUT"}
            )
        if not inbox.reading:
            return _text(
                503,
                f"{request.path} is not being read right now (gateway "
                "starting, reloading or stopping): send again",
                retry,
            )
        return inbox

    async def _read(self, request: web.Request) -> list[Received | HttpMessage] | web.Response:
        """The events of the request (a plain webhook is one message), or a 4xx."""
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            limit = self._options.max_body_bytes
            return _text(413, f"body larger than max_body_bytes ({limit} bytes)")
        try:
            received = from_request(request.headers.items(), body)
        except UnsupportedFormat as exc:
            return _text(415, str(exc))
        except InvalidEvent as exc:
            return _text(400, str(exc))
        if received is None:  # a plain webhook: the route's ingress rules wrap it
            return [HttpMessage(body, message_headers(request.headers.items()))]
        return list(received)

    def _enqueue(
        self, inbox: Inbox, request: web.Request, message: Received | HttpMessage
    ) -> asyncio.Future[Outcome]:
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        inbox.in_flight += 1

        def settle(outcome: Outcome) -> None:
            inbox.unsettled.discard(settle)
            if not future.done():
                future.set_result(outcome)
                inbox.in_flight -= 1

        inbox.unsettled.add(settle)
        delivery = make_delivery(inbox.source.path, request, message, settle)
        inbox.queue.append((delivery, settle))
        return future

    def _answer(self, outcomes: list[Outcome], retry: int) -> web.Response:
        total = len(outcomes)
        acked = outcomes.count(Outcome.ACKED)
        if acked == total:
            return web.Response(status=204)
        what = "the event was" if total == 1 else f"{total - acked} of {total} events were"
        if Outcome.STOPPING in outcomes:
            return _text(
                503,
                f"{what} not processed: the gateway is stopping or reloading; send again",
                retry,
            )
        if Outcome.REQUEUE in outcomes:
            return _text(
                503,
                f"{what} not delivered (a target failed and the route has no "
                "dead letter, or gave it back): send again",
                retry,
            )
        return _text(
            422, f"{what} refused by the gateway for good (nack without requeue): do not send again"
        )
