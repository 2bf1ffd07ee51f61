"""Configuration models of the AMQP 0-9-1 connector, and the helpers that read them.

``AmqpOptions`` is a ``connectors:`` entry, ``AmqpSource`` a route's ``from:`` and
``AmqpTarget`` a route's ``to:``; their field descriptions are the reference docs.
"""

from __future__ import annotations

import ssl
from enum import StrEnum
from typing import Any, ClassVar, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    field_validator,
    model_validator,
)
from yarl import URL

from connectors.base import ConnectorOptions, SourceOptions, TargetOptions
from connectors.redact import redact_url
from connectors.renamed import Renamed
from connectors.tls import TlsOptions, client_context, legacy_tls_error

__all__ = [
    "AmqpOptions",
    "AmqpSource",
    "AmqpTarget",
    "Binding",
    "ExchangeDeclaration",
    "ExchangeKind",
    "QueueType",
]

ArgumentValue = str | int | float | bool
_URL_TLS_KEYS = frozenset({"cafile", "capath", "cadata", "keyfile", "certfile", "no_verify_ssl"})


class QueueType(StrEnum):
    """Kind of queue created when a source declares its queue."""

    CLASSIC = "classic"
    """RabbitMQ's classic queue (one leader, optional mirroring)."""
    QUORUM = "quorum"
    """Raft-replicated queue (``x-queue-type: quorum``): the durable choice for clusters."""


class ExchangeKind(StrEnum):
    """Exchange type used when a target declares its exchange."""

    DIRECT = "direct"
    """Routes on an exact routing-key match."""
    FANOUT = "fanout"
    """Copies every message to every bound queue; the routing key is ignored."""
    TOPIC = "topic"
    """Dot-separated words; bindings may use ``*`` (one word) and ``#`` (zero or more)."""
    HEADERS = "headers"
    """Routes on header values instead of the routing key."""


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Binding(_Part):
    """One queue binding made by a source before it consumes."""

    exchange: str = Field(min_length=1, description="Existing exchange to bind the queue to.")
    binding_key: str = Field(
        description="Binding key; on a topic exchange '*' matches one word and '#' zero or more.",
    )


class ExchangeDeclaration(_Part):
    """How a target declares its exchange before the first publish to it."""

    type: ExchangeKind = Field(default=ExchangeKind.TOPIC, description="Exchange type.")
    durable: bool = Field(default=True, description="The exchange survives a broker restart.")


class AmqpOptions(ConnectorOptions):
    """A ``connectors:`` entry of type ``amqp``: one connection to a RabbitMQ broker."""

    # Validation errors must not echo the url: it may hold the password.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)
    renamed: ClassVar[tuple[Renamed, ...]] = (
        Renamed("heartbeat", "heartbeat_seconds"),
        Renamed("connect_timeout", "connect_timeout_seconds"),
        Renamed("confirm_timeout", "confirm_timeout_seconds"),
    )

    type: Literal["amqp"] = "amqp"
    url: str = Field(
        default="amqp://guest:guest@127.0.0.1:5672/",
        description="amqp://user:password@host:port/vhost (amqps:// for TLS). "
        "The password is never logged.",
    )
    tls: TlsOptions | None = Field(
        default=None,
        description="TLS settings (docs/security.md); needs an amqps:// url. An amqps:// "
        "url alone means TLS verified by the system CAs.",
    )
    heartbeat_seconds: int = Field(
        default=60,
        ge=0,
        le=3600,
        description="Heartbeat interval proposed to the broker, in seconds (0 disables).",
    )
    connection_name: str | None = Field(
        default=None,
        description="Name shown in RabbitMQ management; default 'meshgate:<connector name>'.",
    )
    connect_timeout_seconds: float = Field(
        default=10.0, gt=0, description="Seconds allowed for one connection attempt."
    )
    confirm_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        description="Seconds a publish waits for the broker's confirm before PublishTimeout.",
    )

    @model_validator(mode="wrap")
    @classmethod
    def _legacy_tls(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        # wrap, not before: the JSON Schema keeps describing the fields
        return handler(legacy_tls_error(data))

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        url = URL(value)
        if url.scheme not in ("amqp", "amqps") or not url.host:
            raise ValueError(
                f"expected amqp://user:pass@host:port/vhost or amqps://..., got {redact_url(value)}"
            )
        # aiormq reads TLS settings (no_verify_ssl=1 among them) from the query: they
        # would bypass the tls: block, so the block is the only way.
        spelled = sorted(set(url.query) & _URL_TLS_KEYS)
        if spelled:
            raise ValueError(f"TLS settings go in the tls: block, not the url query: {spelled}")
        return value

    @model_validator(mode="after")
    def _check_tls(self) -> Self:
        if self.tls is not None and not self.uses_tls:
            raise ValueError("a tls: block needs an amqps:// url (amqp:// is plaintext)")
        return self

    @property
    def uses_tls(self) -> bool:
        return URL(self.url).scheme == "amqps"

    def ssl_context(self, connector: str) -> ssl.SSLContext | None:
        """Our TLS context for amqps:// (``connectors.tls.client_context``), else None."""
        return client_context(self.tls, connector, on=self.uses_tls)

    def connection_url(self) -> URL:
        """The broker URL with the heartbeat option applied (still holds the password)."""
        return URL(self.url).update_query(heartbeat=str(self.heartbeat_seconds))


class AmqpSource(SourceOptions):
    """A route's ``from:`` for an ``amqp`` connector: consume one queue with manual acks."""

    queue: str = Field(min_length=1, max_length=255, description="Queue to consume.")
    declare: bool = Field(
        default=False,
        description="Declare the queue (durable) before consuming; otherwise it must exist.",
    )
    queue_type: QueueType = Field(
        default=QueueType.CLASSIC, description="Queue type used when declare is true."
    )
    arguments: dict[str, ArgumentValue] = Field(
        default_factory=dict,
        description="Extra queue arguments used when declare is true (e.g. x-max-length).",
    )
    bind: tuple[Binding, ...] = Field(
        default=(), description="Bindings from existing exchanges, made before consuming."
    )
    prefetch: int = Field(
        default=100,
        ge=1,
        le=65535,
        description="basic.qos prefetch: the most unacknowledged deliveries in flight.",
    )
    consumer_tag_prefix: str = Field(
        default="meshgate", max_length=100, description="Prefix of the consumer tag."
    )

    @model_validator(mode="after")
    def _check_declare(self) -> Self:
        if not self.declare and (self.arguments or self.queue_type is not QueueType.CLASSIC):
            raise ValueError("queue_type and arguments apply only with declare: true")
        return self

    def queue_arguments(self) -> dict[str, ArgumentValue]:
        """Declaration arguments: the user's, plus ``x-queue-type`` for quorum queues."""
        arguments = dict(self.arguments)
        if self.queue_type is QueueType.QUORUM:
            arguments["x-queue-type"] = "quorum"
        return arguments


class AmqpTarget(TargetOptions):
    """A route's ``to:`` for an ``amqp`` connector: publish with publisher confirms."""

    template_fields: ClassVar[tuple[str, ...]] = ("exchange", "routing_key")

    exchange: str = Field(
        default="", description="Exchange to publish to (template); '' is the default exchange."
    )
    routing_key: str = Field(
        default="", description="Routing key (template); on the default exchange, a queue name."
    )
    persistent: bool = Field(
        default=True, description="delivery_mode 2: the broker writes the message to disk."
    )
    mandatory: bool = Field(
        default=True,
        description="An unroutable message is returned and reported as PublishRejected "
        "instead of being dropped silently.",
    )
    declare_exchange: ExchangeDeclaration | None = Field(
        default=None, description="Declare the exchange before the first publish to it."
    )

    @model_validator(mode="after")
    def _check_declare(self) -> Self:
        if self.declare_exchange is not None and self.exchange == "":
            raise ValueError("declare_exchange needs a named exchange, not the default ''")
        return self
