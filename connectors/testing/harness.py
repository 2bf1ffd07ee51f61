"""What the conformance tests work with: the plugin's factories, running connectors,
consumers pulling in a task, sample events and deadlines.

A ``Harness`` is built per test from the fixtures a plugin provides (see
``connectors.testing.plugin``) and closes every connector and consumer the test
opened, whatever the outcome. Every wait has a deadline; nothing sleeps to let a
subscription settle: ``Harness.subscribe`` waits on ``Connector.wait_subscribed``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from connectors.base import Capabilities, Connector, Delivery, SourceOptions, TargetOptions
from connectors.errors import ConnectorError
from routing.bindings import Mode
from routing.event import CloudEvent

__all__ = [
    "AnyConnector",
    "BounceFactory",
    "ConnectorFactory",
    "Consumer",
    "Harness",
    "InFlightFactory",
    "PairFactory",
    "Publish",
    "RawPublish",
    "Timeouts",
    "sample_event",
    "usable_pair",
]

AnyConnector = Connector[Any, Any, Any]
ConnectorFactory = Callable[[], AnyConnector]
"""``conformance_connector``: a new, not yet started connector talking to the test broker."""
PairFactory = Callable[[Mode], Awaitable[tuple[SourceOptions, TargetOptions]]]
"""``conformance_pair``: a source and a target for a fresh, unique address."""
RawPublish = Callable[[TargetOptions, bytes], Awaitable[None]]
"""``conformance_publish_raw``: publish a plain payload to the target's address."""
BounceFactory = Callable[[AnyConnector], Awaitable[None]]
"""``conformance_bounce``: break the connector's link to the broker, as a network fault."""
InFlightFactory = Callable[[SourceOptions, int], tuple[AnyConnector, SourceOptions]]
"""``conformance_in_flight``: a connector and source holding at most N unacked deliveries."""
Publish = Callable[[AnyConnector, Any, CloudEvent], Awaitable[None]]
"""``conformance_publish``: how the suite publishes (default ``connector.publish``)."""


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Deadlines of the suite (``conformance_timeouts`` overrides them), in seconds."""

    receive: float = 15.0
    """Longest wait for a published message, for a subscription, for close."""
    redelivery: float = 40.0
    """Longest wait for a redelivery (after a crash, a nack, a bounce)."""
    quiet: float = 1.5
    """How long "nothing (more) arrives" is watched."""


async def usable_pair(harness: Harness, connector: AnyConnector) -> tuple[Any, Any]:
    """``harness.usable_pair(connector)``."""
    return await harness.usable_pair(connector)


def sample_event(n: int = 1, **changes: Any) -> CloudEvent:
    """A CloudEvent with every optional attribute set; ``changes`` replace fields."""
    event = CloudEvent(
        id=f"evt-{n}",
        source="urn:meshgate:conformance",
        type="com.example.conformance",
        subject="unit/1",
        time="2026-11-26T10:00:00.123Z",
        datacontenttype="application/json",
        extensions={"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
        data=b'{"n":%d}' % n,
    )
    return event.replace(**changes) if changes else event


class Consumer:
    """Pulls ``connector.consume(source)`` in a task into a queue.

    A task, because cancelling a pending ``anext`` of an async generator ends it.
    ``pause()`` stops pulling (the connector must then stop fetching, losing
    nothing); the iterator's end and its exception are kept for the test to see.
    """

    def __init__(self, connector: AnyConnector, source: SourceOptions, timeouts: Timeouts) -> None:
        self.connector = connector
        self.source = source
        self.timeouts = timeouts
        self.received: list[Delivery] = []
        self._queue: asyncio.Queue[Delivery] = asyncio.Queue()
        self._pulling = asyncio.Event()
        self._pulling.set()
        self._stream: AsyncIterator[Delivery] = aiter(connector.consume(source))
        self.task = asyncio.create_task(self._pump(), name=f"conformance consumer {source}")

    async def _pump(self) -> None:
        while True:
            await self._pulling.wait()
            try:
                delivery = await anext(self._stream)
            except StopAsyncIteration:
                return
            self.received.append(delivery)
            self._queue.put_nowait(delivery)

    def pause(self) -> None:
        """Stop asking for deliveries after the one being waited for."""
        self._pulling.clear()

    def resume(self) -> None:
        self._pulling.set()

    async def subscribed(self) -> None:
        """Wait for the readiness signal of this consumer's source."""
        try:
            async with asyncio.timeout(self.timeouts.receive):
                waiting = asyncio.ensure_future(self.connector.wait_subscribed(self.source))
                done, _ = await asyncio.wait(
                    {waiting, self.task}, return_when=asyncio.FIRST_COMPLETED
                )
                if waiting not in done:
                    waiting.cancel()
                    self._raise_end("before it was subscribed")
        except TimeoutError:
            pytest.fail(
                f"wait_subscribed({self.source!r}) did not return within {self.timeouts.receive}s",
                pytrace=False,
            )

    async def next(self, within: float | None = None) -> Delivery:
        """The next delivery; fails the test after ``within`` (default: receive timeout)."""
        within = self.timeouts.receive if within is None else within
        getting = asyncio.ensure_future(self._queue.get())
        try:
            done, _ = await asyncio.wait(
                {getting, self.task}, timeout=within, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            if not getting.done():
                getting.cancel()
        if getting in done:
            return getting.result()
        if self.task in done:
            self._raise_end("while a delivery was expected")
        pytest.fail(f"no delivery from {self.source!r} within {within}s", pytrace=False)

    async def take(self, count: int, within: float | None = None) -> list[Delivery]:
        """The next ``count`` deliveries, not acked (mind the in-flight bound)."""
        return [await self.next(within) for _ in range(count)]

    async def take_acking(self, count: int, within: float | None = None) -> list[Delivery]:
        """The next ``count`` deliveries, each acked as it arrives, as the runtime does."""
        got = []
        for _ in range(count):
            delivery = await self.next(within)
            await delivery.ack()
            got.append(delivery)
        return got

    async def nothing_within(self, seconds: float | None = None) -> None:
        """Fail if a delivery arrives within ``seconds`` (default: the quiet period)."""
        seconds = self.timeouts.quiet if seconds is None else seconds
        try:
            extra = await asyncio.wait_for(self._queue.get(), seconds)
        except TimeoutError:
            return
        pytest.fail(
            f"unexpected delivery on {extra.address!r}: {extra.payload[:80]!r}", pytrace=False
        )

    async def ended(self, within: float | None = None) -> bool:
        """Whether the iterator ended (returned or raised) within ``within`` seconds."""
        within = self.timeouts.receive if within is None else within
        done, _ = await asyncio.wait({self.task}, timeout=within)
        return bool(done)

    def _raise_end(self, when: str) -> None:
        error = self.task.exception()
        if error is not None:
            raise AssertionError(f"consume({self.source!r}) failed {when}") from error
        pytest.fail(f"consume({self.source!r}) ended {when}", pytrace=False)

    async def stop(self) -> None:
        """Stop pulling and close the iterator (as the runtime does with ``aclose``)."""
        if not self.task.done():
            self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        aclose = getattr(self._stream, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(aclose(), self.timeouts.receive)


class Harness:
    """One test's view of the plugin under test; closes what the test opened."""

    def __init__(
        self,
        *,
        make_connector: ConnectorFactory,
        make_pair: PairFactory,
        publish_raw: RawPublish | None,
        bounce: BounceFactory | None,
        in_flight: InFlightFactory | None,
        capabilities: Capabilities | None,
        timeouts: Timeouts,
        publish: Publish | None = None,
    ) -> None:
        self._make_connector = make_connector
        self._make_pair = make_pair
        self.raw_publisher = publish_raw
        self.bouncer = bounce
        self.in_flight = in_flight
        self.timeouts = timeouts
        self._publish = publish
        self._capabilities = capabilities
        self._connectors: list[AnyConnector] = []
        self._consumers: list[Consumer] = []

    @property
    def capabilities(self) -> Capabilities:
        """What the plugin promises for the sources and targets of ``conformance_pair``."""
        if self._capabilities is None:
            self._capabilities = self._make_connector().capabilities
        return self._capabilities

    def new_connector(self) -> AnyConnector:
        """A new connector, not started; closed at the end of the test."""
        connector = self._make_connector()
        self._connectors.append(connector)
        return connector

    async def connector(self, connector: AnyConnector | None = None) -> AnyConnector:
        """A started connector (``connector``, or a new one)."""
        connector = connector or self.new_connector()
        if connector not in self._connectors:
            self._connectors.append(connector)
        async with asyncio.timeout(self.timeouts.receive):
            await connector.start()
        return connector

    async def pair(self, mode: Mode = Mode.BINARY) -> tuple[Any, Any]:
        """A source and a target for a fresh address (``conformance_pair``)."""
        return await self._make_pair(mode)

    @property
    def default_mode(self) -> Mode:
        """Binary mode where native headers exist, else structured."""
        return Mode.BINARY if self.capabilities.headers else Mode.STRUCTURED

    def target_problem(self, connector: AnyConnector, target: TargetOptions) -> str | None:
        """Why ``connector`` cannot publish to ``target`` (``validate_target``), or None."""
        return type(connector).validate_target(connector.options, target)

    async def usable_pair(self, connector: AnyConnector) -> tuple[Any, Any]:
        """A fresh pair in the default mode, structured where the connector's options
        refuse binary mode (MQTT 3.1.1)."""
        source, target = await self.pair(self.default_mode)
        if self.target_problem(connector, target) is not None:
            source, target = await self.pair(Mode.STRUCTURED)
        return source, target

    async def subscribe(self, connector: AnyConnector, source: SourceOptions) -> Consumer:
        """A consumer of ``source``, returned once the connector says it is subscribed."""
        consumer = Consumer(connector, source, self.timeouts)
        self._consumers.append(consumer)
        await consumer.subscribed()
        return consumer

    async def publish(self, connector: AnyConnector, target: Any, event: CloudEvent) -> None:
        """Publish with ``conformance_publish`` when given, else ``connector.publish``."""
        async with asyncio.timeout(self.timeouts.receive):
            if self._publish is not None:
                await self._publish(connector, target, event)
            else:
                await connector.publish(target, event)

    async def publish_until_confirmed(
        self, connector: AnyConnector, target: Any, event: CloudEvent
    ) -> None:
        """Publish, retrying retriable errors (a link coming back), until confirmed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeouts.redelivery
        while True:
            try:
                await self.publish(connector, target, event)
                return
            except (ConnectorError, TimeoutError) as exc:
                if isinstance(exc, ConnectorError) and not exc.retriable:
                    raise
                if loop.time() > deadline:
                    pytest.fail(f"publish not confirmed within {self.timeouts.redelivery}s")
                await asyncio.sleep(0.2)  # retry pacing, not a settle

    async def close(self, connector: AnyConnector) -> None:
        async with asyncio.timeout(self.timeouts.receive):
            await connector.close()

    async def aclose(self) -> None:
        """Stop every consumer and close every connector of the test."""
        for consumer in self._consumers:
            await consumer.stop()
        for connector in self._connectors:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connector.close(), self.timeouts.receive)
