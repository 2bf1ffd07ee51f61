"""Mosquitto's bridge as a peer bridge (``python -m bench.peers.mosquitto_bridge spec.yaml``).

MQTT to MQTT only (``mqtt-mqtt``). This module writes a configuration for a second
Mosquitto (the machine's ``mosquitto`` binary) and ``exec``s it, so the process the
bench measures (CPU from /proc/<pid>/stat, as for meshgate and the Python peers) is
the bridging broker itself; the machine's broker's extra work is counted for no one.

The second broker listens on a free loopback port that nobody uses (Mosquitto would
otherwise take 1883), keeps nothing on disk and sends no notifications (they would be
retained messages on the machine's broker). Two bridge connections to the machine's
broker, QoS 1 and ``cleansession false`` (persistent sessions, as meshgate's source),
Mosquitto's defaults otherwise (MQTT 3.1.1 bridge protocol, 20 messages in flight):

- ``topic ev in 1 bridge/ <source prefix>``: the source topic arrives locally as
  ``bridge/ev``;
- ``topic ev out 1 bridge/ <target prefix>``: ``bridge/ev`` leaves for the target topic.

The bridge acks a source message once the local broker holds it in memory, not once
the target broker confirmed it: a crash of the bridging broker loses what it held (a
weaker contract than meshgate's). Over MQTT 3.1.1 the MQTT 5 properties (binary-mode
CloudEvents attributes) are dropped; the bench's consumer reads the payload only.
``cleanup`` removes the bridge's persistent sessions from the machine's broker after
the run (the exec'd broker cannot).
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
from pathlib import Path
from typing import Any

import yaml

__all__ = ["cleanup", "client_ids", "why_not"]

_CANDIDATES = ("mosquitto", "/usr/sbin/mosquitto")


def _binary() -> str | None:
    for candidate in _CANDIDATES:
        found = shutil.which(candidate)
        if found is not None:
            return found
    return None


def why_not(source: str, targets: tuple[str, ...]) -> str | None:
    """None when the Mosquitto bridge can bridge this pair here, else why not."""
    if source != "mqtt" or targets != ("mqtt",):
        return "the Mosquitto bridge only moves MQTT to one MQTT destination (mqtt-mqtt)"
    if _binary() is None:
        return "mosquitto-bridge: no mosquitto binary (apt-get install mosquitto)"
    return None


def client_ids(spec: dict[str, Any]) -> tuple[str, str]:
    """The bridge connections' client ids on the machine's broker (in, out)."""
    return f"{spec['source']['client_id']}-bin", f"{spec['targets'][0]['client_id']}-bout"


def _prefix(topic: str) -> str:
    """``mgb/<token>/`` of an endpoint topic ``mgb/<token>/ev``."""
    head, _, last = topic.rpartition("/")
    if last != "ev" or not head:
        raise ValueError(f"unexpected bench topic {topic!r} (expected .../ev)")
    return f"{head}/"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def config(spec: dict[str, Any]) -> str:
    """The bridging broker's mosquitto.conf for a peer spec."""
    source, (target,) = spec["source"], spec["targets"]
    inbound, outbound = client_ids(spec)
    lines = [
        f"listener {_free_port()} 127.0.0.1",
        "allow_anonymous true",
        "persistence false",
        "log_dest stderr",
        "log_type error",
        "log_type warning",
    ]
    for name, end, client_id, direction in (
        ("mgb-in", source, inbound, "in"),
        ("mgb-out", target, outbound, "out"),
    ):
        lines += [
            f"connection {name}",
            f"address {end['host']}:{end['port']}",
            f"remote_clientid {client_id}",
            "cleansession false",
            "notifications false",
            f"topic ev {direction} 1 bridge/ {_prefix(end['topic'])}",
        ]
    return "\n".join(lines) + "\n"


def cleanup(spec: dict[str, Any]) -> None:
    """Remove the bridge's persistent sessions from the machine's broker."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    end = spec["source"]
    for client_id in client_ids(spec):
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
        try:
            client.connect(end["host"], end["port"], keepalive=10)
            client.loop(timeout=1.0)  # the CONNACK: the clean session replaced the old one
            client.disconnect()
        except OSError as exc:
            print(f"mosquitto-bridge cleanup of {client_id}: {exc}", file=sys.stderr, flush=True)


def main(argv: list[str]) -> int:
    spec_path = Path(argv[1])
    spec = yaml.safe_load(spec_path.read_text())
    binary = _binary()
    if binary is None:
        print("no mosquitto binary", file=sys.stderr, flush=True)
        return 1
    conf = spec_path.with_suffix(".mosquitto.conf")
    conf.write_text(config(spec))
    sys.stdout.flush()
    # The same process (pid) becomes the broker: the bench measures its CPU.
    os.execv(binary, [binary, "-c", str(conf)])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
