"""meshgate's shipped conformance suite (``connectors.testing``) against the http connector.

HTTP has no broker between sender and receiver: a publish is confirmed (2xx) only once
the receiving source acked, and a message comes back after a crash or a nack because
the *sender* sends it again when it gets 503 (or cannot connect). So the suite
publishes through ``conformance_publish``: a separate sending connector that outlives
the receiving ones (as Knative or Dapr would), with the publish running in the
background once the receiver has admitted the request.

Targets of ``conformance_pair`` name the host ``receiver``: a publish goes to the port
of the receiving connector it is made for. A receiver made after another one closed
listens on that one's port, like a restarted gateway, so the sender's retries reach it.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from http_helpers import unique
from meshgate_cloudevents_http import HttpConnector, HttpOptions, HttpSource, HttpTarget

from connectors import Capabilities, HealthState
from connectors.testing import ConnectorConformance
from routing.bindings import Mode
from routing.event import CloudEvent

MAX_BODY = 2 * 1024 * 1024
"""max_body_bytes of the receivers, declared as max_message_bytes to the suite."""


def _at(receiver: HttpConnector, url: str) -> str:
    """``url`` (host ``receiver``) pointed at ``receiver``'s port."""
    path = urlsplit(url).path
    return f"http://127.0.0.1:{receiver.port}{path}"


class _Background:
    """Publishes that finish once the receiver settles them (the HTTP answer)."""

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[None]] = set()

    async def start(self, receiver: Any, url: str, send: Awaitable[None]) -> None:
        """Start ``send``; return once ``receiver`` admitted the request (queued it, or
        answered 429/503 so the sender tries again), or raise what ``send`` raised."""
        if not isinstance(receiver, HttpConnector):
            raise TypeError(f"not an http connector: {receiver!r}")
        counts = receiver.path_counts(urlsplit(url).path)
        before = (counts.accepted, counts.deferred)
        task: asyncio.Task[None] = asyncio.ensure_future(send)
        self.tasks.add(task)
        # Polling a counter (Harness.publish holds the deadline).
        while (counts.accepted, counts.deferred) == before and not task.done():  # noqa: ASYNC110
            await asyncio.sleep(0.002)
        if task.done():
            self.tasks.discard(task)
            task.result()  # a refusal (4xx): raised as the suite expects

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


class TestHttpConformance(ConnectorConformance):
    @pytest.fixture
    def receivers(self) -> list[HttpConnector]:
        """Every receiving connector the test made, newest last."""
        return []

    @pytest.fixture
    def conformance_connector(self, receivers: list[HttpConnector]) -> Callable[[], HttpConnector]:
        def make() -> HttpConnector:
            alive = {r.port for r in receivers if r.health.state is not HealthState.CLOSED}
            closed = [r.port for r in receivers if r.health.state is HealthState.CLOSED]
            free = [port for port in closed if port is not None and port not in alive]
            port = free[-1] if free else 0  # the restarted gateway's, else a new one
            options = HttpOptions(port=port, max_body_bytes=MAX_BODY, retries=0)
            receivers.append(HttpConnector("conformance", options))
            return receivers[-1]

        return make

    @pytest.fixture
    def conformance_pair(self) -> Callable[[Mode], Awaitable[tuple[HttpSource, HttpTarget]]]:
        async def pair(mode: Mode) -> tuple[HttpSource, HttpTarget]:
            path = "/" + unique("conformance")
            url = f"http://receiver{path}"
            source = HttpSource(connector="conformance", path=path)
            return source, HttpTarget(connector="conformance", url=url, mode=mode)

        return pair

    @pytest.fixture
    async def background(self) -> AsyncIterator[_Background]:
        background = _Background()
        try:
            yield background
        finally:
            await background.stop()

    @pytest.fixture
    async def sender(self) -> AsyncIterator[HttpConnector]:
        """The webhook sender: retries (503, refused connections) across receiver restarts."""
        options = HttpOptions(retries=10_000, retry_initial_seconds=0.05, retry_max_seconds=0.25)
        sender = HttpConnector("sender", options)
        await sender.start()
        try:
            yield sender
        finally:
            await sender.close()

    @pytest.fixture
    def conformance_publish(
        self, sender: HttpConnector, background: _Background
    ) -> Callable[[Any, HttpTarget, CloudEvent], Awaitable[None]]:
        async def publish(receiver: Any, target: HttpTarget, event: CloudEvent) -> None:
            target = target.model_copy(update={"url": _at(receiver, target.url)})
            await background.start(receiver, target.url, sender.publish(target, event))

        return publish

    @pytest.fixture
    def conformance_publish_raw(
        self, background: _Background, receivers: list[HttpConnector]
    ) -> Callable[[HttpTarget, bytes], Awaitable[None]]:
        """A plain webhook POST (no CloudEvent), e.g. from a legacy system."""

        async def post(url: str, payload: bytes) -> None:
            async with aiohttp.ClientSession() as session, session.post(url, data=payload) as got:
                assert got.status == 204, await got.text()

        async def publish_raw(target: HttpTarget, payload: bytes) -> None:
            (receiver,) = [r for r in receivers if r.health.state is HealthState.UP][-1:]
            url = _at(receiver, target.url)
            await background.start(receiver, url, post(url, payload))

        return publish_raw

    @pytest.fixture
    def conformance_bounce(self) -> Callable[[Any], Awaitable[None]]:
        """A network fault between sender and gateway: every TCP connection to the
        receiver is aborted (requests in progress are cut off, the sender resends)."""

        async def bounce(receiver: Any) -> None:
            assert isinstance(receiver, HttpConnector)
            receiver._server.drop_connections()  # the plugin's own test: its internals

        return bounce

    @pytest.fixture
    def conformance_in_flight(
        self, conformance_connector: Callable[[], HttpConnector]
    ) -> Callable[[HttpSource, int], tuple[HttpConnector, HttpSource]]:
        def bounded(source: HttpSource, limit: int) -> tuple[HttpConnector, HttpSource]:
            return conformance_connector(), source.model_copy(update={"max_in_flight": limit})

        return bounded

    @pytest.fixture
    def conformance_capabilities(self) -> Capabilities:
        return dataclasses.replace(HttpConnector.capabilities, max_message_bytes=MAX_BODY)
