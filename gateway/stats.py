"""Plain in-process counters and duration histograms, updated on the hot path.

The runtime bumps integers and buckets here (a few hundred nanoseconds per event);
``gateway.telemetry`` reads them when metrics are collected. Recording straight into
OpenTelemetry instruments costs ~6 µs per call on the development machine, more than
the whole metrics budget of an event (docs/performance.md), so nothing here imports
OpenTelemetry.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from dataclasses import dataclass, field

__all__ = ["DURATION_BOUNDS", "ConnectorStats", "DurationHistogram", "RouteStats"]

DURATION_BOUNDS: tuple[float, ...] = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
)
"""Bucket upper bounds in seconds: the messaging semantic conventions' advice
(5 ms .. 10 s) with three finer buckets below, where a gateway hop usually lands."""


@dataclass(slots=True)
class DurationHistogram:
    """Explicit-bucket histogram of durations in seconds (cumulative since start).

    ``counts[i]`` counts values ``<= DURATION_BOUNDS[i]`` and above the previous bound
    (the last slot is the overflow), as OpenTelemetry and Prometheus bucket them.
    """

    counts: list[int] = field(default_factory=lambda: [0] * (len(DURATION_BOUNDS) + 1))
    total: float = 0.0
    count: int = 0
    minimum: float = float("inf")
    maximum: float = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(DURATION_BOUNDS, seconds)] += 1
        self.total += seconds
        self.count += 1
        if seconds < self.minimum:
            self.minimum = seconds
        if seconds > self.maximum:
            self.maximum = seconds

    def quantile(self, q: float) -> float | None:
        """Estimate of the ``q`` quantile (linear within its bucket); None when empty."""
        if self.count == 0:
            return None
        rank = q * self.count
        seen = 0
        lower = 0.0
        for index, count in enumerate(self.counts):
            upper = DURATION_BOUNDS[index] if index < len(DURATION_BOUNDS) else self.maximum
            if count and seen + count >= rank:
                share = (rank - seen) / count
                estimate = lower + (upper - lower) * share
                return min(max(estimate, self.minimum), self.maximum)
            seen += count
            lower = upper
        return self.maximum


@dataclass(slots=True)
class ConnectorStats:
    """Publishes through one connector (every route, targets and dead letters)."""

    published: int = 0
    """Publishes the broker confirmed (flushed, for at-most-once protocols)."""
    failed: int = 0
    """Publish attempts that raised (each retry counts)."""
    duration: DurationHistogram = field(default_factory=DurationHistogram)
    """Duration of confirmed publishes, call to confirmation."""
    last_error: str = ""


@dataclass
class RouteStats:
    """Counters per route, read by the demo, the admin API and the metrics
    (``gateway.telemetry`` reads them at collection time: no per-event metric call)."""

    received: int = 0
    delivered: int = 0
    filtered: int = 0
    retries: int = 0
    dead_lettered: int = 0
    undeliverable: int = 0
    """Written to the local dead-letter store (neither delivered nor dead-lettered)."""
    loop_dropped: int = 0
    """Acked without forwarding: looped back through the mesh, or past max_hops."""
    failed: int = 0
    """Ended without an outcome: cancelled after the drain timeout (given back with
    ``nack(requeue=True)``), or a bug (left unacknowledged); the broker redelivers it."""
    in_flight: int = 0
    duration: DurationHistogram = field(default_factory=DurationHistogram)
    """Source receive -> every target confirmed, of delivered events (when timed)."""
    last_error: str = ""
    last_error_at: float = 0.0
    """Wall-clock time (``time.time()``) of ``last_error``."""

    def note_error(self, error: BaseException) -> None:
        self.last_error = f"{type(error).__name__}: {error}"
        self.last_error_at = time.time()
