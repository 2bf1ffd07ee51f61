"""Static analysis warnings: cycles through brokers, never-matching routes, duplicates."""

from __future__ import annotations

from pathlib import Path

from gateway.analysis import analyse
from gateway.config import load_config

HEAD = """\
gateway: {id: g}
connectors:
  mem: {type: memory}
  other: {type: memory, namespace: elsewhere}
routes:
"""


def findings(tmp_path: Path, routes: str) -> list[str]:
    path = tmp_path / "g.yaml"
    path.write_text(HEAD + routes)
    return [str(f) for f in analyse(load_config(path))]


def test_clean_config_has_no_findings(tmp_path: Path) -> None:
    assert (
        findings(
            tmp_path,
            """\
  - name: a
    from: {connector: mem, topic: in}
    to: [{connector: mem, topic: out}]
""",
        )
        == []
    )


def test_two_route_cycle_is_reported_once(tmp_path: Path) -> None:
    found = findings(
        tmp_path,
        """\
  - name: there
    from: {connector: mem, topic: x}
    to: [{connector: mem, topic: y}]
  - name: back
    from: {connector: mem, topic: y}
    to: [{connector: mem, topic: x}]
""",
    )
    assert len(found) == 1
    assert "cycle through the brokers (there -> back -> there)" in found[0]


def test_templated_target_can_feed_its_own_source(tmp_path: Path) -> None:
    found = findings(
        tmp_path,
        """\
  - name: echo
    from: {connector: mem, topic: events.in}
    to: [{connector: mem, topic: "events.{type}"}]
""",
    )
    assert len(found) == 1 and "(echo -> echo)" in found[0]


def test_different_broker_is_not_a_cycle(tmp_path: Path) -> None:
    assert (
        findings(
            tmp_path,
            """\
  - name: there
    from: {connector: mem, topic: x}
    to: [{connector: other, topic: y}]
  - name: back
    from: {connector: mem, topic: y}
    to: [{connector: mem, topic: z}]
""",
        )
        == []
    )


def test_constant_false_filter_and_duplicate_route(tmp_path: Path) -> None:
    found = findings(
        tmp_path,
        """\
  - name: never
    from: {connector: mem, topic: a}
    filter: "1 = 2"
    to: [{connector: mem, topic: b}]
  - name: one
    from: {connector: mem, topic: c}
    to: [{connector: mem, topic: d}]
  - name: two
    from: {connector: mem, topic: c}
    to: [{connector: mem, topic: d}]
""",
    )
    assert found == [
        "warning: route never: filter '1 = 2' is always false: the route never matches",
        "warning: route two: duplicates route one (same source, filter and targets): "
        "every event would be delivered twice",
    ]
