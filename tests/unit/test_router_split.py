"""``SourceGroup.split`` and ``match``: what the runtime matches routes with, against a
plain scan of every filter, with an index that selects and with one that cannot."""

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
    matched, rest = group.split(CloudEvent(id="1", source="s", type="t0"))
    assert (list(matched), list(rest)) == ([route], [])
    matched, rest = group.split(CloudEvent(id="1", source="s", type="x"))
    assert (list(matched), list(rest)) == ([], [route])


@pytest.mark.parametrize("kind", ["t0", "t1", "t2", "other"])
def test_opaque_filters_split_and_match_like_a_scan(tmp_path: Path, kind: str) -> None:
    """No filter can be indexed: every filter runs, in one pass."""
    path = tmp_path / "c.yaml"
    path.write_text(
        CONFIG.replace('filter: "type = ', 'filter: "UPPER(type) = UPPER(').replace(
            "'\"\n", "')\"\n"
        )
    )
    (group,) = load_config(path).table.groups
    assert all("UPPER" in (r.filter_text or "") for r in group.routes)
    event = CloudEvent(id="1", source="s", type=kind)
    for _ in range(2):  # the index is built on the first call, then known not selective
        matched, rest = group.split(event)
        assert matched == [r for r in group.routes if r.matches(event)] == group.match(event)
        assert rest == [r for r in group.routes if not r.matches(event)]
    assert group._index is not None and not group._index.selective
