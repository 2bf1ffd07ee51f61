"""``MqttConnector``: the ``mqtt`` connector type; ties sessions, sources and publishing."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Sequence
from typing import ClassVar

from connectors.base import (
    Capabilities,
    Connector,
    Delivery,
    HealthState,
    MessageSpec,
    RawMessage,
    dry_run_delivery,
)
from connectors.errors import ConnectionLost, ConnectorError, MessageSpecError, PublishRejected
from connectors.mqtt.asyncapi import MqttAsyncApi
from connectors.mqtt.config import (
    MqttOptions,
    MqttSource,
    MqttTarget,
    check_target,
    effective_mode,
)
from connectors.mqtt.hub import Hub
from connectors.mqtt.meshchannel import MqttMeshChannel
from connectors.mqtt.properties import PublishProperties
from connectors.mqtt.semconv import MqttMessaging
from connectors.mqtt.session import Outbound, Session
from connectors.mqtt.source import subscribe
from connectors.mqtt.topology import MqttTopology, mqtt_match
from connectors.readiness import Subscriptions
from connectors.supervision import SupervisorClosed, source_key
from connectors.tls import warn_insecure
from routing.bindings import merge_headers
from routing.bindings import mqtt as binding
from routing.errors import InvalidEvent
from routing.event import CloudEvent

__all__ = ["MqttConnector"]

_log = logging.getLogger("meshgate.connectors.mqtt")

_PUBLISHER = "publisher"
# The largest packet MQTT can express (a 4-byte Remaining Length).
_MAX_MESSAGE_BYTES = 268_435_455


def _check_topic(topic: str) -> None:
    if not topic or any(ch in topic for ch in "+#\x00"):
        raise PublishRejected(f"cannot publish to {topic!r}: not a valid MQTT topic name")


def _properties(
    content_type: str | None, user: Sequence[tuple[str, str]], expiry: int | None
) -> PublishProperties:
    try:
        return PublishProperties(
            content_type=content_type, user_properties=user, message_expiry=expiry
        )
    except ValueError as exc:  # a value MQTT 5 cannot encode (a string over 64 KiB)
        raise PublishRejected(f"cannot publish: {exc}") from exc


class MqttConnector(Connector[MqttOptions, MqttSource, MqttTarget, binding.MqttMessage]):
    """MQTT 3.1.1 / 5: persistent sessions with deferred, ordered acks; confirmed publish.

    QoS 0 is at-most-once in both directions: a QoS 0 delivery's ``ack``/``nack`` do
    nothing and a QoS 0 publish returns once written. ``capabilities`` describes the
    connector at its best (QoS 1/2, MQTT 5); ``source_capabilities`` and
    ``target_capabilities`` answer per source and target (QoS 0; MQTT 3.1.1 has no
    properties, so no headers: structured JSON mode only).
    """

    Options: ClassVar[type[MqttOptions]] = MqttOptions
    Source: ClassVar[type[MqttSource]] = MqttSource
    Target: ClassVar[type[MqttTarget]] = MqttTarget
    capabilities: ClassVar[Capabilities] = Capabilities(
        acknowledgements=True,
        confirmed_publish=True,
        ordering="topic",
        headers=True,
        max_message_bytes=_MAX_MESSAGE_BYTES,
    )
    topology: ClassVar[MqttTopology] = MqttTopology()
    mesh_channel: ClassVar[MqttMeshChannel] = MqttMeshChannel()
    semconv: ClassVar[MqttMessaging] = MqttMessaging()
    asyncapi: ClassVar[MqttAsyncApi] = MqttAsyncApi()
    address_separator: ClassVar[str] = "/"

    def __init__(self, name: str, options: MqttOptions) -> None:
        super().__init__(name, options)
        self._hub = Hub(name, options, self.supervisor, _log)
        self._publisher: Session | None = None
        self._publisher_up = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None
        self._subscriptions = Subscriptions()

    @classmethod
    def validate_target(cls, options: MqttOptions, target: MqttTarget) -> str | None:
        return check_target(options, target)

    @classmethod
    def source_capabilities(cls, options: MqttOptions, source: MqttSource) -> Capabilities:
        return dataclasses.replace(
            cls.capabilities, acknowledgements=source.qos > 0, headers=options.protocol == 5
        )

    @classmethod
    def target_capabilities(cls, options: MqttOptions, target: MqttTarget) -> Capabilities:
        return dataclasses.replace(
            cls.capabilities, confirmed_publish=target.qos > 0, headers=options.protocol == 5
        )

    @classmethod
    def capability_cases(cls) -> list[tuple[str, str, Capabilities]]:
        five = MqttOptions(type="mqtt", host="h", protocol=5)
        four = five.model_copy(update={"protocol": 4})
        source, target = (
            MqttSource(connector="m", topic="t"),
            MqttTarget.model_validate({"connector": "m", "topic": "t"}),
        )
        qos0 = {"qos": 0}
        return [
            ("source", "QoS 1 or 2 (default 1), MQTT 5", cls.source_capabilities(five, source)),
            ("source", "QoS 0", cls.source_capabilities(five, source.model_copy(update=qos0))),
            ("target", "QoS 1 or 2 (default 1), MQTT 5", cls.target_capabilities(five, target)),
            ("target", "QoS 0", cls.target_capabilities(five, target.model_copy(update=qos0))),
            ("both", "MQTT 3.1.1 (`protocol: 4`)", cls.target_capabilities(four, target)),
        ]

    @classmethod
    def header_clash(cls, options: MqttOptions, name: str) -> str | None:
        return binding.header_clash(name)  # MQTT 3.1.1 refuses headers: as a whole

    def endpoint(self) -> str:
        return str(self.options.endpoint())  # user name at most, never the password

    @property
    def client_id(self) -> str:
        """Client id of the publishing session (sources append '-<8 hex>')."""
        return self._hub.base_client_id

    async def start(self) -> None:
        if self._supervisor is not None:
            return
        self.supervisor.starting()
        self._hub.closing = False
        warn_insecure(self.options.tls, _log, self.name)
        session = await self._connect_publisher()
        self._hub.watch(self.client_id).connected()
        _log.info("%s: connected as %r", self.label, self.client_id)
        self._hub.up(_PUBLISHER)
        self._use_publisher(session)
        self._supervisor = asyncio.create_task(
            self._supervise_publisher(), name=f"mqtt-publisher:{self.name}"
        )

    async def close(self) -> None:
        if self.health.state is HealthState.CLOSED:
            return
        self._hub.closing = True
        publisher = self._publisher
        if publisher is not None:
            await publisher.wait_publishes(min(self.options.publish_timeout_seconds, 10.0))
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        self._publisher_up.set()  # wake publishers waiting for a connection: they fail
        await self._hub.close()

    def subscribe(self, source: MqttSource) -> AsyncIterator[Delivery[binding.MqttMessage]]:
        return subscribe(
            self._hub, source, source_key(self, source), self._subscriptions.track(source)
        )

    async def wait_subscribed(self, source: MqttSource) -> None:
        await self._subscriptions.wait(source)

    def decode(self, delivery: Delivery[binding.MqttMessage]) -> CloudEvent | None:
        message = delivery.message
        return binding.from_message(message)

    def encode(self, target: MqttTarget, event: CloudEvent) -> binding.MqttMessage:
        _check_topic(target.topic)
        try:
            message = binding.to_message(
                event,
                effective_mode(self.options, target),
                fmt=target.format,
                protocol_version=self.options.protocol,
            )
        except ValueError as exc:  # what MQTT 3.1.1 cannot carry: a configuration error
            raise PublishRejected(str(exc)) from exc
        if not target.headers:
            return message
        merged = merge_headers(
            message.user_properties, target.headers.items(), refused=binding.header_clash
        )
        return binding.MqttMessage(
            message.payload, message.content_type, tuple(merged), message.protocol_version
        )

    async def publish(self, target: MqttTarget, event: CloudEvent) -> None:
        outbound = self._outbound(target, event)
        session = await self._connected_publisher()
        await session.publish(*outbound)

    async def publish_many(
        self, items: Sequence[tuple[MqttTarget, CloudEvent]]
    ) -> list[Exception | None]:
        """``BatchPublisher``: every publish handed to the session, then one wait for all
        their acknowledgements (``Session.publish_many``)."""
        outcomes: list[Exception | None] = [None] * len(items)
        sends: list[Outbound] = []
        sent: list[int] = []
        for index, (target, event) in enumerate(items):
            try:
                sends.append(self._outbound(target, event))
            except (ConnectorError, InvalidEvent) as exc:
                outcomes[index] = exc
                continue
            sent.append(index)
        if not sends:
            return outcomes
        try:
            session = await self._connected_publisher()
        except ConnectionLost as exc:
            for index in sent:
                outcomes[index] = ConnectionLost(str(exc))
            return outcomes
        results = await session.publish_many(sends)
        for index, error in zip(sent, results, strict=True):
            outcomes[index] = error
        return outcomes

    def _outbound(self, target: MqttTarget, event: CloudEvent) -> Outbound:
        """The PUBLISH of ``event`` to ``target``: topic, payload, QoS, retain, properties."""
        message = self.encode(target, event)
        properties = None
        if self.options.protocol == 5:
            properties = _properties(
                message.content_type, message.user_properties, target.message_expiry_seconds
            )
        return target.topic, message.payload, target.qos, target.retain, properties

    async def publish_raw(self, message: RawMessage) -> None:
        # QoS 1: confirmed by PUBACK. "content-type" in the headers is the Content Type
        # property the source turned into a header, not a user property.
        properties = None
        if self.options.protocol == 5:
            user = [(k, v) for k, v in message.headers.items() if k.lower() != "content-type"]
            properties = _properties(message.content_type, user, None)
        _check_topic(message.address)
        session = await self._connected_publisher()
        await session.publish(message.address, message.payload, 1, False, properties)

    @classmethod
    def dry_run_delivery(
        cls, options: MqttOptions, spec: MessageSpec
    ) -> Delivery[binding.MqttMessage]:
        topic = spec.required("topic", "an mqtt --message")
        content_type = spec.native_content_type
        properties = tuple(
            (name, value) for name, value in spec.headers.items() if name.lower() != "content-type"
        )
        if options.protocol == 4 and (properties or content_type):
            raise MessageSpecError(
                "this connector speaks MQTT 3.1.1 (protocol 4): no user properties and no "
                "content type; give only topic and payload"
            )
        message = binding.MqttMessage(spec.payload, content_type, properties, options.protocol)
        return dry_run_delivery(
            spec, message, topic, coordinates={"topic": topic}, content_type=content_type
        )

    @classmethod
    def source_receives(cls, source: MqttSource, delivery: Delivery[binding.MqttMessage]) -> bool:
        return mqtt_match(source.topic, delivery.address)

    def describe_source(self, source: MqttSource) -> str:
        return f"{self.name}:topic {source.subscription!r} qos {source.qos}"

    # -- the publishing session ---------------------------------------------------------

    async def _connect_publisher(self) -> Session:
        # Publishing needs no broker-side state: a clean session that ends at disconnect.
        session = self._hub.session(self.client_id, clean_start=True, session_expiry=0)
        try:
            await session.connect()
        except ConnectorError:
            self._hub.forget(session)
            raise
        return session

    def _use_publisher(self, session: Session) -> None:
        self._publisher = session
        self._publisher_up.set()

    async def _connected_publisher(self) -> Session:
        """The live publishing session, waiting (up to publish_timeout_seconds) for a reconnect."""
        timeout = self.options.publish_timeout_seconds
        deadline = asyncio.get_running_loop().time() + timeout
        while not self._hub.closing:
            session = self._publisher
            if session is not None and not session.closed.done():
                return session
            self._publisher_up.clear()
            remaining = deadline - asyncio.get_running_loop().time()
            try:
                await asyncio.wait_for(self._publisher_up.wait(), max(remaining, 0.0))
            except TimeoutError as exc:
                raise ConnectionLost(
                    f"{self.name}: not connected to {self.options.endpoint()} "
                    f"after {timeout} s ({self.health.detail})"
                ) from exc
        raise ConnectionLost(f"connector {self.name!r} is closed")

    async def _reconnect_publisher(self) -> Session:
        try:
            return await self._connect_publisher()
        except ConnectionLost:
            raise
        except ConnectorError as exc:  # refused mid-run (credentials changed): retried too
            raise ConnectionLost(str(exc)) from exc

    async def _supervise_publisher(self) -> None:
        """After each loss, the core retries the publisher's connect (shared backoff,
        grown while its client id looks taken over)."""
        watch = self._hub.watch(self.client_id)
        while not self._hub.closing and self._publisher is not None:
            lost = self._publisher
            reason = await lost.closed
            self._publisher_up.clear()
            self._hub.forget(lost)
            if self._hub.closing:
                return
            self._hub.down(_PUBLISHER, watch.lost(lost, reason), suspect=watch.taken_over)
            _log.log(watch.level, "%s: publisher connection lost: %s", self.label, reason)
            try:
                session = await self.supervisor.retry(_PUBLISHER, self._reconnect_publisher)
            except SupervisorClosed:
                return
            watch.connected()
            self._use_publisher(session)
            _log.info("%s: publisher reconnected", self.label)
