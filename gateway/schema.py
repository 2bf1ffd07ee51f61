"""The JSON Schema of the config file and the option tables of the docs, from the models.

One set of pydantic models drives validation, defaults, the JSON Schema and the
reference docs: ``gateway.config`` for the file's sections, and each connector's
``Options`` / ``Source`` / ``Target`` models (``connectors.base``) for what
depends on the connector type. Nothing here is written by hand except the
Subscriptions API filter grammar, which the config keeps as free-form data and
``routing.filters`` checks.

``config_schema`` builds the schema of the whole file (JSON Schema 2020-12):

- ``connectors:`` entries are a ``oneOf`` over every installed connector type,
  each branch fixing ``type`` to its name: a precise, discriminated choice;
- a route's ``from:`` / ``to:`` / ``dead_letter:`` are an ``anyOf`` over the
  ``Source`` / ``Target`` models of every type. A route names its connector
  (``connector: core``), not the connector's type, and a JSON Schema cannot
  follow that reference, so it accepts the options of *any* type there;
  ``meshgate validate`` checks them against the named connector's own model.

The schema checks a subset of what ``meshgate validate`` checks: cross references,
unique names, templates, CESQL filters and rules that involve several options
(binary mode on MQTT 3.1.1) are left to ``validate``. It sees values as written,
before ``${VAR}`` is replaced, so a number taken from the environment is text to
it. A field normalised by a ``mode="before"`` validator that declares no
``json_schema_input_type`` accepts any value in the schema, because pydantic would
otherwise describe the normalised type and reject input the model accepts.

``option_tables`` renders the markdown reference of one connector type (field,
type, default, description), and ``config_tables`` the file's own sections;
``scripts/gen_docs.py`` writes both into docs/.
"""

from __future__ import annotations

import importlib.metadata
import json
import sys
import typing
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaMode, JsonSchemaValue
from pydantic_core import PydanticUndefined, core_schema, to_jsonable_python

from connectors.base import Connector
from connectors.errors import ConnectorError
from connectors.registry import ENTRY_POINT_GROUP, ConnectorRegistry, default_registry
from gateway.config import (
    ConfigFile,
    GatewaySection,
    IngressSection,
    RetrySection,
    RouteSection,
)

__all__ = [
    "JSON_SCHEMA_DIALECT",
    "bundled_connector_types",
    "config_schema",
    "config_tables",
    "option_tables",
    "schema_text",
    "write_schema",
]

JSON_SCHEMA_DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"

_NORMALISED: Final = (
    "Normalised by a validator that declares no input type: the schema cannot say "
    "which forms it accepts (see the description)."
)
_ANYOF_NOTE: Final = (
    " The route names its connector, not the connector's type, so this schema accepts "
    "the {role} options of any installed connector type; `meshgate validate` checks "
    "them against the named connector's type."
)
# Fields of the connectors.base models that carry no description of their own.
_BASE_DESCRIPTIONS: Final[Mapping[str, str]] = {
    "connector": "Name of the entry under `connectors:` to use.",
    "mode": "Content mode: `binary` (attributes as native headers/properties, data as "
    "the payload) or `structured` (the whole event in the payload, in `format`).",
    "format": "Event format of structured mode: `json` or `avro`.",
}
# Route keys without a description of their own in gateway.config.
_SECTION_DESCRIPTIONS: Final[Mapping[str, str]] = {
    "ingress": "How a message that is not a CloudEvent is wrapped into one.",
    "retry": "How a failing publish is retried before the event is dead-lettered.",
}
_ATTRIBUTE_NAME: Final = "^[a-z0-9]+$"

AnyConnector = type[Connector[Any, Any, Any]]


class _Generator(GenerateJsonSchema):
    """pydantic's generator, honest about validators that normalise their input."""

    def function_before_schema(
        self, schema: core_schema.BeforeValidatorFunctionSchema
    ) -> JsonSchemaValue:
        # pydantic would describe the *result* type of a before-validator, which can
        # reject input the validator accepts (e.g. a comma-separated string for a
        # list). Unless the validator declares json_schema_input_type, accept anything.
        if self.mode == "validation" and schema.get("json_schema_input_schema") is None:
            return {"$comment": _NORMALISED}
        return super().function_before_schema(schema)


# -- which connector types -----------------------------------------------------------


def bundled_connector_types(distribution: str = "meshgate") -> list[str]:
    """Connector types registered by ``distribution`` itself (not by other plugins).

    The committed docs/meshgate.schema.json covers these, so that it does not depend
    on which third-party plugins happen to be installed where it is generated.
    """
    entry_points = importlib.metadata.distribution(distribution).entry_points
    return sorted(ep.name for ep in entry_points if ep.group == ENTRY_POINT_GROUP)


def _connectors(
    registry: ConnectorRegistry, types: Sequence[str] | None
) -> list[tuple[str, AnyConnector]]:
    names = registry.names() if types is None else sorted(types)
    return [(name, registry.get(name)) for name in names]


# -- the JSON Schema of the file -----------------------------------------------------


def config_schema(
    registry: ConnectorRegistry = default_registry, types: Sequence[str] | None = None
) -> dict[str, Any]:
    """The JSON Schema of a whole config file, for the connector ``types`` given
    (default: every type ``registry`` knows, plugins included).

    Raises ``UnknownConnectorType`` (or the plugin's ``ImportError``) when a type
    cannot be loaded.
    """
    connectors = _connectors(registry, types)
    models: list[type[BaseModel]] = [ConfigFile, RouteSection]
    for _name, cls in connectors:
        models.extend((cls.Options, cls.Source, cls.Target))
    unique = list(dict.fromkeys(models))
    mode: JsonSchemaMode = "validation"
    refs, top = _models_schema(unique, mode)
    defs: dict[str, Any] = top.get("$defs", {})

    def ref(model: type[BaseModel]) -> str:
        return str(refs[(model, mode)]["$ref"])

    def definition(model: type[BaseModel]) -> dict[str, Any]:
        found: dict[str, Any] = defs[ref(model).rsplit("/", 1)[1]]
        return found

    for _name, cls in connectors:
        for model in (cls.Options, cls.Source, cls.Target):
            _describe_base_fields(definition(model))

    root = defs.pop(ref(ConfigFile).rsplit("/", 1)[1])
    route = definition(RouteSection)
    name_pattern = route["properties"]["name"].get("pattern")

    entry_name, filter_name = _free(defs, "Connector"), _free(defs, "SubscriptionsFilter")
    defs[entry_name] = {
        "title": "connector entry",
        "description": "One connection to a broker. `type` selects the connector type; "
        "the other keys are that type's options.",
        "oneOf": [_connector_branch(name, ref(cls.Options)) for name, cls in connectors],
    }
    connectors_property = _property(root, "connectors")
    connectors_property["additionalProperties"] = {"$ref": f"#/$defs/{entry_name}"}
    if name_pattern is not None:
        connectors_property["propertyNames"] = {"pattern": name_pattern}
    connectors_property["description"] = (
        "Broker connections by name; routes refer to them by that name."
    )

    sources = _unique_refs([{"$ref": ref(cls.Source)} for _name, cls in connectors])
    targets = _unique_refs([{"$ref": ref(cls.Target)} for _name, cls in connectors])
    source = _property(route, "from")
    route["properties"]["from"] = {
        "description": source.get("description", "") + _ANYOF_NOTE.format(role="source"),
        "anyOf": sources,
    }
    to = _property(route, "to")
    to["items"] = {"anyOf": targets}
    to["description"] = to.get("description", "") + _ANYOF_NOTE.format(role="target")
    dead_letter = _property(route, "dead_letter")
    route["properties"]["dead_letter"] = {
        "description": dead_letter.get("description", "") + _ANYOF_NOTE.format(role="target"),
        "anyOf": [*targets, {"type": "null"}],
        "default": None,
    }
    filters = _property(route, "filters")
    route["properties"]["filters"] = {
        "description": filters.get("description", ""),
        "anyOf": [{"$ref": f"#/$defs/{filter_name}"}, {"type": "null"}],
        "default": None,
    }
    for name, text in _SECTION_DESCRIPTIONS.items():
        _property(route, name).setdefault("description", text)
    defs[filter_name] = _filter_schema(f"#/$defs/{filter_name}")

    schema: dict[str, Any] = {
        "$schema": JSON_SCHEMA_DIALECT,
        "title": "meshgate configuration file",
        "description": "Generated from the pydantic models of meshgate and of the connector "
        f"types {', '.join(name for name, _ in connectors)}. `meshgate validate` checks more "
        "than this schema can: connector references, unique names, templates, CESQL "
        "filters and connector-specific rules. The schema sees values before ${VAR} is "
        "replaced; the loader also converts numeric and boolean text.",
    }
    root.pop("title", None)
    root.pop("description", None)
    schema.update(root)
    schema["$defs"] = dict(sorted(defs.items()))
    return schema


def _models_schema(
    models: Sequence[type[BaseModel]], mode: JsonSchemaMode
) -> tuple[dict[tuple[type[BaseModel], JsonSchemaMode], JsonSchemaValue], JsonSchemaValue]:
    from pydantic.json_schema import models_json_schema

    refs, top = models_json_schema([(model, mode) for model in models], schema_generator=_Generator)
    return {(model, mode): refs[(model, mode)] for model in models}, top


def _property(definition: dict[str, Any], name: str) -> dict[str, Any]:
    """``definition``'s property ``name``; an error when the config models changed shape."""
    try:
        found: dict[str, Any] = definition["properties"][name]
    except KeyError:
        raise RuntimeError(
            f"gateway.schema expects a property {name!r} in {definition.get('title')!r}: "
            "update gateway/schema.py to the config models"
        ) from None
    return found


def _describe_base_fields(definition: dict[str, Any]) -> None:
    for name, text in _BASE_DESCRIPTIONS.items():
        prop = definition.get("properties", {}).get(name)
        if prop is not None and "description" not in prop:
            prop["description"] = text


def _connector_branch(name: str, options_ref: str) -> dict[str, Any]:
    return {
        "title": f"{name} connector",
        "allOf": [
            {"$ref": options_ref},
            {
                "properties": {"type": {"const": name, "description": "Connector type."}},
                "required": ["type"],
            },
        ],
    }


def _unique_refs(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: set[str] = set()
    out = []
    for item in items:
        if item["$ref"] not in seen:
            seen.add(item["$ref"])
            out.append(item)
    return out


def _free(defs: Mapping[str, Any], name: str) -> str:
    """``name``, or ``name`` with a suffix if a model of that name already has a def."""
    candidate, number = name, 1
    while candidate in defs:
        candidate, number = f"{name}{number}", number + 1
    return candidate


def _filter_schema(self_ref: str) -> dict[str, Any]:
    """The Subscriptions API filter grammar that ``routing.filters.compile_filter`` reads."""
    me = {"$ref": self_ref}

    def dialect(name: str, body: dict[str, Any], text: str) -> dict[str, Any]:
        return {
            "type": "object",
            "description": text,
            "properties": {name: body},
            "required": [name],
            "additionalProperties": False,
        }

    def values(non_empty: bool) -> dict[str, Any]:
        text: dict[str, Any] = {"type": "string"}
        if non_empty:
            text["minLength"] = 1
        return {
            "type": "object",
            "minProperties": 1,
            "propertyNames": {"pattern": _ATTRIBUTE_NAME, "not": {"const": "data"}},
            "additionalProperties": {"anyOf": [text, {"type": "integer"}, {"type": "boolean"}]},
        }

    nested = {"type": "array", "minItems": 1, "items": me}
    return {
        "title": "Subscriptions API filter",
        "description": "A filter of the CloudEvents Subscriptions API: a mapping with "
        "exactly one dialect, or a list of filters that must all match.",
        "anyOf": [
            {"type": "array", "items": me, "description": "All of these filters match."},
            dialect("exact", values(False), "Every named attribute equals the value."),
            dialect("prefix", values(True), "Every named attribute starts with the value."),
            dialect("suffix", values(True), "Every named attribute ends with the value."),
            dialect("all", nested, "All nested filters match."),
            dialect("any", nested, "At least one nested filter matches."),
            dialect("not", me, "The nested filter does not match."),
            dialect("sql", {"type": "string"}, "A CloudEvents SQL expression."),
        ],
    }


def schema_text(schema: Mapping[str, Any]) -> str:
    """``schema`` as the JSON text meshgate writes: 2-space indent, UTF-8, final newline."""
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def write_schema(output: str | None, registry: ConnectorRegistry = default_registry) -> int:
    """``meshgate schema``: print the schema (or write it to ``output``); the exit code."""
    try:
        text = schema_text(config_schema(registry))
    except (ConnectorError, ImportError) as exc:  # a plugin that cannot be loaded
        print(f"meshgate schema: {exc}", file=sys.stderr)
        return 2
    if output is None:
        sys.stdout.write(text)
        return 0
    try:
        Path(output).write_text(text, encoding="utf-8")
    except OSError as exc:
        print(f"meshgate schema: cannot write {output}: {exc.strerror}", file=sys.stderr)
        return 2
    return 0


# -- markdown option tables ---------------------------------------------------------


def option_tables(type_name: str, registry: ConnectorRegistry = default_registry) -> str:
    """Markdown reference of connector type ``type_name``: connector, source, target."""
    cls = registry.get(type_name)
    template_fields = frozenset(cls.Target.template_fields)
    parts = [
        _section(
            f"Connector options (`connectors.<name>` with `type: {type_name}`)",
            cls.Options,
            "connectors.<name>",
            const_type=type_name,
        ),
        _section("Source options (a route's `from:`)", cls.Source, "from"),
        _section(
            "Target options (a route's `to:` entries and `dead_letter:`)",
            cls.Target,
            "to[]",
            templates=template_fields,
        ),
    ]
    if template_fields:
        names = ", ".join(f"`{name}`" for name in sorted(template_fields))
        parts.append(
            f"Target fields that may hold `{{...}}` templates, rendered per event: {names}.\n"
        )
    parts.append(capability_table(cls))
    return "\n".join(parts)


def capability_table(cls: type[Connector[Any, Any, Any]]) -> str:
    """What each kind of source and target promises (``Connector.capability_cases``,
    from the same per-source/target capabilities the runtime reads)."""
    rows = [
        "### Guarantees (`Capabilities`, per source and target)",
        "",
        "| side | case | acknowledges messages | publish confirmed | order kept per "
        "| native headers | largest message |",
        "|---|---|---|---|---|---|---|",
    ]
    for role, case, caps in cls.capability_cases():
        largest = "-" if caps.max_message_bytes is None else f"{caps.max_message_bytes:,} B"
        acks = _yes(caps.acknowledgements) if role != "target" else "-"
        confirmed = _yes(caps.confirmed_publish) if role != "source" else "-"
        rows.append(
            f"| {role} | {case} | {acks} | {confirmed} | {caps.ordering} "
            f"| {'yes' if caps.headers else 'no'} | {largest} |"
        )
    rows.append(
        "\nWithout acknowledgements or confirmation a source or target is at-most-once: "
        "`meshgate validate` marks it in its route table and the gateway logs it at start.\n"
    )
    return "\n".join(rows)


def _yes(value: bool) -> str:
    return "yes" if value else "**no** (at-most-once)"


def config_tables() -> str:
    """Markdown reference of the file's own sections (gateway, routes, retry, ingress)."""
    route_types = {
        "from": "object: `connector` + that connector's source options",
        "to": "non-empty list of objects: `connector` + target options",
        "dead_letter": "object: `connector` + target options",
        "filters": "Subscriptions API filter (see Filtering)",
        "ingress": "object (`ingress:` table)",
        "retry": "object (`retry:` table)",
    }
    parts = [
        _section("`gateway:`", GatewaySection, "gateway"),
        _section("`routes:` entries", RouteSection, "routes[]", overrides=route_types),
        _section("`retry:` (in a route)", RetrySection, "routes[].retry"),
        _section(
            "`ingress:` (in a route)",
            IngressSection,
            "routes[].ingress",
            templates=frozenset({"type", "source", "subject", "id"}),
        ),
    ]
    return "\n".join(parts)


def _section(
    title: str,
    model: type[BaseModel],
    path: str,
    *,
    const_type: str | None = None,
    templates: frozenset[str] = frozenset(),
    overrides: Mapping[str, str] | None = None,
) -> str:
    lines = [f"### {title}", ""]
    if _own_doc(model):
        lines += [_clean_doc(str(model.__doc__)), ""]
    lines += _table(model, const_type=const_type, templates=templates, overrides=overrides)
    if overrides is None:
        for field_name, nested in _nested_models(model):
            lines += ["", f"#### `{path}.{field_name}`", ""]
            if _own_doc(nested):
                lines += [_clean_doc(str(nested.__doc__)), ""]
            lines += _table(nested)
    return "\n".join(lines) + "\n"


def _own_doc(model: type[BaseModel]) -> bool:
    return "__doc__" in vars(model) and bool(vars(model)["__doc__"])


def _clean_doc(doc: str) -> str:
    text = " ".join(line.strip() for line in doc.strip().split("\n\n", 1)[0].splitlines())
    return _escape(text.replace("``", "`"))


def _table(
    model: type[BaseModel],
    *,
    const_type: str | None = None,
    templates: frozenset[str] = frozenset(),
    overrides: Mapping[str, str] | None = None,
) -> list[str]:
    schema = model.model_json_schema(schema_generator=_Generator)
    defs: dict[str, Any] = schema.get("$defs", {})
    required = set(schema.get("required", ()))
    rows = ["| option | type | default | description |", "|---|---|---|---|"]
    for name, field in model.model_fields.items():
        key = field.alias or name
        prop = schema["properties"][key]
        if key == "type" and const_type is not None:
            kind, default = f'`"{const_type}"`', "**required**"
            text = "Connector type."
        else:
            kind = (overrides or {}).get(key) or _type_text(prop, defs)
            if name in templates:
                kind += ", template"
            default = "**required**" if key in required else _default_text(field)
            text = (
                prop.get("description")
                or field.description
                or _BASE_DESCRIPTIONS.get(key)
                or _SECTION_DESCRIPTIONS.get(key, "")
            )
        rows.append(f"| `{key}` | {kind} | {default} | {_escape(text)} |")
    return rows


def _nested_models(model: type[BaseModel]) -> Iterator[tuple[str, type[BaseModel]]]:
    for name, field in model.model_fields.items():
        for found in _models_in(field.annotation):
            yield field.alias or name, found


def _models_in(annotation: Any) -> Iterator[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
        return
    for argument in typing.get_args(annotation):
        yield from _models_in(argument)


def _default_text(field: FieldInfo) -> str:
    if field.default is PydanticUndefined and field.default_factory is None:
        return "**required**"
    value = field.get_default(call_default_factory=True, validated_data={})
    if value is None:
        return "unset"
    shown = json.dumps(to_jsonable_python(value), ensure_ascii=False)
    return f"`{shown}`"


def _type_text(prop: Mapping[str, Any], defs: Mapping[str, Any]) -> str:
    if "$ref" in prop:
        target = defs[str(prop["$ref"]).rsplit("/", 1)[1]]
        if "properties" in target:
            return "object (table below)"
        return _type_text(target, defs)
    if "const" in prop:
        return f"`{json.dumps(prop['const'])}`"
    if "enum" in prop:
        return " \\| ".join(f"`{_plain(value)}`" for value in prop["enum"])
    if "anyOf" in prop:
        branches = [b for b in prop["anyOf"] if b.get("type") != "null"]
        return " or ".join(_type_text(branch, defs) for branch in branches) or "null"
    return _kind_text(prop, defs)


def _kind_text(prop: Mapping[str, Any], defs: Mapping[str, Any]) -> str:
    """The text of a property by its JSON Schema ``type``."""
    kind = prop.get("type")
    if kind is None:
        if prop.get("$comment") == _NORMALISED:
            return "any (normalised, see description)"
        return "any"
    if kind == "string":
        return _string_text(prop)
    if kind in ("integer", "number"):
        return _number_text(str(kind), prop)
    if kind == "array":
        return _array_text(prop, defs)
    if kind == "object":
        values = prop.get("additionalProperties")
        if isinstance(values, dict) and values:
            return f"map of string to {_type_text(values, defs)}"
        return "map"
    return str(kind)


def _array_text(prop: Mapping[str, Any], defs: Mapping[str, Any]) -> str:
    items = prop.get("items", {})
    of = _type_text(items, defs) if items else "any"
    if of == "object (table below)":
        of = "objects (table below)"
    prefix = "non-empty list" if prop.get("minItems", 0) >= 1 else "list"
    return f"{prefix} of {of}"


def _plain(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _string_text(prop: Mapping[str, Any]) -> str:
    if prop.get("writeOnly") or prop.get("format") == "password":
        return "secret"
    if prop.get("format") == "path":
        return "path"
    low, high = prop.get("minLength"), prop.get("maxLength")
    if high is not None:
        return f"string, {low or 0} to {high} chars"
    if low:
        return "non-empty string"
    return "string"


def _number_text(kind: str, prop: Mapping[str, Any]) -> str:
    bounds = []
    if "minimum" in prop and "maximum" in prop:
        return f"{kind}, {prop['minimum']} to {prop['maximum']}"
    if "minimum" in prop:
        bounds.append(f"≥ {prop['minimum']}")
    if "exclusiveMinimum" in prop:
        bounds.append(f"> {prop['exclusiveMinimum']}")
    if "maximum" in prop:
        bounds.append(f"≤ {prop['maximum']}")
    if "exclusiveMaximum" in prop:
        bounds.append(f"< {prop['exclusiveMaximum']}")
    return " ".join([kind, *bounds]) if bounds else kind


def _escape(text: str) -> str:
    """Text safe in a markdown table cell: no pipes, and outside code spans no tags
    or stray emphasis (``<name>`` would be an HTML tag, ``SASL_*`` emphasis)."""
    pieces = " ".join(text.replace("``", "`").split()).split("`")
    out = []
    for index, piece in enumerate(pieces):
        piece = piece.replace("|", "\\|")
        if index % 2 == 0:  # outside a code span
            for raw, safe in (("<", "&lt;"), (">", "&gt;"), ("*", "\\*")):
                piece = piece.replace(raw, safe)
        out.append(piece)
    return "`".join(out)
