"""The gateway's YAML config file: models, validation, and compilation to a route table.

Validation happens in two passes so that every problem is reported at once:
1. the file's shape (``gateway``, ``connectors``, ``routes``) with pydantic;
2. each connector entry against its plugin's ``Options`` model, each route's
   ``from`` / ``to`` / ``dead_letter`` against the connector's ``Source`` /
   ``Target`` models, templates, filters and cross references.
Every problem carries file, line, column and key path (see ``gateway.yamlsource``).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from connectors.base import (
    Connector,
    ConnectorOptions,
    MeshAttributes,
    SourceOptions,
    TargetOptions,
)
from connectors.errors import UnknownConnectorType
from connectors.meshchannel import ADDRESS_KEYS, ChannelSettings, MeshChannel
from connectors.registry import ConnectorRegistry, default_registry
from gateway.dlstore import DEFAULT_MAX_BYTES, STATE_DIR_ENV, default_state_dir
from gateway.errors import ConfigError, ConfigProblem
from gateway.mesh import DEFAULT_MAX_HOPS, MESH_ATTRIBUTES
from gateway.yamlsource import KeyPath, LoadedYaml, load_yaml
from routing.cesql.lint import lint
from routing.egress import EgressRules
from routing.errors import FilterError, MeshgateError, TemplateError
from routing.filters import EventFilter, compile_filter
from routing.ingress import IngressRules
from routing.router import RetryPolicy, Route, RouteTable, TargetSpec
from routing.templates import Template, compile_template
from routing.verifiability import Signer, Verifier, key_fingerprint, load_private_key

log = logging.getLogger("meshgate.config")

__all__ = [
    "AdminSection",
    "ConfigFile",
    "GatewayConfig",
    "TracingSection",
    "load_config",
    "parse_config",
    "parse_listen",
]

_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class AdminSection(_Section):
    """The admin HTTP server (docs/observability.md): health, readiness, metrics, API."""

    listen: str = Field(
        description="HOST:PORT to listen on; ':PORT' or 'PORT' alone listens on loopback "
        "(127.0.0.1). Brackets for IPv6: '[::1]:9464'."
    )
    token_file: Path | None = Field(
        None,
        description="File holding a bearer token every request must carry "
        "(Authorization: Bearer ...); read at start, never printed.",
    )
    show_data: bool = Field(
        False, description="Include event data in /api/events (attributes only by default)."
    )

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        parse_listen(value)
        return value

    def address(self) -> tuple[str, int]:
        """(host, port) to bind."""
        return parse_listen(self.listen)


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``:PORT`` or ``PORT`` -> (host, port); host defaults to loopback."""
    host, sep, port = text.strip().rpartition(":")
    if not sep:
        host, port = "", text.strip()
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT with a port number 0-65535, got {text!r}")
    return host, int(port)


class TracingSection(_Section):
    """OpenTelemetry traces (docs/observability.md#traces); the standard ``OTEL_*``
    variables configure them too, and ``OTEL_TRACES_EXPORTER`` turns them on."""

    enabled: bool = Field(
        False, description="Trace every delivery (also on when OTEL_TRACES_EXPORTER is set)."
    )
    exporter: Literal["otlp", "console"] = Field(
        "otlp",
        description="Where spans go when enabled here (OTEL_TRACES_EXPORTER wins): OTLP/HTTP "
        "(protobuf) or the console.",
    )
    endpoint: str | None = Field(
        None,
        description="OTLP/HTTP traces URL, e.g. http://collector:4318/v1/traces (default: "
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, OTEL_EXPORTER_OTLP_ENDPOINT + /v1/traces, "
        "else http://localhost:4318/v1/traces).",
    )
    service_name: str | None = Field(
        None, description="service.name of the spans (OTEL_SERVICE_NAME wins; default meshgate)."
    )
    mqtt_traceparent: Literal["keep", "replace"] = Field(
        "keep",
        description="MQTT has one slot for the trace context, the 'traceparent' user property "
        "that is also the CloudEvents extension: 'keep' never overwrites an event's own "
        "traceparent (the gateway's context is written only into events without one); "
        "'replace' always writes the gateway's span context.",
    )


class DeadLetterStoreSection(_Section):
    """The local dead-letter store (docs/delivery.md#the-local-dead-letter-store)."""

    max_bytes: int = Field(
        DEFAULT_MAX_BYTES,
        ge=1024,
        description="Payload and header bytes the store may hold; past it the route that "
        "needs it stops (loudly) until `meshgate dlq` makes room.",
    )


class ReconnectSection(_Section):
    """The one backoff policy of every connector's (re)connection attempts."""

    initial_backoff_seconds: float = Field(
        0.2, gt=0, description="First wait before connecting again."
    )
    max_backoff_seconds: float = Field(
        10.0, gt=0, description="Longest wait between connection attempts (doubling up to it)."
    )


class MeshSection(_Section):
    """The mesh view's control channel (docs/mesh.md#the-mesh-view)."""

    connector: str = Field(
        description="A connector of this gateway whose type carries the channel (nats, mqtt, "
        "kafka, amqp; a plugin type with the mesh_channel hook)."
    )
    subject: str | None = Field(
        None, min_length=1, description="NATS (core NATS) or a plugin that asks for it: subject."
    )
    topic: str | None = Field(
        None, min_length=1, description="MQTT (QoS 0), Kafka or a plugin that asks for it: topic."
    )
    exchange: str = Field(
        "amq.topic", min_length=1, description="AMQP: existing topic exchange to publish to."
    )
    routing_key: str | None = Field(None, min_length=1, description="AMQP: routing key.")
    interval_seconds: float = Field(5.0, gt=0, description="Seconds between announcements.")
    expire_seconds: float | None = Field(
        None, gt=0, description="Peers silent this long are forgotten (default: 3 intervals)."
    )

    @property
    def address(self) -> str:
        return self.subject or self.topic or self.routing_key or ""

    def expiry(self) -> float:
        return self.expire_seconds or 3 * self.interval_seconds

    def _channel(self, connector: Connector[Any, Any, Any]) -> MeshChannel:
        channel = type(connector).mesh_channel
        if channel is None:  # the config check refuses such a connector
            raise ValueError(f"{connector.label} cannot carry the mesh control channel")
        return channel

    def settings(self) -> ChannelSettings:
        return ChannelSettings(exchange=self.exchange, expire_seconds=self.expiry())

    def target(self, connector: Connector[Any, Any, Any]) -> Any:
        """Where announcements go (the connector type's ``mesh_channel`` hook)."""
        body = self._channel(connector).target(self.address, self.settings())
        return type(connector).Target.model_validate({"connector": self.connector, **body})

    def source(self, connector: Connector[Any, Any, Any], listener: str) -> Any:
        """A subscription of this listener alone (no queue, share or consumer group
        shared with others): every gateway hears every announcement. ``listener`` names
        the Kafka group and the AMQP queue (which RabbitMQ deletes once unused)."""
        body = self._channel(connector).source(self.address, listener, self.settings())
        return type(connector).Source.model_validate({"connector": self.connector, **body})


class GatewaySection(_Section):
    id: Annotated[str, Field(pattern=_NAME, description="Name of this gateway in the mesh.")]
    drain_timeout_seconds: float = Field(
        30.0, gt=0, description="On SIGTERM, how long in-flight events may take to finish."
    )
    admin: AdminSection | None = Field(
        None, description="Admin HTTP server (health, readiness, /metrics, /api); off if absent."
    )
    tracing: TracingSection | None = Field(
        None,
        description="OpenTelemetry traces; off unless enabled here or by OTEL_TRACES_EXPORTER.",
    )
    state_dir: str | None = Field(
        None,
        description="Directory for local state (the dead-letter store). Default: "
        f"${STATE_DIR_ENV}, else $XDG_STATE_HOME/meshgate/<id> (~/.local/state/meshgate/<id>).",
    )
    dead_letter_store: DeadLetterStoreSection = Field(
        default_factory=DeadLetterStoreSection  # type: ignore[arg-type]
    )
    max_hops: int = Field(
        DEFAULT_MAX_HOPS,
        ge=1,
        le=1000,
        description="Events that already passed this many gateways (meshhops) are not "
        "forwarded again (docs/mesh.md).",
    )
    mesh: MeshSection | None = Field(
        None,
        description="Announce this gateway on a control channel and keep a table of its "
        "peers: {connector: <nats connector>, subject: meshgate.control}.",
    )
    reconnect: ReconnectSection = Field(
        default_factory=ReconnectSection,  # type: ignore[arg-type]
        description="Backoff of every connector's connection attempts, at start and after a "
        "loss (jittered, doubling).",
    )
    fail_fast: bool = Field(
        False,
        description="Exit at start (code 1) when a connector cannot connect on its first "
        "attempt, instead of retrying it in the background while the other routes run.",
    )

    def resolved_state_dir(self) -> Path:
        """The state directory this gateway uses (config, then env, then default)."""
        if self.state_dir:
            return Path(self.state_dir).expanduser()
        return default_state_dir(self.id)


class RetrySection(_Section):
    max_attempts: int = Field(
        5, ge=1, description="Publish attempts per target before dead-lettering."
    )
    initial_backoff_seconds: float = Field(0.2, gt=0, description="First retry delay.")
    max_backoff_seconds: float = Field(10.0, gt=0, description="Longest retry delay.")


class IngressSection(_Section):
    """How a message that is not a CloudEvent is wrapped into one."""

    type: str = Field(description="Template for the CloudEvent type.")
    source: str = Field(description="Template for the CloudEvent source.")
    subject: str | None = Field(None, description="Template for the subject.")
    id: str | None = Field(
        None, description="Template for the id (default: the native message id)."
    )
    datacontenttype: str | None = Field(None, description="Fixed content type (default: guessed).")


class RouteSection(_Section):
    name: str = Field(pattern=_NAME, description="Unique route name.")
    from_: dict[str, Any] = Field(
        alias="from", description="Source: connector + its source options."
    )
    to: list[dict[str, Any]] = Field(
        min_length=1, description="Targets: connector + target options."
    )
    ingress: IngressSection | None = None
    filter: str | None = Field(
        None, description="CloudEvents SQL expression the event must satisfy."
    )
    filters: Any = Field(
        None, description="Subscriptions API filters (exact/prefix/suffix/all/any/not/sql)."
    )
    dead_letter: dict[str, Any] | None = Field(None, description="Where undeliverable events go.")
    retry: RetrySection = Field(default_factory=RetrySection)  # type: ignore[arg-type]
    max_in_flight: int = Field(256, ge=1, le=100_000, description="Events processed at once.")
    ordered: bool = Field(False, description="Keep order per key (partition/topic/subject).")
    loop_guard: bool = Field(
        True,
        description="Drop events that come back through the mesh (their meshpath holds this "
        "gateway's id before another gateway's); false for deliberate re-entry (max_hops "
        "still applies).",
    )


class ConfigFile(_Section):
    """The whole file, before connector-specific validation."""

    gateway: GatewaySection
    connectors: dict[str, dict[str, Any]] = Field(min_length=1)
    routes: list[RouteSection] = Field(min_length=1)


@dataclass(frozen=True)
class GatewayConfig:
    """A validated, compiled configuration, ready for the runtime."""

    file: str
    gateway: GatewaySection
    connectors: dict[str, tuple[type[Connector[Any, Any, Any]], ConnectorOptions]]
    table: RouteTable
    deprecations: tuple[ConfigProblem, ...] = ()
    """Old option spellings the file uses (``connectors.renamed``): loaded, but warned."""


class _Checker:
    """Collects problems with their positions while compiling the file."""

    def __init__(self, loaded: LoadedYaml) -> None:
        self.loaded = loaded
        self.problems: list[ConfigProblem] = []
        self.deprecations: list[ConfigProblem] = []

    def add(self, path: KeyPath, message: str) -> None:
        self.problems.append(self.loaded.problem(path, message))

    def add_validation(
        self, base: KeyPath, error: ValidationError, model: type[BaseModel] | None = None
    ) -> None:
        for item in error.errors(include_url=False):
            loc = tuple(
                part
                for part in item["loc"]
                if not isinstance(part, str) or not part.startswith("function-")
            )
            message = item["msg"]
            if item["type"] == "extra_forbidden":
                message = "unknown key" + _did_you_mean(model, loc)
            elif item["type"] == "missing":
                message = "required key is missing"
            path = (*base, *loc)
            self.add(path, _expected(message, item.get("input"), path))

    def model(self, path: KeyPath, model: type[BaseModel], data: Any) -> Any:
        if isinstance(data, Mapping):
            for rename in getattr(model, "renamed", ()):
                if rename.old in data:
                    where = (*path, rename.old)
                    self.deprecations.append(self.loaded.problem(where, rename.advice()))
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            self.add_validation(path, exc, model)
            return None


def _model_at(model: type[BaseModel] | None, path: KeyPath) -> type[BaseModel] | None:
    """The pydantic model that validates the mapping at ``path`` below ``model``."""
    for part in path:
        if model is None:
            return None
        if isinstance(part, int):
            continue  # a list item: the list's model is already the item type below
        field = next((f for name, f in model.model_fields.items() if part in (name, f.alias)), None)
        if field is None:
            return None
        model = next(
            (
                candidate
                for candidate in (field.annotation, *get_args(field.annotation))
                for candidate in (candidate, *get_args(candidate))
                if isinstance(candidate, type) and issubclass(candidate, BaseModel)
            ),
            None,
        )
    return model


def _did_you_mean(model: type[BaseModel] | None, loc: KeyPath) -> str:
    """``; did you mean 'from'?`` for a misspelt key, when a known key is close."""
    if not loc or not isinstance(loc[-1], str):
        return ""
    owner = _model_at(model, loc[:-1])
    if owner is None:
        return ""
    known = [f.alias or name for name, f in owner.model_fields.items()]
    close = difflib.get_close_matches(loc[-1], known, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


_SECRET_KEYS = re.compile(r"pass|secret|token|key|cred|seed", re.IGNORECASE)
_URL_CREDENTIALS = re.compile(r"(://[^:/@\s]*:)[^@\s]*@")


def _expected(message: str, value: Any, path: KeyPath) -> str:
    """The pydantic message plus the offending value, unless the value may be a secret."""
    if value is None or isinstance(value, dict | list):
        return message
    if any(isinstance(part, str) and _SECRET_KEYS.search(part) for part in path):
        return message
    shown = _URL_CREDENTIALS.sub(r"\1***@", repr(value))
    return f"{message} (got {shown})"


def _secrets_from_files(
    check: _Checker, path: KeyPath, model: type[BaseModel], raw: dict[str, Any]
) -> dict[str, Any]:
    """``password_file: /run/secrets/x`` fills the secret option ``password`` from a file.

    Works for every secret (``SecretStr``) option of a connector: ``<name>_file``.
    The file's content is used with one trailing newline removed.
    """
    fields = model.model_fields
    result = dict(raw)
    for key, value in raw.items():
        name = key.removesuffix("_file")
        if key == name or key in fields or name not in fields:
            continue
        if "SecretStr" not in str(fields[name].annotation):
            continue
        del result[key]
        if name in raw:
            check.add((*path, key), f"give either {name} or {key}, not both")
            continue
        try:
            text = Path(str(value)).expanduser().read_text(encoding="utf-8")
        except OSError as exc:
            check.add((*path, key), f"cannot read the secret file {value!r}: {exc.strerror}")
            continue
        result[name] = text[:-1] if text.endswith("\n") else text
    return result


def parse_config(
    loaded: LoadedYaml, registry: ConnectorRegistry = default_registry
) -> GatewayConfig:
    """Validate and compile a loaded YAML document; ``ConfigError`` lists every problem."""
    check = _Checker(loaded)
    file_model: ConfigFile | None = check.model((), ConfigFile, loaded.data)
    if file_model is None:
        raise ConfigError(check.problems)

    connectors = _compile_connectors(check, file_model, registry)
    if file_model.gateway.mesh is not None:
        _check_mesh(check, file_model.gateway.mesh, connectors, file_model.connectors)
    routes = _compile_routes(check, file_model, connectors)
    if check.problems:
        raise ConfigError(check.problems)
    table = RouteTable.build(routes)
    return GatewayConfig(
        loaded.file, file_model.gateway, connectors, table, tuple(check.deprecations)
    )


Connectors = dict[str, tuple[type[Connector[Any, Any, Any]], ConnectorOptions]]
"""Connector name -> (its class, its validated options)."""


def _compile_connectors(
    check: _Checker, file_model: ConfigFile, registry: ConnectorRegistry
) -> Connectors:
    connectors: Connectors = {}
    for name, raw in file_model.connectors.items():
        path: KeyPath = ("connectors", name)
        if re.match(_NAME, name) is None:
            check.add(path, "connector names are letters, digits, '_', '.', '-'")
        kind = raw.get("type")
        if not isinstance(kind, str):
            check.add(path, "required key 'type' is missing (the connector type, e.g. kafka)")
            continue
        try:
            cls = registry.get(kind)
        except UnknownConnectorType as exc:
            check.add((*path, "type"), str(exc))
            continue
        raw = _secrets_from_files(check, path, cls.Options, raw)
        options = check.model(path, cls.Options, raw)
        if options is not None:
            # A client id must be stable per gateway and connector (MQTT persistent
            # sessions are keyed by it): derive one when the option exists but is unset.
            if "client_id" in type(options).model_fields and options.client_id is None:
                client_id = f"{file_model.gateway.id}-{name}"
                options = options.model_copy(update={"client_id": client_id})
            connectors[name] = (cls, options)
    return connectors


def _compile_routes(check: _Checker, file_model: ConfigFile, connectors: Connectors) -> list[Route]:
    routes: list[Route] = []
    seen: set[str] = set()
    for index, section in enumerate(file_model.routes):
        route = _compile_route(check, ("routes", index), section, connectors)
        if section.name in seen:
            check.add(("routes", index, "name"), f"route name {section.name!r} is used twice")
        seen.add(section.name)
        if route is not None:
            routes.append(route)
    return routes


def _check_mesh(
    check: _Checker, mesh: MeshSection, connectors: Connectors, declared: Mapping[str, Any]
) -> None:
    """The control channel names a connector whose type carries it, and one address."""
    entry = connectors.get(mesh.connector)
    if entry is None:
        if mesh.connector in declared:  # declared but invalid: reported at its entry
            return
        check.add(
            ("gateway", "mesh", "connector"),
            f"no connector named {mesh.connector!r} "
            f"(declared: {', '.join(sorted(declared)) or 'none'})",
        )
        return
    cls, options = entry
    kind = options.type
    channel = cls.mesh_channel
    if channel is None:
        check.add(
            ("gateway", "mesh", "connector"),
            f"connector {mesh.connector!r} (type {kind!r}) cannot carry the control channel: "
            "its type declares no mesh_channel hook (docs/plugins.md#optional-hooks); "
            "built in: nats, mqtt, kafka, amqp",
        )
        return
    key = channel.address_key
    for other in ADDRESS_KEYS:
        if other != key and getattr(mesh, other) is not None:
            check.add(
                ("gateway", "mesh", other), f"a {kind} control channel takes {key}, not {other}"
            )
    value = getattr(mesh, key)
    if value is None:
        check.add(("gateway", "mesh"), f"required key {key!r} is missing (the {kind} {key})")
    elif channel.wildcards and any(c in value for c in channel.wildcards):
        check.add(("gateway", "mesh", key), f"a {key} without wildcards")


def _endpoint(
    check: _Checker,
    path: KeyPath,
    raw: dict[str, Any],
    connectors: dict[str, tuple[type[Connector[Any, Any, Any]], ConnectorOptions]],
    role: str,
) -> tuple[Any, type[Connector[Any, Any, Any]]] | None:
    name = raw.get("connector")
    if not isinstance(name, str):
        check.add(
            path, "required key 'connector' is missing (the name of an entry under connectors:)"
        )
        return None
    if name not in connectors:
        # An unknown or invalid connector was already reported if it is declared.
        declared = check.loaded.data.get("connectors") or {}
        if name not in declared:
            known = ", ".join(sorted(declared)) or "none"
            check.add((*path, "connector"), f"no connector named {name!r} (declared: {known})")
        return None
    cls, options = connectors[name]
    model: type[SourceOptions] | type[TargetOptions] = (
        cls.Source if role == "source" else cls.Target
    )
    parsed = check.model(path, model, raw)
    if parsed is None:
        return None
    validate = getattr(cls, "validate_target", None)
    if role == "target" and validate is not None:
        problem = validate(options, parsed)
        if problem:
            check.add(path, problem)
            return None
    return parsed, cls


def _target(
    check: _Checker, path: KeyPath, raw: dict[str, Any], connectors: Any
) -> TargetSpec | None:
    found = _endpoint(check, path, raw, connectors, "target")
    if found is None:
        return None
    options, cls = found
    _header_clashes(check, path, options, cls, connectors[options.connector][1])
    fields = {name: getattr(options, name) for name in type(options).template_fields}
    templates = _templates(check, path, fields)
    header_templates = _templates(check, (*path, "headers"), options.headers)
    egress = _egress(check, path, options)
    signer = _signer(check, path, options)
    return TargetSpec(
        options.connector,
        options,
        templates,
        egress,
        header_templates,
        signer,
        options.sign.extensions if options.sign is not None else (),
    )


def _header_clashes(
    check: _Checker,
    path: KeyPath,
    target: TargetOptions,
    cls: type[Connector[Any, Any, Any]],
    connector: ConnectorOptions,
) -> None:
    """Each ``headers:`` name the target's binding refuses (``Connector.header_clash``),
    reported at that name's line."""
    for name in target.headers:
        clash = cls.header_clash(connector, name)
        if clash:
            check.add((*path, "headers", name), clash)


def _templates(
    check: _Checker, path: KeyPath, texts: Mapping[str, str | None]
) -> dict[str, Template]:
    """The ``texts`` (by key under ``path``) that hold templates; static text is not one."""
    templates: dict[str, Template] = {}
    for key, text in texts.items():
        if text is None:
            continue
        try:
            template = compile_template(text)
        except TemplateError as exc:
            check.add((*path, key), str(exc))
            continue
        if not template.is_static:
            templates[key] = template
    return templates


def _egress(check: _Checker, path: KeyPath, options: Any) -> EgressRules | None:
    """The target's ``attributes:`` rules (and ``mesh: strip``), compiled."""
    rules = options.attributes.model_dump() if options.attributes is not None else {}
    if options.mesh is MeshAttributes.STRIP:  # the event leaves the mesh here
        rules["remove"] = (*rules.get("remove", ()), *MESH_ATTRIBUTES)
    if not rules:
        return None
    try:
        return EgressRules.compile(**rules)
    except TemplateError as exc:
        check.add((*path, "attributes"), str(exc))
        return None


def _signer(check: _Checker, path: KeyPath, options: Any) -> Signer | None:
    """The target's ``sign:`` key, loaded."""
    if options.sign is None:
        return None
    try:
        key = load_private_key(options.sign.key_file.expanduser())
    except (OSError, ValueError, TypeError) as exc:  # TypeError: an encrypted key
        check.add((*path, "sign", "key_file"), f"{options.sign.key_file}: {exc}")
        return None
    return Signer(key, options.sign.key_id or key_fingerprint(key.public_key()))


def _fingerprint(section: RouteSection, connectors: Any) -> str:
    """Identity of a route for hot reload: its own settings plus every connector it uses."""
    used = {section.from_.get("connector")} | {t.get("connector") for t in section.to}
    if section.dead_letter is not None:
        used.add(section.dead_letter.get("connector"))
    options = {
        name: connectors[name][1].model_dump()
        for name in sorted(n for n in used if isinstance(n, str) and n in connectors)
    }
    body = {"route": section.model_dump(by_alias=True), "connectors": options}
    return json.dumps(body, sort_keys=True, default=_fingerprint_value)


def _fingerprint_value(value: Any) -> str:
    if isinstance(value, SecretStr):  # a rotated secret must count as a change
        return "secret:" + hashlib.sha256(value.get_secret_value().encode()).hexdigest()
    return repr(value)


def _compile_route(
    check: _Checker, path: KeyPath, section: RouteSection, connectors: Any
) -> Route | None:
    problems_before = len(check.problems)
    source = _endpoint(check, (*path, "from"), section.from_, connectors, "source")
    if source is not None:
        _check_verify(check, path, source[0])
    targets = [
        _target(check, (*path, "to", i), raw, connectors) for i, raw in enumerate(section.to)
    ]
    dead_letter = None
    if section.dead_letter is not None:
        dead_letter = _target(check, (*path, "dead_letter"), section.dead_letter, connectors)

    filters = _filters(check, path, section)
    ingress = _ingress(check, path, section)
    if source is not None:
        _check_source_fields(check, path, section, source[1], targets, dead_letter)
    if len(check.problems) > problems_before or source is None:
        return None
    source_options, _cls = source
    retry = section.retry
    return Route(
        name=section.name,
        source_connector=source_options.connector,
        source=source_options,
        targets=tuple(t for t in targets if t is not None),
        dead_letter=dead_letter,
        filter=_combine(filters),
        filter_text=section.filter,
        ingress=ingress,
        retry=RetryPolicy(
            retry.max_attempts, retry.initial_backoff_seconds, retry.max_backoff_seconds
        ),
        max_in_flight=section.max_in_flight,
        ordered=section.ordered,
        loop_guard=section.loop_guard,
        fingerprint=_fingerprint(section, connectors),
    )


def _check_verify(check: _Checker, path: KeyPath, source: Any) -> None:
    """The ``verify:`` public keys of a source can be read (checked once, at load)."""
    verify = getattr(source, "verify", None)
    if verify is None:
        return
    try:
        Verifier.from_files(verify.public_key_files)
    except (OSError, ValueError) as exc:
        check.add((*path, "from", "verify", "public_key_files"), str(exc))


def _filters(check: _Checker, path: KeyPath, section: RouteSection) -> list[EventFilter]:
    """The route's ``filter:`` (CESQL) and ``filters:`` (Subscriptions API), compiled
    and linted."""
    filters: list[EventFilter] = []
    if section.filter is not None:
        try:
            filters.append(compile_filter({"sql": section.filter}))
        except FilterError as exc:
            check.add((*path, "filter"), f"CESQL: {exc}")
        else:
            for problem in lint(section.filter).errors:
                check.add((*path, "filter"), f"CESQL: {problem}")
    if section.filters is not None:
        try:
            filters.append(compile_filter(section.filters))
        except FilterError as exc:
            check.add((*path, "filters"), str(exc))
        else:
            for text in _sql_filters(section.filters):
                for problem in lint(text).errors:
                    check.add((*path, "filters"), f"CESQL: {problem}")
    return filters


def _ingress(check: _Checker, path: KeyPath, section: RouteSection) -> IngressRules | None:
    """The route's ``ingress:`` rules, compiled."""
    if section.ingress is None:
        return None
    try:
        return IngressRules.compile(**section.ingress.model_dump())
    except (TemplateError, MeshgateError) as exc:
        check.add((*path, "ingress"), str(exc))
        return None


def _check_source_fields(
    check: _Checker,
    path: KeyPath,
    section: RouteSection,
    source_cls: type[Connector[Any, Any, Any]],
    targets: list[TargetSpec | None],
    dead_letter: TargetSpec | None,
) -> None:
    """Reject templates that read something this route's source never provides."""
    if source_cls.message_keys:
        return
    kind = section.from_.get("connector")
    where: list[tuple[KeyPath, TargetSpec | None]] = [
        ((*path, "to", i), target) for i, target in enumerate(targets)
    ]
    where.append(((*path, "dead_letter"), dead_letter))
    for target_path, target in where:
        if target is None:
            continue
        templates = list(target.templates.items())
        if target.egress is not None:
            templates += [("attributes", template) for _, template in target.egress.set]
        for field_name, template in templates:
            if any(ref.split("[")[0] == "key" for ref in template.references):
                check.add(
                    (*target_path, field_name),
                    f"template {template.text!r} uses {{key}}, but messages from connector "
                    f"{kind!r} ({source_cls.__name__}) have no key",
                )
    if section.ingress is not None:
        for name, text in section.ingress.model_dump().items():
            if isinstance(text, str) and "{key" in text:
                check.add(
                    (*path, "ingress", name),
                    f"template {text!r} uses {{key}}, but messages from connector {kind!r} "
                    "have no key",
                )


def _sql_filters(spec: Any) -> Iterator[str]:
    """The CESQL texts of ``sql`` dialects anywhere in a Subscriptions API filter."""
    if isinstance(spec, list):
        for item in spec:
            yield from _sql_filters(item)
    elif isinstance(spec, dict):
        for dialect, body in spec.items():
            if dialect == "sql" and isinstance(body, str):
                yield body
            elif dialect in ("all", "any", "not"):
                yield from _sql_filters(body)


def _combine(filters: list[EventFilter]) -> EventFilter | None:
    if not filters:
        return None
    if len(filters) == 1:
        return filters[0]
    return lambda event: all(f(event) for f in filters)


def load_config(path: str | Path, registry: ConnectorRegistry = default_registry) -> GatewayConfig:
    """Read, validate and compile a config file; ``ConfigError`` lists every problem.
    Old option spellings load, with one WARNING per use and process."""
    config = parse_config(load_yaml(path), registry)
    for deprecation in config.deprecations:
        text = str(deprecation)
        if text not in _WARNED:
            _WARNED.add(text)
            log.warning("%s", text)
    return config


_WARNED: set[str] = set()
"""Deprecation warnings already logged (a reload re-reads the same file)."""
