"""``python -m bench.metrics_inprocess``: what metrics cost per event, without brokers.

The bench's gateway runs (``python -m bench --metrics both``) move with the machine's
load by ±15% from one run to the next, more than the cost being measured. This runs
one in-process gateway on the in-memory connector and alternates rounds with metrics
off and on (durations timed, the event log recording, one ``/metrics`` collection per
round, as a scrape every second would at ~5k events/s), so both halves see the same
machine. It reports the process CPU per event of each, and the difference in µs.
The in-memory path costs far less per event than a broker client, so the relative
figure here is an upper bound of the real gateway's.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from connectors.memory import MemoryBroker
from gateway.config import load_config
from gateway.events import EventLog
from gateway.runtime import Gateway
from gateway.telemetry import Telemetry
from routing.bindings import Mode
from routing.bindings import nats as binding
from routing.event import CloudEvent

CONFIG = """
gateway: {id: cost, drain_timeout_seconds: 5}
connectors:
  mem: {type: memory, namespace: cost}
routes:
  - name: r
    from: {connector: mem, topic: in}
    to: [{connector: mem, topic: out}]
"""


async def _round(gateway: Gateway, broker: MemoryBroker, events: int) -> float:
    """CPU seconds for ``events`` through the gateway."""
    messages = [
        binding.to_message(
            CloudEvent(id=f"e{n}", source="urn:bench", type="com.acme.t", data=b"x" * 256),
            Mode.BINARY,
        )
        for n in range(events)
    ]
    target = gateway.stats["r"].delivered + events
    started = time.process_time()
    for message in messages:
        broker.put("in", message)
    while gateway.stats["r"].delivered < target:  # noqa: ASYNC110 - a counter, no event
        await asyncio.sleep(0.001)
    spent = time.process_time() - started
    broker.drain("out")
    broker.acked.clear()
    return spent


async def measure(rounds: int, events: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cost.yaml"
        path.write_text(CONFIG.replace("seconds: 5", f"seconds: 5, state_dir: '{tmp}'"))
        return await _measure(Gateway(load_config(path)), rounds, events)


async def _measure(gateway: Gateway, rounds: int, events: int) -> dict[str, float]:
    telemetry = Telemetry(gateway, otlp=False)
    log = EventLog()
    broker = MemoryBroker.get("cost")
    await gateway.start()
    cpu: dict[bool, list[float]] = {False: [], True: []}
    try:
        await _round(gateway, broker, events)  # warm-up
        for index in range(rounds * 2):
            metrics = (index % 4) in (1, 2)  # off, on, on, off, ...: drift cancels out
            gateway.timed = metrics
            gateway.recorder = log.record if metrics else None  # as with no client following
            spent = await _round(gateway, broker, events)
            if metrics:
                started = time.process_time()
                telemetry.prometheus_text()
                spent += time.process_time() - started
            cpu[metrics].append(spent / events)
    finally:
        await gateway.stop()
        telemetry.shutdown()
    off = statistics.median(cpu[False]) * 1e6
    on = statistics.median(cpu[True]) * 1e6
    return {"off_us": round(off, 2), "on_us": round(on, 2), "added_us": round(on - off, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.metrics_inprocess")
    parser.add_argument("--rounds", type=int, default=20, help="rounds of each (default 20)")
    parser.add_argument("--events", type=int, default=5000, help="events per round")
    args = parser.parse_args()
    result = asyncio.run(measure(args.rounds, args.events))
    print(
        f"CPU per event, median of {args.rounds} rounds of {args.events}: metrics off "
        f"{result['off_us']} µs, on {result['on_us']} µs, added {result['added_us']} µs "
        f"({result['added_us'] / result['off_us']:+.1%})"
    )


if __name__ == "__main__":
    main()
