"""Optional contract hook: how a connector type appears in an AsyncAPI 3.0 document.

``meshgate asyncapi`` (``gateway.asyncapi``) builds servers, channels, operations and
messages without knowing a protocol: it asks the connector class's ``asyncapi``
(``Connector.asyncapi``, an ``AsyncApi`` or None) for the server object of a
connector, the channels a source reads and a target publishes to, the protocol
bindings objects and the binary-mode headers of its CloudEvents binding. The base
class is the generic answer a type without the hook gets: a server named after the
type (host from a ``url`` option), one channel per source/target from the usual
address fields, structured-mode messages only; the document says so in the server's
and channels' descriptions.

Pure: reads config models. Helpers for implementations: ``templated`` (a target
template as a channel address with parameters), ``wildcards`` (subscription
wildcards as parameters), ``hostport``, ``x509``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar
from urllib.parse import urlsplit

from routing.templates import compile_template

if TYPE_CHECKING:
    from connectors.base import ConnectorOptions, SourceOptions, TargetOptions

__all__ = [
    "AsyncApi",
    "BinaryCarrier",
    "ChannelSpec",
    "OperationSpec",
    "hostport",
    "templated",
    "wildcards",
    "x509",
]

_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_\-]+")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_ADDRESS_KEYS = ("topic", "subject", "queue", "topics", "routing_key")

OptionsT = TypeVar("OptionsT", bound="ConnectorOptions")
SourceT = TypeVar("SourceT", bound="SourceOptions")
TargetT = TypeVar("TargetT", bound="TargetOptions")


@dataclass(frozen=True, slots=True)
class ChannelSpec:
    """One channel: its address (``{name}`` per parameter), parameters, channel
    bindings and description. Channels of one server with the same address and
    ``identity`` are one channel, whoever sends or receives on it (AMQP: a queue and
    a routing key of an exchange are different channels)."""

    address: str
    parameters: Mapping[str, Any] = field(default_factory=dict)
    bindings: Mapping[str, Any] | None = None
    note: str = ""
    identity: str = ""


@dataclass(frozen=True, slots=True)
class BinaryCarrier:
    """How a binding carries CloudEvents attributes in binary mode (the core builds the
    headers schema of the binary message from it)."""

    prefix: str
    """Header name prefix of an attribute (``ce_``, ``ce-``, or ``""``)."""
    content_type: str
    """Where ``datacontenttype`` travels, as text (``the `content-type` header``)."""
    content_type_prefixed: bool = False
    """``datacontenttype`` is also a prefixed header (NATS ``ce-datacontenttype``)."""
    where: str = ""
    """How the attributes travel, as text; default ``<prefix>* headers``."""
    extra_headers: Mapping[str, str] = field(default_factory=dict)
    """Other headers of the binding: name -> description (Kafka ``content-type``)."""
    note: str = ""
    """A sentence more (``Values are percent-encoded like HTTP.``)."""


@dataclass(frozen=True, slots=True)
class OperationSpec:
    """An operation's protocol bindings and description lines (group, QoS, ...)."""

    bindings: Mapping[str, Any] = field(default_factory=dict)
    lines: Sequence[str] = ()


def hostport(url: str, default_port: int | None) -> tuple[str, str]:
    """``host:port`` and the scheme of a URL, dropping any user and password."""
    parts = urlsplit(url if "://" in url else f"//{url}")
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    port = parts.port or default_port
    return (f"{host}:{port}" if port else host), parts.scheme


def _key(text: str) -> str:
    return _KEY_UNSAFE.sub("_", text).strip("_") or "x"


def templated(text: str) -> tuple[str, dict[str, Any]]:
    """A target template as a channel address with one parameter per placeholder."""
    params: dict[str, Any] = {}

    def replace(match: re.Match[str]) -> str:
        inner = match.group(1).strip()
        name = _key(inner.replace("[", "_").replace("]", "").replace(".", "_"))
        params[name] = {"description": f"Filled per event from the template {{{inner}}}."}
        return f"{{{name}}}"

    if compile_template(text).is_static:
        return text.replace("{{", "{").replace("}}", "}"), {}
    return _PLACEHOLDER.sub(replace, text), params


def wildcards(text: str, separator: str, one: str, rest: str, name: str) -> ChannelSpec:
    """Level wildcards (MQTT ``+``/``#``, NATS ``*``/``>``) as parameters named by
    position (``plant/+/x`` -> ``plant/{topic_1}/x``), so the channel a gateway
    publishes to and the one another reads from meet."""
    levels = text.split(separator)
    params: dict[str, Any] = {}
    for index, level in enumerate(levels):
        if level == one:
            param = f"{name}_{index}"
            params[param] = {"description": f"Any single level at position {index} ({one!r})."}
            levels[index] = f"{{{param}}}"
        elif level == rest and index == len(levels) - 1:
            param = f"{name}_{index}_rest"
            params[param] = {
                "description": f"The remaining levels from position {index} ({rest!r})."
            }
            levels[index] = f"{{{param}}}"
    note = f"subscription {text!r}" if params else ""
    return ChannelSpec(separator.join(levels), params, note=note)


def x509(kind: str, name: str) -> dict[str, dict[str, Any]]:
    """The security scheme of mutual TLS."""
    return {f"{kind}-X509": {"type": "X509", "description": f"{name} mutual TLS."}}


def _first_address(model: Any) -> str:
    for key in _ADDRESS_KEYS:
        value = getattr(model, key, None)
        if isinstance(value, str) and value:
            return value
        if isinstance(value, list | tuple) and value:
            return ",".join(str(item) for item in value)
    for key in getattr(type(model), "template_fields", ()):
        value = getattr(model, key, None)
        if isinstance(value, str) and value:
            return value
    return ""


class AsyncApi(Generic[OptionsT, SourceT, TargetT]):
    """How one connector type is described (see the module doc); the base class is
    the generic description. A built-in overrides every method."""

    def server(self, options: OptionsT) -> dict[str, Any]:
        """The AsyncAPI server object (without description): host, protocol, version,
        server bindings. Never credentials."""
        url = getattr(options, "url", None)
        if isinstance(url, str) and url:
            host, scheme = hostport(url, None)
            return {"host": host, "protocol": scheme or options.type}
        return {"host": "local", "protocol": options.type}

    def security(self, options: OptionsT) -> dict[str, dict[str, Any]]:
        """Security schemes by component key: kinds only, never user names, passwords
        or file paths."""
        return {}

    def source_channels(self, source: SourceT) -> list[ChannelSpec]:
        """The channels a route source reads (several topics: several channels)."""
        return [ChannelSpec(_first_address(source))]

    def source_operation(self, options: OptionsT, source: SourceT) -> OperationSpec:
        """Bindings and description lines of a route source's receive operation."""
        return OperationSpec()

    def target_channel(self, options: OptionsT, target: TargetT) -> ChannelSpec:
        """The channel a target publishes to (templates become parameters)."""
        address, params = templated(_first_address(target))
        return ChannelSpec(address, params)

    def target_operation(self, options: OptionsT, target: TargetT) -> OperationSpec:
        """Bindings and description lines of a target's send operation."""
        return OperationSpec()

    def binary_carrier(self) -> BinaryCarrier | None:
        """How binary mode carries the attributes, or None where the type describes
        structured-mode messages only."""
        return None

    def binary_mode(self, options: OptionsT) -> bool:
        """Whether this connection can carry binary-mode events (MQTT 3.1.1 cannot)."""
        return self.binary_carrier() is not None

    def message_bindings(self, mode: str) -> dict[str, Any]:
        """Message bindings of the ``structured`` or ``binary`` CloudEvent message."""
        return {}

    def structured_summary(self) -> str:
        """A summary of the structured message (e.g. where the record key comes from)."""
        return ""
