"""Configuration models of the NATS connector: connection, route source, route target.

These pydantic models are the single description of the connector's options:
validation, defaults, the JSON Schema and the option tables in the docs all come
from them. ``connect_kwargs`` turns the connection model into ``nats.connect``
arguments; ``connectors.redact.redact_url`` keeps credentials (and tokens) out of
every log line.
"""

from __future__ import annotations

import functools
import re
import ssl
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar, Final, Literal, Self
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    SecretStr,
    field_validator,
    model_validator,
)

from connectors.base import ConnectorOptions, SourceOptions, TargetOptions
from connectors.redact import redact_url
from connectors.renamed import Renamed
from connectors.tls import TlsOptions, client_context, legacy_tls_error

__all__ = [
    "PENDING_BYTES_LIMIT",
    "PENDING_MSGS_LIMIT",
    "DeliverPolicy",
    "JetStreamSource",
    "NatsOptions",
    "NatsSource",
    "NatsTarget",
    "check_publish_subject",
]

PENDING_MSGS_LIMIT: Final = 512 * 1024
"""Core NATS subscription buffer, messages: the default of nats-py and nats.go."""
PENDING_BYTES_LIMIT: Final = 64 * 1024 * 1024
"""Core NATS subscription buffer, payload bytes: nats.go's default (nats-py's is 128 MiB)."""

_SCHEMES = frozenset({"nats", "tls"})
_NAME = re.compile(r"[A-Za-z0-9_-]+")
_WS = re.compile(r"\s")


def _subject_problem(subject: str, *, wildcards: bool) -> str | None:
    """Why ``subject`` is not a valid NATS subject, or None when it is."""
    if not subject or _WS.search(subject):
        return "must be non-empty and contain no whitespace"
    tokens = subject.split(".")
    if any(token == "" for token in tokens):
        return "has an empty token (leading, trailing or double '.')"
    for index, token in enumerate(tokens):
        if token in ("*", ">"):
            if not wildcards:
                return "is a publish subject and may not contain wildcards '*' or '>'"
            if token == ">" and index != len(tokens) - 1:
                return "may use '>' only as its last token"
        elif "*" in token or ">" in token:
            return f"token {token!r} mixes a wildcard with other characters"
    return None


@functools.lru_cache(maxsize=4096)
def check_publish_subject(subject: str) -> str | None:
    """Why a rendered target subject cannot be published to, or None."""
    return _subject_problem(subject, wildcards=False)


class DeliverPolicy(StrEnum):
    """Where a newly created JetStream durable starts reading its stream."""

    ALL = "all"
    """Every message still in the stream (the default)."""
    LAST = "last"
    """Only the last message in the stream, then everything new."""
    NEW = "new"
    """Only messages stored after the durable was created."""
    LAST_PER_SUBJECT = "last_per_subject"
    """The last message of every subject, then everything new."""


class NatsOptions(ConnectorOptions):
    """A ``connectors:`` entry of ``type: nats``: one connection to a NATS server or cluster."""

    renamed: ClassVar[tuple[Renamed, ...]] = (
        Renamed("connect_timeout", "connect_timeout_seconds"),
        Renamed("reconnect_wait", "reconnect_wait_seconds"),
        Renamed("reconnect_jitter", "reconnect_jitter_seconds"),
        Renamed("publish_timeout", "publish_timeout_seconds"),
    )

    type: Literal["nats"] = Field(default="nats", description="Connector type name.")
    servers: tuple[str, ...] = Field(
        default=("nats://127.0.0.1:4222",),
        min_length=1,
        description="Server URLs, nats://[user[:password]@]host[:port] or tls://... "
        "Credentials in URLs are accepted but never logged; prefer the options below.",
    )
    name: str | None = Field(
        default=None,
        description="Connection name in the server's monitoring (default meshgate-<id>).",
    )
    user: str | None = Field(default=None, description="User for user/password authentication.")
    password: SecretStr | None = Field(
        default=None, description="Password (use ${ENV} substitution)."
    )
    token: SecretStr | None = Field(default=None, description="Authentication token.")
    creds_file: Path | None = Field(
        default=None,
        description="Decentralized auth: a .creds file (JWT + nkey seed); needs nkeys.",
    )
    nkey_seed_file: Path | None = Field(
        default=None,
        description="Nkey authentication: a file holding the user's nkey seed; needs nkeys.",
    )
    tls: TlsOptions | None = Field(
        default=None,
        description="TLS settings (docs/security.md); needs tls:// server URLs. A tls:// "
        "URL alone means TLS verified by the system CAs; a server that does not offer "
        "TLS is refused, never used in plaintext.",
    )
    connect_timeout_seconds: float = Field(
        default=5.0, gt=0, description="Seconds allowed for one TCP + TLS + CONNECT handshake."
    )
    connect_attempts: int = Field(
        default=1,
        ge=1,
        description="Connection attempts within one start() (exponential backoff, full "
        "jitter). The gateway retries start() itself with gateway.reconnect, so 1 is "
        "enough; more only make --fail-fast wait longer.",
    )
    max_reconnect_attempts: int = Field(
        default=-1,
        ge=-1,
        description="Reconnect attempts per server after a drop; -1 retries forever. Past "
        "them the connector drops the client and starts over with a fresh connection.",
    )
    reconnect_wait_seconds: float = Field(
        default=2.0, ge=0, description="Seconds between reconnect attempts."
    )
    reconnect_jitter_seconds: float = Field(
        default=1.0,
        ge=0,
        description="Random extra seconds (0..jitter) added to each reconnect wait so a "
        "fleet of gateways does not reconnect in lockstep.",
    )
    pending_size: int = Field(
        default=2 * 1024 * 1024,
        gt=0,
        description="Bytes of outgoing data buffered while reconnecting; beyond it "
        "publishes fail with ConnectionLost.",
    )
    publish_timeout_seconds: float = Field(
        default=5.0, gt=0, description="Seconds to wait for a JetStream PubAck or a core flush."
    )
    watchdog_timeouts: int = Field(
        default=3,
        ge=0,
        description="Link watchdog: after this many timeouts in a row (PubAcks, core "
        "flushes, JetStream source requests) with nothing received in between while the "
        "client reports connected, one request probes the link; no answer within "
        "publish_timeout_seconds and the client is replaced by a fresh connection. 0 turns the "
        "watchdog off.",
    )

    @model_validator(mode="wrap")
    @classmethod
    def _legacy_tls(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        # wrap, not before: the JSON Schema keeps describing the fields
        return handler(legacy_tls_error(data))

    @field_validator("servers")
    @classmethod
    def _check_servers(cls, servers: tuple[str, ...]) -> tuple[str, ...]:
        for url in servers:
            parts = urlsplit(url)
            if parts.scheme not in _SCHEMES or not parts.hostname:
                shown = redact_url(url, user_is_secret=True)
                raise ValueError(
                    f"server {shown!r}: expected nats://host[:port] or tls://host[:port]"
                )
        return servers

    @model_validator(mode="after")
    def _check_auth(self) -> NatsOptions:
        methods = [
            name
            for name, value in (
                ("user", self.user),
                ("token", self.token),
                ("creds_file", self.creds_file),
                ("nkey_seed_file", self.nkey_seed_file),
            )
            if value is not None
        ]
        if len(methods) > 1:
            raise ValueError(f"choose one authentication method, got {', '.join(methods)}")
        if self.password is not None and self.user is None:
            raise ValueError("password needs user")
        schemes = {urlsplit(url).scheme for url in self.servers}
        if len(schemes) > 1:
            raise ValueError("mix of nats:// and tls:// servers: a plaintext one would downgrade")
        if self.tls is not None and schemes != {"tls"}:
            raise ValueError("a tls: block needs tls:// server URLs (nats:// is plaintext)")
        return self

    @property
    def uses_tls(self) -> bool:
        """Whether every connection must be TLS (the tls:// scheme)."""
        return urlsplit(self.servers[0]).scheme == "tls"

    def ssl_context(self, connector: str) -> ssl.SSLContext | None:
        """The TLS context for tls:// servers (system CAs without a tls: block), else None."""
        return client_context(self.tls, connector, on=self.uses_tls)


class JetStreamSource(BaseModel):
    """The ``jetstream:`` block of a NATS source: consume through a durable pull consumer."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    stream: str | None = Field(
        default=None,
        description="Stream name; looked up from the subject when omitted. Required with "
        "create_stream.",
    )
    durable: str = Field(
        description="Durable consumer name. Gateways sharing it share the work (each message "
        "goes to one of them)."
    )
    deliver_policy: DeliverPolicy = Field(
        default=DeliverPolicy.ALL, description="Where a newly created durable starts."
    )
    ack_wait_seconds: float = Field(
        default=30.0,
        gt=0,
        description="Seconds before an unacknowledged delivery is redelivered (each "
        "in_progress call restarts the clock).",
    )
    max_ack_pending: int = Field(
        default=1000,
        ge=1,
        description="Most deliveries the server lets be unacknowledged at once.",
    )
    batch: int = Field(
        default=64,
        ge=1,
        description="Most messages asked for per pull request (bounds local buffering).",
    )
    ack_sync: bool = Field(
        default=False,
        description="Wait for the server to confirm each ack (one round trip per ack).",
    )
    create_stream: bool = Field(
        default=False,
        description="Create the stream when it does not exist (file storage, limits "
        "retention, default duplicate window).",
    )
    subjects: tuple[str, ...] | None = Field(
        default=None, description="Subjects of a created stream; default: the source subject."
    )

    @field_validator("durable", "stream")
    @classmethod
    def _check_name(cls, value: str | None) -> str | None:
        if value is not None and not _NAME.fullmatch(value):
            raise ValueError(f"{value!r}: use letters, digits, '-' and '_' only")
        return value

    @model_validator(mode="after")
    def _check_create(self) -> JetStreamSource:
        if self.create_stream and self.stream is None:
            raise ValueError("create_stream needs stream")
        return self


class NatsSource(SourceOptions):
    """A route's ``from:`` on a NATS connector.

    Without ``jetstream`` this is a core NATS subscription: at-most-once, ack and nack
    are no-ops, and a gateway that falls behind by more than ``pending_msgs_limit``
    messages or ``pending_bytes_limit`` bytes drops the excess (slow consumer). With
    ``jetstream`` it is a durable pull consumer with explicit acks: at-least-once.
    """

    subject: str = Field(description="Subject to read; wildcards '*' (one token) and '>' (rest).")
    queue_group: str | None = Field(
        default=None,
        description="Core NATS queue group: gateways in one group share the messages. Not "
        "with jetstream (share a durable instead).",
    )
    pending_msgs_limit: int = Field(
        default=PENDING_MSGS_LIMIT,
        ge=1,
        description="Core NATS: most messages buffered locally (the default is nats-py's "
        "and nats.go's); past it or pending_bytes_limit the client drops new messages "
        "(slow consumer), counted as the connector's dropped and logged.",
    )
    pending_bytes_limit: int = Field(
        default=PENDING_BYTES_LIMIT,
        ge=1,
        description="Core NATS: most payload bytes buffered locally (nats.go's default): "
        "what bounds the memory of a burst.",
    )
    jetstream: JetStreamSource | None = Field(
        default=None,
        description="Consume through a JetStream durable pull consumer (at-least-once).",
    )

    @property
    def acknowledged(self) -> bool:
        """True when acks reach the broker (JetStream); core NATS is at-most-once."""
        return self.jetstream is not None

    @field_validator("subject")
    @classmethod
    def _check_subject(cls, subject: str) -> str:
        problem = _subject_problem(subject, wildcards=True)
        if problem:
            raise ValueError(f"subject {subject!r} {problem}")
        return subject

    @model_validator(mode="after")
    def _check_group(self) -> NatsSource:
        if self.queue_group is not None and self.jetstream is not None:
            raise ValueError("queue_group is for core NATS; JetStream shares work via the durable")
        return self


class NatsTarget(TargetOptions):
    """A route's ``to:`` (or ``dead_letter:``) on a NATS connector."""

    subject: str = Field(description="Subject to publish to; may hold {...} templates.")
    jetstream: bool = Field(
        default=True,
        description="Publish through JetStream and wait for its PubAck (at-least-once); "
        "false = core NATS publish + flush (at-most-once).",
    )

    template_fields: ClassVar[tuple[str, ...]] = ("subject",)

    @property
    def confirmed(self) -> bool:
        """True when a publish is confirmed by the broker (JetStream PubAck)."""
        return self.jetstream

    @field_validator("subject")
    @classmethod
    def _check_subject(cls, subject: str) -> str:
        if "{" not in subject:  # templates are checked once rendered, in publish
            problem = check_publish_subject(subject)
            if problem:
                raise ValueError(f"subject {subject!r} {problem}")
        return subject
