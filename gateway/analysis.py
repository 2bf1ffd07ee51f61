"""Static analysis of a compiled config: warnings about routes, found before anything runs.

- a route that can never match (a CESQL filter that is constant false);
- routes that form a cycle through the brokers (route A publishes where route B
  reads, and B publishes where A reads), guarded by the mesh path rule or not, and
  routes that events come back to through another gateway (the path rule drops
  them): ``gateway.meshcheck``, which also analyses several gateways;
- duplicated routes: same source, filter and targets, so every event would be
  delivered twice.

Address matching knows the built-in protocols (Kafka topics and patterns, AMQP
exchanges + binding keys, MQTT and NATS wildcards, memory topics); routes of
other connector types are left out of the cycle check. Template placeholders in
target addresses are treated as "any one level", so a cycle warning means "can
form a cycle", not "will".
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from gateway.config import GatewayConfig
from routing.cesql import compile_expression
from routing.cesql.lint import lint
from routing.event import CloudEvent
from routing.filters import amqp_match, mqtt_match, nats_match
from routing.router import Route, TargetSpec

__all__ = ["Finding", "analyse", "source_matches"]

_ANY = "\x00"  # stands for a template placeholder in a target address
_SEP = "\x1f"  # joins AMQP exchange and routing key into one address
_BROKER_FIELDS = ("url", "servers", "bootstrap_servers", "host", "port", "namespace")


@dataclass(frozen=True, slots=True)
class Finding:
    route: str
    message: str

    def __str__(self) -> str:
        return f"warning: route {self.route}: {self.message}"


def _kafka_sources(source: Any) -> list[Callable[[str], bool]]:
    if source.pattern is not None:
        regex = re.compile(source.pattern)
        return [lambda address: regex.fullmatch(address.replace(_ANY, "x")) is not None]
    return [_exact_or_template(topic) for topic in source.topics or ()]


def _exact_or_template(name: str) -> Callable[[str], bool]:
    def matches(address: str) -> bool:
        regex = ".*".join(re.escape(part) for part in address.split(_ANY))
        return re.fullmatch(regex, name) is not None

    return matches


def _amqp_sources(source: Any) -> list[Callable[[str], bool]]:
    def bound(exchange: str, key: str) -> Callable[[str], bool]:
        def matches(address: str) -> bool:
            target_exchange, _, routing_key = address.partition(_SEP)
            if target_exchange != exchange and _ANY not in target_exchange:
                return False
            return amqp_match(key, routing_key.replace(_ANY, "x")) or _ANY in routing_key

        return matches

    default = _exact_or_template(source.queue)  # the default exchange routes by queue name
    matchers = [lambda address: address.startswith(_SEP) and default(address[1:])]
    return matchers + [bound(b.exchange, b.binding_key) for b in source.bind]


def _mqtt_sources(source: Any) -> list[Callable[[str], bool]]:
    topic = source.topic
    return [lambda address: mqtt_match(topic, address, _ANY)]


def _nats_sources(source: Any) -> list[Callable[[str], bool]]:
    subject = source.subject
    return [lambda address: nats_match(subject, address, _ANY)]


def _memory_sources(source: Any) -> list[Callable[[str], bool]]:
    return [_exact_or_template(source.topic)]


_SOURCES: dict[str, Callable[[Any], list[Callable[[str], bool]]]] = {
    "kafka": _kafka_sources,
    "amqp": _amqp_sources,
    "mqtt": _mqtt_sources,
    "nats": _nats_sources,
    "memory": _memory_sources,
}


def _target_address(kind: str, target: TargetSpec) -> str | None:
    options = target.options

    def field(name: str) -> str:
        template = target.templates.get(name)
        if template is None:
            return str(getattr(options, name))
        return "".join(p if isinstance(p, str) else _ANY for p in template.parts)

    if kind in ("kafka", "mqtt", "memory"):
        return field("topic")
    if kind == "nats":
        return field("subject")
    if kind == "amqp":
        return field("exchange") + _SEP + field("routing_key")
    return None


def _broker(config: GatewayConfig, name: str) -> str:
    """Connectors with the same type and address reach the same broker."""
    _cls, options = config.connectors[name]
    dumped = options.model_dump(include=set(_BROKER_FIELDS))
    return json.dumps([options.type, dumped], sort_keys=True, default=str)


def source_matches(config: GatewayConfig, route: Route, address: str) -> bool:
    """Whether ``route``'s source would receive a message sent to ``address``
    (True for connector types this module does not know)."""
    make = _SOURCES.get(config.connectors[route.source_connector][1].type)
    return make is None or any(match(address) for match in make(route.source))


def _feeds(config: GatewayConfig, route: Route, other: Route) -> bool:
    kind = config.connectors[other.source_connector][1].type
    make = _SOURCES.get(kind)
    if make is None:
        return False
    matchers = make(other.source)
    broker = _broker(config, other.source_connector)
    for target in route.targets:
        if _broker(config, target.connector) != broker:
            continue
        address = _target_address(kind, target)
        if address is not None and any(match(address) for match in matchers):
            return True
    return False


def _never_matches(route: Route) -> Finding | None:
    if route.filter_text is None:
        return None
    expression = compile_expression(route.filter_text)
    if expression.attributes:
        return None
    probe = CloudEvent(id="probe", source="probe", type="probe")
    if expression.matches(probe):
        return None
    return Finding(
        route.name, f"filter {route.filter_text!r} is always false: the route never matches"
    )


def _duplicates(config: GatewayConfig) -> Iterator[Finding]:
    for group in config.table.groups:
        seen: dict[str, str] = {}
        for route in group.routes:
            body = json.loads(route.fingerprint)["route"] if route.fingerprint else {}
            body.pop("name", None)
            key = json.dumps(body, sort_keys=True, default=str)
            if key in seen:
                yield Finding(
                    route.name,
                    f"duplicates route {seen[key]} (same source, filter and targets): every "
                    "event would be delivered twice",
                )
            else:
                seen[key] = route.name


def analyse(config: GatewayConfig, *, mesh: bool = True) -> list[Finding]:
    """Every warning for ``config``; an empty list when nothing looks wrong.

    ``mesh=False`` leaves out the broker-graph findings (cycles, chains), for a caller
    that analyses this config together with others (``gateway.meshcheck``)."""
    findings = [f for route in config.table.routes if (f := _never_matches(route)) is not None]
    findings.extend(
        Finding(route.name, f"filter: {warning}")
        for route in config.table.routes
        if route.filter_text is not None
        for warning in lint(route.filter_text).warnings
    )
    if mesh:
        from gateway.meshcheck import MeshGraph  # it builds on this module's matchers

        findings.extend(MeshGraph([config]).findings())
    findings.extend(_duplicates(config))
    return findings
