"""``meshgate routes check``: what the routes would do with one event, without any broker.

Input is either a CloudEvent in the JSON format (``--event``) or a description of a
native message as a source would receive it (``--message``)::

    {"connector": "plant", "topic": "plant/l1/telemetry",
     "headers": {"content-type": "application/json"}, "key": "k1",
     "payload": "{\\"temp\\": 21}"}            # or "payload_base64": "..."

The address is named as the protocol names it: ``topic`` (Kafka, MQTT, memory),
``subject`` (NATS), ``queue`` or ``exchange`` + ``routing_key`` (AMQP); ``address``
stands for any of them. The connector builds the native message its source would
receive (``Connector.dry_run_delivery``, a plugin hook) and says which routes'
sources receive it (``Connector.source_receives``); only those routes are
reported, each planned by the runtime's own step (``gateway.plan``: decode, verify,
ingress rules, filter, loop guard, rendered targets), so it says what the runtime
does. A CloudEvent given with ``--event`` is checked against every route, since a
structured event can arrive from any source; a route
whose targets need the source message (``{topic}``, ``{key}``, ``{header.x}``) says
so instead of pretending to match.

For each route the report says whether it matches and, if not, which filter clause
rejected the event; for each target of a matching route it shows the rendered
target and the exact native message that would be published. Connectors are
constructed but never started.
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from connectors.base import Connector, MessageSpec
from connectors.headertext import header_text
from gateway.config import GatewayConfig
from gateway.mesh import LoopGuard
from gateway.plan import (
    Filtered,
    Forward,
    Looped,
    Rejected,
    decode,
    plan_event,
    plan_route,
    source_verifier,
    verify,
)
from routing.cesql import compile_expression
from routing.cesql.ast import Binary, Node, children
from routing.cesql.evaluator import compile_node
from routing.errors import MeshgateError
from routing.event import CloudEvent
from routing.formats import json as json_format
from routing.router import Route, TargetSpec, describe_target
from routing.templates import TemplateValues
from routing.verifiability import SignatureError

__all__ = ["RouteReport", "check_event", "check_message", "format_reports", "parse_message_spec"]

AnyConnector = Connector[Any, Any, Any]


@dataclass
class RouteReport:
    route: str
    matched: bool
    reason: str = ""
    event: CloudEvent | None = None
    outputs: list[tuple[str, str]] = field(default_factory=list)  # (target, message lines)
    needs_source: tuple[str, ...] = ()
    """Placeholders the targets read from the source message, which ``--event`` lacks."""


def _conjuncts(node: Node) -> list[Node]:
    if isinstance(node, Binary) and node.op == "AND":
        return _conjuncts(node.left) + _conjuncts(node.right)
    return [node]


def _start(node: Node) -> int:
    return min([node.pos, *(_start(child) for child in children(node))])


def _balanced(text: str) -> str:
    """``text`` without the parentheses it does not open and close itself (a conjunct
    cut out of ``(a OR b) AND c`` starts inside the group); quotes are respected."""
    opened: list[int] = []
    unmatched: set[int] = set()
    quote = ""
    for i, char in enumerate(text):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "(":
            opened.append(i)
        elif char == ")":
            if opened:
                opened.pop()
            else:
                unmatched.add(i)
    unmatched.update(opened)
    return "".join(c for i, c in enumerate(text) if i not in unmatched).strip()


def _rejection(route: Route, event: CloudEvent) -> str:
    """Which part of the route's filter said no."""
    if route.filter_text is not None:
        expression = compile_expression(route.filter_text)
        parts = _conjuncts(expression.tree)
        starts = [_start(part) for part in parts] + [len(route.filter_text)]
        for i, part in enumerate(parts):
            errors: list[Any] = []
            if compile_node(part).fn(event, errors) is not True or errors:
                text = _balanced(route.filter_text[starts[i] : starts[i + 1]])
                text = _balanced(text[:-3]) if text.upper().endswith("AND") else text
                while (
                    text.startswith("(")
                    and text.endswith(")")
                    and _balanced(text[1:-1]) == (text[1:-1].strip())
                ):
                    text = text[1:-1].strip()  # the clause's own outer parentheses
                detail = f" ({errors[0][1]})" if errors else ""
                return f"filter clause `{text}` is not true{detail}"
        return "filter `filters:` (Subscriptions API) rejected the event"
    return "filter rejected the event"


def _show(value: Any) -> str:
    return header_text(value) if isinstance(value, bytes) else str(value)


def show_native(native: Any) -> list[str]:
    """A binding dataclass as ``field: value`` lines (headers one per line), no reprs."""
    if not dataclasses.is_dataclass(native) or isinstance(native, type):
        return [_show(native)]
    lines: list[str] = []
    for item in dataclasses.fields(native):
        value = getattr(native, item.name)
        if value is None or value == () or value == {}:
            continue
        pairs: Any = value.items() if isinstance(value, Mapping) else None
        if (
            pairs is None
            and isinstance(value, tuple)
            and all(isinstance(p, tuple) and len(p) == 2 for p in value)
        ):
            pairs = value
        if pairs is not None:
            lines.append(f"{item.name}:")
            lines.extend(f"  {_show(k)}: {_show(v)}" for k, v in pairs)
        else:
            lines.append(f"{item.name}: {_show(value)}")
    return lines


def _report(
    connectors: dict[str, AnyConnector], route: Route, plan: Rejected | Filtered | Looped | Forward
) -> RouteReport:
    """What the runtime would do with ``plan`` (``gateway.plan``), as a report."""
    if isinstance(plan, Rejected):
        error = plan.error
        return RouteReport(
            route.name, False, f"{type(error).__name__}: {error}: goes to the dead-letter target"
        )
    if isinstance(plan, Filtered):
        return RouteReport(route.name, False, _rejection(route, plan.event), plan.event)
    if isinstance(plan, Looped):  # what the runtime counts as loop_dropped (docs/mesh.md)
        return RouteReport(route.name, False, f"mesh loop: {plan.why}", plan.event)
    report = RouteReport(route.name, True, "", plan.event)
    for rendered in plan.targets:
        target = rendered.target
        try:
            if rendered.error is not None:
                raise rendered.error
            native = connectors[target.connector].encode(rendered.options, rendered.event)
            lines = "\n".join(show_native(native))
            report.outputs.append((describe_target(rendered.options), lines))
        except MeshgateError as exc:
            report.outputs.append((target.describe(), f"ERROR {type(exc).__name__}: {exc}"))
    return report


def _guard(config: GatewayConfig) -> LoopGuard:
    return LoopGuard(config.gateway.id, config.gateway.max_hops)


def _connectors(config: GatewayConfig) -> dict[str, AnyConnector]:
    return {name: cls(name, options) for name, (cls, options) in config.connectors.items()}


_SOURCE_PLACEHOLDERS = frozenset({"topic", "address", "key", "header"})


def _source_references(targets: list[TargetSpec]) -> tuple[str, ...]:
    found: dict[str, None] = {}
    for target in targets:
        for template in (*target.templates.values(), *target.header_templates.values()):
            for part in template.parts:
                if not isinstance(part, str) and part.name in _SOURCE_PLACEHOLDERS:
                    found["{" + part.text + "}"] = None
    return tuple(found)


def check_event(config: GatewayConfig, event_json: bytes) -> list[RouteReport]:
    """Run a JSON-format CloudEvent through every route (it may come from any source)."""
    event = json_format.decode(event_json)
    connectors = _connectors(config)
    reports = []
    for route in config.table.routes:
        needs = _source_references(list(route.targets))
        if needs:
            matched = route.matches(event)
            reason = "" if matched else _rejection(route, event)
            reports.append(RouteReport(route.name, matched, reason, event, needs_source=needs))
            continue
        separator = connectors[route.source_connector].address_separator
        plan = plan_event(route, event, _guard(config), TemplateValues(separator=separator))
        reports.append(_report(connectors, route, plan))
    return reports


def message_spec(spec: Mapping[str, Any]) -> MessageSpec:
    """The ``--message`` JSON object as the connectors' ``MessageSpec``."""
    if "payload_base64" in spec:
        payload = base64.b64decode(spec["payload_base64"])
    else:
        payload = str(spec.get("payload", "")).encode()
    headers = spec.get("headers") or {}
    if not isinstance(headers, Mapping):
        raise MeshgateError("--message: headers must be a JSON object of name: value")
    known = {"connector", "address", "headers", "key", "payload", "payload_base64"}
    known |= {"content_type", "native_id"}
    key, content_type, native_id = spec.get("key"), spec.get("content_type"), spec.get("native_id")
    return MessageSpec(
        payload=payload,
        address=str(spec.get("address") or ""),
        headers={str(k): str(v) for k, v in headers.items()},
        key=None if key is None else str(key),
        content_type=None if content_type is None else str(content_type),
        native_id=None if native_id is None else str(native_id),
        fields={k: v for k, v in spec.items() if k not in known},
    )


def check_message(config: GatewayConfig, spec: Mapping[str, Any]) -> list[RouteReport]:
    """Run a native message description through the routes whose source receives it."""
    name = spec.get("connector")
    if name not in config.connectors:
        declared = ", ".join(sorted(config.connectors))
        raise MeshgateError(
            f"--message names connector {name!r}, which the config does not declare "
            f"(declared: {declared})"
        )
    cls, options = config.connectors[name]
    delivery = cls.dry_run_delivery(options, message_spec(spec))
    connectors = _connectors(config)
    connector = connectors[name]
    decoded, decode_error = decode(connector, delivery)
    reports: list[RouteReport] = []
    for route in config.table.routes:
        if route.source_connector != name or not cls.source_receives(route.source, delivery):
            continue
        event, error = _verified(route, decoded, decode_error)
        plan = plan_route(
            route, delivery, event, error, connector.address_separator, _guard(config)
        )
        reports.append(_report(connectors, route, plan))
    return reports


def _verified(
    route: Route, event: CloudEvent | None, error: Exception | None
) -> tuple[CloudEvent | None, Exception | None]:
    """The event as a source with ``verify:`` passes it on (as the pipeline does)."""
    verifier, strict = source_verifier(route.source)
    if verifier is None or error is not None:
        return event, error
    try:
        return verify(verifier, event), None
    except SignatureError as exc:
        return (None, exc) if strict else (event, None)


def format_reports(reports: list[RouteReport]) -> Iterator[str]:
    if not reports:
        yield "no route reads this message"
    for report in reports:
        if report.needs_source and report.matched:
            yield (
                f"route {report.route}: the filter matches; its targets need the source message "
                f"({', '.join(report.needs_source)}): check it with --message"
            )
        elif report.matched:
            yield f"route {report.route}: MATCH"
            for target, native in report.outputs:
                yield f"  -> {target}"
                for line in native.splitlines():
                    yield f"     {line}"
        else:
            yield f"route {report.route}: no match: {report.reason}"


def parse_message_spec(text: bytes) -> dict[str, Any]:
    spec = orjson.loads(text)
    if not isinstance(spec, dict):
        raise MeshgateError(
            "--message expects a JSON object: connector, the address (topic, subject, "
            "queue or exchange + routing_key), headers, key, payload or payload_base64"
        )
    return spec
