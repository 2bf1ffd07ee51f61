"""Static analysis asks each connector type's topology hook (``connectors.topology``):
a plugin that declares one gets cycle warnings like a built-in; one that does not is
named in a note instead of being skipped in silence. The built-ins' matchers live
next to their connectors (``connectors/<type>/topology.py``)."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import ClassVar

import pytest

from connectors.amqp.topology import amqp_match
from connectors.memory import MemoryConnector, MemoryTopology
from connectors.mqtt.topology import mqtt_match
from connectors.nats.topology import nats_match
from connectors.registry import ConnectorRegistry
from connectors.topology import ANY, Topology, may_equal
from gateway.analysis import analyse
from gateway.config import load_config
from gateway.meshcheck import MeshGraph


class Blind(MemoryConnector):
    """A plugin type without the topology hook."""

    topology: ClassVar[Topology | None] = None  # type: ignore[type-arg]


class Seeing(MemoryConnector):
    """A plugin type that declares its topology (borrowed from the memory connector)."""

    topology = MemoryTopology()


LOOP = """\
gateway: {id: g}
connectors:
  p: {type: plugin}
routes:
  - name: there
    from: {connector: p, topic: a}
    to: [{connector: p, topic: b}]
  - name: back
    from: {connector: p, topic: b}
    to: [{connector: p, topic: "{type}"}]
"""


def findings(tmp_path: Path, cls: type[MemoryConnector]) -> list[str]:
    registry = ConnectorRegistry(group="meshgate.test.none")
    registry.register("plugin", cls)
    path = tmp_path / "c.yaml"
    path.write_text(textwrap.dedent(LOOP))
    return [str(f) for f in analyse(load_config(path, registry))]


def test_plugin_with_topology_gets_the_cycle_warning(tmp_path: Path) -> None:
    found = findings(tmp_path, Seeing)
    assert any("a cycle through the brokers (there -> back -> there)" in f for f in found)
    # "{type}" may be "b": the templated target can feed its own route too.
    assert any("(back -> back)" in f for f in found) and len(found) == 2, found


def test_plugin_without_topology_gets_a_note_not_silence(tmp_path: Path) -> None:
    found = findings(tmp_path, Blind)
    assert found == [
        f"note: route {name}: no cycle analysis for connector type 'plugin': it does not "
        "declare broker_identity (the Connector.topology hook, docs/plugins.md), so this "
        "route is left out of the cycle, reachability and duplicate checks"
        for name in ("there", "back")
    ]


def test_graph_text_of_a_type_without_topology(tmp_path: Path) -> None:
    registry = ConnectorRegistry(group="meshgate.test.none")
    registry.register("plugin", Blind)
    path = tmp_path / "c.yaml"
    path.write_text(LOOP)
    graph = MeshGraph([load_config(path, registry)])
    assert graph.describe() == ["brokers:", "routes:", "  there: ? ? -> ", "  back: ? ? -> "]


@pytest.mark.parametrize(
    ("literal", "part", "expected"),
    [("orders", "orders", True), ("orders", f"ord{ANY}", True), ("orders", f"x{ANY}", False)],
)
def test_may_equal(literal: str, part: str, expected: bool) -> None:
    assert may_equal(literal, part) is expected


def test_protocol_wildcards_live_with_their_connectors() -> None:
    assert mqtt_match("plant/+/t/#", "plant/l1/t")
    assert not mqtt_match("#", "$SYS/x")
    assert mqtt_match("plant/+/t", f"plant/{ANY}/t", ANY)
    assert nats_match("orders.>", "orders.eu.1") and not nats_match("orders.>", "orders")
    assert nats_match("orders.*", f"orders.{ANY}", ANY)
    assert amqp_match("plant.#", "plant") and amqp_match("*.t", "a.t")
    assert not amqp_match("*.t", "a.b.t")
