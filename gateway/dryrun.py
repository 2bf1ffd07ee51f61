"""``meshgate routes check``: what the routes would do with one event, without any broker.

Input is either a CloudEvent in the JSON format (``--event``) or a description of a
native message as a source would receive it (``--message``)::

    {"connector": "plant", "address": "plant/l1/telemetry",
     "headers": {"content-type": "application/json"}, "key": "k1",
     "payload": "{\\"temp\\": 21}"}            # or "payload_base64": "..."

For a native message only the routes reading that connector at a matching address
are considered, and each route decodes it (or wraps it with its ingress rules)
exactly as the runtime would. For each route the report says whether it matches
and, if not, which filter clause rejected the event; for each target of a matching
route it shows the rendered target and the exact native message that would be
published. Connectors are constructed but never started.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from connectors.base import Connector, Delivery
from gateway.analysis import source_matches
from gateway.config import GatewayConfig
from gateway.mesh import LoopGuard, hops_of, path_of
from routing.bindings import AmqpMessage, KafkaMessage, MqttMessage, NatsMessage
from routing.cesql import compile_expression
from routing.cesql.ast import Binary, Node, children
from routing.cesql.evaluator import compile_node
from routing.errors import MeshgateError
from routing.event import CloudEvent
from routing.formats import json as json_format
from routing.router import Route, describe_target
from routing.templates import TemplateValues

__all__ = ["RouteReport", "check_event", "check_message", "format_reports"]

AnyConnector = Connector[Any, Any, Any]


@dataclass
class RouteReport:
    route: str
    matched: bool
    reason: str = ""
    event: CloudEvent | None = None
    outputs: list[tuple[str, str]] = field(default_factory=list)  # (target, native message)


async def _noop(*_: Any) -> None:
    return None


def _native(kind: str, connector: AnyConnector, spec: dict[str, Any], payload: bytes) -> Any:
    headers = {str(k): str(v) for k, v in (spec.get("headers") or {}).items()}
    content_type = spec.get("content_type") or headers.get("content-type")
    if kind == "kafka":
        key = spec.get("key")
        return KafkaMessage(
            key=None if key is None else str(key).encode(),
            value=payload,
            headers=tuple((k, v.encode()) for k, v in headers.items()),
        )
    if kind == "amqp":
        return AmqpMessage(body=payload, content_type=content_type, headers=headers)
    if kind == "mqtt":
        protocol = getattr(connector.options, "protocol", 5)
        properties = tuple((k, v) for k, v in headers.items() if k != "content-type")
        return MqttMessage(payload, content_type, properties, protocol)
    if kind in ("nats", "memory"):
        return NatsMessage(payload, headers or None)
    raise MeshgateError(f"routes check cannot build a native {kind!r} message; use --event")


def _conjuncts(node: Node) -> list[Node]:
    if isinstance(node, Binary) and node.op == "AND":
        return _conjuncts(node.left) + _conjuncts(node.right)
    return [node]


def _start(node: Node) -> int:
    return min([node.pos, *(_start(child) for child in children(node))])


def _rejection(route: Route, event: CloudEvent) -> str:
    """Which part of the route's filter said no."""
    if route.filter_text is not None:
        expression = compile_expression(route.filter_text)
        parts = _conjuncts(expression.tree)
        starts = [_start(part) for part in parts] + [len(route.filter_text)]
        for i, part in enumerate(parts):
            errors: list[Any] = []
            if compile_node(part).fn(event, errors) is not True or errors:
                text = route.filter_text[starts[i] : starts[i + 1]].strip()
                text = text[:-3].rstrip() if text.upper().endswith("AND") else text
                detail = f" ({errors[0][1]})" if errors else ""
                return f"filter clause `{text}` is not true{detail}"
        return "filter `filters:` (Subscriptions API) rejected the event"
    return "filter rejected the event"


def _report(
    connectors: dict[str, AnyConnector],
    route: Route,
    event: CloudEvent,
    values: TemplateValues,
    guard: LoopGuard,
) -> RouteReport:
    if not route.matches(event):
        return RouteReport(route.name, False, _rejection(route, event), event)
    path = path_of(event)
    why = guard.refusal(path, hops_of(event, path), guard=route.loop_guard)
    if why is not None:  # what the runtime counts as loop_dropped (docs/mesh.md)
        return RouteReport(route.name, False, f"mesh loop: {why}", event)
    event = guard.admit(route.name, event, guard=route.loop_guard) or event
    report = RouteReport(route.name, True, "", event)
    event_values = TemplateValues(
        values.address, values.separator, values.headers, values.key, event
    )
    for target in route.targets:
        try:
            options = target.render(event_values)
            prepared = target.prepare(event, event_values)
            native = connectors[target.connector].encode(options, prepared)
            report.outputs.append((describe_target(options), repr(native)))
        except MeshgateError as exc:
            report.outputs.append((target.describe(), f"ERROR {type(exc).__name__}: {exc}"))
    return report


def _guard(config: GatewayConfig) -> LoopGuard:
    return LoopGuard(config.gateway.id, config.gateway.max_hops)


def _connectors(config: GatewayConfig) -> dict[str, AnyConnector]:
    return {name: cls(name, options) for name, (cls, options) in config.connectors.items()}


def check_event(config: GatewayConfig, event_json: bytes) -> list[RouteReport]:
    """Run a JSON-format CloudEvent through every route (source matching is skipped)."""
    event = json_format.decode(event_json)
    connectors = _connectors(config)
    reports = []
    for route in config.table.routes:
        separator = connectors[route.source_connector].address_separator
        values = TemplateValues(separator=separator)
        reports.append(_report(connectors, route, event, values, _guard(config)))
    return reports


def check_message(config: GatewayConfig, spec: dict[str, Any]) -> list[RouteReport]:
    """Run a native message description through the routes reading its connector."""
    name, address = spec.get("connector"), spec.get("address", "")
    if name not in config.connectors:
        raise MeshgateError(
            f"--message names connector {name!r}, which the config does not declare"
        )
    if "payload_base64" in spec:
        payload = base64.b64decode(spec["payload_base64"])
    else:
        payload = str(spec.get("payload", "")).encode()
    connectors = _connectors(config)
    connector = connectors[name]
    kind = config.connectors[name][1].type
    native = _native(kind, connector, spec, payload)
    headers = {str(k): str(v) for k, v in (spec.get("headers") or {}).items()}
    delivery = Delivery(
        message=native,
        address=address,
        payload=payload,
        headers=headers,
        ack=_noop,
        nack=_noop,
        native_id=spec.get("native_id"),
        coordinates={"key": spec["key"]} if "key" in spec else {},
        content_type=spec.get("content_type") or headers.get("content-type"),
    )
    values = TemplateValues(address, connector.address_separator, headers, spec.get("key"))
    reports: list[RouteReport] = []
    for route in config.table.routes:
        if route.source_connector != name or not source_matches(config, route, address):
            continue
        try:
            event = connector.decode(delivery)
            if event is None and route.ingress is not None:
                event = route.ingress.wrap(
                    payload,
                    values,
                    native_id=delivery.native_id,
                    content_type=delivery.content_type,
                )
        except MeshgateError as exc:
            reason = f"{type(exc).__name__}: {exc}: goes to the dead-letter target"
            reports.append(RouteReport(route.name, False, reason))
            continue
        if event is None:
            reason = "not a CloudEvent and no ingress rules: goes to the dead-letter target"
            reports.append(RouteReport(route.name, False, reason))
            continue
        reports.append(_report(connectors, route, event, values, _guard(config)))
    return reports


def format_reports(reports: list[RouteReport]) -> Iterator[str]:
    if not reports:
        yield "no route reads this message"
    for report in reports:
        if report.matched:
            yield f"route {report.route}: MATCH"
            for target, native in report.outputs:
                yield f"  -> {target}"
                yield f"     {native}"
        else:
            yield f"route {report.route}: no match: {report.reason}"


def parse_message_spec(text: bytes) -> dict[str, Any]:
    spec = orjson.loads(text)
    if not isinstance(spec, dict):
        raise MeshgateError(
            "--message expects a JSON object with connector, address, headers, payload"
        )
    return spec
