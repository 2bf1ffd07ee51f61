"""Static analysis of several gateways together: the broker graph of a mesh.

``meshgate validate a.yaml b.yaml c.yaml`` (and, for one file, ``analyse``) builds one
graph over every route of every config: route A feeds route B when A publishes to an
address B's source reads, on the same broker (connectors with the same type and
address are one broker, whichever file declares them). From it:

- cycles, each said to be guarded by the mesh path rule (some route on it keeps
  ``loop_guard`` on: an event stops at most one turn later) or not (only
  ``gateway.max_hops`` ends it);
- routes unreachable through the mesh: B is fed, through another gateway, by a
  route of its own gateway, so those events carry this gateway in their
  ``meshpath`` before the other gateway and B drops them (a chain of routes inside
  one gateway is fine: the path only ends with it);
- duplicate deliveries: two gateways read one source without sharing it (no common
  consumer group, queue, queue group, durable or MQTT share group) and publish to
  the same address, so every event arrives there twice.

Configs with the same ``gateway.id`` are replicas of one gateway (one path entry).
Matching is the single-config analysis's (``gateway.analysis``): "can", not "will".
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from connectors.redact import redact_url
from gateway.analysis import (
    _ANY,
    _SEP,
    _SOURCES,
    Finding,
    _broker,
    _target_address,
)
from gateway.config import GatewayConfig
from routing.router import Route, TargetSpec

__all__ = ["MeshGraph", "Node"]

_MAX_CYCLE = 8  # routes per cycle searched: bounded, these are warnings, not proofs


@dataclass(frozen=True, eq=False)
class Node:
    """One route of one gateway."""

    config: GatewayConfig
    route: Route

    @property
    def gateway(self) -> str:
        return self.config.gateway.id

    def kind(self, connector: str) -> str:
        return str(self.config.connectors[connector][1].type)

    def source_broker(self) -> str:
        return _broker(self.config, self.route.source_connector)

    def targets(self) -> Iterator[tuple[str, str, str]]:
        """(broker, kind, address) of every target (``_ANY`` marks a template)."""
        for target in self.route.targets:
            kind = self.kind(target.connector)
            address = _target_address(kind, target)
            if address is not None:
                yield _broker(self.config, target.connector), kind, address


def _readable(address: str) -> str:
    exchange, sep, key = address.partition(_SEP)
    text = f"{exchange or '(default)'} {key}" if sep else address
    return text.replace(_ANY, "{...}")


def _shared(a: Any, b: Any, kind: str) -> bool:
    """Whether two sources on one broker split the messages (broker work sharing)."""
    if kind == "kafka":
        return bool(a.group_id == b.group_id)
    if kind == "amqp":
        return bool(a.queue == b.queue)
    if kind == "nats":
        if a.jetstream is not None and b.jetstream is not None:
            return bool(a.jetstream.durable == b.jetstream.durable)
        return a.queue_group is not None and a.queue_group == b.queue_group
    if kind == "mqtt":
        return a.share_group is not None and a.share_group == b.share_group
    return False


def _same_messages(a: Any, b: Any, kind: str) -> bool:
    """Whether two sources read the same messages (by their address text)."""
    if kind == "kafka":
        return bool(set(a.topics or ()) & set(b.topics or ())) or (
            a.pattern is not None and a.pattern == b.pattern
        )
    if kind == "amqp":
        return bool(a.queue == b.queue)
    if kind == "nats":
        return bool(a.subject == b.subject)
    if kind == "mqtt":
        return bool(a.topic == b.topic)
    return False


class MeshGraph:
    """Every route of every config, and which feeds which through the brokers."""

    def __init__(self, configs: Sequence[GatewayConfig]) -> None:
        self.configs = list(configs)
        self.nodes = [Node(c, r) for c in self.configs for r in c.table.routes]
        self.single = len({c.gateway.id for c in self.configs}) == 1

    @functools.cached_property
    def edges(self) -> dict[Node, list[Node]]:
        """Which routes each route feeds, computed only when asked (the mesh view's
        announcements read addresses only). Readers are grouped by broker and their
        matchers built once, so each target is tried only against its broker's readers."""
        readers: dict[str, list[tuple[Node, list[Callable[[str], bool]]]]] = {}
        for node in self.nodes:
            make = _SOURCES.get(node.kind(node.route.source_connector))
            if make is not None:
                readers.setdefault(node.source_broker(), []).append((node, make(node.route.source)))
        edges: dict[Node, list[Node]] = {}
        for node in self.nodes:
            fed: dict[int, Node] = {}
            for broker, _kind, address in node.targets():
                for other, matchers in readers.get(broker, ()):
                    if id(other) not in fed and any(match(address) for match in matchers):
                        fed[id(other)] = other
            edges[node] = [other for other in self.nodes if id(other) in fed]  # table order
        return edges

    def label(self, node: Node) -> str:
        return node.route.name if self.single else f"{node.gateway}:{node.route.name}"

    def source_text(self, node: Node) -> str:
        """The source's address as text (topics, queue, subject or topic filter)."""
        return _source_text(node.kind(node.route.source_connector), node.route.source)

    def target_texts(self, node: Node) -> list[tuple[TargetSpec, str]]:
        """Each target with its address as text (``{...}`` for a template part)."""
        found = []
        for target in node.route.targets:
            address = _target_address(node.kind(target.connector), target)
            found.append((target, "?" if address is None else _readable(address)))
        return found

    # -- findings -----------------------------------------------------------------------

    def findings(self) -> list[Finding]:
        return [*self._cycles(), *self._unreachable(), *self._duplicates()]

    def cycles(self) -> Iterator[list[Node]]:
        """Each simple cycle once (as a list of nodes, the first repeated at the end)."""
        reported: set[frozenset[int]] = set()

        def walk(start: Node, node: Node, path: list[Node]) -> Iterator[list[Node]]:
            for nxt in self.edges[node]:
                if nxt is start:
                    yield [*path, start]
                elif nxt not in path and len(path) < _MAX_CYCLE:
                    yield from walk(start, nxt, [*path, nxt])

        for node in self.nodes:
            for cycle in walk(node, node, [node]):
                key = frozenset(map(id, cycle))
                if key not in reported:
                    reported.add(key)
                    yield cycle

    def _cycles(self) -> Iterator[Finding]:
        for cycle in self.cycles():
            chain = " -> ".join(map(self.label, cycle))
            guarded = [n for n in cycle[:-1] if n.route.loop_guard]
            if guarded:
                text = (
                    f"routes form a cycle through the brokers ({chain}); guarded by the mesh "
                    "path rule: an event is dropped (loop_dropped) at the first route whose "
                    "gateway it already passed, so it goes round at most once"
                )
            else:
                hops = min(n.config.gateway.max_hops for n in cycle)
                text = (
                    f"routes form a cycle through the brokers ({chain}) that the path rule "
                    f"does NOT guard (loop_guard: false on every route of it): only max_hops "
                    f"({hops}) ends it, every event goes round until then"
                )
            yield Finding(self.label(cycle[0]), text)

    def _unreachable(self) -> Iterator[Finding]:
        for node, fed in self.edges.items():
            for middle in fed:
                if middle.gateway == node.gateway:
                    continue  # a chain inside one gateway passes the path rule
                for other in self.edges[middle]:
                    if other.gateway != node.gateway or not other.route.loop_guard:
                        continue
                    if other is node or node in self.edges[other]:
                        continue  # a cycle: reported as one
                    yield Finding(
                        self.label(other),
                        f"unreachable for events from route {self.label(node)} through "
                        f"{self.label(middle)}: they come back carrying gateway "
                        f"{node.gateway} in their meshpath, so this route drops them "
                        "(loop_dropped); set loop_guard: false on it if the re-entry is "
                        "deliberate",
                    )

    def _duplicates(self) -> Iterator[Finding]:
        for i, a in enumerate(self.nodes):
            for b in self.nodes[i + 1 :]:
                if a.gateway == b.gateway or a.source_broker() != b.source_broker():
                    continue
                kind = a.kind(a.route.source_connector)
                if kind != b.kind(b.route.source_connector):
                    continue
                sa, sb = a.route.source, b.route.source
                if not _same_messages(sa, sb, kind) or _shared(sa, sb, kind):
                    continue
                common = {(br, ad) for br, _k, ad in a.targets()} & {
                    (br, ad) for br, _k, ad in b.targets()
                }
                for _broker_key, address in sorted(common):
                    yield Finding(
                        self.label(b),
                        f"duplicates {self.label(a)}: both gateways read the same {kind} "
                        f"messages without sharing them and publish to {_readable(address)}, "
                        "so every event arrives there twice (share the source: consumer "
                        "group, queue, queue group, durable or MQTT share_group)",
                    )

    # -- the graph as text ---------------------------------------------------------------

    def describe(self) -> list[str]:
        """The broker graph: brokers, then each route as broker address -> broker address."""
        names: dict[str, str] = {}

        def broker(key: str) -> str:
            if key not in names:
                names[key] = f"B{len(names) + 1}"
            return names[key]

        lines = []
        for node in self.nodes:
            kind = node.kind(node.route.source_connector)
            source = f"{broker(node.source_broker())} {_source_text(kind, node.route.source)}"
            targets = ", ".join(f"{broker(br)} {_readable(ad)}" for br, _k, ad in node.targets())
            guard = "" if node.route.loop_guard else "  [loop_guard: false]"
            lines.append(f"  {self.label(node)}: {source} -> {targets}{guard}")
        head = ["brokers:"]
        for key, name in names.items():
            kind, fields = json.loads(key)
            where = " ".join(_where(v) for v in fields.values() if v not in (None, "", [], {}))
            head.append(f"  {name}: {kind} {where}".rstrip())
        return [*head, "routes:", *lines]


def _where(value: Any) -> str:
    """A broker address field as text, credentials masked."""
    if isinstance(value, list | tuple):
        return ",".join(redact_url(str(v)) for v in value)
    return redact_url(str(value))


def _source_text(kind: str, source: Any) -> str:
    if kind == "kafka":
        return ",".join(source.topics or ()) or f"/{source.pattern}/"
    if kind == "amqp":
        return f"queue {source.queue}"
    if kind == "nats":
        return str(source.subject)
    if kind in ("mqtt", "memory"):
        return str(source.topic)
    return "?"
