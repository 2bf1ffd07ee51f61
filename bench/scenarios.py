"""The scenarios: which source and targets, payload size, content mode, how many events."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from routing.bindings import Mode

__all__ = ["FAMILIES", "MATCHING", "Scenario", "select"]

MATCHING = "routes-1000"
"""Name of the in-process route-matching scenario."""


@dataclass(frozen=True)
class Scenario:
    family: str
    source: str  # endpoint kind, see bench.endpoints.ENDPOINTS
    targets: tuple[str, ...]
    size: int
    mode: Mode
    latency: bool  # also run the paced latency phase

    @property
    def name(self) -> str:
        return f"{self.family}/{'bin' if self.mode is Mode.BINARY else 'str'}-{self.size}"

    @property
    def kinds(self) -> tuple[str, ...]:
        return (self.source, *self.targets)

    @property
    def slow(self) -> bool:
        """Uses a broker that confirms only a few thousand messages per second."""
        return any(kind in ("amqp", "mqtt") for kind in self.kinds)


# family: (source, targets, full size x mode matrix?)
FAMILIES: dict[str, tuple[str, tuple[str, ...], bool]] = {
    "nats-nats": ("nats", ("nats",), True),
    "nats-kafka": ("nats", ("kafka",), True),
    "kafka-nats": ("kafka", ("nats",), True),
    "kafka-amqp": ("kafka", ("amqp",), True),
    "mqtt-kafka": ("mqtt", ("kafka",), True),
    "amqp-mqtt": ("amqp", ("mqtt",), True),
    "amqp-amqp": ("amqp", ("amqp",), True),
    "mqtt-mqtt": ("mqtt", ("mqtt",), True),
    "core-nats-nats": ("nats-core", ("nats-core",), False),
    "fanout3": ("nats", ("nats", "nats", "kafka"), False),
    # Three JetStream targets: fan-out against nats-nats, like with like (no Kafka end).
    "fanout3-nats": ("nats", ("nats", "nats", "nats"), False),
}


def all_scenarios() -> list[Scenario]:
    scenarios: list[Scenario] = []
    for family, (source, targets, matrix) in FAMILIES.items():
        variants = (
            [(size, mode) for mode in (Mode.BINARY, Mode.STRUCTURED) for size in (256, 4096)]
            if matrix
            else [(256, Mode.BINARY)]
        )
        for size, mode in variants:
            latency = size == 256 and mode is Mode.BINARY
            scenarios.append(Scenario(family, source, targets, size, mode, latency))
    return scenarios


def select(patterns: list[str] | None) -> tuple[list[Scenario], bool]:
    """Scenarios named by ``patterns`` (family, full name or glob); and whether to run
    the matching benchmark. No patterns: everything."""
    scenarios = all_scenarios()
    if not patterns:
        return scenarios, True
    chosen = [
        s
        for s in scenarios
        if any(p == s.family or fnmatch.fnmatchcase(s.name, p) for p in patterns)
    ]
    matching = any(fnmatch.fnmatchcase(MATCHING, p) for p in patterns)
    return chosen, matching
