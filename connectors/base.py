"""The connector contract: what every protocol plugin implements.

A connector owns its broker connection(s) and offers two things to the runtime:

* ``subscribe(source)`` (or ``consume``): an async iterator of ``Delivery`` objects.
  Each carries the native message (a binding dataclass such as
  ``routing.bindings.kafka.KafkaMessage``) and the ack travels with it:
  ``await delivery.ack()`` once every target has confirmed, ``await
  delivery.nack(requeue=...)`` otherwise. Nothing is acknowledged to the broker
  before ``ack()`` is called.
* ``publish(target, event)``: encode the CloudEvent with the connector's binding
  for the (already rendered) target and return only once the broker confirmed it
  (Kafka acks=all, AMQP publisher confirm, MQTT PUBACK/PUBCOMP, JetStream PubAck).
  Protocols without confirmations (core NATS, MQTT QoS 0) return once the bytes
  are flushed and say so in ``Capabilities.confirmed_publish``.

Connectors are found by ``type`` name through the entry-point group
``meshgate.connectors``; the built-ins register exactly the way a third-party
plugin does (see ``connectors.registry``). A plugin module provides a subclass of
``Connector`` with three pydantic models as class data: ``Options`` (the
``connectors:`` entry), ``Source`` (a route's ``from:``) and ``Target`` (a route's
``to:`` entries and ``dead_letter:``). Target fields named in
``Target.template_fields`` may hold ``{...}`` templates; the runtime renders them
per event before calling ``publish``.

Connection supervision belongs to the core (``connectors.supervision``): a connector
connects once in ``start``, declares which exceptions mean "connection lost"
(``connection_errors``) and raises them; the core retries ``start`` with the shared
backoff, runs ``subscribe`` again after a loss, and owns health states and the
``reconnects`` count. A connector that must re-connect inside (a link replaced in
the background, one MQTT session per source) hands each "connect once" step to
``self.supervisor.retry`` and reports losses with ``self.supervisor.lost``.
"""

from __future__ import annotations

import abc
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, Generic, Protocol, Self, TypeVar, runtime_checkable

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    field_validator,
    model_validator,
)

# TypeVar defaults (PEP 696, native from Python 3.13): ``Connector[Opts, Src, Tgt]``
# and a bare ``Delivery`` keep meaning "any native message type".
from typing_extensions import TypeVar as DefaultTypeVar

from connectors.asyncapi import AsyncApi
from connectors.backoff import Backoff, BackoffPolicy
from connectors.errors import ConnectionLost, MessageSpecError
from connectors.meshchannel import MeshChannel
from connectors.renamed import Renamed, rename_keys
from connectors.semconv import Messaging
from connectors.signing import SignOptions, VerifyOptions
from connectors.supervision import Supervisor, consume_supervised
from connectors.topology import Topology
from routing.bindings import Mode, prefix_clash
from routing.event import CloudEvent
from routing.formats import EventFormat
from routing.templates import find_header

__all__ = [
    "BatchPublisher",
    "Capabilities",
    "Connector",
    "ConnectorOptions",
    "Delivery",
    "EgressOptions",
    "Health",
    "HealthState",
    "MeshAttributes",
    "MessageSpec",
    "MessageT",
    "Nack",
    "Preflight",
    "RawMessage",
    "RawPublisher",
    "SourceOptions",
    "TargetOptions",
    "dry_run_delivery",
    "find_header",
]


class _StrictModel(BaseModel):
    # Unknown keys are configuration errors, never silently ignored.
    model_config = ConfigDict(extra="forbid", frozen=True)

    renamed: ClassVar[tuple[Renamed, ...]] = ()
    """Old spellings of this model's options that still load (``connectors.renamed``)."""

    @model_validator(mode="wrap")
    @classmethod
    def _old_spellings(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        # wrap, not before: the JSON Schema keeps describing the fields
        return handler(rename_keys(cls.renamed, data) if cls.renamed else data)


class ConnectorOptions(_StrictModel):
    """Base of a connector's ``connectors:`` entry (``type`` is handled by the config)."""

    type: str


class SourceOptions(_StrictModel):
    """Base of a route's ``from:`` block for one connector type."""

    connector: str
    verify: VerifyOptions | None = Field(
        default=None,
        description="Check each event's signature (CloudEvents verifiability extension): "
        "public_key_files, policy strict|passthrough (docs/security.md).",
    )


class EgressOptions(_StrictModel):
    """A target's ``attributes:`` block (see ``routing.egress``)."""

    set: dict[str, str] = Field(default_factory=dict, description="Attributes to set (templates).")
    remove: tuple[str, ...] = Field((), description="Attributes to drop.")
    rename: dict[str, str] = Field(default_factory=dict, description="Old name -> new name.")


class MeshAttributes(StrEnum):
    """What a target does with the mesh provenance attributes (docs/mesh.md)."""

    KEEP = "keep"
    """Publish ``meshpath``/``meshhops`` with the event (inside the mesh)."""
    STRIP = "strip"
    """Remove them: the event leaves the mesh here (consumers outside it)."""


class TargetOptions(_StrictModel):
    """Base of a route's ``to:`` entry (and ``dead_letter:``) for one connector type."""

    connector: str = Field(description="Name of the connector (an entry under connectors:).")
    mode: Mode = Field(Mode.BINARY, description="CloudEvents binding mode for this target.")
    format: EventFormat = Field(
        EventFormat.JSON, description="Event format of structured mode (json or avro)."
    )
    attributes: EgressOptions | None = Field(
        None, description="Attribute changes for this target only: set (templates), remove, rename."
    )
    sign: SignOptions | None = Field(
        default=None,
        description="Sign each published event (CloudEvents verifiability extension): "
        "key_file, key_id, extensions (docs/security.md).",
    )
    mesh: MeshAttributes = Field(
        MeshAttributes.KEEP,
        description="keep or strip the mesh provenance attributes (meshpath, meshhops); "
        "strip where events leave the mesh.",
    )
    headers: dict[str, str] = Field(
        default_factory=dict,
        description="Native headers added to each published message, e.g. passing a source "
        "header on: {x-request-id: '{header.x-request-id}'} (values are templates). Not "
        "CloudEvents attributes: names the binding reads as attributes or writes itself "
        "are refused (docs/routes.md#native-headers).",
    )

    @field_validator("headers")
    @classmethod
    def _named_headers(cls, value: dict[str, str]) -> dict[str, str]:
        # Which names clash is the binding's rule (Connector.header_clash), checked
        # when the config loads; an empty name is no header in any protocol.
        if "" in value:
            raise ValueError("a header name may not be empty")
        return value

    template_fields: ClassVar[tuple[str, ...]] = ()
    """Names of the string fields that may contain ``{...}`` templates."""


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a connector promises for one source or target (``Connector.
    source_capabilities`` / ``target_capabilities``); the runtime, ``meshgate
    validate`` and the generated connector docs read this, not the code."""

    acknowledgements: bool
    """Source messages can be acked/nacked individually after processing."""
    confirmed_publish: bool
    """``publish`` returns only after the broker took responsibility for the message."""
    ordering: str
    """Unit within which the broker keeps order: 'partition', 'topic', 'subject', 'queue'."""
    headers: bool
    """Native headers/properties exist, so binary mode is possible."""
    max_message_bytes: int | None
    """Largest payload the broker accepts by default, when known."""


class HealthState(StrEnum):
    """Connection state reported to the admin API and the demo."""

    STARTING = "starting"
    """Never connected yet; the core retries the first connection with backoff."""
    UP = "up"
    """Connected and usable."""
    RECONNECTING = "reconnecting"
    """Was up, lost (a part of) its connection; retrying with backoff."""
    CLOSED = "closed"
    """Closed on purpose."""


@dataclass(slots=True)
class Health:
    """A connector's state, as the core and the connector itself maintain it.

    ``detail`` is the last error while not up (empty or a short note while up).
    ``reconnects`` counts connections re-established after a loss (RECONNECTING ->
    UP, per connection for connectors with several); failed first-connection
    attempts are not reconnects. ``dropped`` counts messages an at-most-once source
    lost before the gateway saw them (a core NATS slow consumer); the connector
    counts them and logs a throttled warning.
    """

    state: HealthState = HealthState.STARTING
    detail: str = ""
    reconnects: int = 0
    dropped: int = 0


class Nack(Protocol):
    """``await delivery.nack(requeue=...)``: give a delivery back unprocessed.

    ``requeue=True`` asks the broker to deliver it again (soon); ``requeue=False``
    drops it where the protocol can (connector docs say what each one does).
    Keyword-only, so a call site says which it means."""

    def __call__(self, *, requeue: bool) -> Awaitable[None]: ...


MessageT = DefaultTypeVar("MessageT", default=Any)
"""A connector's native message type: the binding dataclass its sources yield in
``Delivery.message`` and ``encode`` returns (``KafkaMessage``, ``NatsMessage``...)."""
M = TypeVar("M")


@dataclass(slots=True, eq=False)
class Delivery(Generic[MessageT]):
    """One message received from a source, with its acknowledgement callbacks.

    ``message`` is the binding dataclass of the protocol; ``address`` the topic,
    subject or routing key it arrived on; ``headers`` its headers/properties as text
    (for ingress templates and dead letters); ``native_id`` a stable identifier that
    survives redelivery (JetStream stream sequence, Kafka topic/partition/offset,
    AMQP message-id) or None; ``ordering_key`` the lane within which order must be
    kept; ``coordinates`` where the message came from, recorded in dead letters.
    """

    message: MessageT
    address: str
    payload: bytes
    headers: Mapping[str, str]
    ack: Callable[[], Awaitable[None]]
    nack: Nack
    native_id: str | None = None
    ordering_key: str | None = None
    coordinates: Mapping[str, str | int] = field(default_factory=dict)
    content_type: str | None = None
    """The native content type (AMQP/MQTT 5 property, Kafka/NATS header) if any."""
    in_progress: Callable[[], Awaitable[None]] | None = None
    """Tell the broker the message is still being worked on (JetStream +WPI); None
    where the protocol has no such signal. The runtime calls it about once a second
    while a delivery is being processed, so slow targets do not cause redelivery."""
    settles: bool = True
    """Whether ack/nack tell the broker anything. False for at-most-once sources (core
    NATS, MQTT QoS 0), whose ack and nack do nothing: the runtime then skips calling
    them and the bookkeeping around them, which is per-event cost for nothing."""


@dataclass(frozen=True, slots=True)
class MessageSpec:
    """A native message as an operator describes it to ``meshgate routes check --message``.

    ``address`` is the spec's ``address`` (empty when not given); ``fields`` holds every
    other key of the JSON object (protocol-specific ones such as AMQP ``exchange``,
    ``routing_key`` and ``queue``), for ``Connector.dry_run_delivery`` to read.
    """

    payload: bytes
    address: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    key: str | None = None
    content_type: str | None = None
    native_id: str | None = None
    fields: Mapping[str, Any] = field(default_factory=dict)

    def text(self, name: str, default: str | None = None) -> str | None:
        """Field ``name`` as text (``address`` stands in for the protocol's own name)."""
        value = self.fields.get(name)
        return default if value is None else str(value)

    def required(self, name: str, what: str) -> str:
        """Field ``name`` (else ``address``) as text; ``MessageSpecError`` when neither is set.

        ``what`` names the spec in the error, e.g. ``"a kafka --message"``.
        """
        value = self.text(name, self.address)
        if not value:
            raise MessageSpecError(f"{what} needs `{name}` (or `address`)")
        return value

    @property
    def native_content_type(self) -> str | None:
        """``content_type``, else a ``content-type`` header (any case)."""
        return self.content_type or find_header(self.headers, "content-type")


async def _not_settled(*_: Any, **__: Any) -> None:
    """Ack/nack of a dry-run delivery: nothing to settle."""


def dry_run_delivery(
    spec: MessageSpec,
    message: M,
    address: str,
    *,
    coordinates: Mapping[str, str | int] | None = None,
    content_type: str | None = None,
) -> Delivery[M]:
    """A ``Delivery`` for ``Connector.dry_run_delivery``: no broker, ack/nack do nothing."""
    return Delivery(
        message=message,
        address=address,
        payload=spec.payload,
        headers=dict(spec.headers),
        ack=_not_settled,
        nack=_not_settled,
        native_id=spec.native_id,
        coordinates=dict(coordinates or {}),
        content_type=content_type if content_type is not None else spec.native_content_type,
    )


@dataclass(frozen=True, slots=True)
class RawMessage:
    """A native message exactly as a source received it, to be published again unchanged
    (``meshgate dlq redrive``): no binding, no CloudEvent, the original bytes and headers.

    ``address`` is the topic, subject or routing key; ``coordinates`` are the source's
    (e.g. AMQP ``exchange``), empty when the operator names a new address.
    """

    address: str
    payload: bytes
    headers: Mapping[str, str]
    content_type: str | None = None
    key: str | None = None
    coordinates: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class RawPublisher(Protocol):
    """Optional contract hook: a connector that can republish a ``RawMessage``.

    Returns once the broker confirmed it (as ``publish`` does); raises
    ``ConnectorError`` subclasses. The built-in connectors all provide it.
    """

    async def publish_raw(self, message: RawMessage) -> None: ...


@runtime_checkable
class BatchPublisher(Protocol):
    """Optional contract hook: publish many events with one wait for all confirmations.

    ``publish_many`` sends every ``(target, event)`` of ``items`` (targets rendered, as
    for ``publish``) without waiting in between (JetStream: every publish, then the
    PubAcks; Kafka: every record, then their futures) and returns once each one is
    confirmed or failed: one entry per item, in order, ``None`` for a confirmed one,
    else the exception ``publish`` would have raised for it (``ConnectorError``
    subclasses, ``InvalidEvent``). One item's failure never fails the others, and the
    call itself raises only for a bug. The runtime uses it to publish what a source
    handed over in one go as one batch (docs/performance.md), and retries or
    dead-letters each failed item alone; connectors without it get one ``publish``
    per event.
    """

    async def publish_many(
        self, items: Sequence[tuple[Any, CloudEvent]]
    ) -> list[Exception | None]: ...


@runtime_checkable
class Preflight(Protocol):
    """Optional contract hook: on a started connector, check that the broker has what
    the routes need (``meshgate validate --connect``): streams, queues, exchanges,
    topics. Returns one human-readable problem per missing thing, [] when all is there.

    ``sources`` are the ``from:`` blocks reading this connector, ``targets`` the ``to:``
    and ``dead_letter:`` entries publishing to it, with templates unrendered (a field
    holding ``{...}`` stands for many addresses). Read-only: creates nothing.
    """

    async def preflight(self, sources: Sequence[Any], targets: Sequence[Any]) -> list[str]: ...


_GENERIC_PREFIXES = ("ce-", "ce_", "cloudEvents")

OptionsT = TypeVar("OptionsT", bound=ConnectorOptions)
SourceT = TypeVar("SourceT", bound=SourceOptions)
TargetT = TypeVar("TargetT", bound=TargetOptions)


class Connector(abc.ABC, Generic[OptionsT, SourceT, TargetT, MessageT]):
    """Base class of every connector; see the module docstring for the contract.

    Generic over its options, source and target models and its native message type
    (``MessageT``, the binding dataclass in ``Delivery.message`` and returned by
    ``encode``; ``Any`` when not given).
    """

    Options: ClassVar[type[ConnectorOptions]]
    Source: ClassVar[type[SourceOptions]]
    Target: ClassVar[type[TargetOptions]]
    capabilities: ClassVar[Capabilities]
    address_separator: ClassVar[str] = "."
    """Level separator of addresses, used by ``{topic[N]}`` templates ('/' for MQTT)."""
    message_keys: ClassVar[bool] = False
    """Whether messages from this connector's sources carry a key (``{key}`` templates)."""
    connection_errors: ClassVar[tuple[type[BaseException], ...]] = (ConnectionLost,)
    """Exceptions that mean "the connection is lost": the core retries ``start`` and
    runs ``subscribe`` again after them (with the shared backoff). Declare client
    exceptions here only if they are not translated to ``ConnectionLost``."""
    topology: ClassVar[Topology[Any, Any, Any] | None] = None
    """Optional hook: where routes read and publish, for cycle warnings, the broker
    graph and the mesh view (``connectors.topology``). None leaves this type out of
    that analysis, with a note saying so."""
    mesh_channel: ClassVar[MeshChannel | None] = None
    """Optional hook: how this type carries the mesh view's control channel
    (``connectors.meshchannel``). None: ``gateway.mesh`` may not name it (a config
    error says so)."""
    semconv: ClassVar[Messaging | None] = None
    """Optional hook: this type's ``messaging.system``, destination names and protocol
    attributes in spans and metrics (``connectors.semconv``). None: the generic
    ``Messaging`` (the type name, the usual address fields), logged once at start."""
    asyncapi: ClassVar[AsyncApi[Any, Any, Any] | None] = None
    """Optional hook: servers, channels, bindings and binary-mode headers of this type
    in ``meshgate asyncapi`` (``connectors.asyncapi``). None: a generic server and
    channels, structured messages only, and the document says so."""

    def __init__(self, name: str, options: OptionsT) -> None:
        self.name = name
        self.options = options
        self.health = Health()
        self.supervisor = Supervisor(
            self.health,
            lambda: self.label,
            logging.getLogger(f"meshgate.connectors.{options.type}"),
            self.connection_errors,
        )
        """Backoff, health transitions and reconnect counts (owned by the core)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not inspect.isabstract(cls) and not (
            cls.consume is not Connector.consume or cls.subscribe is not Connector.subscribe
        ):
            raise TypeError(
                f"connector {cls.__qualname__} implements neither subscribe nor consume"
            )

    @property
    def reconnect(self) -> BackoffPolicy:
        """The gateway's shared reconnect policy; the core sets it before ``start``."""
        return self.supervisor.policy

    @reconnect.setter
    def reconnect(self, policy: BackoffPolicy) -> None:
        self.supervisor.use(policy)

    def new_backoff(self) -> Backoff:
        """An attempt counter for one reconnect loop, following ``self.reconnect``."""
        return self.supervisor.backoff()

    def endpoint(self) -> str:
        """Where this connector connects, for logs: URL(s) with credentials redacted."""
        return ""

    @property
    def label(self) -> str:
        """``connector NAME (TYPE ENDPOINT)``: how every connection log line names it."""
        what = " ".join(filter(None, (self.options.type, self.endpoint())))
        return f"connector {self.name} ({what})"

    @abc.abstractmethod
    async def start(self) -> None:
        """Connect once. Raise ``ConnectorError`` if that attempt fails.

        The core retries ``start`` with the shared backoff (``self.reconnect``) until
        it succeeds, so one attempt is enough; it must leave the connector ready for
        another ``start`` (or ``close``) after a failure.
        """

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop consuming, wait for pending confirmations, disconnect. Idempotent."""

    def consume(self, source: SourceT) -> AsyncIterator[Delivery[MessageT]]:
        """Yield deliveries from ``source`` until the connector closes, across losses.

        What the runtime (and every other reader) calls. The default is the core's
        supervision of ``subscribe``: run it, and after it raised one of
        ``connection_errors``, wait the shared backoff and run it again. Override it
        only for a source that keeps itself going (then implement no ``subscribe``).
        """
        return consume_supervised(self, source)

    def subscribe(self, source: SourceT) -> AsyncIterator[Delivery[MessageT]]:
        """Consume once: yield deliveries from ``source`` until the connector closes
        (return) or the connection is lost (raise one of ``connection_errors``).

        Must stop fetching when the consumer stops pulling (backpressure). Deliveries
        already yielded keep their ack/nack after a loss: settling them may then fail
        with ``ConnectorError`` (the broker redelivers). A connector implements this
        or overrides ``consume``.
        """
        raise TypeError(f"connector {type(self).__qualname__} does not implement subscribe")

    async def wait_subscribed(self, source: SourceT) -> None:
        """Readiness signal: return once a running ``consume(source)`` iterator is
        subscribed on the broker, so that a message published from now on reaches it.

        The iterator subscribes when first pulled, so start pulling (a pending
        ``anext``) before waiting; callers bound the wait with a timeout. The default
        returns at once, which is right for sources that keep what is published before
        they subscribe (queues, streams, consumer groups starting at the earliest
        offset). A connector with non-durable subscriptions (topics, subjects) keeps a
        ``connectors.readiness.Subscriptions`` and waits on it here.
        """
        return None

    @abc.abstractmethod
    def decode(self, delivery: Delivery[MessageT]) -> CloudEvent | None:
        """The CloudEvent in ``delivery`` (binding decode), or None for a non-CloudEvent.

        Raises ``routing.errors.InvalidEvent`` for a malformed CloudEvent.
        """

    @abc.abstractmethod
    def encode(self, target: TargetT, event: CloudEvent) -> MessageT:
        """The native message (binding dataclass) ``publish`` would send for ``event``.

        Pure: used by ``meshgate routes check`` to show messages without a broker.
        Raises ``InvalidEvent`` or ``PublishRejected`` where ``publish`` would.
        """

    @abc.abstractmethod
    async def publish(self, target: TargetT, event: CloudEvent) -> None:
        """Encode ``event`` for ``target`` and return once the broker confirmed it.

        Raises ``ConnectorError`` subclasses; their ``retriable`` flag tells the
        runtime whether to retry or dead-letter.
        """

    @classmethod
    def validate_target(cls, options: OptionsT, target: TargetT) -> str | None:
        """A config problem with ``target`` given the connector's options, or None.

        Called at config load, e.g. to reject binary mode on an MQTT 3.1.1 connection.
        """
        return None

    @classmethod
    def source_capabilities(cls, options: OptionsT, source: SourceT) -> Capabilities:
        """What this connector promises for one route source (``from:``). The default
        is the class's ``capabilities``; a connector whose sources differ (core NATS
        beside JetStream, MQTT QoS 0) answers per source."""
        return cls.capabilities

    @classmethod
    def target_capabilities(cls, options: OptionsT, target: TargetT) -> Capabilities:
        """What this connector promises for one target (``to:``, ``dead_letter:``), as
        ``source_capabilities`` does for a source (core NATS and MQTT QoS 0 publishes
        are not confirmed)."""
        return cls.capabilities

    @classmethod
    def capability_cases(cls) -> list[tuple[str, str, Capabilities]]:
        """The kinds of source and target the generated docs list (``docs/connectors/
        <type>.md``): (``source``, ``target`` or ``both``, what the kind is, what it
        promises); one row, ``capabilities``, by default."""
        return [("both", "sources and targets", cls.capabilities)]

    @classmethod
    def header_clash(cls, options: OptionsT, name: str) -> str | None:
        """Why a target's ``headers:`` may not use the native header ``name`` beside
        this connector's binding, or None (optional hook; the config reports the reason
        at the header's line).

        The built-ins answer with their binding's rule (``routing.bindings.<x>.
        header_clash``: names read back as attributes or written by the binding). The
        default refuses the CloudEvents prefixes ``ce-``, ``ce_`` and ``cloudEvents``
        in any case; a plugin whose binding reads other names overrides it.
        """
        return prefix_clash(name, _GENERIC_PREFIXES, f"{options.type!r} connector")

    @classmethod
    def read_back(cls, target: TargetT, reader: str) -> SourceT | None:
        """A source that reads back what ``target`` received, or None where the broker
        keeps nothing to read (``meshgate dlq`` reads dead-letter destinations this way).

        ``reader`` names the consumer (group, durable) so repeated reads resume.
        """
        return None

    @classmethod
    def dry_run_delivery(cls, options: OptionsT, spec: MessageSpec) -> Delivery[MessageT]:
        """The delivery a source of this connector would yield for the message ``spec``
        describes (``meshgate routes check --message``): the native message built as
        the source builds it, address, headers, content type and coordinates.

        Pure, no broker. Raises ``MessageSpecError`` for a spec that names no usable
        address. The default refuses: a plugin without this hook can still be checked
        with ``--event``. Built with ``connectors.base.dry_run_delivery``.
        """
        raise MessageSpecError(
            f"connector type {options.type!r} cannot build a native message for "
            "`routes check --message` (its plugin has no dry_run_delivery hook); "
            "use --event with the CloudEvent instead"
        )

    @classmethod
    def source_receives(cls, source: SourceT, delivery: Delivery[MessageT]) -> bool:
        """Whether ``source`` (a route's ``from:``) would receive ``delivery``: topic
        filters, subject wildcards, queue bindings. The default says yes, so every
        route reading a plugin connector is checked."""
        return True

    def describe_source(self, source: SourceT) -> str:
        """Short human text for logs and ``meshgate validate``: where this source reads."""
        fields = source.model_dump(mode="json", exclude={"connector"}, exclude_defaults=True)
        return " ".join([f"{self.name}:", *(f"{k}={v}" for k, v in fields.items())])
