"""Static analysis of a compiled config: warnings about routes, found before anything runs.

- a route that can never match (a CESQL filter that is constant false);
- routes that form a cycle through the brokers (route A publishes where route B
  reads, and B publishes where A reads), guarded by the mesh path rule or not, and
  routes that events come back to through another gateway (the path rule drops
  them): ``gateway.meshcheck``, which also analyses several gateways;
- duplicated routes: same source, filter and targets, so every event would be
  delivered twice.

Addresses and matching come from each connector type's ``topology`` hook
(``connectors.topology``; the built-ins' live in ``connectors/<type>/topology.py``);
a route through a type without one gets a note saying it is left out of the cycle
check. Template placeholders in target addresses are treated as "anything", so a
cycle warning means "can form a cycle", not "will".
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from connectors.topology import ANY, Address, Topology
from gateway.config import GatewayConfig
from routing.cesql import compile_expression
from routing.cesql.lint import lint
from routing.event import CloudEvent
from routing.router import Route, TargetSpec

__all__ = ["Finding", "analyse", "broker_key", "target_address", "topology"]


@dataclass(frozen=True, slots=True)
class Finding:
    route: str
    message: str
    kind: str = "warning"
    """``warning``, or ``note`` for what the analysis could not check."""

    def __str__(self) -> str:
        return f"{self.kind}: route {self.route}: {self.message}"


def topology(config: GatewayConfig, connector: str) -> Topology[Any, Any, Any] | None:
    """The ``Connector.topology`` hook of ``connector``'s type (None: not declared)."""
    return config.connectors[connector][0].topology


def broker_key(config: GatewayConfig, connector: str) -> str | None:
    """One text per broker: connectors with the same type and ``broker_identity`` reach
    the same broker; None for a type without a topology."""
    hook = topology(config, connector)
    if hook is None:
        return None
    options = config.connectors[connector][1]
    return json.dumps([options.type, hook.broker_identity(options)], sort_keys=True, default=str)


def target_address(config: GatewayConfig, target: TargetSpec) -> Address | None:
    """Where ``target`` publishes (``ANY`` for each template placeholder), or None."""
    hook = topology(config, target.connector)
    if hook is None:
        return None

    def field(name: str) -> str:
        template = target.templates.get(name)
        if template is None:
            return str(getattr(target.options, name))
        return "".join(p if isinstance(p, str) else ANY for p in template.parts)

    return hook.target_address(target.options, field)


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
