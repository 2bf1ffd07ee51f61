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

Pure: reads compiled configs, contacts no broker. Connector types other than the four
built-ins get a generic server and channels.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from gateway.config import GatewayConfig, parse_config
from gateway.yamlsource import load_yaml
from routing.router import Route, TargetSpec
from routing.templates import compile_template

__all__ = ["build_document", "document_text", "load_mesh", "meshgate_version"]

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


def load_mesh(paths: Sequence[str]) -> list[MeshMember]:
    """Load and validate every file; ``ConfigError`` for the first invalid one."""
    members = []
    for path in paths:
        loaded = load_yaml(path)
        members.append(MeshMember(parse_config(loaded), loaded.data))
    return members


# -- servers -----------------------------------------------------------------------------


def _hostport(url: str, default_port: int | None) -> tuple[str, str]:
    """``host:port`` and the scheme of a URL, dropping any user and password."""
    parts = urlsplit(url if "://" in url else f"//{url}")
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    port = parts.port or default_port
    return (f"{host}:{port}" if port else host), parts.scheme


def _server(kind: str, options: Any) -> dict[str, Any]:
    """The AsyncAPI server object of one connector (without description)."""
    if kind == "kafka":
        first, *others = options.bootstrap_servers
        host, _ = _hostport(first, 9092)
        tls = options.security_protocol.value in ("SSL", "SASL_SSL")
        server: dict[str, Any] = {"host": host, "protocol": "kafka-secure" if tls else "kafka"}
        if others:
            server["x-bootstrap-servers"] = [
                _hostport(s, 9092)[0] for s in options.bootstrap_servers
            ]
        return server
    if kind == "amqp":
        host, scheme = _hostport(options.url, 5671 if options.url.startswith("amqps") else 5672)
        vhost = urlsplit(options.url).path[1:] or "/"
        return {
            "host": host,
            "protocol": "amqps" if scheme == "amqps" else "amqp",
            "protocolVersion": "0.9.1",
            "pathname": vhost if vhost.startswith("/") else f"/{vhost}",
        }
    if kind == "mqtt":
        endpoint = options.endpoint()
        server = {
            "host": f"{endpoint.host}:{endpoint.port}",
            "protocol": "secure-mqtt" if endpoint.tls else "mqtt",
            "protocolVersion": "5" if options.protocol == 5 else "3.1.1",
        }
        server["bindings"] = {
            "mqtt": {
                "clientId": options.client_id,
                "cleanSession": options.clean_start,
                "keepAlive": options.keepalive_seconds,
                "bindingVersion": "0.2.0",
            }
        }
        if options.protocol == 5:
            server["bindings"]["mqtt"]["sessionExpiryInterval"] = options.session_expiry_seconds
        return server
    if kind == "nats":
        host, scheme = _hostport(options.servers[0], 4222)
        server = {"host": host, "protocol": "nats"}
        if scheme == "tls":
            server["x-tls"] = True
        if len(options.servers) > 1:
            server["x-servers"] = [_hostport(s, 4222)[0] for s in options.servers]
        return server
    return {"host": "local", "protocol": kind}  # plugin or in-memory connector


_SASL = {"PLAIN": "plain", "SCRAM-SHA-256": "scramSha256", "SCRAM-SHA-512": "scramSha512"}


def _security(kind: str, options: Any) -> dict[str, dict[str, Any]]:
    """Security schemes a connector authenticates with, by component key: kinds only,
    never user names, passwords or file paths."""
    credentials = _CREDENTIALS.get(kind)
    if credentials is None:  # plugin or in-memory connector
        return {}
    schemes = credentials(options)
    if options.tls is not None and options.tls.mutual:
        name = {"kafka": "Kafka"}.get(kind, kind.upper())
        schemes[f"{kind}-X509"] = {"type": "X509", "description": f"{name} mutual TLS."}
    return schemes


def _kafka_credentials(options: Any) -> dict[str, dict[str, Any]]:
    if not options.security_protocol.value.startswith("SASL_"):
        return {}
    kind = _SASL[options.sasl_mechanism.value]
    return {f"kafka-{kind}": {"type": kind, "description": "Kafka SASL."}}


def _amqp_credentials(options: Any) -> dict[str, dict[str, Any]]:
    if not urlsplit(options.url).username:
        return {}
    return {"amqp-userPassword": {"type": "userPassword", "description": "AMQP PLAIN."}}


def _mqtt_credentials(options: Any) -> dict[str, dict[str, Any]]:
    if not options.endpoint().username:
        return {}
    return {"mqtt-userPassword": {"type": "userPassword", "description": "MQTT."}}


def _nats_credentials(options: Any) -> dict[str, dict[str, Any]]:
    schemes: dict[str, dict[str, Any]] = {}
    users = [urlsplit(s) for s in options.servers]
    if options.user or any(u.password is not None for u in users):
        schemes["nats-userPassword"] = {"type": "userPassword", "description": "NATS."}
    if options.token is not None or any(u.username and u.password is None for u in users):
        schemes["nats-token"] = {
            "type": "apiKey",
            "in": "user",
            "description": "NATS token authentication.",
        }
    if options.creds_file is not None or options.nkey_seed_file is not None:
        schemes["nats-nkey"] = {
            "type": "asymmetricEncryption",
            "description": "NATS NKey signature (credentials or seed file).",
        }
    return schemes


_CREDENTIALS: dict[str, Callable[[Any], dict[str, dict[str, Any]]]] = {
    "kafka": _kafka_credentials,
    "amqp": _amqp_credentials,
    "mqtt": _mqtt_credentials,
    "nats": _nats_credentials,
}


def _identity(server: Mapping[str, Any]) -> str:
    """What makes two connectors the same broker (per-client bindings aside)."""
    return json.dumps({k: v for k, v in server.items() if k != "bindings"}, sort_keys=True)


# -- channel addresses and parameters ---------------------------------------------------


def _source_addresses(kind: str, source: Any) -> list[tuple[str, dict[str, Any], str]]:
    """Channel addresses, their parameters and a note, for a route's source."""
    if kind == "kafka":
        if source.pattern is not None:
            return [(source.pattern, {}, "Kafka topic pattern (regular expression).")]
        return [(topic, {}, "") for topic in source.topics or ()]
    if kind == "amqp":
        return [(source.queue, {}, "")]
    if kind in ("mqtt", "nats"):
        return [_wildcards(source.topic if kind == "mqtt" else source.subject, kind)]
    return [(str(getattr(source, "topic", getattr(source, "subject", ""))), {}, "")]


def _wildcards(text: str, kind: str) -> tuple[str, dict[str, Any], str]:
    """MQTT ``+``/``#`` and NATS ``*``/``>`` levels as parameters named by position."""
    separator, one, rest, field = (
        ("/", "+", "#", "topic") if kind == "mqtt" else (".", "*", ">", "subject")
    )
    levels = text.split(separator)
    params: dict[str, Any] = {}
    for index, level in enumerate(levels):
        if level == one:
            name = f"{field}_{index}"
            params[name] = {"description": f"Any single level at position {index} ({one!r})."}
            levels[index] = f"{{{name}}}"
        elif level == rest and index == len(levels) - 1:
            name = f"{field}_{index}_rest"
            params[name] = {
                "description": f"The remaining levels from position {index} ({rest!r})."
            }
            levels[index] = f"{{{name}}}"
    note = f"subscription {text!r}" if params else ""
    return separator.join(levels), params, note


def _templated(text: str) -> tuple[str, dict[str, Any]]:
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


_BINARY_CARRIER = {
    # protocol: (header name prefix, where datacontenttype goes)
    "kafka": ("ce_", "the `content-type` header"),
    "amqp": ("ce-", "the `content_type` property"),
    "mqtt": ("", "the MQTT 5 Content Type property"),
    "nats": ("ce-", "the `ce-datacontenttype` header"),
}


def _binary_headers(kind: str) -> dict[str, Any]:
    prefix, content_type = _BINARY_CARRIER[kind]
    properties = {
        f"{prefix}{name}": {"type": "string", "description": text}
        for name, (_, text) in _CONTEXT.items()
        if not (name == "datacontenttype" and kind != "nats")
    }
    if kind == "kafka":
        properties["content-type"] = {"type": "string", "description": "datacontenttype."}
    where = "user properties named as the attribute" if kind == "mqtt" else f"{prefix}* headers"
    return {
        "type": "object",
        "description": f"CloudEvents attributes as {where}; datacontenttype in {content_type}. "
        + ("Values are percent-encoded like HTTP. " if kind == "nats" else "")
        + "Extension attributes travel the same way.",
        "required": [f"{prefix}{name}" for name in _REQUIRED],
        "properties": properties,
    }


def _messages(kind: str) -> dict[str, dict[str, Any]]:
    """The CloudEvent messages of one protocol, by component key."""
    structured: dict[str, Any] = {
        "name": f"{kind}-cloudevent-structured",
        "title": f"CloudEvent, structured mode ({kind})",
        "contentType": "application/cloudevents+json",
        "payload": {"$ref": "#/components/schemas/CloudEvent"},
    }
    out = {f"{kind}-structured": structured}
    if kind not in _BINARY_CARRIER:
        return out
    binary: dict[str, Any] = {
        "name": f"{kind}-cloudevent-binary",
        "title": f"CloudEvent, binary mode ({kind})",
        "summary": "The payload is the event's data; the attributes travel as headers.",
        "headers": _binary_headers(kind),
        "payload": {"description": "The event data, as its datacontenttype says."},
    }
    if kind == "amqp":
        binary["bindings"] = {"amqp": {"bindingVersion": "0.3.0"}}
    if kind == "kafka":
        structured["summary"] = "The record key is the target's key template (if any)."
        binary["bindings"] = {"kafka": {"key": {"type": "string"}, "bindingVersion": "0.5.0"}}
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

    def server(self, gateway: str, name: str, kind: str, options: Any) -> str:
        server = _server(kind, options)
        identity = _identity({**server, "protocol": server["protocol"], "kind": kind})
        key = self.server_ids.get(identity)
        if key is None:
            key = _key(name) if _key(name) not in self.servers else _key(gateway, name)
            self.server_ids[identity] = key
            self.servers[key] = server
            self.server_users[key] = []
        self.server_users[key].append(f"`{gateway}` (connector `{name}`)")
        for scheme, body in _security(kind, options).items():
            self.security[scheme] = body
            refs = self.servers[key].setdefault("security", [])
            ref = {"$ref": f"#/components/securitySchemes/{scheme}"}
            if ref not in refs:
                refs.append(ref)
        return key

    def channel(
        self,
        server: str,
        address: str,
        params: Mapping[str, Any],
        messages: Iterable[str],
        bindings: Mapping[str, Any] | None,
        note: str,
    ) -> str:
        # One channel per broker address, whoever sends or receives on it, so that the
        # mesh's wiring shows (AMQP: a queue and a routing key of an exchange differ).
        amqp = (bindings or {}).get("amqp", {})
        where = amqp.get("queue", {}).get("name") or amqp.get("exchange", {}).get("name")
        identity = json.dumps([server, address, amqp.get("is"), where])
        key = self.channel_ids.get(identity)
        if key is None:
            key = _key(server, address.replace("{", "").replace("}", ""))
            while key in self.channels:
                key += "_"
            self.channel_ids[identity] = key
            channel: dict[str, Any] = {
                "address": address,
                "servers": [{"$ref": f"#/servers/{server}"}],
                "messages": {},
            }
            if note:
                channel["description"] = note
            if params:
                channel["parameters"] = dict(params)
            if bindings:
                channel["bindings"] = dict(bindings)
            self.channels[key] = channel
        if bindings and "bindings" not in self.channels[key]:
            self.channels[key]["bindings"] = dict(bindings)
        for message in messages:
            self.channels[key]["messages"][message] = {"$ref": f"#/components/messages/{message}"}
        return key

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


def _source_bindings(kind: str, source: Any, options: Any) -> tuple[dict[str, Any], list[str]]:
    """Operation bindings and description lines of a route source."""
    if kind == "kafka":
        group = {"type": "string", "enum": [source.group_id]}
        client = {"type": "string", "enum": [options.client_id]}
        return {"kafka": {"groupId": group, "clientId": client, "bindingVersion": "0.5.0"}}, [
            f"Consumer group `{source.group_id}`: replicas with the same group share partitions."
        ]
    if kind == "mqtt":
        lines = [f"QoS {source.qos}" + (" (at most once)" if source.qos == 0 else "")]
        if source.share_group:
            lines.append(f"Shared subscription `$share/{source.share_group}/{source.topic}`.")
        return {"mqtt": {"qos": source.qos, "bindingVersion": "0.2.0"}}, lines
    if kind == "nats":
        lines = []
        if source.jetstream is not None:
            js = source.jetstream
            lines.append(
                f"JetStream pull consumer `{js.durable}` (stream `{js.stream or 'by subject'}`)."
            )
        else:
            lines.append("Core NATS: at most once.")
        if source.queue_group:
            return {"nats": {"queue": source.queue_group, "bindingVersion": "0.1.0"}}, [
                *lines,
                f"Queue group `{source.queue_group}`.",
            ]
        return {}, lines
    if kind == "amqp":
        lines = [f"Prefetch {source.prefetch}, manual acknowledgements."]
        lines += [
            f"Bound to exchange `{b.exchange}` with key `{b.binding_key}`." for b in source.bind
        ]
        return {"amqp": {"ack": True, "bindingVersion": "0.3.0"}}, lines
    return {}, []


def _target_parts(
    kind: str, target: TargetSpec, connector_options: Any
) -> tuple[str, dict[str, Any], dict[str, Any] | None, dict[str, Any]]:
    """Address, parameters, channel bindings and operation bindings of a target."""
    options = target.options
    if kind == "kafka":
        address, params = _templated(options.topic)
        topic = None if params else {"kafka": {"topic": address, "bindingVersion": "0.5.0"}}
        client = {"type": "string", "enum": [connector_options.client_id]}
        return address, params, topic, {"kafka": {"clientId": client, "bindingVersion": "0.5.0"}}
    if kind == "amqp":
        address, params = _templated(options.routing_key)
        exchange: dict[str, Any] = (
            {"name": options.exchange} if options.exchange else {"type": "default"}
        )
        if options.declare_exchange is not None:
            exchange["type"] = options.declare_exchange.type.value
            exchange["durable"] = options.declare_exchange.durable
        exchange["vhost"] = urlsplit(connector_options.url).path[1:] or "/"
        channel: dict[str, Any] = {
            "amqp": {"is": "routingKey", "exchange": exchange, "bindingVersion": "0.3.0"}
        }
        operation = {
            "deliveryMode": 2 if options.persistent else 1,
            "mandatory": options.mandatory,
            "bindingVersion": "0.3.0",
        }
        return address, params, channel, {"amqp": operation}
    if kind == "mqtt":
        address, params = _templated(options.topic)
        mqtt: dict[str, Any] = {
            "qos": options.qos,
            "retain": options.retain,
            "bindingVersion": "0.2.0",
        }
        if options.message_expiry_seconds is not None:
            mqtt["messageExpiryInterval"] = options.message_expiry_seconds
        return address, params, None, {"mqtt": mqtt}
    text = str(getattr(options, "subject", getattr(options, "topic", "")))
    address, params = _templated(text)
    return address, params, None, {}


def _target_messages(kind: str, target: TargetSpec, connector_options: Any) -> list[str]:
    mode = getattr(target.options.mode, "value", "binary")
    if kind == "mqtt" and connector_options.protocol == 4:
        mode = "structured"  # MQTT 3.1.1 has no headers
    if kind not in _BINARY_CARRIER:
        mode = "structured"
    return [f"{kind}-{mode}"]


def build_document(members: Sequence[MeshMember]) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of the gateways in ``members`` (one or a mesh)."""
    build = _Builder()
    ids = [m.config.gateway.id for m in members]
    kinds: set[str] = set()
    for member in members:
        config, gateway = member.config, member.config.gateway.id
        servers = {}
        for name, (_cls, options) in config.connectors.items():
            kind = str(options.type)
            kinds.add(kind)
            servers[name] = (kind, options, build.server(gateway, name, kind, options))
        raw_routes = {str(r.get("name")): r for r in member.raw.get("routes") or []}
        for route in config.table.routes:
            _add_route(build, gateway, route, raw_routes.get(route.name, {}), servers)
    for kind in sorted(kinds):
        build.messages.update(_messages(kind))
    if any(
        m.config.table.routes and any(r.ingress for r in m.config.table.routes) for m in members
    ):
        build.messages["legacy"] = _legacy_message()
    for key, users in build.server_users.items():
        build.servers[key]["description"] = "Used by gateway " + ", ".join(users) + "."
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


def _add_route(
    build: _Builder,
    gateway: str,
    route: Route,
    raw: Mapping[str, Any],
    servers: Mapping[str, tuple[str, Any, str]],
) -> None:
    kind, options, server = servers[route.source_connector]
    structured_only = kind not in _BINARY_CARRIER or (kind == "mqtt" and options.protocol == 4)
    messages = [f"{kind}-structured"] + ([] if structured_only else [f"{kind}-binary"])
    if route.ingress is not None:
        messages.append("legacy")
    bindings, lines = _source_bindings(kind, route.source, options)
    lines += _filter_text(route, raw)
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
    if bindings:
        body["bindings"] = bindings
    addresses = _source_addresses(kind, route.source)
    for index, (address, params, note) in enumerate(addresses):
        channel_bindings: dict[str, Any] | None = None
        if kind == "amqp":
            queue = {"is": "queue", "queue": {"name": address}, "bindingVersion": "0.3.0"}
            channel_bindings = {"amqp": queue}
        elif kind == "kafka" and route.source.pattern is None:
            channel_bindings = {"kafka": {"topic": address, "bindingVersion": "0.5.0"}}
        channel = build.channel(server, address, params, messages, channel_bindings, note)
        suffix = "receive" if len(addresses) == 1 else f"receive-{index}"
        build.operation(_key(gateway, route.name, suffix), "receive", channel, messages, body)

    sends = [(f"send-{i}", t, "target") for i, t in enumerate(route.targets)]
    if route.dead_letter is not None:
        sends.append(("dead-letter", route.dead_letter, "dead letter"))
    for suffix, target, role in sends:
        kind, options, server = servers[target.connector]
        address, params, channel_bindings, op_bindings = _target_parts(kind, target, options)
        messages = _target_messages(kind, target, options)
        channel = build.channel(server, address, params, messages, channel_bindings, "")
        text = [f"Route {route.name}: {role}: {_describe(target)}."]
        if kind == "nats":
            text.append(
                "Published to JetStream, confirmed by its PubAck (a stream must capture the "
                "subject)."
                if target.options.jetstream
                else "Published on core NATS: at most once."
            )
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
        if op_bindings:
            body["bindings"] = op_bindings
        build.operation(_key(gateway, route.name, suffix), "send", channel, messages, body)


def document_text(document: Mapping[str, Any], *, as_json: bool = False) -> str:
    """The document as YAML (default, in document order) or JSON."""
    if as_json:
        return json.dumps(document, indent=2) + "\n"
    return yaml.safe_dump(dict(document), sort_keys=False, allow_unicode=True, width=100)
