"""``python -m bench`` still runs end to end and writes every figure it promises.

The benchmark is not a test of speed (docs/performance.md): this only keeps the one
command that measures it working, on the quickest scenario, with two gateway
processes sharing the source (the scale-out path), the backlog phase and the peer
bridges (bench/peers: hand-written always; FastStream where meshgate[bench] is
installed, else reported as skipped; the RabbitMQ shovel skipped: AMQP pairs only; the
Mosquitto bridge skipped: MQTT pairs only). MQTT->MQTT runs too, with its own peers.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.cli import _parse, _per_process
from bench.peers import PEERS
from bench.peers.mosquitto_bridge import why_not as bridge_why_not

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[2]


def quick_bench(tmp_path: Path, *arguments: str) -> tuple[subprocess.CompletedProcess[str], Any]:
    """``python -m bench --quick ARGUMENTS``: its run (asserted successful) and results."""
    output = tmp_path / "results.json"
    run = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", *arguments, "--output", str(output)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    return run, json.loads(output.read_text())


def test_quick_bench_writes_every_figure(tmp_path: Path) -> None:
    run, results = quick_bench(tmp_path, "--scenario", "nats-nats/bin-256", "--processes", "2")
    (row,) = results["scenarios"]
    assert "error" not in row, row.get("error")
    gateway = row["gateway"]
    assert gateway["received"] == gateway["events"] and gateway["duplicates"] == 0
    for figure in ("events_per_s", "ratio_to_slower_raw", "cpu_s_per_10k", "peak_rss_mb"):
        assert gateway[figure] > 0, figure
    assert set(gateway["added_latency_ms"]) == {"p50", "p99", "p999"}
    assert 0 < gateway["machine_busy_cpus"] <= results["machine"]["nproc"] + 0.01
    backlog = gateway["backlog"]
    assert backlog["received"] == backlog["events"] and backlog["events_per_s"] > 0
    assert row["raw"]["nats"]["events_per_s"] > 0
    peers = gateway["peers"]
    assert list(peers)[:3] == ["handwritten", "faststream", "shovel"]
    assert "amqp-amqp" in peers["shovel"]["skipped"]  # the shovel bridges AMQP only
    assert "mqtt-mqtt" in peers["mosquitto-bridge"]["skipped"]  # MQTT only
    hand = peers["handwritten"]
    assert hand["received"] == hand["events"] and hand["duplicates"] == 0
    assert hand["gateway_ratio"] > 0 and hand["gateway_cpu_ratio"] > 0
    # The same paced latency run as the gateway's: the reference for its added latency.
    assert set(hand["added_latency_ms"]) == {"p50", "p99", "p999"}
    fast = peers["faststream"]
    if importlib.util.find_spec("faststream") is None:
        assert "meshgate[bench]" in fast["skipped"]
    else:
        assert fast["received"] == fast["events"] and fast["gateway_ratio"] > 0
    assert "meshgate and the peer bridges, same run:" in run.stdout
    assert "added latency p50/p99/p999 ms, gateway and peer bridges, same run:" in run.stdout


def test_quick_mqtt_to_mqtt_with_the_handwritten_peer_and_the_mosquitto_bridge(
    tmp_path: Path,
) -> None:
    """One MQTT connector is both ends (source and publishing sessions), the
    hand-written peer consumes and publishes MQTT in one process (-in / -out ids), and
    a second Mosquitto bridges the pair (bench.peers.mosquitto_bridge)."""
    _run, results = quick_bench(
        tmp_path,
        "--no-backlog",
        "--scenario",
        "mqtt-mqtt/bin-256",
        "--peers",
        "handwritten,mosquitto-bridge",
    )
    (row,) = results["scenarios"]
    assert "error" not in row, row.get("error")
    gateway = row["gateway"]
    assert gateway["received"] == gateway["events"] and gateway["duplicates"] == 0
    assert gateway["cpu_s_per_10k"] > 0
    assert row["raw"]["mqtt"]["events_per_s"] > 0
    hand = gateway["peers"]["handwritten"]
    assert hand["received"] == hand["events"] and hand["duplicates"] == 0
    assert hand["gateway_cpu_ratio"] > 0
    bridge = gateway["peers"]["mosquitto-bridge"]
    if bridge_why_not("mqtt", ("mqtt",)) is not None:  # no mosquitto binary here
        assert "no mosquitto binary" in bridge["skipped"]
    else:  # make test installs Mosquitto: the bridge must have run
        assert "skipped" not in bridge, bridge["skipped"]
        assert bridge["received"] == bridge["events"]
        # Mosquitto in C may use under one clock tick (10 ms) of CPU in a --quick run.
        ticks = "under one clock tick" in bridge.get("cpu_note", "")
        assert ticks or bridge["gateway_cpu_ratio"] > 0, bridge


def test_processes_share_the_source_as_a_fleet_would() -> None:
    config = {
        "gateway": {"id": "bench-x"},
        "connectors": {
            "mqtt": {"type": "mqtt", "client_id": "mgb-gw-x"},
            "nats-core": {"type": "nats"},
        },
        "routes": [
            {"name": "a", "from": {"connector": "mqtt", "topic": "t"}, "to": []},
            {"name": "b", "from": {"connector": "nats-core", "subject": "s"}, "to": []},
        ],
    }
    assert _per_process(config, 1) == [config]
    first, second = _per_process(config, 2)
    assert (first["gateway"]["id"], second["gateway"]["id"]) == ("bench-x-0", "bench-x-1")
    assert first["connectors"]["mqtt"]["client_id"] != second["connectors"]["mqtt"]["client_id"]
    assert first["routes"][0]["from"]["share_group"] == second["routes"][0]["from"]["share_group"]
    assert first["routes"][1]["from"]["queue_group"] == "mgb"
    assert config["gateway"]["id"] == "bench-x"  # the original is left alone


def test_processes_takes_a_count_or_a_list() -> None:
    assert _parse(["--processes", "2"]).processes == [2]
    assert _parse(["--processes", "1,2,3"]).processes == [1, 2, 3]
    assert _parse([]).processes == [1]
    for bad in ("0", "1,x", ""):
        with pytest.raises(SystemExit):
            _parse(["--processes", bad])


def test_peers_takes_names_all_or_none() -> None:
    assert _parse([]).peers == list(PEERS)
    assert _parse(["--peers", "all"]).peers == list(PEERS)
    assert list(PEERS)[:3] == ["handwritten", "faststream", "shovel"]
    assert _parse(["--peers", "none"]).peers == []
    assert _parse(["--peers", "handwritten"]).peers == ["handwritten"]
    assert _parse(["--peers", "shovel,handwritten"]).peers == ["shovel", "handwritten"]
    with pytest.raises(SystemExit):
        _parse(["--peers", "benthos"])
