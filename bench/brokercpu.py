"""CPU time of the local RabbitMQ node (its beam.smp process), for the bench.

A bridge that runs inside the broker (the shovel, ``bench.peers.shovel``) has no
process of its own: its CPU is the broker's CPU during a run minus what the broker
spends on the raw clients' part of the path (publishing into the source queue,
delivering from the target queue), which the raw AMQP path of the same run measures
(``bench.cli``). The node is found as the one beam.smp started with ``-s rabbit boot``;
none or several: not measured (None).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["process_cpu_seconds", "rabbitmq_pid"]

_TICKS = os.sysconf("SC_CLK_TCK")


def rabbitmq_pid() -> int | None:
    """The pid of the one RabbitMQ node on this machine, else None."""
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
    return found[0] if len(found) == 1 else None


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of process ``pid`` (all threads), None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS
