"""``KafkaConnector``: the ``kafka`` connector type, tying producer, sources and health together."""

from __future__ import annotations

import asyncio
import logging
import re
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
from connectors.errors import ConnectionLost, ConnectorError
from connectors.headertext import header_bytes
from connectors.kafka.asyncapi import KafkaAsyncApi
from connectors.kafka.config import KafkaOptions, KafkaSource, KafkaTarget
from connectors.kafka.meshchannel import KafkaMeshChannel
from connectors.kafka.semconv import KafkaMessaging
from connectors.kafka.sink import Producer
from connectors.kafka.source import SourceSession
from connectors.kafka.topology import KafkaTopology
from connectors.readiness import Subscriptions
from connectors.tls import warn_insecure
from routing.bindings import kafka as binding
from routing.bindings import merge_headers
from routing.errors import InvalidEvent
from routing.event import CloudEvent

__all__ = ["KafkaConnector"]

log = logging.getLogger("meshgate.connectors.kafka")


def _not_a_bootstrap_error(record: logging.LogRecord) -> bool:
    # aiokafka logs each failed bootstrap connect at ERROR without saying for which
    # connector; the failure is raised to us as well and logged as "connector NAME
    # (kafka SERVERS): connect failed", so its own line is dropped.
    return not str(record.msg).startswith('Unable connect to "')


logging.getLogger("aiokafka").addFilter(_not_a_bootstrap_error)

# Kafka's default message.max.bytes (broker) and max.request.size (producer): 1 MiB.
_MAX_MESSAGE_BYTES = 1_048_576
_BROKERS = "brokers"
"""The supervisor's key for the producer's (and metadata) connections."""


class KafkaConnector(Connector[KafkaOptions, KafkaSource, KafkaTarget, binding.KafkaMessage]):
    """Apache Kafka: consumer groups with out-of-order-safe commits, acks=all publishing."""

    Options: ClassVar[type[KafkaOptions]] = KafkaOptions
    Source: ClassVar[type[KafkaSource]] = KafkaSource
    Target: ClassVar[type[KafkaTarget]] = KafkaTarget
    message_keys: ClassVar[bool] = True
    capabilities: ClassVar[Capabilities] = Capabilities(
        acknowledgements=True,
        confirmed_publish=True,
        ordering="partition",
        headers=True,
        max_message_bytes=_MAX_MESSAGE_BYTES,
    )
    topology: ClassVar[KafkaTopology] = KafkaTopology()
    mesh_channel: ClassVar[KafkaMeshChannel] = KafkaMeshChannel()
    semconv: ClassVar[KafkaMessaging] = KafkaMessaging()
    asyncapi: ClassVar[KafkaAsyncApi] = KafkaAsyncApi()

    def __init__(self, name: str, options: KafkaOptions) -> None:
        super().__init__(name, options)
        self._producer = Producer(options, name)
        self._sessions: set[SourceSession] = set()
        self._subscriptions = Subscriptions()
        self._probe: asyncio.Task[None] | None = None
        self._closed = False

    def endpoint(self) -> str:
        return ",".join(self.options.bootstrap_servers)

    @property
    def idempotent(self) -> bool:
        """Whether the producer runs idempotent (False after a broker refused it)."""
        return self._producer.idempotent

    async def start(self) -> None:
        self.supervisor.starting("connecting")
        warn_insecure(self.options.tls, log, self.name)
        await self._producer.start()
        self.supervisor.connected(_BROKERS)
        log.info(
            "%s: connected to %s (idempotent producer: %s)",
            self.name,
            ", ".join(self.options.bootstrap_servers),
            self._producer.idempotent,
        )
        self._probe = asyncio.create_task(self._watch(), name=f"kafka-health:{self.name}")

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._probe is not None:
            self._probe.cancel()
            await asyncio.wait([self._probe])
        try:  # one session failing to close must not leave the producer open
            await asyncio.gather(
                *(session.close() for session in list(self._sessions)), return_exceptions=True
            )
        finally:
            try:
                await self._producer.close()
            finally:
                self.supervisor.closed()

    def consume(self, source: KafkaSource) -> AsyncIterator[Delivery[binding.KafkaMessage]]:
        # Not the core's subscribe-again loop: a session keeps its group membership
        # across broker losses (see connectors.kafka.source); its waits and health
        # still go through the supervisor.
        if self._closed:
            raise ConnectionLost(f"kafka connector {self.name!r} is closed")
        session = SourceSession(
            self.name,
            self.options,
            source,
            self.supervisor,
            self._sessions.discard,
            self._subscriptions.track(source),
        )
        self._sessions.add(session)
        return session

    async def wait_subscribed(self, source: KafkaSource) -> None:
        await self._subscriptions.wait(source)

    def decode(self, delivery: Delivery[binding.KafkaMessage]) -> CloudEvent | None:
        message = delivery.message
        return binding.from_message(message)

    def encode(self, target: KafkaTarget, event: CloudEvent) -> binding.KafkaMessage:
        message = binding.to_message(
            event,
            target.mode,
            key=target.key.encode("utf-8") if target.key is not None else None,
            key_from_partitionkey=target.key_from_partitionkey,
            fmt=target.format,
        )
        if not target.headers:
            return message
        custom = ((name, value.encode("utf-8")) for name, value in target.headers.items())
        merged = merge_headers(message.headers, custom, refused=binding.header_clash)
        return binding.KafkaMessage(message.key, message.value, tuple(merged))

    async def publish(self, target: KafkaTarget, event: CloudEvent) -> None:
        await self._send(target.topic, self.encode(target, event))

    async def publish_many(
        self, items: Sequence[tuple[KafkaTarget, CloudEvent]]
    ) -> list[Exception | None]:
        """``BatchPublisher``: every record handed to the producer, then the acks awaited."""
        outcomes: list[Exception | None] = [None] * len(items)
        records: list[tuple[str, binding.KafkaMessage]] = []
        sent: list[int] = []
        for index, (target, event) in enumerate(items):
            try:
                records.append((target.topic, self.encode(target, event)))
            except (ConnectorError, InvalidEvent) as exc:
                outcomes[index] = exc
                continue
            sent.append(index)
        results = await self._producer.send_many(records)
        for index, error in zip(sent, results, strict=True):
            outcomes[index] = error
        # Health as _send reports it, once per batch.
        lost = next((e for e in results if isinstance(e, ConnectionLost)), None)
        if lost is not None:
            self._report(reachable=False, detail=str(lost))
        elif any(error is None for error in results) and self.supervisor.is_down(_BROKERS):
            self._report(reachable=True)
        return outcomes

    async def publish_raw(self, message: RawMessage) -> None:
        headers = tuple((name, header_bytes(value)) for name, value in message.headers.items())
        key = None if message.key is None else header_bytes(message.key)
        await self._send(message.address, binding.KafkaMessage(key, message.payload, headers))

    async def _send(self, topic: str, message: binding.KafkaMessage) -> None:
        try:
            await self._producer.send(topic, message)
        except ConnectionLost as exc:
            self._report(reachable=False, detail=str(exc))
            raise
        if self.supervisor.is_down(_BROKERS):
            self._report(reachable=True)

    @classmethod
    def header_clash(cls, options: KafkaOptions, name: str) -> str | None:
        return binding.header_clash(name)

    @classmethod
    def read_back(cls, target: KafkaTarget, reader: str) -> KafkaSource | None:
        return KafkaSource.model_validate(
            {
                "connector": target.connector,
                "topics": [target.topic],
                "group_id": reader,
                "auto_offset_reset": "earliest",
            }
        )

    @classmethod
    def dry_run_delivery(
        cls, options: KafkaOptions, spec: MessageSpec
    ) -> Delivery[binding.KafkaMessage]:
        topic = spec.required("topic", "a kafka --message")
        headers = tuple((name, value.encode()) for name, value in spec.headers.items())
        key = None if spec.key is None else spec.key.encode()
        coordinates: dict[str, str | int] = {"topic": topic}
        if spec.key is not None:
            coordinates["key"] = spec.key
        return dry_run_delivery(
            spec, binding.KafkaMessage(key, spec.payload, headers), topic, coordinates=coordinates
        )

    @classmethod
    def source_receives(cls, source: KafkaSource, delivery: Delivery[binding.KafkaMessage]) -> bool:
        if source.pattern is not None:
            return re.fullmatch(source.pattern, delivery.address) is not None
        return delivery.address in (source.topics or ())

    async def preflight(
        self, sources: Sequence[KafkaSource], targets: Sequence[KafkaTarget]
    ) -> list[str]:
        """What the routes need that the broker lacks (``meshgate validate --connect``)."""
        from connectors.kafka.preflight import preflight

        return await preflight(self._producer.client, sources, targets)

    def describe_source(self, source: KafkaSource) -> str:
        what = (
            f"pattern {source.pattern!r}"
            if source.pattern
            else f"topics {list(source.topics or ())}"
        )
        return f"{self.name}:{what} group {source.group_id!r}"

    # -- health -------------------------------------------------------------------

    def _report(self, *, reachable: bool, detail: str = "") -> None:
        """The producer's view of the brokers, as the core's supervisor keeps it."""
        if self._closed:
            return
        if reachable:
            if self.supervisor.is_down(_BROKERS):
                log.info("%s: brokers reachable again", self.name)
                self.supervisor.connected(_BROKERS)
        else:
            if not self.supervisor.is_down(_BROKERS):
                log.warning("%s: %s", self.name, detail)
            self.supervisor.lost(_BROKERS, detail)

    async def _watch(self) -> None:
        """aiokafka reconnects by itself; this makes its state visible in ``health``."""
        interval = self.options.health_interval_seconds
        timeout = self.options.request_timeout_seconds
        while True:
            await asyncio.sleep(interval)
            client = self._producer.client
            if client is None:
                return
            try:
                async with asyncio.timeout(timeout):
                    reachable = bool(await client.force_metadata_update())
            except TimeoutError:
                reachable = False
            self._report(reachable=reachable, detail="no broker answers metadata requests")
