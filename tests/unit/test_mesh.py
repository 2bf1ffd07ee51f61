"""Mesh provenance and the loop guard (gateway/mesh.py), alone and in gateways on the
in-memory connector."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from connectors.memory import MemoryBroker
from gateway.config import load_config
from gateway.mesh import HOPS, PATH, LoopGuard, hops_of, path_of
from gateway.runtime import Gateway
from routing.bindings import Mode
from routing.bindings import nats as binding
from routing.event import CloudEvent
from tests.polling import eventually


def event(**extensions: Any) -> CloudEvent:
    return CloudEvent(id="e1", source="urn:test", type="t", extensions=extensions)


def test_path_and_hops_read_every_form() -> None:
    assert path_of(event()) == ()
    assert path_of(event(meshpath="a,b")) == ("a", "b")
    assert hops_of(event(meshhops=3), ()) == 3
    assert hops_of(event(meshhops="3"), ()) == 3  # after a binary-mode hop
    assert hops_of(event(meshhops="x"), ("a",)) == 1  # unreadable: the path's length
    assert hops_of(event(meshhops=1), ("a", "b")) == 2  # never less than the path


def test_admit_stamps_then_refuses_its_own_id() -> None:
    g1, g2 = LoopGuard("g1"), LoopGuard("g2")
    first = g1.admit("r", event(traceparent="00-ab-cd-01"))
    assert first is not None
    assert (first.extensions[PATH], first.extensions[HOPS]) == ("g1", 1)
    assert first.extensions["traceparent"] == "00-ab-cd-01"  # the rest is unchanged
    second = g2.admit("r", first)
    assert second is not None
    assert (second.extensions[PATH], second.extensions[HOPS]) == ("g1,g2", 2)
    assert g1.admit("r", second) is None  # back at g1: a loop
    assert g1.admit("r", second, guard=False) is not None  # deliberate re-entry


def test_max_hops_holds_even_without_the_guard() -> None:
    guard = LoopGuard("g9", max_hops=3)
    assert guard.admit("r", event(meshpath="a,b", meshhops=2)) is not None
    assert guard.admit("r", event(meshpath="a,b,c", meshhops=3), guard=False) is None


def test_one_warning_per_route_and_minute(caplog: pytest.LogCaptureFixture) -> None:
    guard = LoopGuard("g1")
    looped = event(meshpath="g1,g2", meshhops=2)  # back from g2
    with caplog.at_level(logging.WARNING, logger="meshgate.mesh"):
        for _ in range(50):
            assert guard.admit("r1", looped) is None
        assert guard.admit("r2", looped) is None
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert lines[0].startswith("route r1: mesh loop: event e1 from urn:test not forwarded")
    assert (
        "its path already holds g1 before another gateway (meshpath=g1,g2, meshhops=2)"
        in (lines[0])
    )
    # A minute later the next warning sums up what was dropped in between.
    guard._warnings._last["r1"] -= 61
    with caplog.at_level(logging.WARNING, logger="meshgate.mesh"):
        guard.admit("r1", looped)
    assert caplog.records[-1].getMessage().endswith("; 49 more dropped since the last warning")


# -- gateways on the in-memory connector ------------------------------------------------


@pytest.fixture(autouse=True)
def _fresh_broker() -> None:
    MemoryBroker.reset()


@pytest.fixture
async def gateways(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    started: list[Gateway] = []

    async def start(gid: str, routes: list[dict[str, Any]], **gateway: Any) -> Gateway:
        body = {
            "gateway": {"id": gid, "state_dir": str(tmp_path / gid), **gateway},
            "connectors": {"mem": {"type": "memory"}},
            "routes": routes,
        }
        path = tmp_path / f"{gid}.yaml"
        path.write_text(yaml.safe_dump(body))
        running = Gateway(load_config(path))
        await running.start()
        started.append(running)
        return running

    yield start
    for running in started:
        await running.stop()


def route(name: str, src: str, dst: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "from": {"connector": "mem", "topic": src},
        "to": [{"connector": "mem", "topic": dst}],
        **extra,
    }


def put(topic: str, ev: CloudEvent) -> None:
    MemoryBroker.get("default").put(topic, binding.to_message(ev, Mode.BINARY))


async def test_max_hops_ends_a_deliberate_reentry_cycle(gateways: Callable[..., Any]) -> None:
    """Two gateways, guard off on both routes, max_hops 4: hops 1..4, then a drop."""
    g1 = await gateways("g1", [route("ab", "a", "b", loop_guard=False)], max_hops=4)
    g2 = await gateways("g2", [route("ba", "b", "a", loop_guard=False)], max_hops=4)
    put("a", event())
    await eventually(lambda: g1.stats["ab"].loop_dropped == 1)
    assert (g1.stats["ab"].delivered, g2.stats["ba"].delivered) == (2, 2)
    assert g2.stats["ba"].loop_dropped == 0


async def test_a_chain_inside_one_gateway_is_not_a_loop(
    gateways: Callable[..., Any],
) -> None:
    """a -> b -> c within one gateway: the path only ends with it, so c gets the event."""
    running = await gateways("g1", [route("ab", "a", "b"), route("bc", "b", "c")])
    put("a", event())
    await eventually(lambda: running.stats["bc"].delivered == 1)
    (arrived,) = MemoryBroker.get("default").drain("c")
    final = binding.from_message(arrived)
    assert final is not None and final.extensions["meshpath"] == "g1,g1"
    assert running.stats["bc"].loop_dropped == 0


async def test_a_loop_inside_one_gateway_ends_at_max_hops(
    gateways: Callable[..., Any],
) -> None:
    """a -> b -> a within one gateway: not a return through the mesh; max_hops ends it."""
    running = await gateways("g1", [route("ab", "a", "b"), route("ba", "b", "a")], max_hops=4)
    put("a", event())
    await eventually(lambda: running.stats["ab"].loop_dropped == 1)
    assert (running.stats["ab"].delivered, running.stats["ba"].delivered) == (2, 2)


async def test_strip_removes_the_attributes_where_events_leave(
    gateways: Callable[..., Any],
) -> None:
    leaving = route("out", "a", "kept")
    leaving["to"].append({"connector": "mem", "topic": "stripped", "mesh": "strip"})
    running = await gateways("g1", [leaving])
    put("a", event(meshpath="g0", meshhops=1))
    await eventually(lambda: running.stats["out"].delivered == 1)
    (kept,) = MemoryBroker.get("default").drain("kept")
    (stripped,) = MemoryBroker.get("default").drain("stripped")
    kept_event, stripped_event = binding.from_message(kept), binding.from_message(stripped)
    assert kept_event is not None and stripped_event is not None
    assert kept_event.extensions == {"meshpath": "g0,g1", "meshhops": "2"}
    assert dict(stripped_event.extensions) == {}


def test_routes_check_shows_the_stamp_and_the_loop(tmp_path: Path) -> None:
    from gateway.dryrun import check_event

    path = tmp_path / "g1.yaml"
    body = {
        "gateway": {"id": "g1"},
        "connectors": {"mem": {"type": "memory"}},
        "routes": [route("ab", "a", "b")],
    }
    path.write_text(yaml.safe_dump(body))
    config = load_config(path)
    fresh = b'{"specversion": "1.0", "id": "e1", "source": "urn:t", "type": "t"}'
    (report,) = check_event(config, fresh)
    assert report.matched and "meshpath" in report.outputs[0][1]
    looped = fresh[:-1] + b', "meshpath": "g1,g0", "meshhops": 2}'
    (report,) = check_event(config, looped)
    assert (report.matched, report.reason) == (
        False,
        "mesh loop: its path already holds g1 before another gateway",
    )
