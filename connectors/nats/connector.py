"""``NatsConnector``: wires the NATS link, sources and sink into the connector contract."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator, Sequence
from typing import ClassVar

from connectors.base import (
    Capabilities,
    Connector,
    Delivery,
    MessageSpec,
    RawMessage,
    dry_run_delivery,
)
from connectors.errors import ConnectionLost, PublishRejected
from connectors.nats import sink
from connectors.nats.asyncapi import NatsAsyncApi
from connectors.nats.client import RawHeaders
from connectors.nats.config import (
    JetStreamSource,
    NatsOptions,
    NatsSource,
    NatsTarget,
    check_publish_subject,
)
from connectors.nats.link import Link
from connectors.nats.meshchannel import NatsMeshChannel
from connectors.nats.semconv import NatsMessaging
from connectors.nats.source import subscribe_core, subscribe_jetstream
from connectors.nats.topology import NatsTopology, nats_match
from connectors.readiness import Subscriptions
from connectors.tls import TlsConfigError
from routing.bindings import nats as nats_binding
from routing.bindings.nats import NatsMessage, from_header_block, from_message
from routing.event import CloudEvent

__all__ = ["NatsConnector"]

log = logging.getLogger("meshgate.connectors.nats")

READ_BACK_ACK_WAIT = 5.0
"""ack_wait of the durable that ``meshgate dlq`` reads a dead-letter stream with."""


class NatsConnector(Connector[NatsOptions, NatsSource, NatsTarget, NatsMessage]):
    """NATS and JetStream; see the package docstring for features and options.

    ``capabilities`` describes the connector at its best, JetStream; per source and
    target (``source_capabilities``, ``target_capabilities``) core NATS sources do not
    acknowledge and ``jetstream: false`` targets are not confirmed (at-most-once).
    """

    Options: ClassVar[type[NatsOptions]] = NatsOptions
    Source: ClassVar[type[NatsSource]] = NatsSource
    Target: ClassVar[type[NatsTarget]] = NatsTarget
    capabilities: ClassVar[Capabilities] = Capabilities(
        acknowledgements=True,
        confirmed_publish=True,
        ordering="subject",
        headers=True,
        max_message_bytes=1024 * 1024,
    )
    topology: ClassVar[NatsTopology] = NatsTopology()
    # A broken renewed certificate file is retried like a refused connection.
    connection_errors = (ConnectionLost, TlsConfigError)
    mesh_channel: ClassVar[NatsMeshChannel] = NatsMeshChannel()
    semconv: ClassVar[NatsMessaging] = NatsMessaging()
    asyncapi: ClassVar[NatsAsyncApi] = NatsAsyncApi()

    def __init__(self, name: str, options: NatsOptions) -> None:
        super().__init__(name, options)
        self._link = Link(name, options, self.supervisor, log)
        self._subscriptions = Subscriptions()

    def endpoint(self) -> str:
        return self._link.servers  # credentials redacted

    @property
    def slow_consumer_drops(self) -> int:
        """Core NATS messages lost because a source fell behind (at-most-once)."""
        return self._link.slow_consumer_drops

    @property
    def watchdog_replacements(self) -> int:
        """Clients replaced because the link went silent while nats-py saw it connected."""
        return self._link.watchdog_replacements

    async def start(self) -> None:
        self.supervisor.starting()
        await self._link.open()

    async def close(self) -> None:
        await self._link.close()

    def subscribe(self, source: NatsSource) -> AsyncIterator[Delivery[NatsMessage]]:
        ready = self._subscriptions.track(source)
        if source.jetstream is not None:
            timeout = self.options.publish_timeout_seconds
            return subscribe_jetstream(self._link, source, log, timeout, ready)
        return subscribe_core(self._link, source, log, ready)

    async def wait_subscribed(self, source: NatsSource) -> None:
        await self._subscriptions.wait(source)

    def decode(self, delivery: Delivery[NatsMessage]) -> CloudEvent | None:
        message = delivery.message
        if not isinstance(message, NatsMessage):
            message = NatsMessage(delivery.payload, delivery.headers)
        headers = message.headers
        if type(headers) is RawHeaders and not headers.parsed:  # as received: no dict
            event = from_header_block(headers.block, message.data)
            if event is not None:
                return event
        return from_message(message)

    def encode(self, target: NatsTarget, event: CloudEvent) -> NatsMessage:
        return sink.encode(target, event)

    async def publish(self, target: NatsTarget, event: CloudEvent) -> None:
        await sink.publish(self._link, self.options.publish_timeout_seconds, target, event)

    async def publish_many(
        self, items: Sequence[tuple[NatsTarget, CloudEvent]]
    ) -> list[Exception | None]:
        """``BatchPublisher``: every JetStream publish written, then the PubAcks awaited."""
        return await sink.publish_many(self._link, self.options.publish_timeout_seconds, items)

    async def publish_raw(self, message: RawMessage) -> None:
        # JetStream (PubAck) unless the original came from a core subscription. Its
        # Nats-Msg-Id is dropped: the stream would discard the redrive as a duplicate.
        problem = check_publish_subject(message.address)
        if problem:
            raise PublishRejected(f"NATS subject {message.address!r} {problem}")
        core = bool(message.coordinates) and "stream" not in message.coordinates
        headers = {k: v for k, v in message.headers.items() if k.lower() != "nats-msg-id"}
        await sink.send(
            self._link,
            self.options.publish_timeout_seconds,
            message.address,
            message.payload,
            headers or None,
            not core,
            f"message for {message.address!r}",
        )

    @classmethod
    def source_capabilities(cls, options: NatsOptions, source: NatsSource) -> Capabilities:
        return dataclasses.replace(cls.capabilities, acknowledgements=source.acknowledged)

    @classmethod
    def target_capabilities(cls, options: NatsOptions, target: NatsTarget) -> Capabilities:
        return dataclasses.replace(cls.capabilities, confirmed_publish=target.confirmed)

    @classmethod
    def capability_cases(cls) -> list[tuple[str, str, Capabilities]]:
        options = NatsOptions(type="nats")
        core = NatsSource(connector="n", subject="s")
        durable = core.model_copy(update={"jetstream": JetStreamSource(durable="d")})
        target = NatsTarget.model_validate({"connector": "n", "subject": "s"})
        return [
            ("source", "with `jetstream:`", cls.source_capabilities(options, durable)),
            ("source", "core NATS (no `jetstream:`)", cls.source_capabilities(options, core)),
            ("target", "`jetstream: true` (default)", cls.target_capabilities(options, target)),
            (
                "target",
                "`jetstream: false`",
                cls.target_capabilities(options, target.model_copy(update={"jetstream": False})),
            ),
        ]

    @classmethod
    def header_clash(cls, options: NatsOptions, name: str) -> str | None:
        return nats_binding.header_clash(name)

    @classmethod
    def read_back(cls, target: NatsTarget, reader: str) -> NatsSource | None:
        # Core NATS keeps nothing; a JetStream stream does.
        if not target.jetstream:
            return None
        return NatsSource.model_validate(
            {
                "connector": target.connector,
                "subject": target.subject,
                # A short ack_wait: a message given back (-NAK) while this reader's
                # last pull request is still open on the server goes to that request
                # and returns only after ack_wait (the reader heartbeats what it holds).
                "jetstream": {
                    "durable": reader,
                    "deliver_policy": "all",
                    "ack_wait_seconds": READ_BACK_ACK_WAIT,
                },
            }
        )

    @classmethod
    def dry_run_delivery(cls, options: NatsOptions, spec: MessageSpec) -> Delivery[NatsMessage]:
        subject = spec.required("subject", "a nats --message")
        message = NatsMessage(spec.payload, dict(spec.headers) or None)
        return dry_run_delivery(spec, message, subject, coordinates={"subject": subject})

    @classmethod
    def source_receives(cls, source: NatsSource, delivery: Delivery[NatsMessage]) -> bool:
        return nats_match(source.subject, delivery.address)

    async def preflight(
        self, sources: Sequence[NatsSource], targets: Sequence[NatsTarget]
    ) -> list[str]:
        """What the routes need that the broker lacks (``meshgate validate --connect``)."""
        from connectors.nats.preflight import preflight

        return await preflight(self._link, sources, targets)

    def describe_source(self, source: NatsSource) -> str:
        kind = f"JetStream durable {source.jetstream.durable}" if source.jetstream else "core"
        group = f" queue group {source.queue_group}" if source.queue_group else ""
        return f"{self.name}: {source.subject!r} ({kind}{group})"
