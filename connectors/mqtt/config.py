"""Configuration models of the MQTT connector, and the helpers that read them.

``MqttOptions`` is a ``connectors:`` entry, ``MqttSource`` a route's ``from:`` and
``MqttTarget`` a route's ``to:``; their field descriptions are the reference docs.
"""

from __future__ import annotations

import hashlib
import re
import ssl
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Self
from urllib.parse import unquote, urlsplit

from pydantic import Field, ModelWrapValidatorHandler, SecretStr, field_validator, model_validator

from connectors.base import ConnectorOptions, SourceOptions, TargetOptions
from connectors.redact import redact_url
from connectors.renamed import Renamed
from connectors.tls import TlsOptions, client_context, legacy_tls_error
from routing.bindings import Mode
from routing.formats import EventFormat

__all__ = [
    "Endpoint",
    "MqttOptions",
    "MqttSource",
    "MqttTarget",
    "check_target",
    "effective_mode",
    "subscriber_client_id",
]

_DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}
_TEMPLATE = re.compile(r"\{[^{}]*\}")
_UINT32 = 0xFFFF_FFFF


def _check_filter(value: str) -> str:
    if not value:
        raise ValueError("a topic filter must not be empty")
    if "\x00" in value:
        raise ValueError("a topic filter must not contain NUL")
    if value.startswith("$share/"):
        raise ValueError("write shared subscriptions with share_group, not a '$share/' prefix")
    levels = value.split("/")
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != len(levels) - 1):
            raise ValueError(f"'#' must be a whole level and the last one, in {value!r}")
        if "+" in level and level != "+":
            raise ValueError(f"'+' must be a whole level, in {value!r}")
    return value


class MqttOptions(ConnectorOptions):
    """A ``connectors:`` entry of type ``mqtt``: one MQTT broker (3.1.1 or 5)."""

    renamed: ClassVar[tuple[Renamed, ...]] = (
        Renamed("keepalive", "keepalive_seconds"),
        Renamed("session_expiry", "session_expiry_seconds"),
        Renamed("max_inflight", "max_in_flight"),
        Renamed("connect_timeout", "connect_timeout_seconds"),
        Renamed("publish_timeout", "publish_timeout_seconds"),
    )

    type: Literal["mqtt"] = "mqtt"
    url: str | None = Field(
        default=None,
        repr=False,
        description="mqtt://host[:port] (port 1883) or mqtts://host[:port] (TLS, port 8883); "
        "alternative to host/port. user:password@ is accepted but never logged.",
    )
    host: str | None = Field(
        default=None, description="Broker host when no url is given (default 127.0.0.1)."
    )
    port: int | None = Field(
        default=None, ge=1, le=65535, description="Broker port; default 1883, or 8883 with TLS."
    )
    tls: TlsOptions | None = Field(
        default=None,
        description="TLS settings (docs/security.md). With url it needs mqtts://; with "
        "host/port it turns TLS on (tls: {} = system CAs).",
    )
    protocol: Literal[4, 5] = Field(
        default=5, description="MQTT protocol level: 5 (MQTT 5.0) or 4 (MQTT 3.1.1)."
    )
    client_id: str | None = Field(
        default=None,
        min_length=1,
        description="Base client identifier; must be unique per gateway and stable across "
        "restarts for persistent sessions. The gateway fills in '<gateway id>-<connector "
        "name>' when omitted. Publishing uses it as is; each source uses "
        "'<client_id>-<8 hex>' (a digest of its filter and share group).",
    )
    username: str | None = Field(default=None, description="User name for authentication.")
    password: SecretStr | None = Field(
        default=None, description="Password for authentication; never logged."
    )
    keepalive_seconds: int = Field(
        default=60, ge=5, le=65535, description="Keep-alive interval in seconds (PINGREQ)."
    )
    session_expiry_seconds: int = Field(
        default=86_400,
        ge=0,
        le=_UINT32,
        description="MQTT 5 Session Expiry Interval of source sessions, in seconds: how long "
        "the broker keeps subscriptions and unacknowledged messages while the gateway is "
        "away. 0 ends the session at disconnect (no redelivery after a crash).",
    )
    clean_start: bool = Field(
        default=False,
        description="Discard a source session left by an earlier run at the first connect. "
        "Reconnects within a run always resume it (MQTT 5). On MQTT 3.1.1 true means "
        "clean_session=1 on every connect, i.e. no redelivery after a disconnect.",
    )
    receive_maximum: int = Field(
        default=100,
        ge=1,
        le=65535,
        description="Unacknowledged QoS 1/2 messages a source hands out at once (sent as "
        "the MQTT 5 Receive Maximum, and enforced by the connector on 3.1.1 and where a "
        "broker overshoots it); also the number of waiting QoS 0 messages above which the "
        "socket is not read.",
    )
    max_in_flight: int = Field(
        default=100,
        ge=1,
        le=65535,
        description="Publishes (QoS 1/2) awaiting the broker's acknowledgement at once.",
    )
    connect_timeout_seconds: float = Field(
        default=10.0, gt=0, description="Seconds allowed for one connection attempt (to CONNACK)."
    )
    publish_timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        description="Seconds a publish waits for PUBACK/PUBCOMP (and for a connection) "
        "before PublishTimeout.",
    )

    @model_validator(mode="wrap")
    @classmethod
    def _legacy_tls(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        # wrap, not before: the JSON Schema keeps describing the fields
        if isinstance(data, dict) and isinstance(data.get("tls"), bool):
            raise ValueError(
                "tls: true/false was replaced by the tls: block: write tls: {} (TLS verified "
                "by the system CAs) or an mqtts:// url (docs/security.md)"
            )
        return handler(legacy_tls_error(data))

    @model_validator(mode="after")
    def _check_endpoint(self) -> Self:
        if self.url is not None:
            if self.host is not None or self.port is not None:
                raise ValueError("give either url or host/port, not both")
            parts = urlsplit(self.url)
            if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
                raise ValueError(
                    f"expected mqtt://host:port or mqtts://host:port, got {redact_url(self.url)}"
                )
            if parts.path not in ("", "/") or parts.query:
                raise ValueError(f"an MQTT url has no path or query: {redact_url(self.url)}")
            if parts.password is not None and self.password is not None:
                raise ValueError("password given both in url and as password")
            if self.tls is not None and parts.scheme != "mqtts":
                raise ValueError("a tls: block needs an mqtts:// url (mqtt:// is plaintext)")
        return self

    def endpoint(self) -> Endpoint:
        """Host, port, TLS and credentials, from url or host/port."""
        if self.url is None:
            host, port, tls = self.host or "127.0.0.1", self.port, self.tls is not None
            username, password = self.username, self.password
        else:
            parts = urlsplit(self.url)
            host, port, tls = parts.hostname or "", parts.port, parts.scheme == "mqtts"
            username = self.username or (unquote(parts.username) if parts.username else None)
            password = self.password
            if parts.password is not None:
                password = SecretStr(unquote(parts.password))
        port = port or _DEFAULT_PORTS["mqtts" if tls else "mqtt"]
        return Endpoint(host, port, tls, username, password)

    @property
    def persistent(self) -> bool:
        """Whether source sessions survive a disconnect (redelivery after a crash)."""
        if self.protocol == 5:
            return self.session_expiry_seconds > 0
        return not self.clean_start

    def ssl_context(self, connector: str) -> ssl.SSLContext | None:
        """The TLS context to connect with, or None without TLS (reads files: may block)."""
        return client_context(self.tls, connector, on=self.endpoint().tls)


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    port: int
    tls: bool
    username: str | None
    password: SecretStr | None

    def __str__(self) -> str:
        scheme = "mqtts" if self.tls else "mqtt"
        user = f"{self.username}@" if self.username else ""
        return f"{scheme}://{user}{self.host}:{self.port}"


class MqttSource(SourceOptions):
    """A route's ``from:`` on an MQTT connector: one subscription in its own session."""

    topic: str = Field(
        description="Topic filter: '+' matches one level, '#' the rest (last level only)."
    )
    qos: Literal[0, 1, 2] = Field(
        default=1,
        description="Subscription QoS. 1 and 2 are at-least-once through the gateway; 0 is "
        "at-most-once (ack/nack do nothing).",
    )
    share_group: str | None = Field(
        default=None,
        min_length=1,
        description="Shared subscription group: subscribes to '$share/<group>/<topic>' so "
        "gateways in one group split the messages (scale-out).",
    )
    no_local: bool = Field(
        default=False,
        description="MQTT 5: do not receive messages this connector's own client published "
        "(helps avoid loops; not allowed with share_group).",
    )

    @field_validator("topic")
    @classmethod
    def _check_topic(cls, value: str) -> str:
        return _check_filter(value)

    @field_validator("share_group")
    @classmethod
    def _check_group(cls, value: str | None) -> str | None:
        if value is not None and any(ch in value for ch in "/+#"):
            raise ValueError("a share group name cannot contain '/', '+' or '#'")
        return value

    @model_validator(mode="after")
    def _check_no_local(self) -> Self:
        if self.no_local and self.share_group is not None:
            raise ValueError(
                "no_local is a protocol error on shared subscriptions (MQTT 5, 3.8.3.1)"
            )
        return self

    @property
    def subscription(self) -> str:
        """The filter actually subscribed to (with the ``$share/<group>/`` prefix)."""
        if self.share_group is None:
            return self.topic
        return f"$share/{self.share_group}/{self.topic}"


class MqttTarget(TargetOptions):
    """A route's ``to:`` entry on an MQTT connector."""

    renamed: ClassVar[tuple[Renamed, ...]] = (Renamed("message_expiry", "message_expiry_seconds"),)

    topic: str = Field(
        min_length=1,
        description="Topic to publish to (template); no wildcards. e.g. 'plant/{topic[1]}/events'.",
    )
    qos: Literal[0, 1, 2] = Field(
        default=1,
        description="Publish QoS: 1 waits for PUBACK, 2 for PUBCOMP, 0 only for the write "
        "(at-most-once).",
    )
    retain: bool = Field(default=False, description="Ask the broker to retain the message.")
    message_expiry_seconds: int | None = Field(
        default=None,
        ge=1,
        le=_UINT32,
        description="MQTT 5 Message Expiry Interval in seconds (not for protocol 4).",
    )

    template_fields: ClassVar[tuple[str, ...]] = ("topic",)

    @field_validator("topic")
    @classmethod
    def _check_topic(cls, value: str) -> str:
        literal = _TEMPLATE.sub("", value)
        if "+" in literal or "#" in literal or "\x00" in literal:
            raise ValueError("a topic to publish to cannot contain '+', '#' or NUL")
        return value


def effective_mode(options: MqttOptions, target: MqttTarget) -> Mode:
    """The binding mode for ``target``: MQTT 3.1.1 defaults to structured mode."""
    if options.protocol == 4 and "mode" not in target.model_fields_set:
        return Mode.STRUCTURED
    return target.mode


def check_target(options: MqttOptions, target: MqttTarget) -> str | None:
    """The configuration problem with ``target`` on a connector with ``options``, or None."""
    if options.protocol != 4:
        return None
    if target.headers:
        return "headers need MQTT 5 User Properties; this connector uses protocol 4"
    if effective_mode(options, target) is Mode.BINARY:
        return (
            "mode: binary needs MQTT 5 (User Properties); this connector uses protocol 4 "
            "(MQTT 3.1.1), which carries CloudEvents in structured JSON only: use "
            "mode: structured or set protocol: 5 on the connector"
        )
    if target.format is not EventFormat.JSON:
        return "MQTT 3.1.1 (protocol 4) has no Content Type, so only format: json can be read back"
    if target.message_expiry_seconds is not None:
        return "message_expiry_seconds is an MQTT 5 property; this connector uses protocol 4"
    return None


def subscriber_client_id(base: str, source: MqttSource) -> str:
    """Stable client id of the session that consumes ``source``."""
    digest = hashlib.sha256(f"{source.share_group or ''}\x00{source.topic}".encode()).hexdigest()
    return f"{base}-{digest[:8]}"
