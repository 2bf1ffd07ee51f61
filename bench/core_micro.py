"""``python -m bench.core_micro``: the pure routing core per event, in process.

What the gateway does to each event besides broker I/O, piece by piece: decode a
binary-mode NATS message (headers -> validated CloudEvent), encode it for Kafka and
for NATS (binary) and as structured JSON, evaluate a CESQL filter, render a target
template, and match the event against the 1,000-route *mixed* table of
``bench.matching``. Each piece runs ``--events`` times per round; the best of
``--rounds`` rounds is reported in µs per call (the minimum is the steadiest figure
on a shared machine). Used to judge compiling the core (docs/decisions).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

from bench.events import make_event
from routing.bindings import Mode, kafka, nats
from routing.cesql import compile_expression
from routing.formats import json as json_format
from routing.templates import TemplateValues, compile_template

__all__ = ["measure"]


def _best(call: Callable[[], Any], events: int, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(events):
            call()
        best = min(best, (time.perf_counter() - started) / events)
    return round(best * 1e6, 3)


def measure(events: int = 20_000, rounds: int = 5) -> dict[str, float]:
    """µs per call of each piece (best of ``rounds``)."""
    from bench.matching import _mixed_filter, _table

    event = make_event(1, 256).replace(subject="eu/line-1", type="com.acme.order.t7")
    nats_message = nats.to_message(event, Mode.BINARY)
    structured = json_format.encode(event)
    expression = compile_expression("type LIKE 'com.acme.%' AND subject <> 'test'")
    template = compile_template("telemetry.{subject}.{address[1]}")
    values = TemplateValues(address="plant.l1.temp", event=event)
    group = _table([_mixed_filter(i) for i in range(1000)])
    pieces: dict[str, Callable[[], Any]] = {
        "decode nats binary": lambda: nats.from_message(nats_message),
        "encode nats binary": lambda: nats.to_message(event, Mode.BINARY),
        "encode kafka binary": lambda: kafka.to_message(event, Mode.BINARY),
        "decode structured json": lambda: json_format.decode(structured),
        "encode structured json": lambda: json_format.encode(event),
        "cesql filter": lambda: expression.matches(event),
        "render template": lambda: template.render(values),
        "match 1,000 routes": lambda: group.match(event),
    }
    return {name: _best(call, events, rounds) for name, call in pieces.items()}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.core_micro", description=__doc__)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print JSON only")
    args = parser.parse_args()
    figures = measure(args.events, args.rounds)
    if args.json:
        print(json.dumps(figures))
        return
    import routing.event

    compiled = routing.event.__file__ is not None and not routing.event.__file__.endswith(".py")
    print(f"routing.event from {routing.event.__file__} ({'compiled' if compiled else 'pure'})")
    for name, us in figures.items():
        print(f"  {name:<24} {us:8.2f} µs")
    print(f"  {'sum':<24} {sum(figures.values()):8.2f} µs")


if __name__ == "__main__":
    main()
