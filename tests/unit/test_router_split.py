"""``SourceGroup.split``: the one place routes are matched (the runtime and ``match`` use it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import load_config
from routing.event import CloudEvent

CONFIG = """\
gateway: {id: g}
connectors:
  mem: {type: memory}
routes:
""" + "".join(
    f"""  - name: r{n}
    from: {{connector: mem, topic: in}}
    filter: "type = 't{n % 3}'"
    to: [{{connector: mem, topic: out{n}}}]
"""
    for n in range(6)
)


@pytest.mark.parametrize("kind", ["t0", "t1", "t2", "other"])
def test_split_partitions_in_table_order(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(CONFIG)
    (group,) = load_config(path).table.groups
    event = CloudEvent(id="1", source="s", type=kind)
    matched, rest = group.split(event)
    assert matched == [r for r in group.routes if r.matches(event)] == group.match(event)
    assert rest == [r for r in group.routes if not r.matches(event)]


def test_single_route_group(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(CONFIG.split("  - name: r1")[0])
    (group,) = load_config(path).table.groups
    (route,) = group.routes
    assert group.split(CloudEvent(id="1", source="s", type="t0")) == ([route], [])
    assert group.split(CloudEvent(id="1", source="s", type="x")) == ([], [route])
