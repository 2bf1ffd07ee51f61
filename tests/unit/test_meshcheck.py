"""Several gateways' configs analysed together (gateway/meshcheck.py, meshgate validate)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from gateway.config import load_config
from gateway.meshcheck import MeshGraph

ROOT = Path(__file__).resolve().parents[2]
NATS = {"type": "nats", "servers": ["nats://127.0.0.1:4222"]}
MQTT = {"type": "mqtt", "url": "mqtt://127.0.0.1:1883"}
AMQP = {"type": "amqp", "url": "amqp://guest:secret@127.0.0.1:5672/"}
KAFKA = {"type": "kafka", "bootstrap_servers": "127.0.0.1:9092"}


def write(tmp_path: Path, gid: str, connectors: dict[str, object], *routes: object) -> Path:
    path = tmp_path / f"{gid}.yaml"
    body = {"gateway": {"id": gid}, "connectors": connectors, "routes": list(routes)}
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


def route(name: str, source: dict[str, object], target: dict[str, object], **extra: object):
    return {"name": name, "from": source, "to": [target], **extra}


def g1_g2(tmp_path: Path, guard: bool = True) -> list[Path]:
    return [
        write(
            tmp_path,
            "g1",
            {"edge": NATS, "plant": MQTT},
            route(
                "x2y",
                {"connector": "edge", "subject": "x"},
                {"connector": "plant", "topic": "y"},
                loop_guard=guard,
            ),
        ),
        write(
            tmp_path,
            "g2",
            # Other connector names, same brokers: the graph joins them by address.
            {"n": NATS, "m": MQTT},
            route(
                "y2x",
                {"connector": "m", "topic": "y"},
                {"connector": "n", "subject": "x"},
                loop_guard=guard,
            ),
        ),
    ]


def findings(paths: list[Path]) -> list[str]:
    return [str(f) for f in MeshGraph([load_config(p) for p in paths]).findings()]


def test_a_cycle_across_two_gateways_is_guarded(tmp_path: Path) -> None:
    (found,) = findings(g1_g2(tmp_path))
    assert "cycle through the brokers (g1:x2y -> g2:y2x -> g1:x2y); guarded" in found


def test_a_cycle_without_the_guard_is_said_to_be_unguarded(tmp_path: Path) -> None:
    (found,) = findings(g1_g2(tmp_path, guard=False))
    assert "does NOT guard" in found and "max_hops (8)" in found


def test_each_file_alone_sees_no_cycle(tmp_path: Path) -> None:
    for path in g1_g2(tmp_path):
        assert findings([path]) == []


def test_unshared_sources_publishing_to_one_address_duplicate(tmp_path: Path) -> None:
    def reader(gid: str, **source: object) -> Path:
        return write(
            tmp_path,
            gid,
            {"m": MQTT, "k": KAFKA},
            route(
                "fwd", {"connector": "m", "topic": "y", **source}, {"connector": "k", "topic": "k"}
            ),
        )

    (found,) = findings([reader("a"), reader("b")])
    assert found.startswith("warning: route b:fwd: duplicates a:fwd") and "twice" in found
    shared = [reader("c", share_group="fleet"), reader("d", share_group="fleet")]
    assert findings(shared) == []  # $share: the broker splits the messages


def test_validate_several_files_prints_the_broker_graph(tmp_path: Path) -> None:
    paths = g1_g2(tmp_path)
    paths.append(
        write(
            tmp_path,
            "g3",
            {"ops": AMQP},
            route(
                "a2a", {"connector": "ops", "queue": "q"}, {"connector": "ops", "routing_key": "r"}
            ),
        )
    )
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "validate", *map(str, paths)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "mesh: 3 gateways (g1, g2, g3)" in out
    assert "  B1: nats nats://127.0.0.1:4222" in out
    assert "  g1:x2y: B1 x -> B2 y" in out and "  g2:y2x: B2 y -> B1 x" in out
    assert "amqp amqp://guest:***@127.0.0.1:5672/" in out and "secret" not in out
    assert "mesh: warning: route g1:x2y: routes form a cycle" in out


def test_a_return_through_another_gateway_is_unreachable_a_chain_inside_one_is_not(
    tmp_path: Path,
) -> None:
    g1 = write(
        tmp_path,
        "g1",
        {"edge": NATS, "plant": MQTT},
        route("x2y", {"connector": "edge", "subject": "x"}, {"connector": "plant", "topic": "y"}),
        # A chain inside g1 (y is written by x2y): fine, the path only ends with g1.
        route("y2w", {"connector": "plant", "topic": "y"}, {"connector": "edge", "subject": "w"}),
        route("z2v", {"connector": "edge", "subject": "z"}, {"connector": "plant", "topic": "v"}),
    )
    g2 = write(
        tmp_path,
        "g2",
        {"n": NATS, "m": MQTT},
        route("y2z", {"connector": "m", "topic": "y"}, {"connector": "n", "subject": "z"}),
    )
    found = findings([g1, g2])
    assert found == [
        "warning: route g1:z2v: unreachable for events from route g1:x2y through g2:y2z: they "
        "come back carrying gateway g1 in their meshpath, so this route drops them "
        "(loop_dropped); set loop_guard: false on it if the re-entry is deliberate"
    ], found
