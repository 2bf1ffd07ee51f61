"""``python -m bench.tracing_inprocess``: what tracing costs per event, without brokers.

One in-process gateway on the in-memory connector; rounds with tracing off and on
alternate (off, on, on, off, ...) so that both halves see the same machine. "On" is a
``gateway.tracing.Tracing`` exporting by OTLP/HTTP to ``bench.otlp_sink`` in its own
process (``--no-export``: spans made and ended, no exporter). The sampler is the
SDK's, from ``OTEL_TRACES_SAMPLER`` / ``OTEL_TRACES_SAMPLER_ARG`` (default: every
event). Reports the process CPU per event (the exporter thread included) and the
difference in µs. Rounds are short enough (``--events``) for the batch processor's
queue (2,048 spans) to keep up; a "Queue full" line from the SDK means spans were
dropped and the figure is too low.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from bench.metrics_inprocess import CONFIG
from connectors.memory import MemoryBroker
from gateway.config import TracingSection, load_config
from gateway.localbrokers import free_port
from gateway.runtime import Gateway
from gateway.tracing import Tracing
from routing.bindings import Mode
from routing.bindings import nats as binding
from routing.event import CloudEvent


async def _round(gateway: Gateway, broker: MemoryBroker, events: int) -> float:
    """CPU seconds for ``events`` through the gateway, the exporter's backlog included."""
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
    if gateway.tracing is not None:
        await asyncio.to_thread(gateway.tracing.provider.force_flush)
    spent = time.process_time() - started
    broker.drain("out")
    broker.acked.clear()
    return spent


async def measure(rounds: int, events: int, endpoint: str | None) -> dict[str, float]:
    """Median CPU µs per event, tracing off and on (exporting to ``endpoint`` if set)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cost.yaml"
        path.write_text(CONFIG.replace("seconds: 5", f"seconds: 5, state_dir: '{tmp}'"))
        gateway = Gateway(load_config(path))
        tracing = Tracing(gateway, [], TracingSection.model_validate({}))
        if endpoint is not None:
            exporter = OTLPSpanExporter(endpoint=endpoint)
            tracing.provider.add_span_processor(BatchSpanProcessor(exporter))
        broker = MemoryBroker.get("cost")
        await gateway.start()
        cpu: dict[bool, list[float]] = {False: [], True: []}
        try:
            await _round(gateway, broker, events)  # warm-up
            for index in range(rounds * 2):
                traced = (index % 4) in (1, 2)  # off, on, on, off, ...: drift cancels out
                gateway.tracing = tracing if traced else None
                cpu[traced].append(await _round(gateway, broker, events) / events)
        finally:
            gateway.tracing = None
            await gateway.stop()
            tracing.shutdown()
    off = statistics.median(cpu[False]) * 1e6
    on = statistics.median(cpu[True]) * 1e6
    return {"off_us_per_event": off, "on_us_per_event": on, "added_us_per_event": on - off}


def _wait_for(url: str) -> None:
    deadline = time.monotonic() + 10
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.tracing_inprocess")
    parser.add_argument("--rounds", type=int, default=10, help="off/on round pairs")
    parser.add_argument("--events", type=int, default=1000, help="events per round")
    parser.add_argument("--no-export", action="store_true", help="spans made, not exported")
    args = parser.parse_args()
    sink: subprocess.Popen[bytes] | None = None
    endpoint = None
    if not args.no_export:
        port = free_port()
        sink = subprocess.Popen([sys.executable, "-m", "bench.otlp_sink", str(port)])
        _wait_for(f"http://127.0.0.1:{port}/")
        endpoint = f"http://127.0.0.1:{port}/v1/traces"
    try:
        result = asyncio.run(measure(args.rounds, args.events, endpoint))
    finally:
        if sink is not None:
            sink.terminate()
            sink.wait()
    print(
        f"off {result['off_us_per_event']:.1f} µs/event, on {result['on_us_per_event']:.1f} "
        f"µs/event: tracing adds {result['added_us_per_event']:.1f} µs per event"
    )


if __name__ == "__main__":
    main()
