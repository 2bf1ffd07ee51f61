"""An AsyncAPI 3.0 document of one gateway, or of the mesh of several gateways.

``meshgate asyncapi FILE [FILE...]`` turns route files into the document event-driven
tooling reads (AsyncAPI Studio, generators, catalogues):

- a **server** per broker (kafka, amqp, mqtt, nats): host and port from the
  connector options, how it authenticates (security schemes), never credentials;
  connectors of several gateways that point
  at the same broker become one server;
- a **channel** per source and target address; MQTT/NATS wildcards and target
  templates become channel parameters (``plant/+/x`` -> ``plant/{topic_1}/x``), so
  the channel a gateway publishes to and the one another gateway reads from meet;
- an **operation** per route source (``receive``), target and dead letter (``send``),
  with the route's filter, ingress rules and delivery guarantee in its description;
- **messages** as CloudEvents: structured (``application/cloudevents+json``) and
  binary mode with the binding's headers (Kafka ``ce_*``, AMQP/NATS ``ce-*``, MQTT 5
  user properties), plus the protocol bindings objects.

Pure: reads compiled configs, contacts no broker. Nothing here knows a protocol: each
connector type's ``asyncapi`` hook (``connectors.asyncapi``; the built-ins' live in
``connectors/<type>/asyncapi.py``) describes its servers, channels and bindings. A type
without the hook gets a generic server and channels, and their descriptions say so.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from connectors.asyncapi import AsyncApi, BinaryCarrier, ChannelSpec
from connectors.base import Connector
from connectors.registry import ConnectorRegistry, default_registry
from gateway.config import GatewayConfig, parse_config
from gateway.yamlsource import load_yaml
from routing.router import Route, TargetSpec

__all__ = [
    "build_document",
    "document_text",
    "generic_types",
    "load_mesh",
    "meshgate_version",
]

ASYNCAPI_VERSION = "3.0.0"
_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_\-]+")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_CONTEXT = {
    "id": ("string", "Identifies the event; with source, unique."),
    "source": ("string", "URI-reference of the context that produced the event."),
    "specversion": ("string", "CloudEvents version: 1.0."),
    "type": ("string", "Type of the event, e.g. com.acme.telemetry."),
    "datacontenttype": ("string", "Media type of data."),
    "dataschema": ("string", "URI of the schema data adheres to."),
    "subject": ("string", "Subject of the event in the context of source."),
    "time": ("string", "RFC 3339 timestamp of the occurrence."),
    "traceparent": ("string", "W3C trace context (distributed-tracing extension)."),
    "tracestate": ("string", "W3C trace state (distributed-tracing extension)."),
    "meshpath": ("string", "Ids of the meshgate gateways that forwarded the event (docs/mesh.md)."),
    "meshhops": ("integer", "How many meshgate gateways forwarded the event (docs/mesh.md)."),
}
_REQUIRED = ("id", "source", "specversion", "type")


def meshgate_version() -> str:
    """The installed distribution's version (pyproject.toml is the one place it is set)."""
    try:
        return metadata.version("meshgate")
    except metadata.PackageNotFoundError:  # run from a source tree that is not installed
        return "0+unknown"


def _key(*parts: str) -> str:
    """A component key AsyncAPI accepts (letters, digits, ``_``, ``-``)."""
    return _KEY_UNSAFE.sub("_", "-".join(p for p in parts if p)).strip("_") or "x"


@dataclass(frozen=True)
class MeshMember:
    """One gateway of the mesh: its compiled config and the raw YAML (for ``filters``)."""

    config: GatewayConfig
    raw: Mapping[str, Any]


def load_mesh(
    paths: Sequence[str], registry: ConnectorRegistry = default_registry
) -> list[MeshMember]:
    """Load and validate every file; ``ConfigError`` for the first invalid one."""
    members = []
    for path in paths:
        loaded = load_yaml(path)
        members.append(MeshMember(parse_config(loaded, registry), loaded.data))
    return members


# -- servers -----------------------------------------------------------------------------

_GENERIC = AsyncApi[Any, Any, Any]()


def describer(cls: type[Connector[Any, Any, Any]]) -> AsyncApi[Any, Any, Any]:
    """The type's ``asyncapi`` hook, or the generic description (``connectors.asyncapi``)."""
    return cls.asyncapi or _GENERIC


def generic_note(kind: str) -> str:
    """What the document says where a connector type has no ``asyncapi`` hook."""
    return (
        f"Generic description: connector type `{kind}` declares no asyncapi hook "
        "(docs/plugins.md#optional-hooks), so protocol bindings and binary mode are not shown."
    )


def generic_types(members: Sequence[MeshMember]) -> list[str]:
    """The connector types of ``members`` described generically (no ``asyncapi`` hook)."""
    return sorted(
        {
            str(options.type)
            for member in members
            for cls, options in member.config.connectors.values()
            if cls.asyncapi is None
        }
    )


def _identity(server: Mapping[str, Any]) -> str:
    """What makes two connectors the same broker (per-client bindings aside)."""
    return json.dumps({k: v for k, v in server.items() if k != "bindings"}, sort_keys=True)


# -- messages -----------------------------------------------------------------------------


def _cloudevent_schema() -> dict[str, Any]:
    properties: dict[str, Any] = {
        name: {"type": kind, "description": text} for name, (kind, text) in _CONTEXT.items()
    }
    properties["specversion"]["const"] = "1.0"
    properties["time"]["format"] = "date-time"
    properties["source"]["format"] = "uri-reference"
    properties["dataschema"]["format"] = "uri"
    properties["data"] = {"description": "The event payload."}
    properties["data_base64"] = {"type": "string", "contentEncoding": "base64"}
    return {
        "type": "object",
        "description": "A CloudEvent (spec 1.0) in the JSON event format; extension "
        "attributes are further properties named [a-z0-9]+.",
        "required": list(_REQUIRED),
        "properties": properties,
        "propertyNames": {"pattern": "^([a-z0-9]+|data_base64)$"},
        "not": {"required": ["data", "data_base64"]},
    }


def _binary_headers(carrier: BinaryCarrier) -> dict[str, Any]:
    prefix = carrier.prefix
    properties = {
        f"{prefix}{name}": {"type": "string", "description": text}
        for name, (_, text) in _CONTEXT.items()
        if not (name == "datacontenttype" and not carrier.content_type_prefixed)
    }
    for name, text in carrier.extra_headers.items():
        properties[name] = {"type": "string", "description": text}
    where = carrier.where or f"{prefix}* headers"
    return {
        "type": "object",
        "description": f"CloudEvents attributes as {where}; datacontenttype in "
        f"{carrier.content_type}. "
        + (f"{carrier.note} " if carrier.note else "")
        + "Extension attributes travel the same way.",
        "required": [f"{prefix}{name}" for name in _REQUIRED],
        "properties": properties,
    }


def _messages(kind: str, hook: AsyncApi[Any, Any, Any]) -> dict[str, dict[str, Any]]:
    """The CloudEvent messages of one connector type, by component key."""
    structured: dict[str, Any] = {
        "name": f"{kind}-cloudevent-structured",
        "title": f"CloudEvent, structured mode ({kind})",
        "contentType": "application/cloudevents+json",
        "payload": {"$ref": "#/components/schemas/CloudEvent"},
    }
    if hook.structured_summary():
        structured["summary"] = hook.structured_summary()
    if hook.message_bindings("structured"):
        structured["bindings"] = hook.message_bindings("structured")
    out = {f"{kind}-structured": structured}
    carrier = hook.binary_carrier()
    if carrier is None:
        return out
    binary: dict[str, Any] = {
        "name": f"{kind}-cloudevent-binary",
        "title": f"CloudEvent, binary mode ({kind})",
        "summary": "The payload is the event's data; the attributes travel as headers.",
        "headers": _binary_headers(carrier),
        "payload": {"description": "The event data, as its datacontenttype says."},
    }
    if hook.message_bindings("binary"):
        binary["bindings"] = hook.message_bindings("binary")
    out[f"{kind}-binary"] = binary
    return out


def _legacy_message() -> dict[str, Any]:
    return {
        "name": "legacy",
        "title": "Message that is not a CloudEvent",
        "summary": "Wrapped into a CloudEvent by the route's ingress rules.",
        "payload": {"description": "Any bytes."},
    }


# -- the document ------------------------------------------------------------------------


class _Builder:
    def __init__(self) -> None:
        self.servers: dict[str, dict[str, Any]] = {}
        self.server_ids: dict[str, str] = {}  # identity -> key
        self.server_users: dict[str, list[str]] = {}
        self.channels: dict[str, dict[str, Any]] = {}
        self.channel_ids: dict[str, str] = {}
        self.operations: dict[str, dict[str, Any]] = {}
        self.messages: dict[str, dict[str, Any]] = {}
        self.security: dict[str, dict[str, Any]] = {}
        self.generic: dict[str, str] = {}  # server key -> type without the asyncapi hook

    def server(
        self, gateway: str, name: str, kind: str, options: Any, hook: AsyncApi[Any, Any, Any]
    ) -> str:
        server = hook.server(options)
        identity = _identity({**server, "protocol": server["protocol"], "kind": kind})
        key = self.server_ids.get(identity)
        if key is None:
            key = _key(name) if _key(name) not in self.servers else _key(gateway, name)
            self.server_ids[identity] = key
            self.servers[key] = server
            self.server_users[key] = []
        self.server_users[key].append(f"`{gateway}` (connector `{name}`)")
        if hook is _GENERIC:
            self.generic[key] = kind
        for scheme, body in hook.security(options).items():
            self.security[scheme] = body
            refs = self.servers[key].setdefault("security", [])
            ref = {"$ref": f"#/components/securitySchemes/{scheme}"}
            if ref not in refs:
                refs.append(ref)
        return key

    def channel(self, server: str, spec: ChannelSpec, messages: Iterable[str]) -> str:
        # One channel per broker address, whoever sends or receives on it, so that the
        # mesh's wiring shows (the spec's identity tells apart what else differs).
        identity = json.dumps([server, spec.address, spec.identity])
        key = self.channel_ids.get(identity)
        if key is None:
            key = _key(server, spec.address.replace("{", "").replace("}", ""))
            while key in self.channels:
                key += "_"
            self.channel_ids[identity] = key
            channel: dict[str, Any] = {
                "address": spec.address,
                "servers": [{"$ref": f"#/servers/{server}"}],
                "messages": {},
            }
            note = " ".join(filter(None, [spec.note, self.generic_text(server)]))
            if note:
                channel["description"] = note
            if spec.parameters:
                channel["parameters"] = dict(spec.parameters)
            if spec.bindings:
                channel["bindings"] = dict(spec.bindings)
            self.channels[key] = channel
        if spec.bindings and "bindings" not in self.channels[key]:
            self.channels[key]["bindings"] = dict(spec.bindings)
        for message in messages:
            self.channels[key]["messages"][message] = {"$ref": f"#/components/messages/{message}"}
        return key

    def generic_text(self, server: str) -> str:
        kind = self.generic.get(server)
        return generic_note(kind) if kind is not None else ""

    def operation(
        self, key: str, action: str, channel: str, messages: Iterable[str], body: dict[str, Any]
    ) -> None:
        refs = [{"$ref": f"#/channels/{channel}/messages/{m}"} for m in messages]
        self.operations[key] = {
            "action": action,
            "channel": {"$ref": f"#/channels/{channel}"},
            "messages": refs,
            **body,
        }


def _describe(target: TargetSpec) -> str:
    """``core``: topic `telemetry`, key `{topic[1]}`, binary mode."""
    options = target.options
    fields = [
        f"{name} `{getattr(options, name)}`"
        for name in type(options).template_fields
        if getattr(options, name, None) is not None
    ]
    mode = getattr(getattr(options, "mode", None), "value", None)
    fields += [f"{mode} mode"] if mode else []
    return f"`{target.connector}`: " + ", ".join(fields)


def _filter_text(route: Route, raw_route: Mapping[str, Any]) -> list[str]:
    lines = []
    if route.filter_text:
        lines.append(f"Filter (CloudEvents SQL): `{route.filter_text}`")
    if raw_route.get("filters") is not None:
        dialect = json.dumps(raw_route["filters"], sort_keys=True)
        lines.append(f"Filters (Subscriptions API): `{dialect}`")
    return lines


def build_document(members: Sequence[MeshMember]) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of the gateways in ``members`` (one or a mesh)."""
    build = _Builder()
    ids = [m.config.gateway.id for m in members]
    kinds: dict[str, AsyncApi[Any, Any, Any]] = {}
    for member in members:
        config, gateway = member.config, member.config.gateway.id
        servers = {}
        for name, (cls, options) in config.connectors.items():
            kind = str(options.type)
            hook = describer(cls)
            kinds[kind] = hook
            key = build.server(gateway, name, kind, options, hook)
            servers[name] = _Server(kind, options, key, hook)
        raw_routes = {str(r.get("name")): r for r in member.raw.get("routes") or []}
        for route in config.table.routes:
            _add_route(build, gateway, route, raw_routes.get(route.name, {}), servers)
    for kind in sorted(kinds):
        build.messages.update(_messages(kind, kinds[kind]))
    if any(
        m.config.table.routes and any(r.ingress for r in m.config.table.routes) for m in members
    ):
        build.messages["legacy"] = _legacy_message()
    for key, users in build.server_users.items():
        used = "Used by gateway " + ", ".join(users) + "."
        build.servers[key]["description"] = " ".join(filter(None, [used, build.generic_text(key)]))
    title = f"meshgate gateway {ids[0]}" if len(ids) == 1 else "meshgate mesh: " + ", ".join(ids)
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": title,
            "version": meshgate_version(),
            "description": "Generated by `meshgate asyncapi` from "
            + ", ".join(f"`{Path(m.config.file).name}`" for m in members)
            + ". Every message is a CloudEvent (spec 1.0); delivery is at least once "
            "except from core NATS and MQTT QoS 0 sources.",
        },
        "defaultContentType": "application/cloudevents+json",
        "servers": build.servers,
        "channels": build.channels,
        "operations": build.operations,
        "components": {
            "schemas": {"CloudEvent": _cloudevent_schema()},
            "messages": dict(sorted(build.messages.items())),
            **({"securitySchemes": dict(sorted(build.security.items()))} if build.security else {}),
        },
    }


@dataclass(frozen=True)
class _Server:
    """A connector of one gateway: its type, options, server key and description hook."""

    kind: str
    options: Any
    key: str
    hook: AsyncApi[Any, Any, Any]

    def messages(self, mode: str) -> list[str]:
        """The message keys of ``mode`` (``binary`` or ``structured``) on this connection."""
        if mode == "binary" and self.hook.binary_mode(self.options):
            return [f"{self.kind}-binary"]
        return [f"{self.kind}-structured"]


def _add_route(
    build: _Builder,
    gateway: str,
    route: Route,
    raw: Mapping[str, Any],
    servers: Mapping[str, _Server],
) -> None:
    source = servers[route.source_connector]
    messages = [f"{source.kind}-structured"]
    if source.hook.binary_mode(source.options):
        messages.append(f"{source.kind}-binary")
    if route.ingress is not None:
        messages.append("legacy")
    operation = source.hook.source_operation(source.options, route.source)
    lines = [*operation.lines, *_filter_text(route, raw)]
    if route.ingress is not None:
        lines.append(
            f"Messages that are not CloudEvents are wrapped: `{json.dumps(raw.get('ingress'))}`."
        )
    targets = "; ".join(_describe(t) for t in route.targets)
    lines.append(f"Routed to: {targets}.")
    body: dict[str, Any] = {
        "summary": f"Route {route.name} of gateway {gateway}: receive.",
        "description": "\n\n".join(lines),
        "x-meshgate-gateway": gateway,
        "x-meshgate-route": route.name,
    }
    if operation.bindings:
        body["bindings"] = dict(operation.bindings)
    channels = source.hook.source_channels(route.source)
    for index, spec in enumerate(channels):
        channel = build.channel(source.key, spec, messages)
        suffix = "receive" if len(channels) == 1 else f"receive-{index}"
        build.operation(_key(gateway, route.name, suffix), "receive", channel, messages, body)

    sends = [(f"send-{i}", t, "target") for i, t in enumerate(route.targets)]
    if route.dead_letter is not None:
        sends.append(("dead-letter", route.dead_letter, "dead letter"))
    for suffix, target, role in sends:
        server = servers[target.connector]
        spec = server.hook.target_channel(server.options, target.options)
        operation = server.hook.target_operation(server.options, target.options)
        messages = server.messages(getattr(target.options.mode, "value", "binary"))
        channel = build.channel(server.key, spec, messages)
        text = [f"Route {route.name}: {role}: {_describe(target)}.", *operation.lines]
        if role == "dead letter":
            text.append(
                "Events no target accepted, after the route's retries, with the error attached."
            )
        body = {
            "summary": f"Route {route.name} of gateway {gateway}: {role}.",
            "description": "\n\n".join([*text, *_filter_text(route, raw)]),
            "x-meshgate-gateway": gateway,
            "x-meshgate-route": route.name,
        }
        if operation.bindings:
            body["bindings"] = dict(operation.bindings)
        build.operation(_key(gateway, route.name, suffix), "send", channel, messages, body)


def document_text(document: Mapping[str, Any], *, as_json: bool = False) -> str:
    """The document as YAML (default, in document order) or JSON."""
    if as_json:
        return json.dumps(document, indent=2) + "\n"
    return yaml.safe_dump(dict(document), sort_keys=False, allow_unicode=True, width=100)
