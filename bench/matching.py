"""Route matching cost, in-process and pure: one event against a 1,000-route table.

The table is compiled from a generated config (``memory`` connector, so no broker):
1,000 routes on one source, each with a CESQL filter. Two tables:

``mixed``   what route tables look like: 500 ``type = '...' AND ...``, 300
            ``type LIKE 'prefix.%' AND ...``, 100 ``type IN (...)``, 80
            ``source = '...' AND ...`` and 20 filters nothing can index (an OR
            across attributes, a function call);
``opaque``  1,000 filters nothing can index (the worst case: every filter runs),
            ``UPPER(subject) = '...' AND type <> '...'``.

For each, ``SourceGroup.match`` (what the runtime uses) is timed against a plain
scan of every route's filter, over 10,000 events (10% match nothing), and both
must return the same routes.
"""

from __future__ import annotations

import random
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from gateway.config import load_config
from routing.event import CloudEvent
from routing.router import SourceGroup

__all__ = ["run_matching"]


def _mixed_filter(i: int) -> str:
    if i < 500:
        return f"type = 'com.acme.order.t{i}' AND subject <> 'test'"
    if i < 800:
        return f"type LIKE 'com.acme.p{i}.%' AND subject LIKE 'eu/%'"
    if i < 900:
        return f"type IN ('com.acme.in{i}.a', 'com.acme.in{i}.b') AND EXISTS subject"
    if i < 980:
        return f"source = '/plant/{i}' AND type LIKE 'com.acme.%'"
    if i % 2:
        return f"subject = 'eu/{i}' OR type = 'com.acme.or{i}'"
    return f"UPPER(subject) = 'EU/{i}'"


def _opaque_filter(i: int) -> str:
    return f"UPPER(subject) = 'EU/{i}' AND type <> 'com.acme.x{i}'"


def _table(filters: list[str]) -> SourceGroup:
    config: dict[str, Any] = {
        "gateway": {"id": "bench-matching"},
        "connectors": {"mem": {"type": "memory", "namespace": "bench-matching"}},
        "routes": [
            {
                "name": f"r{i}",
                "from": {"connector": "mem", "topic": "in"},
                "to": [{"connector": "mem", "topic": f"out{i}"}],
                "filter": text,
            }
            for i, text in enumerate(filters)
        ],
    }
    with tempfile.TemporaryDirectory(prefix="meshgate-bench-") as tmp:
        path = Path(tmp) / "routes.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        (group,) = load_config(path).table.groups
    return group


def _events(count: int, seed: int = 7) -> list[CloudEvent]:
    rng = random.Random(seed)
    events = []
    for n in range(count):
        roll = rng.random()
        i = rng.randrange(1000)
        source = "/plant/gw"
        if roll < 0.4:
            kind = f"com.acme.order.t{rng.randrange(500)}"
        elif roll < 0.7:
            kind = f"com.acme.p{rng.randrange(500, 800)}.created"
        elif roll < 0.8:
            kind = f"com.acme.in{rng.randrange(800, 900)}.{rng.choice('ab')}"
        elif roll < 0.9:
            kind, source = "com.acme.reading", f"/plant/{rng.randrange(900, 980)}"
        else:
            kind = f"org.other.t{i}"
        events.append(
            CloudEvent(id=str(n), source=source, type=kind, subject=f"eu/{i}", data=b"{}")
        )
    return events


def _time_per_event(fn: Any, events: list[CloudEvent], rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for event in events:
            fn(event)
        best = min(best, time.perf_counter() - started)
    return best / len(events) * 1e6


def run_matching(quick: bool = False) -> dict[str, Any]:
    """µs/event of ``SourceGroup.match`` and of a full scan, for both tables."""
    events = _events(1_000 if quick else 10_000)
    rounds = 1 if quick else 3
    results: dict[str, Any] = {"routes": 1000, "events": len(events)}
    for label, make in (("mixed", _mixed_filter), ("opaque", _opaque_filter)):
        group = _table([make(i) for i in range(1000)])

        def scan(event: CloudEvent, routes: Any = group.routes) -> list[Any]:
            return [route for route in routes if route.matches(event)]

        matched = 0
        for event in events:
            found = group.match(event)
            if found != scan(event):
                raise AssertionError(f"index and scan disagree for {event.type} {event.source}")
            matched += len(found)
        results[label] = {
            "match_us_per_event": round(_time_per_event(group.match, events, rounds), 2),
            "scan_us_per_event": round(_time_per_event(scan, events, rounds), 2),
            "matches_per_event": round(matched / len(events), 3),
        }
    return results
