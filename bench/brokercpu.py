"""CPU time of the local RabbitMQ node (its beam.smp process), for the bench.

A bridge that runs inside the broker (the shovel, ``bench.peers.shovel``) has no
process of its own: its CPU is the broker's CPU during a run minus what the broker
spends on the raw clients' part of the path (publishing into the source queue,
delivering from the target queue), which the raw AMQP path of the same run measures
(``bench.cli``). The node is the beam.smp started with ``-s rabbit boot`` that listens
on the bench's port; none found, or several: not measured (None).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["process_cpu_seconds", "rabbitmq_pid"]

_TICKS = os.sysconf("SC_CLK_TCK")


def rabbitmq_pid(port: int = 5672) -> int | None:
    """The pid of the RabbitMQ node listening on ``port`` on this machine, else None.

    Other nodes may run beside it (the fault tests start private ones): a node's port
    is its ``RABBITMQ_NODE_PORT`` (5672 when unset), read from its environment."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"beam.smp") and b"rabbit" in argv and b"boot" in argv:
            found.append(int(entry.name))
    if len(found) <= 1:
        return found[0] if found else None
    on_port = [pid for pid in found if _node_port(pid) == port]
    return on_port[0] if len(on_port) == 1 else None


def _node_port(pid: int) -> int | None:
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    for item in environ:
        if item.startswith(b"RABBITMQ_NODE_PORT="):
            return int(item.split(b"=", 1)[1] or 0)
    return 5672


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of process ``pid`` (all threads), None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS
