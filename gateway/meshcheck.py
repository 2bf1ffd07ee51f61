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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from connectors.redact import redact_url
from connectors.topology import Address, Matcher, Topology
from gateway.analysis import Finding, broker_key, target_address, topology
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

    def source_topology(self) -> Topology[Any, Any, Any] | None:
        return topology(self.config, self.route.source_connector)

    def source_broker(self) -> str | None:
        return broker_key(self.config, self.route.source_connector)

    def targets(self) -> Iterator[tuple[str, Topology[Any, Any, Any], Address]]:
        """(broker, topology, address) of every target whose type has a topology."""
        for target in self.route.targets:
            hook = topology(self.config, target.connector)
            address = target_address(self.config, target)
            broker = broker_key(self.config, target.connector)
            if hook is not None and address is not None and broker is not None:
                yield broker, hook, address

    def unanalysed(self) -> list[str]:
        """The connector types of this route that declare no topology."""
        names = [self.route.source_connector, *(t.connector for t in self.route.targets)]
        kinds = {self.kind(n): None for n in names if topology(self.config, n) is None}
        return list(kinds)


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
        readers: dict[str, list[tuple[Node, Matcher]]] = {}
        for node in self.nodes:
            hook, broker = node.source_topology(), node.source_broker()
            if hook is not None and broker is not None:
                readers.setdefault(broker, []).append((node, hook.source_reads(node.route.source)))
        edges: dict[Node, list[Node]] = {}
        for node in self.nodes:
            fed: dict[int, Node] = {}
            for broker, _hook, address in node.targets():
                for other, reads in readers.get(broker, ()):
                    if id(other) not in fed and reads(address):
                        fed[id(other)] = other
            edges[node] = [other for other in self.nodes if id(other) in fed]  # table order
        return edges

    def label(self, node: Node) -> str:
        return node.route.name if self.single else f"{node.gateway}:{node.route.name}"

    def source_text(self, node: Node) -> str:
        """The source's address as text (topics, queue, subject or topic filter)."""
        hook = node.source_topology()
        return "?" if hook is None else hook.source_text(node.route.source)

    def target_texts(self, node: Node) -> list[tuple[TargetSpec, str]]:
        """Each target with its address as text (``{...}`` for a template part)."""
        found = []
        for target in node.route.targets:
            hook = topology(node.config, target.connector)
            address = target_address(node.config, target)
            text = "?" if hook is None or address is None else hook.address_text(address)
            found.append((target, text))
        return found

    # -- findings -----------------------------------------------------------------------

    def findings(self) -> list[Finding]:
        return [
            *self._cycles(),
            *self._unreachable(),
            *self._duplicates(),
            *self._unanalysed(),
        ]

    def _unanalysed(self) -> Iterator[Finding]:
        for node in self.nodes:
            for kind in node.unanalysed():
                yield Finding(
                    self.label(node),
                    f"no cycle analysis for connector type {kind!r}: it does not declare "
                    "broker_identity (the Connector.topology hook, docs/plugins.md), so "
                    "this route is left out of the cycle, reachability and duplicate checks",
                    kind="note",
                )

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
                hook, broker = a.source_topology(), a.source_broker()
                if hook is None or broker is None or a.gateway == b.gateway:
                    continue
                if broker != b.source_broker():  # one broker: one type, one topology
                    continue
                kind = a.kind(a.route.source_connector)
                sa, sb = a.route.source, b.route.source
                if not hook.same_messages(sa, sb) or hook.sources_share(sa, sb):
                    continue
                shown = {(br, ad): h.address_text(ad) for br, h, ad in a.targets()}
                common = set(shown) & {(br, ad) for br, _h, ad in b.targets()}
                for key in sorted(common):
                    yield Finding(
                        self.label(b),
                        f"duplicates {self.label(a)}: both gateways read the same {kind} "
                        f"messages without sharing them and publish to {shown[key]}, "
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
            key = node.source_broker()
            source = f"{broker(key) if key else '?'} {self.source_text(node)}"
            targets = ", ".join(
                f"{broker(br)} {h.address_text(ad)}" for br, h, ad in node.targets()
            )
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
