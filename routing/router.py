"""The compiled route table: which targets an event goes to.

Routes are grouped by *source* (connector + source options): one consumer reads
each distinct source once, and every route of the group sees each event; the
event is delivered to the union of the matching routes' targets. Matching is
pure: no broker objects here. Target options are opaque to the router (they
are the connector's pydantic ``Target`` models); the router only carries the
compiled templates that the runtime renders per event.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from routing.event import CloudEvent
from routing.ingress import IngressRules
from routing.templates import Template, TemplateValues

__all__ = ["RetryPolicy", "Route", "RouteTable", "SourceGroup", "TargetSpec"]

EventFilter = Callable[[CloudEvent], bool]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often a failing publish is retried before the event is dead-lettered."""

    max_attempts: int = 5
    initial_backoff: float = 0.2
    max_backoff: float = 10.0


def describe_target(options: Any) -> str:
    """``connector{field: value, ...}`` with the non-default fields, for logs and reports."""
    fields = options.model_dump(mode="json", exclude={"connector"}, exclude_defaults=True)
    return f"{options.connector}{fields}"


@dataclass(frozen=True, slots=True)
class TargetSpec:
    """One destination: a connector name, its Target options, and compiled templates."""

    connector: str
    options: Any
    templates: Mapping[str, Template] = field(default_factory=dict)

    def render(self, values: TemplateValues) -> Any:
        """The target options with every template field filled for one event."""
        if not self.templates:
            return self.options
        rendered = {name: template.render(values) for name, template in self.templates.items()}
        return self.options.model_copy(update=rendered)

    def describe(self) -> str:
        return describe_target(self.options)


@dataclass(frozen=True, slots=True)
class Route:
    name: str
    source_connector: str
    source: Any
    targets: tuple[TargetSpec, ...]
    dead_letter: TargetSpec | None = None
    filter: EventFilter | None = None
    filter_text: str | None = None
    ingress: IngressRules | None = None
    retry: RetryPolicy = RetryPolicy()
    max_in_flight: int = 256
    ordered: bool = False
    fingerprint: str = ""
    """Identity for hot reload: equal fingerprints mean the route did not change."""

    def matches(self, event: CloudEvent) -> bool:
        return self.filter is None or self.filter(event)


@dataclass(frozen=True, slots=True)
class SourceGroup:
    """All routes that read the same source; consumed once."""

    connector: str
    source: Any
    routes: tuple[Route, ...]

    @property
    def name(self) -> str:
        return "+".join(route.name for route in self.routes)

    @property
    def max_in_flight(self) -> int:
        return min(route.max_in_flight for route in self.routes)

    @property
    def ordered(self) -> bool:
        return any(route.ordered for route in self.routes)

    def match(self, event: CloudEvent) -> list[Route]:
        return [route for route in self.routes if route.matches(event)]


@dataclass(frozen=True, slots=True)
class RouteTable:
    routes: tuple[Route, ...]
    groups: tuple[SourceGroup, ...]

    @classmethod
    def build(cls, routes: Sequence[Route]) -> RouteTable:
        # Source options may hold lists (unhashable): group by their JSON form.
        grouped: dict[tuple[str, str], list[Route]] = {}
        for route in routes:
            key = (route.source_connector, route.source.model_dump_json())
            grouped.setdefault(key, []).append(route)
        groups = tuple(
            SourceGroup(members[0].source_connector, members[0].source, tuple(members))
            for members in grouped.values()
        )
        return cls(tuple(routes), groups)
