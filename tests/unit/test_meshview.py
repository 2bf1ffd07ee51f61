"""The mesh view's peer table and rendering (gateway/meshview.py), without a broker."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.config import load_config
from gateway.errors import ConfigError
from gateway.meshview import ANNOUNCE_TYPE, PeerTable, render
from routing.event import CloudEvent


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


def announce(gateway: str, instance: str, sent_at: float, delivered: int) -> CloudEvent:
    body: dict[str, Any] = {
        "gateway": gateway,
        "instance": instance,
        "version": "0.1.0",
        "host": "h",
        "pid": 1,
        "sent_at": sent_at,
        "connectors": {"edge": {"type": "nats", "state": "up"}},
        "routes": [
            {
                "name": "fwd",
                "source": {"broker": "nats nats://n:4222", "address": "in"},
                "targets": [{"broker": "kafka k:9092", "address": "out"}],
                "loop_guard": True,
                "counters": {"delivered": delivered, "loop_dropped": 0},
            }
        ],
    }
    return CloudEvent(
        id=f"{instance}-{sent_at}",
        source=f"meshgate://{gateway}",
        type=ANNOUNCE_TYPE,
        data=json.dumps(body).encode(),
    )


def test_replicas_rates_and_expiry() -> None:
    clock = Clock()
    table = PeerTable(expire_seconds=3.0, clock=clock)
    table.observe(announce("a", "i1", 10.0, 0))
    table.observe(announce("b", "r1", 10.0, 100))
    table.observe(announce("b", "r2", 10.0, 50))
    clock.now += 1
    table.observe(announce("b", "r1", 12.0, 120))  # 10 events/s
    table.observe(announce("b", "r2", 12.0, 60))  # 5 events/s
    assert {g: len(p) for g, p in table.gateways().items()} == {"a": 1, "b": 2}
    text = "\n".join(render(table, 2.0, "edge meshgate.control"))
    assert "2 gateways (3 instances)" in text
    assert "  b: meshgate 0.1.0, 2 replicas sharing work" in text
    assert "  b:fwd: B1 in -> B2 out  delivered 180 (15.0/s), loop_dropped 0" in text
    assert "  B1: nats nats://n:4222" in text and "  B2: kafka k:9092" in text
    clock.now += 2.5  # a silent for 3.5 s, b's replicas for 2.5 s
    assert {g: len(p) for g, p in table.gateways().items()} == {"b": 2}


def test_links_between_routes_of_different_gateways() -> None:
    table = PeerTable(expire_seconds=3.0)
    first = announce("a", "i1", 10.0, 0)
    body = json.loads(first.data or b"")
    body["routes"][0]["targets"] = [{"broker": "nats nats://n:4222", "address": "plant.{...}"}]
    table.observe(first.replace(data=json.dumps(body).encode()))
    second = json.loads(announce("b", "i2", 10.0, 0).data or b"")
    second["routes"][0]["source"]["address"] = "plant.*"
    table.observe(announce("b", "i2", 10.0, 0).replace(data=json.dumps(second).encode()))
    text = "\n".join(render(table, 1.0, "x"))
    assert "links (a route publishes where another reads):" in text
    assert "  a:fwd -> b:fwd  (B1 plant.{...})" in text


def test_other_events_on_the_channel_are_ignored() -> None:
    table = PeerTable(expire_seconds=3.0)
    assert table.observe(CloudEvent(id="1", source="s", type="other")) is None
    unreadable = CloudEvent(id="2", source="s", type=ANNOUNCE_TYPE, data=b"{")
    assert table.observe(unreadable) is None and table.peers == {}
    assert render(table, 1.0, "x")[-1] == "  (no announcements heard)"


def mesh_config(tmp_path: Path, mesh: dict[str, Any]) -> Path:
    body = {
        "gateway": {"id": "g", "mesh": mesh},
        "connectors": {
            "plant": {"type": "mqtt", "url": "mqtt://127.0.0.1:1883"},
            "core": {"type": "kafka", "bootstrap_servers": "127.0.0.1:9092"},
            "mem": {"type": "memory"},
        },
        "routes": [
            {
                "name": "r",
                "from": {"connector": "plant", "topic": "a"},
                "to": [{"connector": "plant", "topic": "b"}],
            }
        ],
    }
    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


@pytest.mark.parametrize(
    ("mesh", "problem"),
    [
        ({"connector": "mem", "topic": "c"}, "declares no mesh_channel hook"),
        ({"connector": "nope", "topic": "c"}, "no connector named .nope. .declared: core, mem"),
        ({"connector": "core", "routing_key": "c"}, "takes topic, not routing_key"),
        ({"connector": "plant", "subject": "c"}, "takes topic, not subject"),
        ({"connector": "plant", "topic": "c/#"}, "a topic without wildcards"),
    ],
)
def test_control_channel_problems(tmp_path: Path, mesh: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        load_config(mesh_config(tmp_path, mesh))


def test_an_mqtt_control_channel(tmp_path: Path) -> None:
    section = load_config(mesh_config(tmp_path, {"connector": "plant", "topic": "c"})).gateway
    assert section.mesh is not None and section.mesh.address == "c"
