"""Measuring one path: raw client to raw client, or through a gateway process.

A run has three phases on one set of live connections:

1. warm-up: probe events (seq -1) are published every 100 ms until each target
   consumer has seen one, so subscriptions, consumer groups and the gateway are live;
2. throughput: N pre-encoded events are published with a window of ``window``
   unconfirmed publishes; the rate is N / (last arrival - first publish);
3. latency (optional): events are published at a fixed rate, each stamped with
   its publish time; the target consumer records arrival - stamp.

The gateway's CPU time is read right before and after phase 2.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import deque
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.brokercpu import process_cpu_seconds, rabbitmq_pid
from bench.endpoints import Endpoint
from bench.events import WARMUP, extract, make_event, now_ns
from bench.gateway_proc import GatewayProcess
from routing.bindings import Mode

__all__ = ["PathResult", "Receiver", "measure_path", "percentiles"]

LATENCY_BASE = 10_000_000  # sequence numbers of the latency phase start here
BACKLOG_BASE = 20_000_000  # and those of the backlog phase here


class PathFailed(RuntimeError):
    """The path never came up, or the events did not all arrive."""


@dataclass
class Receiver:
    """What one target consumer saw in the current phase."""

    base: int = 0
    expected: int = 0
    seen: set[int] = field(default_factory=set)
    latencies_ns: list[int] = field(default_factory=list)
    duplicates: int = 0
    unknown: int = 0
    last_arrival: float = 0.0
    warm: asyncio.Event = field(default_factory=asyncio.Event)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def reset(self, base: int, expected: int) -> None:
        self.base, self.expected = base, expected
        self.seen = set()
        self.latencies_ns = []
        self.duplicates = 0
        self.done = asyncio.Event()

    def on_payload(self, payload: bytes) -> None:
        arrived = now_ns()
        found = extract(payload)
        if found is None:
            self.unknown += 1
            return
        seq, stamp = found
        if seq == WARMUP:
            self.warm.set()
            return
        if not self.base <= seq < self.base + self.expected:
            return  # a late redelivery from an earlier phase
        if seq in self.seen:
            self.duplicates += 1
            return
        self.seen.add(seq)
        if stamp:
            self.latencies_ns.append(arrived - stamp)
        self.last_arrival = time.monotonic()
        if len(self.seen) == self.expected:
            self.done.set()


@dataclass
class PathResult:
    events: int
    seconds: float
    rate: float
    received: int
    duplicates: int
    latency_ms: dict[str, float] | None = None
    cpu_seconds: float | None = None
    peak_rss_bytes: int | None = None
    machine_busy: float | None = None
    """Busy CPUs of the whole machine during the run (0..nproc): the gateway, the
    brokers and this load generator share them, so near nproc the machine is the bound."""
    loadgen_cpu_seconds: float | None = None
    """CPU time of this process (raw publisher and consumer) during the run."""
    broker_cpu_seconds: float | None = None
    """CPU time of the RabbitMQ node during the run, on paths through it
    (``bench.brokercpu``): the shovel's cost, and the broker's work for meshgate."""

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "events": self.events,
            "seconds": round(self.seconds, 4),
            "events_per_s": round(self.rate, 1),
            "received": self.received,
            "duplicates": self.duplicates,
        }
        if self.latency_ms is not None:
            out["latency_ms"] = self.latency_ms
        if self.cpu_seconds is not None:
            out["cpu_seconds"] = round(self.cpu_seconds, 3)
            out["cpu_s_per_10k"] = round(self.cpu_seconds / self.events * 10_000, 4)
        if self.peak_rss_bytes is not None:
            out["peak_rss_mb"] = round(self.peak_rss_bytes / 2**20, 1)
        if self.machine_busy is not None:
            out["machine_busy_cpus"] = round(self.machine_busy, 2)
        if self.loadgen_cpu_seconds is not None:
            out["loadgen_cpu_seconds"] = round(self.loadgen_cpu_seconds, 3)
        if self.broker_cpu_seconds is not None:
            out["broker_cpu_seconds"] = round(self.broker_cpu_seconds, 3)
        return out


def _machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs from /proc/stat (idle and iowait are not busy)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    total = sum(fields[:8])  # user nice system idle iowait irq softirq steal
    return total - fields[3] - fields[4], total


def _own_cpu() -> float:
    times = os.times()
    return times.user + times.system


def percentiles(samples_ns: Sequence[int]) -> dict[str, float]:
    """p50 / p99 / p99.9 / max in milliseconds (nearest rank)."""
    if not samples_ns:
        return {}
    ordered = sorted(samples_ns)

    def rank(q: float) -> float:
        index = min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.5) - 1))
        return round(ordered[index] / 1e6, 3)

    return {"p50": rank(0.50), "p99": rank(0.99), "p999": rank(0.999), "max": rank(1.0)}


async def _publish_window(
    endpoint: Endpoint,
    natives: list[Any],
    window: int,
    receivers: list[Receiver],
    max_ahead: int | None,
) -> None:
    pending: deque[Awaitable[Any]] = deque()
    for sent, native in enumerate(natives):
        if len(pending) >= window:
            await pending.popleft()
        if max_ahead is not None:
            while sent - min(len(r.seen) for r in receivers) > max_ahead:  # noqa: ASYNC110
                await asyncio.sleep(0.001)
        pending.append(await endpoint.send(native))
    for confirm in pending:
        await confirm
    await endpoint.flush()


async def _publish_paced(
    endpoint: Endpoint, count: int, size: int, mode: Mode, rate: float, window: int
) -> None:
    pending: deque[asyncio.Future[Any]] = deque()
    start = time.monotonic()
    for i in range(count):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        native = endpoint.encode(make_event(LATENCY_BASE + i, size, now_ns()), mode)
        pending.append(asyncio.ensure_future(await endpoint.send(native)))
        while pending and (pending[0].done() or len(pending) >= window):
            await pending.popleft()
        if i % 64 == 0:
            await endpoint.flush()
    for confirm in pending:
        await confirm
    await endpoint.flush()


async def _wait_all(receivers: list[Receiver], timeout: float) -> bool:  # noqa: ASYNC109
    try:
        async with asyncio.timeout(timeout):
            for receiver in receivers:
                await receiver.done.wait()
    except TimeoutError:
        return False
    return True


async def _warm_up(
    source: Endpoint,
    receivers: list[Receiver],
    size: int,
    mode: Mode,
    gateway: GatewayProcess | None,
    timeout: float = 90.0,  # noqa: ASYNC109 - a budget for the whole warm-up
) -> None:
    deadline = time.monotonic() + timeout
    probe = source.encode(make_event(WARMUP, size), mode)
    while not all(r.warm.is_set() for r in receivers):
        if gateway is not None and not gateway.alive():
            raise PathFailed(f"the gateway exited:\n{gateway.log_tail()}")
        if time.monotonic() > deadline:
            tail = gateway.log_tail() if gateway is not None else ""
            raise PathFailed(f"no probe event arrived within {timeout:.0f} s\n{tail}")
        await (await source.send(probe))
        await source.flush()
        await asyncio.sleep(0.1)
    if gateway is not None and len(gateway.processes) > 1:
        # The first probe proves one process live; give the others time to join (a
        # Kafka group rebalances, for seconds on the mock cluster) with probes flowing.
        settle = time.monotonic() + 8.0
        while time.monotonic() < settle:
            await (await source.send(probe))
            await source.flush()
            await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)  # let the remaining probes pass


async def measure_path(
    source: Endpoint,
    targets: list[Endpoint],
    *,
    events: int,
    size: int,
    mode: Mode,
    window: int,
    latency_events: int = 0,
    latency_rate: float = 1000.0,
    gateway: GatewayProcess | None = None,
    consume_started: bool = False,
    max_ahead: int | None = None,
    backlog: bool = False,
) -> tuple[PathResult, PathResult | None, PathResult | None]:
    """Throughput, latency and backlog drain of source -> [gateway ->] targets; see the
    module doc.

    ``max_ahead`` bounds published minus received events (closed loop): for brokers
    that drop what a slow subscriber cannot take (Mosquitto's max_queued_messages).
    ``backlog`` (gateway paths only): ``events`` more are published while the gateway
    is frozen (SIGSTOP), then it is resumed and timed until all arrived: its rate
    without a publisher competing for the CPU.
    """
    receivers = [Receiver() for _ in targets]
    if not consume_started:
        for endpoint, receiver in zip(targets, receivers, strict=True):
            await endpoint.consume(receiver.on_payload)
    if gateway is not None:
        gateway.start()
    await _warm_up(source, receivers, size, mode, gateway)

    natives = [source.encode(make_event(i, size), mode) for i in range(events)]
    for receiver in receivers:
        receiver.reset(0, events)
    if gateway is not None:
        gateway.start_profiler()
    cpu_before = gateway.cpu_seconds() if gateway is not None else None
    broker = _broker_pid(source, targets)
    broker_before = process_cpu_seconds(broker) if broker is not None else None
    busy_before, total_before = _machine_ticks()
    own_before = _own_cpu()
    started = time.monotonic()
    await _publish_window(source, natives, window, receivers, max_ahead)
    complete = await _wait_all(receivers, timeout=60.0 + events / 500)
    throughput = _arrivals(receivers, events, started, complete)
    cpu_after = gateway.cpu_seconds() if gateway is not None else None
    broker_after = process_cpu_seconds(broker) if broker is not None else None
    own_after = _own_cpu()
    throughput.machine_busy = _busy_cpus(busy_before, total_before)
    if gateway is not None:
        gateway.stop_profiler()
    if cpu_before is not None and cpu_after is not None:
        throughput.cpu_seconds = cpu_after - cpu_before
    throughput.loadgen_cpu_seconds = own_after - own_before
    if broker_before is not None and broker_after is not None:
        throughput.broker_cpu_seconds = broker_after - broker_before
    if not complete:
        tail = gateway.log_tail() if gateway is not None else ""
        raise PathFailed(f"only {throughput.received} of {events} events arrived\n{tail}")

    latency: PathResult | None = None
    if latency_events:
        for receiver in receivers:
            receiver.reset(LATENCY_BASE, latency_events)
        started = time.monotonic()
        await _publish_paced(source, latency_events, size, mode, latency_rate, window)
        complete = await _wait_all(receivers, timeout=60.0)
        samples = [ns for r in receivers for ns in r.latencies_ns]
        received = min(len(r.seen) for r in receivers)
        latency = PathResult(
            events=latency_events,
            seconds=time.monotonic() - started,
            rate=latency_rate,
            received=received,
            duplicates=sum(r.duplicates for r in receivers),
            latency_ms=percentiles(samples),
        )
    drained: PathResult | None = None
    if backlog and gateway is not None:
        drained = await _drain_backlog(source, receivers, gateway, events, size, mode, window)
    if gateway is not None:
        throughput.peak_rss_bytes = gateway.peak_rss_bytes()
    return throughput, latency, drained


def _broker_pid(source: Endpoint, targets: list[Endpoint]) -> int | None:
    """The RabbitMQ node's pid when the path goes through it, else None."""
    amqp = [endpoint for endpoint in (source, *targets) if endpoint.kind == "amqp"]
    if not amqp:
        return None
    return rabbitmq_pid(urlsplit(amqp[0].env.amqp_url).port or 5672)


async def _drain_backlog(
    source: Endpoint,
    receivers: list[Receiver],
    gateway: GatewayProcess,
    events: int,
    size: int,
    mode: Mode,
    window: int,
) -> PathResult:
    natives = [source.encode(make_event(BACKLOG_BASE + i, size), mode) for i in range(events)]
    for receiver in receivers:
        receiver.reset(BACKLOG_BASE, events)
    with gateway.frozen():
        await _publish_window(source, natives, window, receivers, None)
        cpu_before = gateway.cpu_seconds()
        busy_before, total_before = _machine_ticks()
        started = time.monotonic()
    complete = await _wait_all(receivers, timeout=60.0 + events / 500)
    drained = _arrivals(receivers, events, started, complete)
    drained.cpu_seconds = gateway.cpu_seconds() - cpu_before
    drained.machine_busy = _busy_cpus(busy_before, total_before)
    if not complete:
        raise PathFailed(f"backlog: only {drained.received} of {events} events arrived")
    return drained


def _arrivals(receivers: list[Receiver], events: int, started: float, complete: bool) -> PathResult:
    """Rate and counts of one phase that started at ``started`` (monotonic)."""
    ended = max(r.last_arrival for r in receivers) if complete else time.monotonic()
    received = min(len(r.seen) for r in receivers)
    seconds = max(ended - started, 1e-9)
    return PathResult(
        events=events,
        seconds=seconds,
        rate=received / seconds,
        received=received,
        duplicates=sum(r.duplicates for r in receivers),
    )


def _busy_cpus(busy_before: int, total_before: int) -> float | None:
    """Busy CPUs of the machine since the ``_machine_ticks()`` reading given."""
    busy_after, total_after = _machine_ticks()
    if total_after <= total_before:
        return None
    share = (busy_after - busy_before) / (total_after - total_before)
    return share * (os.cpu_count() or 1)
