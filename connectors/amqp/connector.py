"""``AmqpConnector``: the ``amqp`` connector type, tying link, source and sink together."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from typing import ClassVar

from connectors.amqp.asyncapi import AmqpAsyncApi
from connectors.amqp.config import AmqpOptions, AmqpSource, AmqpTarget
from connectors.amqp.link import Link
from connectors.amqp.meshchannel import AmqpMeshChannel
from connectors.amqp.semconv import AmqpMessaging
from connectors.amqp.sink import Publisher
from connectors.amqp.source import subscribe
from connectors.amqp.topology import AmqpTopology, amqp_match
from connectors.base import (
    Capabilities,
    Connector,
    Delivery,
    HealthState,
    MessageSpec,
    RawMessage,
    dry_run_delivery,
)
from connectors.errors import ConnectionLost, ConnectorError, MessageSpecError
from connectors.readiness import Subscriptions
from connectors.redact import redact_url
from connectors.tls import TlsConfigError
from routing.bindings import amqp as binding
from routing.bindings import merge_headers
from routing.errors import InvalidEvent
from routing.event import CloudEvent

__all__ = ["AmqpConnector"]

_log = logging.getLogger("meshgate.connectors.amqp")

# RabbitMQ's default max_message_size (3.8 and later): 128 MiB.
_MAX_MESSAGE_BYTES = 128 * 1024 * 1024


class AmqpConnector(Connector[AmqpOptions, AmqpSource, AmqpTarget, binding.AmqpMessage]):
    """RabbitMQ / AMQP 0-9-1: consume queues with manual acks, publish with confirms."""

    Options: ClassVar[type[AmqpOptions]] = AmqpOptions
    Source: ClassVar[type[AmqpSource]] = AmqpSource
    Target: ClassVar[type[AmqpTarget]] = AmqpTarget
    capabilities: ClassVar[Capabilities] = Capabilities(
        acknowledgements=True,
        confirmed_publish=True,
        ordering="queue",
        headers=True,
        max_message_bytes=_MAX_MESSAGE_BYTES,
    )
    topology: ClassVar[AmqpTopology] = AmqpTopology()
    # A broken renewed certificate file is retried like a refused connection.
    connection_errors = (ConnectionLost, TlsConfigError)
    mesh_channel: ClassVar[AmqpMeshChannel] = AmqpMeshChannel()
    semconv: ClassVar[AmqpMessaging] = AmqpMessaging()
    asyncapi: ClassVar[AmqpAsyncApi] = AmqpAsyncApi()

    def __init__(self, name: str, options: AmqpOptions) -> None:
        super().__init__(name, options)
        self._link = Link(options, name, self.supervisor, _log)
        self._publisher = Publisher(self._link, options, _log)
        self._subscriptions = Subscriptions()

    def endpoint(self) -> str:
        return redact_url(self.options.url)

    @property
    def connection_name(self) -> str:
        """The connection's name in RabbitMQ management."""
        return self._link.connection_name

    async def start(self) -> None:
        self.supervisor.starting()
        await self._link.start()
        self.supervisor.connected("")

    async def close(self) -> None:
        if self.health.state is HealthState.CLOSED:
            return
        await self._publisher.drain(self.options.confirm_timeout_seconds)
        await self._publisher.close()
        await self._link.close()

    def subscribe(self, source: AmqpSource) -> AsyncIterator[Delivery[binding.AmqpMessage]]:
        return subscribe(self._link, source, _log, self._subscriptions.track(source))

    async def wait_subscribed(self, source: AmqpSource) -> None:
        await self._subscriptions.wait(source)

    def decode(self, delivery: Delivery[binding.AmqpMessage]) -> CloudEvent | None:
        message = delivery.message
        return binding.from_message(message)

    def encode(self, target: AmqpTarget, event: CloudEvent) -> binding.AmqpMessage:
        # The publisher also sets message_id = event id and the delivery mode.
        message = binding.to_message(event, target.mode, fmt=target.format)
        if not target.headers:
            return message
        custom: dict[str, object] = dict(target.headers)
        merged = merge_headers(
            message.headers.items(), custom.items(), refused=binding.header_clash
        )
        return binding.AmqpMessage(message.body, message.content_type, dict(merged))

    async def publish(self, target: AmqpTarget, event: CloudEvent) -> None:
        await self._publisher.publish(target, event, self.encode(target, event))

    async def publish_many(
        self, items: Sequence[tuple[AmqpTarget, CloudEvent]]
    ) -> list[Exception | None]:
        """``BatchPublisher``: every publish sent on the confirm channel, then the
        confirmations awaited together (``Publisher.publish_many``)."""
        outcomes: list[Exception | None] = [None] * len(items)
        encoded: list[tuple[AmqpTarget, CloudEvent, binding.AmqpMessage]] = []
        sent: list[int] = []
        for index, (target, event) in enumerate(items):
            try:
                encoded.append((target, event, self.encode(target, event)))
            except (ConnectorError, InvalidEvent) as exc:
                outcomes[index] = exc
                continue
            sent.append(index)
        if encoded:
            results = await self._publisher.publish_many(encoded)
            for index, error in zip(sent, results, strict=True):
                outcomes[index] = error
        return outcomes

    async def publish_raw(self, message: RawMessage) -> None:
        # The source's exchange when known; else "EXCHANGE/ROUTING_KEY", or a bare
        # routing key for the default exchange (straight into the queue of that name).
        exchange = message.coordinates.get("exchange")
        routing_key = message.address
        if exchange is None:
            exchange, _, routing_key = (
                message.address.partition("/") if "/" in message.address else ("", "", routing_key)
            )
        target = AmqpTarget.model_validate(
            {
                "connector": self.name,
                "exchange": str(exchange),
                "routing_key": routing_key,
                "mandatory": True,  # an unroutable redrive must fail, not vanish
            }
        )
        await self._publisher.publish_raw(target, message)

    @classmethod
    def header_clash(cls, options: AmqpOptions, name: str) -> str | None:
        return binding.header_clash(name)

    @classmethod
    def read_back(cls, target: AmqpTarget, reader: str) -> AmqpSource | None:
        # Only a publish to the default exchange names its queue (the routing key).
        if target.exchange:
            return None
        return AmqpSource.model_validate(
            {"connector": target.connector, "queue": target.routing_key, "declare": False}
        )

    @classmethod
    def dry_run_delivery(
        cls, options: AmqpOptions, spec: MessageSpec
    ) -> Delivery[binding.AmqpMessage]:
        # Either the queue the message sits in, or where it was published: exchange
        # (default "", the default exchange) + routing key (`address` stands for it).
        queue = spec.text("queue")
        exchange = spec.text("exchange", "") or ""
        routing_key = spec.text("routing_key", spec.address or None)
        if queue is None and routing_key is None:
            raise MessageSpecError(
                "an amqp --message needs `queue`, or `exchange` and `routing_key` "
                "(without `exchange`, the default exchange: the routing key names the queue)"
            )
        if queue is None and not exchange:
            queue = routing_key  # the default exchange routes straight to that queue
        coordinates: dict[str, str | int] = {"exchange": exchange}
        if routing_key is not None:
            coordinates["routing_key"] = routing_key
        if queue is not None:
            coordinates["queue"] = queue
        message = binding.AmqpMessage(
            body=spec.payload, content_type=spec.native_content_type, headers=dict(spec.headers)
        )
        address = routing_key if routing_key is not None else str(queue)
        return dry_run_delivery(spec, message, address, coordinates=coordinates)

    @classmethod
    def source_receives(cls, source: AmqpSource, delivery: Delivery[binding.AmqpMessage]) -> bool:
        queue = delivery.coordinates.get("queue")
        if queue is not None:
            return queue == source.queue
        exchange = str(delivery.coordinates.get("exchange", ""))
        routing_key = str(delivery.coordinates.get("routing_key", ""))
        return any(
            binding_.exchange == exchange and amqp_match(binding_.binding_key, routing_key)
            for binding_ in source.bind
        )

    async def preflight(
        self, sources: Sequence[AmqpSource], targets: Sequence[AmqpTarget]
    ) -> list[str]:
        """What the routes need that the broker lacks (``meshgate validate --connect``)."""
        from connectors.amqp.preflight import preflight

        return await preflight(self._link, sources, targets)

    def describe_source(self, source: AmqpSource) -> str:
        return f"{self.name}:queue {source.queue!r}"
