"""The compiled route table: which targets an event goes to.

Routes are grouped by *source* (connector + source options): one consumer reads
each distinct source once, and every route of the group sees each event; the
event is delivered to the union of the matching routes' targets. Matching is
pure: no broker objects here. Target options are opaque to the router (they
are the connector's pydantic ``Target`` models); the router only carries the
compiled templates that the runtime renders per event.

Matching does not scan every route: each group indexes its routes by a condition
their CESQL filter cannot hold without (an exact value or a literal prefix of a
context attribute, e.g. ``type = 'x'``, ``type IN (...)``, ``type LIKE 'x.%'``,
found among the filter's top-level AND conjuncts, or as an OR of such conditions
on one attribute). ``SourceGroup.candidates`` looks those up in dicts and returns
the routes that may match plus every route without such a condition; only their
filters run.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeGuard

from routing.egress import EgressRules
from routing.event import CONTEXT_ATTRIBUTES, CloudEvent
from routing.ingress import IngressRules
from routing.templates import Template, TemplateValues
from routing.verifiability import Signer

if TYPE_CHECKING:  # imported where used: CESQL is optional per route
    from routing.cesql.ast import Attribute, Binary, In, Like, Node

__all__ = [
    "Requirement",
    "Requirements",
    "RetryPolicy",
    "Route",
    "RouteIndex",
    "RouteTable",
    "SourceGroup",
    "TargetSpec",
    "requirement",
]

EventFilter = Callable[[CloudEvent], bool]

_RENDER_CACHE_SIZE = 1024
"""Rendered target options kept per target (keyed by the rendered template values)."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often a failing publish is retried before the event is dead-lettered."""

    max_attempts: int = 5
    initial_backoff: float = 0.2
    max_backoff: float = 10.0


def describe_target(options: Any) -> str:
    """``connector field=value ...`` with the non-default fields, for logs and reports.

    Values are plain where that is unambiguous, JSON otherwise (text with spaces,
    quotes or ``=``, booleans, lists and mappings): ``core topic=orders key=o-1``.
    """
    fields = options.model_dump(mode="json", exclude={"connector"}, exclude_defaults=True)
    return " ".join([options.connector, *(f"{k}={_plain(v)}" for k, v in fields.items())])


def _plain(value: Any) -> str:
    if isinstance(value, str) and value and not any(c.isspace() or c in "\"'=" for c in value):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class TargetSpec:
    """One destination: a connector name, its Target options, and compiled templates."""

    connector: str
    options: Any
    templates: Mapping[str, Template] = field(default_factory=dict)
    egress: EgressRules | None = None
    """Attribute changes for this target only (``attributes:`` in the YAML)."""
    header_templates: Mapping[str, Template] = field(default_factory=dict)
    """Templated values of the target's ``headers:`` (native headers to add)."""
    signer: Signer | None = None
    """Signs what this target publishes (``sign:``), after the egress rules."""
    signed_extensions: tuple[str, ...] = ()

    def prepare(self, event: CloudEvent, values: TemplateValues) -> CloudEvent:
        """The event as this target publishes it (egress rules applied, then signed)."""
        if self.egress is not None:
            event = self.egress.apply(event, values)
        if self.signer is not None:
            event = self.signer.sign(event, self.signed_extensions)
        return event

    _rendered: dict[tuple[str, ...], Any] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    """Options already rendered, by template values: no pydantic copy per event."""

    def render(self, values: TemplateValues) -> Any:
        """The target options with every template field filled for one event."""
        if not self.templates and not self.header_templates:
            return self.options
        key = tuple(template.render(values) for template in self.templates.values())
        if self.header_templates:
            key += tuple(template.render(values) for template in self.header_templates.values())
        options = self._rendered.get(key)
        if options is None:
            if len(self._rendered) >= _RENDER_CACHE_SIZE:
                self._rendered.clear()
            fields = len(self.templates)
            update: dict[str, Any] = dict(zip(self.templates, key[:fields], strict=True))
            if self.header_templates:
                rendered = dict(zip(self.header_templates, key[fields:], strict=True))
                update["headers"] = {**self.options.headers, **rendered}
            options = self.options.model_copy(update=update)
            self._rendered[key] = options
        return options

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
    loop_guard: bool = True
    """Drop events whose mesh path (``meshpath``) holds this gateway; False for
    deliberate re-entry. The hop limit holds either way (docs/mesh.md)."""
    fingerprint: str = ""
    """Identity for hot reload: equal fingerprints mean the route did not change."""
    reads_values: bool = field(init=False, repr=False, compare=False)
    """True when a target renders templates or applies egress rules (per event)."""

    def __post_init__(self) -> None:
        reads = any(t.templates or t.egress or t.header_templates for t in self.targets)
        object.__setattr__(self, "reads_values", reads)

    def matches(self, event: CloudEvent) -> bool:
        return self.filter is None or self.filter(event)


@dataclass(frozen=True, slots=True)
class SourceGroup:
    """All routes that read the same source; consumed once."""

    connector: str
    source: Any
    routes: tuple[Route, ...]
    _index: RouteIndex | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def name(self) -> str:
        return "+".join(route.name for route in self.routes)

    @property
    def max_in_flight(self) -> int:
        return min(route.max_in_flight for route in self.routes)

    @property
    def ordered(self) -> bool:
        return any(route.ordered for route in self.routes)

    def candidates(self, event: CloudEvent) -> list[int]:
        """Positions (ascending) of the routes whose filter may hold for ``event``.

        A superset of the matching routes: every route not in it is sure not to match.
        """
        index = self._index
        if index is None:
            index = RouteIndex([_route_requirement(route) for route in self.routes])
            object.__setattr__(self, "_index", index)
        return index.candidates(event)

    def match(self, event: CloudEvent) -> list[Route]:
        """The routes whose filter holds for ``event``, in table order."""
        routes = self.routes
        if len(routes) == 1 or (self._index is not None and not self._index.selective):
            return [route for route in routes if route.matches(event)]
        return [routes[i] for i in self.candidates(event) if routes[i].matches(event)]

    def split(self, event: CloudEvent) -> tuple[Sequence[Route], Sequence[Route]]:
        """(the routes whose filter holds for ``event``, the others), each in table
        order: the one place routes are matched (the runtime counts the others as
        filtered). The route index skips filters that cannot hold."""
        routes = self.routes
        if len(routes) == 1:  # the tuple itself: no copy per event
            return ((), routes) if not routes[0].matches(event) else (routes, ())
        if self._index is not None and not self._index.selective:
            # Every filter runs: one pass sorts them (no positions, no second pass).
            matched: list[Route] = []
            others: list[Route] = []
            for route in routes:
                (matched if route.matches(event) else others).append(route)
            return matched, others
        matched = [routes[i] for i in self.candidates(event) if routes[i].matches(event)]
        if len(matched) == len(routes):
            return matched, []
        taken = {id(route) for route in matched}
        return matched, [route for route in routes if id(route) not in taken]


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


# -- the route index ----------------------------------------------------------------------

# Context attributes are strings whenever set (or unset: then the filter's comparison
# fails and it does not match), so `=`, IN and LIKE on them compare plain strings.
_INDEXABLE = CONTEXT_ATTRIBUTES


@dataclass(frozen=True, slots=True)
class Requirement:
    """One way for a filter to hold: ``attribute`` is set and equal to one of ``exact``
    or starts with one of ``prefixes``."""

    attribute: str
    exact: frozenset[str] = frozenset()
    prefixes: frozenset[str] = frozenset()


Requirements = tuple[Requirement, ...]
"""Alternatives: a filter that holds meets at least one of them."""


def requirement(cesql: str) -> Requirements | None:
    """Conditions the CESQL expression ``cesql`` cannot be true without meeting one of,
    or None when none are found (the filter must run for every event)."""
    from routing.cesql.ast import CesqlError  # local: CESQL is optional per route
    from routing.cesql.parser import parse

    try:
        return _necessary(parse(cesql))
    except (CesqlError, RecursionError):
        return None


def _route_requirement(route: Route) -> Requirements | None:
    # Route.filter is the CESQL filter AND the Subscriptions API filters, so what the
    # CESQL part requires, the whole filter requires.
    if route.filter is None or route.filter_text is None:
        return None
    return requirement(route.filter_text)


def _selectivity(alternatives: Requirements) -> tuple[int, int]:
    # Exact values before prefixes, then the fewest keys.
    prefixes = sum(len(r.prefixes) for r in alternatives)
    return (prefixes > 0, prefixes + sum(len(r.exact) for r in alternatives))


def _necessary(node: Node) -> Requirements | None:
    """Conditions ``node`` cannot be true without meeting one of (None: none known)."""
    from routing.cesql.ast import Binary, In, Like

    if isinstance(node, Binary):
        if node.op == "AND":
            return _necessary_all(node)
        if node.op == "OR":
            return _necessary_any(node)
        if node.op == "=":
            return _necessary_equal(node)
        return None
    if isinstance(node, In):
        return _necessary_in(node)
    if isinstance(node, Like):
        return _necessary_like(node)
    return None


def _indexable(node: Node) -> TypeGuard[Attribute]:
    from routing.cesql.ast import Attribute

    return isinstance(node, Attribute) and node.name in _INDEXABLE


def _necessary_all(node: Binary) -> Requirements | None:
    """AND is true only if every conjunct is: any one's condition will do (the most
    selective)."""
    from routing.cesql.ast import logic_operands

    found = [r for r in map(_necessary, logic_operands(node)) if r is not None]
    return min(found, key=_selectivity, default=None)


def _necessary_any(node: Binary) -> Requirements | None:
    """OR is true only if some disjunct is: one of theirs must hold (all must have one)."""
    from routing.cesql.ast import logic_operands

    alternatives: list[Requirement] = []
    for operand in logic_operands(node):
        needed = _necessary(operand)
        if needed is None:
            return None
        alternatives.extend(needed)
    return tuple(alternatives)


def _necessary_equal(node: Binary) -> Requirements | None:
    """``attribute = 'text'`` (either way round)."""
    from routing.cesql.ast import Literal

    for attribute, literal in ((node.left, node.right), (node.right, node.left)):
        if _indexable(attribute) and isinstance(literal, Literal) and type(literal.value) is str:
            return (Requirement(attribute.name, exact=frozenset({literal.value})),)
    return None


def _necessary_in(node: In) -> Requirements | None:
    """``attribute IN ('a', 'b')`` of string literals only."""
    from routing.cesql.ast import Literal

    values = [item.value for item in node.items if isinstance(item, Literal)]
    if (
        node.negated
        or not _indexable(node.operand)
        or len(values) != len(node.items)
        or not all(type(value) is str for value in values)
    ):
        return None
    return (Requirement(node.operand.name, exact=frozenset(map(str, values))),)


def _necessary_like(node: Like) -> Requirements | None:
    """``attribute LIKE 'text'`` (exact) or ``LIKE 'prefix%'`` (a prefix)."""
    from routing.cesql.ast import Wildcard

    operand, parts = node.operand, node.parts
    if node.negated or not _indexable(operand):
        return None
    if all(isinstance(part, str) for part in parts):
        return (Requirement(operand.name, exact=frozenset({"".join(map(str, parts))})),)
    head = parts[:-1]
    if parts[-1] is Wildcard.ANY and head and all(isinstance(part, str) for part in head):
        return (Requirement(operand.name, prefixes=frozenset({"".join(map(str, head))})),)
    return None


class RouteIndex:
    """Positions of the routes whose requirement an event meets, by dict lookups.

    Routes without a requirement are always candidates. Prefixes are grouped by length
    so one lookup per distinct length finds every prefix of the attribute value.
    """

    __slots__ = ("_always", "_exact", "_prefixes", "selective")

    def __init__(self, requirements: Sequence[Requirements | None]) -> None:
        self._always: list[int] = []
        self._exact: dict[str, dict[str, list[int]]] = {}
        by_length: dict[str, dict[int, dict[str, list[int]]]] = {}
        for position, alternatives in enumerate(requirements):
            if alternatives is None:
                self._always.append(position)
                continue
            for needed in alternatives:
                exact = self._exact.setdefault(needed.attribute, {})
                for value in needed.exact:
                    exact.setdefault(value, []).append(position)
                lengths = by_length.setdefault(needed.attribute, {})
                for prefix in needed.prefixes:
                    lengths.setdefault(len(prefix), {}).setdefault(prefix, []).append(position)
        self._prefixes: dict[str, tuple[tuple[int, dict[str, list[int]]], ...]] = {
            attribute: tuple(sorted(tables.items()))
            for attribute, tables in by_length.items()
            if tables
        }
        self.selective = bool(self._exact or self._prefixes)
        """False when no route could be indexed: every route is always a candidate."""

    def candidates(self, event: CloudEvent) -> list[int]:
        found = list(self._always)
        for attribute, exact in self._exact.items():
            value = getattr(event, attribute)
            if value is not None and (hit := exact.get(value)) is not None:
                found.extend(hit)
        for attribute, tables in self._prefixes.items():
            value = getattr(event, attribute)
            if value is None:
                continue
            size = len(value)
            for length, table in tables:
                if length > size:
                    break
                if (hit := table.get(value[:length])) is not None:
                    found.extend(hit)
        if len(found) != len(self._always):
            found = sorted(set(found))
        return found
