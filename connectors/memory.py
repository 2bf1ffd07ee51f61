"""In-memory connector: a broker inside the process, for route tests and dry runs.

Features: named in-memory topics (a FIFO queue each), ack/nack bookkeeping
(nack with requeue, or closing a consumer or its connector with unsettled messages,
puts them back at the front, as a broker redelivers unacknowledged messages), an
optional bound on unsettled deliveries per source (``max_in_flight``), and fault injection
(``fail_publishes``, ``fail_starts``) so the runtime's retry, dead-letter and
connection paths can be tested without a network. Messages use the NATS binding (headers + payload).

URL form: none; every ``memory`` connector with the same ``namespace`` shares topics.

Options: ``namespace`` (str, default "default"). Source: ``topic``, ``max_in_flight``.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import Field

from connectors.base import (
    Capabilities,
    Connector,
    ConnectorOptions,
    Delivery,
    HealthState,
    MessageSpec,
    RawMessage,
    SourceOptions,
    TargetOptions,
    dry_run_delivery,
)
from connectors.errors import ConnectionLost, ConnectorError, PublishRejected
from connectors.readiness import Subscriptions
from connectors.topology import Matcher, Topology, may_equal
from routing.bindings import merge_headers
from routing.bindings import nats as binding
from routing.event import CloudEvent

__all__ = ["MemoryBroker", "MemoryConnector"]


@dataclass
class _Topic:
    messages: deque[tuple[int, binding.NatsMessage]] = field(default_factory=deque)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)


class MemoryBroker:
    """The shared state of one namespace: topics, and what was acked/nacked."""

    _namespaces: ClassVar[dict[str, MemoryBroker]] = {}

    def __init__(self) -> None:
        self.topics: dict[str, _Topic] = defaultdict(_Topic)
        self.acked: list[int] = []
        self.nacked: list[int] = []
        self.fail_publishes: list[ConnectorError] = []  # raised by the next publishes, in order
        self.fail_starts: list[ConnectorError] = []  # raised by the next start() calls, in order
        self.starts = 0  # start() calls of this namespace's connectors
        self._ids = itertools.count(1)

    @classmethod
    def get(cls, namespace: str) -> MemoryBroker:
        return cls._namespaces.setdefault(namespace, MemoryBroker())

    @classmethod
    def reset(cls) -> None:
        cls._namespaces.clear()

    def put(self, topic: str, message: binding.NatsMessage) -> int:
        number = next(self._ids)
        queue = self.topics[topic]
        queue.messages.append((number, message))
        queue.arrived.set()
        return number

    def drain(self, topic: str) -> list[binding.NatsMessage]:
        """Remove and return every message waiting on ``topic`` (for assertions)."""
        queue = self.topics[topic]
        out = [message for _, message in queue.messages]
        queue.messages.clear()
        return out


class MemoryOptions(ConnectorOptions):
    namespace: str = Field(
        "default", description="Connectors with the same namespace share topics."
    )


class MemorySource(SourceOptions):
    topic: str = Field(description="Topic to consume.")
    max_in_flight: int | None = Field(
        default=None, ge=1, description="Deliveries handed out but not yet settled; none above it."
    )


class MemoryTarget(TargetOptions):
    topic: str = Field(description="Topic to publish to (template).")
    template_fields: ClassVar[tuple[str, ...]] = ("topic",)


class MemoryTopology(Topology[MemoryOptions, MemorySource, MemoryTarget]):
    """A namespace is one broker; a topic is one queue its consumers share."""

    address_fields = ("topic",)

    def broker_identity(self, options: MemoryOptions) -> Mapping[str, Any]:
        return {"namespace": options.namespace}

    def source_reads(self, source: MemorySource) -> Matcher:
        return lambda address: may_equal(source.topic, address[0])

    def source_text(self, source: MemorySource) -> str:
        return source.topic

    def sources_share(self, a: MemorySource, b: MemorySource) -> bool:
        return a.topic == b.topic


class MemoryConnector(Connector[MemoryOptions, MemorySource, MemoryTarget, binding.NatsMessage]):
    Options = MemoryOptions
    Source = MemorySource
    Target = MemoryTarget
    capabilities = Capabilities(
        acknowledgements=True,
        confirmed_publish=True,
        ordering="topic",
        headers=True,
        max_message_bytes=None,
    )
    topology = MemoryTopology()

    def __init__(self, name: str, options: MemoryOptions) -> None:
        super().__init__(name, options)
        self.broker = MemoryBroker.get(options.namespace)
        self._closed = asyncio.Event()
        self._subscriptions = Subscriptions()

    async def start(self) -> None:
        self.broker.starts += 1
        if self.broker.fail_starts:
            raise self.broker.fail_starts.pop(0)
        self._closed.clear()
        self.health.state = HealthState.UP

    async def close(self) -> None:
        self.health.state = HealthState.CLOSED
        self._closed.set()  # ends every consume iterator waiting for a message

    async def wait_subscribed(self, source: MemorySource) -> None:
        await self._subscriptions.wait(source)

    async def consume(self, source: MemorySource) -> AsyncIterator[Delivery[binding.NatsMessage]]:
        queue = self.broker.topics[source.topic]
        limit = source.max_in_flight
        # Like a broker: what this consumer took but did not settle goes back to the
        # front of the topic when the consumer (or its connector) goes away.
        unsettled: dict[int, binding.NatsMessage] = {}
        settled = asyncio.Event()
        subscription = self._subscriptions.track(source)
        subscription.up()
        try:
            while not self._closed.is_set():
                if limit is not None and len(unsettled) >= limit:
                    settled.clear()
                    await self._until(settled)
                    continue
                if not queue.messages:
                    queue.arrived.clear()
                    await self._until(queue.arrived)
                    continue
                number, message = queue.messages.popleft()
                unsettled[number] = message
                yield self._delivery(source.topic, number, message, unsettled, settled)
        finally:
            subscription.down()
            for number in sorted(unsettled, reverse=True):
                queue.messages.appendleft((number, unsettled.pop(number)))
            if queue.messages:
                queue.arrived.set()

    async def _until(self, event: asyncio.Event) -> None:
        """Wait for ``event`` or for this connector to close, whichever comes first."""
        waits = [asyncio.ensure_future(event.wait()), asyncio.ensure_future(self._closed.wait())]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()

    def _delivery(
        self,
        topic: str,
        number: int,
        message: binding.NatsMessage,
        unsettled: dict[int, binding.NatsMessage],
        settled: asyncio.Event,
    ) -> Delivery[binding.NatsMessage]:
        async def ack() -> None:
            if unsettled.pop(number, None) is not None:
                self.broker.acked.append(number)
                settled.set()

        async def nack(*, requeue: bool) -> None:
            if unsettled.pop(number, None) is None:
                return
            self.broker.nacked.append(number)
            settled.set()
            if requeue:
                queue = self.broker.topics[topic]
                queue.messages.appendleft((number, message))
                queue.arrived.set()

        headers = dict(message.headers or {})
        return Delivery(
            message=message,
            address=topic,
            payload=message.data,
            headers=headers,
            ack=ack,
            nack=nack,
            native_id=f"{topic}/{number}",
            ordering_key=topic,
            coordinates={"topic": topic, "number": number},
            content_type=headers.get("content-type"),
        )

    @classmethod
    def dry_run_delivery(
        cls, options: MemoryOptions, spec: MessageSpec
    ) -> Delivery[binding.NatsMessage]:
        topic = spec.required("topic", "a memory --message")
        message = binding.NatsMessage(spec.payload, dict(spec.headers) or None)
        return dry_run_delivery(spec, message, topic, coordinates={"topic": topic})

    @classmethod
    def source_receives(cls, source: MemorySource, delivery: Delivery[binding.NatsMessage]) -> bool:
        return source.topic == delivery.address

    def decode(self, delivery: Delivery[binding.NatsMessage]) -> CloudEvent | None:
        message = delivery.message
        return binding.from_message(message)

    def encode(self, target: MemoryTarget, event: CloudEvent) -> binding.NatsMessage:
        message = binding.to_message(event, target.mode, fmt=target.format)
        if not target.headers:
            return message
        own = (message.headers or {}).items()
        merged = merge_headers(
            own, target.headers.items(), same=binding.header_key, refused=binding.header_clash
        )
        return binding.NatsMessage(message.data, dict(merged))

    async def publish(self, target: MemoryTarget, event: CloudEvent) -> None:
        self._check_open()
        if self.broker.fail_publishes:
            raise self.broker.fail_publishes.pop(0)
        if not target.topic:
            raise PublishRejected("empty topic")
        self.broker.put(target.topic, self.encode(target, event))

    @classmethod
    def header_clash(cls, options: MemoryOptions, name: str) -> str | None:
        return binding.header_clash(name)

    @classmethod
    def read_back(cls, target: MemoryTarget, reader: str) -> MemorySource | None:
        return MemorySource(connector=target.connector, topic=target.topic)

    async def publish_raw(self, message: RawMessage) -> None:
        self._check_open()
        if self.broker.fail_publishes:
            raise self.broker.fail_publishes.pop(0)
        if not message.address:
            raise PublishRejected("empty topic")
        self.broker.put(message.address, binding.NatsMessage(message.payload, message.headers))

    def _check_open(self) -> None:
        if self._closed.is_set():
            raise ConnectionLost(f"memory connector {self.name!r} is closed")
