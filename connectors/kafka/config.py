"""Options of the Kafka connector and the aiokafka keyword arguments built from them.

One pydantic model per role: ``KafkaOptions`` (the ``connectors:`` entry),
``KafkaSource`` (a route's ``from:``) and ``KafkaTarget`` (a route's ``to:`` and
``dead_letter:``). Validation, defaults, the JSON Schema and the docs all come
from these models.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any, ClassVar, Self

from pydantic import Field, ModelWrapValidatorHandler, SecretStr, field_validator, model_validator

from connectors.base import ConnectorOptions, SourceOptions, TargetOptions
from connectors.renamed import Renamed
from connectors.tls import TlsOptions, client_context, legacy_tls_error

__all__ = [
    "Compression",
    "KafkaOptions",
    "KafkaSource",
    "KafkaTarget",
    "OffsetReset",
    "SaslMechanism",
    "SecurityProtocol",
]


class SecurityProtocol(StrEnum):
    """How the client talks to the brokers (Kafka's ``security.protocol``)."""

    PLAINTEXT = "PLAINTEXT"
    """No TLS, no authentication."""
    SSL = "SSL"
    """TLS; with ``tls.cert_file``/``tls.key_file`` also mutual TLS."""
    SASL_PLAINTEXT = "SASL_PLAINTEXT"
    """SASL authentication over a plain connection (test setups only)."""
    SASL_SSL = "SASL_SSL"
    """SASL authentication over TLS."""


class SaslMechanism(StrEnum):
    """SASL mechanism used with the ``SASL_*`` security protocols."""

    PLAIN = "PLAIN"
    """Username and password sent as is (use with SASL_SSL)."""
    SCRAM_SHA_256 = "SCRAM-SHA-256"
    """Salted challenge-response, SHA-256."""
    SCRAM_SHA_512 = "SCRAM-SHA-512"
    """Salted challenge-response, SHA-512."""


class Compression(StrEnum):
    """Producer batch compression (snappy/lz4/zstd need their optional Python packages)."""

    GZIP = "gzip"
    """Always available."""
    SNAPPY = "snappy"
    """Needs ``cramjam``."""
    LZ4 = "lz4"
    """Needs ``cramjam``."""
    ZSTD = "zstd"
    """Needs ``cramjam``."""


class OffsetReset(StrEnum):
    """Where a consumer group starts on a partition it has no committed offset for."""

    EARLIEST = "earliest"
    """From the oldest retained record: nothing published before the group first joined is
    skipped (the default, as in Kafka Connect sink connectors)."""
    LATEST = "latest"
    """Only records produced after the group joined."""


class KafkaOptions(ConnectorOptions):
    """Connection to one Kafka cluster, shared by every route using this connector."""

    renamed: ClassVar[tuple[Renamed, ...]] = (
        Renamed("request_timeout_ms", "request_timeout_seconds", 0.001),
        Renamed("linger_ms", "linger_seconds", 0.001),
        Renamed("health_interval_s", "health_interval_seconds"),
    )

    bootstrap_servers: tuple[str, ...] = Field(
        description="Brokers to bootstrap from: 'host:port', a comma-separated string or a list."
    )
    client_id: str = Field(
        default="meshgate", description="Client id sent to the brokers (quotas, logs)."
    )
    security_protocol: SecurityProtocol = Field(
        default=SecurityProtocol.PLAINTEXT,
        description="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.",
    )
    sasl_mechanism: SaslMechanism = Field(
        default=SaslMechanism.PLAIN, description="SASL mechanism for the SASL_* protocols."
    )
    sasl_username: str | None = Field(default=None, description="SASL username (SASL_* protocols).")
    sasl_password: SecretStr | None = Field(
        default=None,
        description="SASL password; take it from the environment (${VAR}); never logged.",
    )
    tls: TlsOptions | None = Field(
        default=None,
        description="TLS settings (docs/security.md); needs security_protocol SSL or "
        "SASL_SSL, which alone mean TLS verified by the system CAs.",
    )
    request_timeout_seconds: float = Field(
        default=30.0, gt=0, description="Producer request timeout; also bounds one publish."
    )
    enable_idempotence: bool = Field(
        default=True,
        description="Idempotent producer (no duplicates from internal retries). If the broker "
        "refuses it, the connector logs a warning and continues without it.",
    )
    linger_seconds: float = Field(
        default=0.0,
        ge=0,
        description="How long the producer waits to fill a batch before sending.",
    )
    max_batch_size: int = Field(
        default=262_144,
        gt=0,
        description="Producer batch size per partition, in bytes. Larger than aiokafka's "
        "16 KiB default on purpose: while a batch is full, every publish waiting for room "
        "wakes on each drain, and with hundreds in flight that herd cost 4x the CPU per "
        "4 KiB event (docs/performance.md).",
    )
    max_request_size: int = Field(
        default=1_048_576, gt=0, description="Largest record the producer sends (bytes)."
    )
    compression_type: Compression | None = Field(
        default=None, description="Batch compression: gzip, snappy, lz4 or zstd (none if unset)."
    )
    health_interval_seconds: float = Field(
        default=5.0, gt=0, description="Seconds between broker reachability checks for health."
    )

    @field_validator("bootstrap_servers", mode="before")
    @classmethod
    def _split_servers(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.split(",")
        if isinstance(value, list | tuple):
            servers = tuple(str(item).strip() for item in value if str(item).strip())
            if not servers:
                raise ValueError("at least one 'host:port' is required")
            for server in servers:
                if "@" in server or "/" in server:
                    raise ValueError(
                        f"{server!r}: expected 'host:port' (credentials go in sasl_username/"
                        "sasl_password)"
                    )
            return servers
        return value

    @model_validator(mode="wrap")
    @classmethod
    def _legacy_tls(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        # wrap, not before: the JSON Schema keeps describing the fields
        return handler(legacy_tls_error(data))

    @model_validator(mode="after")
    def _check_security(self) -> KafkaOptions:
        sasl = self.security_protocol in (
            SecurityProtocol.SASL_PLAINTEXT,
            SecurityProtocol.SASL_SSL,
        )
        if sasl and (self.sasl_username is None or self.sasl_password is None):
            raise ValueError(
                f"security_protocol {self.security_protocol} needs sasl_username and sasl_password"
            )
        if self.tls is not None and not self.uses_tls:
            raise ValueError(
                f"a tls: block needs security_protocol SSL or SASL_SSL "
                f"({self.security_protocol} is plaintext)"
            )
        return self

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol in (SecurityProtocol.SSL, SecurityProtocol.SASL_SSL)

    def client_kwargs(self, connector: str = "kafka") -> dict[str, Any]:
        """Keyword arguments common to AIOKafkaProducer and AIOKafkaConsumer.

        With TLS, always our own context (system CAs without a tls: block): aiokafka
        would otherwise build a default one of its own.
        """
        kwargs: dict[str, Any] = {
            "bootstrap_servers": list(self.bootstrap_servers),
            "client_id": self.client_id,
            "security_protocol": self.security_protocol.value,
        }
        if self.uses_tls:
            kwargs["ssl_context"] = client_context(self.tls, connector, on=True)
        if self.security_protocol.value.startswith("SASL_"):
            kwargs["sasl_mechanism"] = self.sasl_mechanism.value
            kwargs["sasl_plain_username"] = self.sasl_username
            kwargs["sasl_plain_password"] = (
                self.sasl_password.get_secret_value() if self.sasl_password else None
            )
        return kwargs

    def producer_kwargs(self, *, idempotent: bool, connector: str = "kafka") -> dict[str, Any]:
        """AIOKafkaProducer keyword arguments; acks is always 'all'."""
        return {
            **self.client_kwargs(connector),
            "acks": "all",
            "enable_idempotence": idempotent,
            "request_timeout_ms": round(self.request_timeout_seconds * 1000),
            "linger_ms": round(self.linger_seconds * 1000),
            "max_batch_size": self.max_batch_size,
            "max_request_size": self.max_request_size,
            "compression_type": self.compression_type.value if self.compression_type else None,
        }


class KafkaSource(SourceOptions):
    """A route's ``from:`` block: topics (or a pattern) read through a consumer group."""

    renamed: ClassVar[tuple[Renamed, ...]] = (
        Renamed("session_timeout_ms", "session_timeout_seconds", 0.001),
        Renamed("commit_interval_ms", "commit_interval_seconds", 0.001),
        Renamed("fetch_max_wait_ms", "fetch_max_wait_seconds", 0.001),
    )

    topics: tuple[str, ...] | None = Field(
        default=None, description="Topics to consume; exclusive with pattern."
    )
    pattern: str | None = Field(
        default=None, description="Regular expression over topic names; exclusive with topics."
    )
    group_id: str = Field(
        min_length=1,
        description="Consumer group: offsets are committed under it and gateways sharing it "
        "split the partitions between them (scale-out).",
    )
    auto_offset_reset: OffsetReset = Field(
        default=OffsetReset.EARLIEST, description="Start point without a committed offset."
    )
    max_in_flight: int = Field(
        default=256,
        ge=1,
        description="Deliveries handed out but not yet acked; fetching waits above it.",
    )
    session_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        description="Consumer-group session timeout: a gateway that stops heartbeating for "
        "this long loses its partitions (heartbeats every third of it).",
    )
    commit_interval_seconds: float = Field(
        default=0.2, gt=0, description="How often acknowledged offsets are committed."
    )
    commit_every: int = Field(
        default=500,
        ge=1,
        description="Also commit as soon as this many acks arrived since the last.",
    )
    fetch_max_wait_seconds: float = Field(
        default=0.5,
        ge=0,
        le=60,
        description="Longest the broker may hold a fetch waiting for data. Real brokers "
        "answer as soon as data arrives; librdkafka's mock cluster always waits this "
        "long, so lower it there for latency.",
    )

    @model_validator(mode="after")
    def _one_subscription(self) -> KafkaSource:
        if (self.topics is None) == (self.pattern is None):
            raise ValueError("give exactly one of 'topics' or 'pattern'")
        if self.topics is not None and not self.topics:
            raise ValueError("'topics' must not be empty")
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"'pattern' is not a valid regular expression: {exc}") from exc
        return self


class KafkaTarget(TargetOptions):
    """A route's ``to:`` entry: the topic (and record key) an event is produced to."""

    topic: str = Field(min_length=1, description="Topic to produce to (template).")
    key: str | None = Field(
        default=None, description="Record key, UTF-8 encoded (template); none if unset."
    )
    key_from_partitionkey: bool = Field(
        default=False,
        description="Use the event's 'partitionkey' extension as record key when the event "
        "has one (it overrides 'key'); the attribute stays on the event.",
    )

    template_fields: ClassVar[tuple[str, ...]] = ("topic", "key")
