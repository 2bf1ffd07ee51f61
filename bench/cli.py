"""``python -m bench``: run the scenarios, print the table, write ``bench/results.json``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import scenarios as catalogue
from bench.endpoints import ENDPOINTS, Endpoint, Env, Kafka, NatsJetStream
from bench.gateway_proc import ROOT, GatewayProcess
from bench.peers import IN_BROKER, PEERS, available
from bench.runner import PathFailed, PathResult, measure_path
from bench.scenarios import Scenario
from routing.bindings import Mode

__all__ = ["main"]

log = logging.getLogger("bench")

DEFAULT_OUTPUT = ROOT / "bench" / "results.json"


def _token() -> str:
    return uuid.uuid4().hex[:10]


def _machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    try:
        import uvloop  # type: ignore[import-not-found,unused-ignore]  # noqa: F401

        loop = "uvloop"
    except ImportError:
        loop = "asyncio"
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "event_loop": loop,
        "load_average_at_start": os.getloadavg(),
    }


BACKLOG_SOURCES = frozenset({"nats", "amqp"})
"""Sources that keep a backlog for a frozen gateway. Core NATS drops it (slow
consumer), Mosquitto beyond max_queued_messages, the Kafka mock beyond ~5 MB a
partition."""


def _max_ahead(kinds: Sequence[str], size: int) -> int | None:
    """How far the publisher may run ahead of the consumer, for brokers that drop
    what a slow consumer has not taken yet."""
    limits = []
    if "mqtt" in kinds:
        # Mosquitto drops QoS 1 messages beyond max_queued_messages (default 1000)
        # queued for one subscriber.
        limits.append(500)
    if "kafka" in kinds:
        # librdkafka's mock cluster keeps only the last ~5 MB of each partition (4 per
        # topic here): a consumer further behind would miss records.
        limits.append(max(256, 8 * 2**20 // size))
    return min(limits, default=None)


class Bench:
    def __init__(self, args: argparse.Namespace, env: Env, workdir: Path) -> None:
        self.args = args
        self.env = env
        self.raw: dict[tuple[str, int, Mode], dict[str, Any]] = {}
        self.need_latency: set[tuple[str, int, Mode]] = set()
        self.workdir = workdir  # gateway configs and logs, one folder per scenario
        self._sink: SpanSink | None = None

    @property
    def sink(self) -> SpanSink:
        """The OTLP receiver of traced gateways (set with --tracing on/both)."""
        if self._sink is None:
            raise RuntimeError("no span sink: run with --tracing on or both")
        return self._sink

    @sink.setter
    def sink(self, sink: SpanSink) -> None:
        self._sink = sink

    def events_for(self, scenario: Scenario) -> int:
        if self.args.events:
            return int(self.args.events)
        if self.args.quick:
            return 500 if scenario.slow else 2_000
        if scenario.slow:
            return 5_000
        return 20_000 if scenario.size <= 1024 else 10_000

    def latency_events(self) -> int:
        if self.args.latency_events is not None:
            return int(self.args.latency_events)
        return 300 if self.args.quick else 3_000

    async def endpoint(self, kind: str) -> Endpoint:
        endpoint = ENDPOINTS[kind](self.env, _token())
        await endpoint.open()
        return endpoint

    async def raw_path(self, kind: str, scenario: Scenario) -> dict[str, Any]:
        """Raw client -> broker -> raw client on one protocol (cached for the run)."""
        key = (kind, scenario.size, scenario.mode)
        if key in self.raw:
            return self.raw[key]
        events = self.events_for(scenario)
        endpoint = await self.endpoint(kind)
        try:
            throughput, latency, _ = await measure_path(
                endpoint,
                [endpoint],
                events=events,
                size=scenario.size,
                mode=scenario.mode,
                window=self.env.window,
                latency_events=self.latency_events() if key in self.need_latency else 0,
                latency_rate=self.args.rate,
                max_ahead=_max_ahead((kind,), scenario.size),
            )
        finally:
            await endpoint.close()
        result = throughput.as_dict()
        if latency is not None:
            result["latency_ms"] = latency.latency_ms
        self.raw[key] = result
        log.info(
            "raw %-10s %5d B %-10s %9.0f ev/s", kind, scenario.size, scenario.mode, throughput.rate
        )
        return result

    async def gateway_path(
        self,
        scenario: Scenario,
        metrics: bool = False,
        throughput_only: bool = False,
        tracing: bool = False,
        processes: int | None = None,
    ) -> tuple[PathResult, PathResult | None, PathResult | None]:
        source = await self.endpoint(scenario.source)
        targets: list[Endpoint] = []
        gateway: GatewayProcess | None = None
        scraper: asyncio.Task[None] | None = None
        try:
            for kind in scenario.targets:
                targets.append(await self.endpoint(kind))
            gateway_token = _token()
            connectors: dict[str, Any] = {}
            for endpoint in (source, *targets):
                connectors.setdefault(endpoint.kind, endpoint.connector(gateway_token))
            route: dict[str, Any] = {
                "name": scenario.family,
                "from": {"connector": source.kind, **source.source()},
                "to": [
                    {"connector": target.kind, **target.target(scenario.mode)} for target in targets
                ],
            }
            if self.args.max_in_flight is not None:
                route["max_in_flight"] = self.args.max_in_flight
            settings: dict[str, Any] = {"id": f"bench-{gateway_token}", "drain_timeout_seconds": 10}
            if tracing:
                settings["tracing"] = {"enabled": True, "endpoint": self.sink.url}
            config = {
                "gateway": settings,
                "connectors": connectors,
                "routes": [route],
            }
            workdir = self.workdir / scenario.name.replace("/", "_")
            workdir.mkdir(parents=True, exist_ok=True)
            count = self.args.processes[0] if processes is None else processes
            configs = _per_process(config, count)
            if metrics:
                scraper = asyncio.create_task(scrape(_with_admin(configs)))
            gateway = GatewayProcess(configs, workdir, profiler=self.args.profile)
            return await measure_path(
                source,
                targets,
                events=self.events_for(scenario),
                size=scenario.size,
                mode=scenario.mode,
                window=self.env.window,
                latency_events=(
                    self.latency_events() if scenario.latency and not throughput_only else 0
                ),
                latency_rate=self.args.rate,
                gateway=gateway,
                max_ahead=_max_ahead(scenario.kinds, scenario.size),
                backlog=scenario.source in BACKLOG_SOURCES
                and not self.args.no_backlog
                and not throughput_only,
            )
        finally:
            if scraper is not None:
                scraper.cancel()
                await asyncio.gather(scraper, return_exceptions=True)
            if gateway is not None:
                code = gateway.stop()
                if code not in (0, None):
                    log.warning(
                        "gateway of %s exited with %s:\n%s", scenario.name, code, gateway.log_tail()
                    )
            for endpoint in (source, *targets):
                await endpoint.close()

    async def peer_path(
        self, scenario: Scenario, peer: str
    ) -> tuple[PathResult, PathResult | None]:
        """Throughput, and latency where the scenario measures it (the same paced run as
        the gateway's), of a peer bridge (``bench.peers``) in the gateway's place."""
        source = await self.endpoint(scenario.source)
        targets: list[Endpoint] = []
        bridge: GatewayProcess | None = None
        try:
            for kind in scenario.targets:
                targets.append(await self.endpoint(kind))
            run = _token()
            spec = {
                "source": source.peer(run),
                "targets": [target.peer(f"{run}-{n}") for n, target in enumerate(targets)],
                "mode": scenario.mode.value,
            }
            workdir = self.workdir / f"{scenario.name.replace('/', '_')}-{peer}"
            workdir.mkdir(parents=True, exist_ok=True)
            bridge = GatewayProcess([spec], workdir, module=PEERS[peer])
            throughput, latency, _drained = await measure_path(
                source,
                targets,
                events=self.events_for(scenario),
                size=scenario.size,
                mode=scenario.mode,
                window=self.env.window,
                latency_events=self.latency_events() if scenario.latency else 0,
                latency_rate=self.args.rate,
                gateway=bridge,
                max_ahead=_max_ahead(scenario.kinds, scenario.size),
            )
            throughput.peak_rss_bytes = bridge.peak_rss_bytes()
            return throughput, latency
        finally:
            if bridge is not None:
                code = bridge.stop(grace=10.0)
                if code not in (0, None):
                    log.warning("%s bridge of %s exited with %s", peer, scenario.name, code)
                    if peer == "shovel":  # killed before it took its shovel down
                        from bench.peers.shovel import shovel_name, stop

                        stop(shovel_name(spec))
                if peer == "mosquitto-bridge":  # the exec'd broker leaves its sessions
                    from bench.peers.mosquitto_bridge import cleanup

                    cleanup(spec)
            for endpoint in (source, *targets):
                await endpoint.close()

    async def _peers(
        self, scenario: Scenario, gateway: PathResult, raw: dict[str, Any]
    ) -> dict[str, Any]:
        """Each peer bridge on the same pair: its figures and meshgate's ratio to it
        (events/s: gateway / peer; CPU per event: gateway / peer)."""
        peers: dict[str, Any] = {}
        for peer in self.args.peers:
            why_not = available(peer, scenario.source, scenario.targets)
            if why_not is not None:
                peers[peer] = {"skipped": why_not}
                continue
            try:
                result, latency = await self.peer_path(scenario, peer)
            except PathFailed as exc:
                log.error("%s bridge on %s failed: %s", peer, scenario.name, exc)
                peers[peer] = {"error": str(exc)[:2000]}
                continue
            figures = result.as_dict()
            if latency is not None and latency.latency_ms:
                # The gateway's own figures' reference: what any bridge on this pair costs
                # (the source broker's hop included), from the same run.
                figures["latency_ms"] = latency.latency_ms
                figures["added_latency_ms"] = _added(latency.latency_ms, scenario, raw)
            figures["gateway_ratio"] = round(gateway.rate / result.rate, 3) if result.rate else None
            if peer in IN_BROKER:
                _in_broker_cpu(figures, result, gateway, raw.get("amqp", {}))
            elif gateway.cpu_seconds and result.cpu_seconds:
                figures["gateway_cpu_ratio"] = round(gateway.cpu_seconds / result.cpu_seconds, 3)
            elif gateway.cpu_seconds and result.cpu_seconds == 0:  # /proc counts clock ticks
                figures["cpu_note"] = "the peer used under one clock tick of CPU: no CPU ratio"
            peers[peer] = figures
            log.info(
                "%-11s %-26s %9.0f ev/s  gateway x%.2f",
                peer,
                scenario.name,
                result.rate,
                figures["gateway_ratio"] or 0,
            )
        return peers

    async def scenario(self, scenario: Scenario) -> dict[str, Any]:
        raw = {kind: await self.raw_path(kind, scenario) for kind in dict.fromkeys(scenario.kinds)}
        slower = min(raw[kind]["events_per_s"] for kind in raw)
        metrics = self.args.metrics
        tracing = self.args.tracing
        throughput, latency, drained = await self.gateway_path(
            scenario, metrics == "on", tracing=tracing == "on"
        )
        gateway = throughput.as_dict()
        gateway["metrics"] = metrics == "on"
        gateway["tracing"] = tracing == "on"
        if drained is not None:
            gateway["backlog"] = drained.as_dict()
        if metrics == "both":
            gateway["metrics_cost"] = await self._cost(scenario, "metrics")
        if tracing == "both":
            gateway["tracing_cost"] = await self._cost(scenario, "tracing")
        if len(self.args.processes) > 1:
            gateway["scaling"] = await self._scaling(scenario, throughput)
        if self.args.peers:
            gateway["peers"] = await self._peers(scenario, throughput, raw)
        gateway["ratio_to_slower_raw"] = round(throughput.rate / slower, 3) if slower else None
        if latency is not None and latency.latency_ms:
            gateway["latency_ms"] = latency.latency_ms
            gateway["added_latency_ms"] = _added(latency.latency_ms, scenario, raw)
        log.info(
            "gw  %-26s %9.0f ev/s  x%.2f",
            scenario.name,
            throughput.rate,
            gateway["ratio_to_slower_raw"] or 0,
        )
        return {
            "scenario": scenario.name,
            "family": scenario.family,
            "source": scenario.source,
            "targets": list(scenario.targets),
            "payload_bytes": scenario.size,
            "mode": scenario.mode.value,
            "raw": raw,
            "raw_slower_events_per_s": slower,
            "gateway": gateway,
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        }

    async def _scaling(self, scenario: Scenario, first: PathResult) -> dict[str, Any]:
        """Throughput runs with each further ``--processes`` count, side by side with the
        first count's run: events/s, the gateways' CPU and the ratio to the first."""
        counts = self.args.processes
        runs = {counts[0]: first}
        for count in counts[1:]:
            result, _latency, _drained = await self.gateway_path(
                scenario, throughput_only=True, processes=count
            )
            runs[count] = result
        base = first.rate
        table = {
            str(count): {
                "events_per_s": round(result.rate, 1),
                "ratio": round(result.rate / base, 3) if base else None,
                "gateway_cpu_seconds": round(result.cpu_seconds or 0.0, 3),
                "cpu_s_per_10k": round((result.cpu_seconds or 0.0) / result.events * 10_000, 4),
                "machine_busy_cpus": (
                    round(result.machine_busy, 2) if result.machine_busy is not None else None
                ),
                "duplicates": result.duplicates,
            }
            for count, result in runs.items()
        }
        log.info("gw  %-26s scaling: %s", scenario.name, table)
        return {"processes": table, "cpus": os.cpu_count()}

    async def _cost(self, scenario: Scenario, feature: str) -> dict[str, Any]:
        """``--pairs`` pairs of throughput runs, ``feature`` (metrics or tracing) off and
        on, the order alternating (off-on, on-off, ...) so that a drifting machine favours
        neither: the gateway's CPU per event with and without it. With tracing, the spans
        the sink received during the "on" run are counted too (2 per event expected: a
        process and a send span; fewer means the batch processor dropped some)."""
        pairs: list[dict[str, float]] = []
        for index in range(self.args.pairs):
            order = (False, True) if index % 2 == 0 else (True, False)
            cpu: dict[bool, float] = {}
            rate: dict[bool, float] = {}
            spans = 0
            for enabled in order:
                before = self.sink.count() if enabled and feature == "tracing" else 0
                result, _latency, _drained = await self.gateway_path(
                    scenario,
                    metrics=enabled and feature == "metrics",
                    throughput_only=True,
                    tracing=enabled and feature == "tracing",
                )
                if enabled and feature == "tracing":
                    spans = self.sink.count() - before
                cpu[enabled] = (result.cpu_seconds or 0.0) / result.events * 10_000
                rate[enabled] = result.rate
            pair = {
                "cpu_s_per_10k_off": round(cpu[False], 4),
                "cpu_s_per_10k_on": round(cpu[True], 4),
                "events_per_s_off": round(rate[False]),
                "events_per_s_on": round(rate[True]),
                "overhead": round(cpu[True] / cpu[False] - 1, 4) if cpu[False] else 0.0,
            }
            if feature == "tracing":
                pair["spans_exported"] = spans
            pairs.append(pair)
        overheads = [p["overhead"] for p in pairs]
        off = sum(p["cpu_s_per_10k_off"] for p in pairs)
        on = sum(p["cpu_s_per_10k_on"] for p in pairs)
        summary = {
            "pairs": pairs,
            "median_overhead": round(statistics.median(overheads), 4) if overheads else None,
            "pooled_overhead": round(on / off - 1, 4) if off else None,
        }
        log.info("gw  %-26s %s cost: %s", scenario.name, feature, summary)
        return summary

    async def run(self, chosen: list[Scenario]) -> list[dict[str, Any]]:
        for scenario in chosen:
            if scenario.latency:
                for kind in scenario.kinds:
                    self.need_latency.add((kind, scenario.size, scenario.mode))
        results = []
        for scenario in chosen:
            for attempt in (1, 2):
                try:
                    results.append(await self.scenario(scenario))
                    break
                except PathFailed as exc:
                    log.error("%s failed (attempt %d): %s", scenario.name, attempt, exc)
                    if attempt == 2:
                        results.append({"scenario": scenario.name, "error": str(exc)[:2000]})
        return results


def _added(
    latency_ms: dict[str, float], scenario: Scenario, raw: dict[str, Any]
) -> dict[str, float]:
    """A bridged path's latency minus the direct path's on the first target's protocol,
    percentile by percentile (docs/performance.md, "How it is measured")."""
    direct = raw[scenario.targets[0]].get("latency_ms") or {}
    return {q: round(latency_ms[q] - direct[q], 3) for q in ("p50", "p99", "p999") if q in direct}


def _fmt_rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _fmt_lat(values: dict[str, float] | None) -> str:
    if not values:
        return "-"
    return "/".join(f"{values[q]:.2f}" for q in ("p50", "p99", "p999") if q in values)


def render_table(results: list[dict[str, Any]], matching: dict[str, Any] | None) -> str:
    header = (
        f"{'scenario':<24} {'events':>6} {'raw src ev/s':>12} {'raw tgt ev/s':>12} "
        f"{'gw ev/s':>9} {'gw/raw':>6} {'gw e2e p50/p99/p999 ms':>23} "
        f"{'added p50/p99/p999 ms':>22} {'cpu s/10k':>9} {'RSS MB':>6} {'busy':>5} "
        f"{'drain ev/s':>10}"
    )
    lines = [header, "-" * len(header)]
    for row in results:
        if "error" in row:
            lines.append(f"{row['scenario']:<24} FAILED: {row['error'].splitlines()[0][:100]}")
            continue
        gw = row["gateway"]
        raw_src = row["raw"][row["source"]]["events_per_s"]
        raw_tgt = min(row["raw"][k]["events_per_s"] for k in row["targets"])
        lines.append(
            f"{row['scenario']:<24} {gw['events']:>6} {_fmt_rate(raw_src):>12} "
            f"{_fmt_rate(raw_tgt):>12} {_fmt_rate(gw['events_per_s']):>9} "
            f"{gw['ratio_to_slower_raw']:>6.2f} {_fmt_lat(gw.get('latency_ms')):>23} "
            f"{_fmt_lat(gw.get('added_latency_ms')):>22} {gw.get('cpu_s_per_10k', 0):>9.3f} "
            f"{gw.get('peak_rss_mb', 0):>6.1f} {gw.get('machine_busy_cpus', 0):>5.2f} "
            f"{_fmt_rate(gw['backlog']['events_per_s']) if 'backlog' in gw else '-':>10}"
        )
    lines.extend(_peer_table(results))
    for feature in ("metrics", "tracing"):
        costs = [row for row in results if f"{feature}_cost" in row.get("gateway", {})]
        if not costs:
            continue
        lines.append("")
        lines.append(
            f"gateway CPU s/10k with {feature} off / on (pairs of runs, order alternating):"
        )
        for row in costs:
            cost = row["gateway"][f"{feature}_cost"]
            figures = "  ".join(
                f"{p['cpu_s_per_10k_off']:.3f}/{p['cpu_s_per_10k_on']:.3f}" for p in cost["pairs"]
            )
            lines.append(
                f"  {row['scenario']:<24} {figures}   median {cost['median_overhead']:+.1%}, "
                f"pooled {cost['pooled_overhead']:+.1%}"
            )
    if matching:
        lines.append("")
        lines.append(
            f"route matching, {matching['routes']} routes with CESQL filters on one source "
            f"({matching['events']} events):"
        )
        for table in ("mixed", "opaque"):
            m = matching[table]
            lines.append(
                f"  {table:<7} SourceGroup.match {m['match_us_per_event']:>8.2f} µs/event   "
                f"full scan {m['scan_us_per_event']:>8.2f} µs/event   "
                f"({m['matches_per_event']} matches/event)"
            )
    return "\n".join(lines)


def _in_broker_cpu(
    figures: dict[str, Any], peer: PathResult, gateway: PathResult, raw: dict[str, Any]
) -> None:
    """CPU of a peer running inside the RabbitMQ node (``bench.peers.IN_BROKER``), and
    meshgate's CPU ratio to it, both net of the raw clients' share of the node.

    peer: node CPU during its run - node CPU per event of the raw AMQP path (publish
    into a queue, consume from a queue: the raw clients' part of every bridged path) x
    events, + its own (idle) set-up process. meshgate: its process + node CPU during its
    run - the same raw share: what the node spends serving meshgate's two connections
    is counted for meshgate, as the shovel's own work is counted for the shovel.
    """
    raw_cpu, raw_events = raw.get("broker_cpu_seconds"), raw.get("events")
    if peer.broker_cpu_seconds is None or gateway.broker_cpu_seconds is None or not raw_cpu:
        figures["cpu_note"] = "the RabbitMQ node's CPU could not be read: no CPU ratio"
        return
    per_event = raw_cpu / raw_events
    own = peer.cpu_seconds or 0.0
    peer_cpu = peer.broker_cpu_seconds - per_event * peer.events + own
    gateway_cpu = (gateway.cpu_seconds or 0.0) + gateway.broker_cpu_seconds
    gateway_cpu -= per_event * gateway.events
    figures["raw_broker_cpu_s_per_10k"] = round(per_event * 10_000, 4)
    figures["cpu_seconds"] = round(peer_cpu, 3)
    figures["cpu_s_per_10k"] = round(peer_cpu / peer.events * 10_000, 4)
    figures["gateway_with_broker_cpu_s_per_10k"] = round(gateway_cpu / gateway.events * 10_000, 4)
    if peer_cpu > 0 and gateway_cpu > 0:
        figures["gateway_cpu_ratio"] = round(gateway_cpu / peer_cpu, 3)


def _peer_table(results: list[dict[str, Any]]) -> list[str]:
    """meshgate against the peer bridges of the same run: rates, and its ratios to them
    (ev/s: gateway / peer, above 1 = meshgate faster; CPU per event: gateway / peer,
    below 1 = meshgate cheaper)."""
    rows = [row for row in results if row.get("gateway", {}).get("peers")]
    if not rows:
        return []
    names = list(rows[0]["gateway"]["peers"])
    header = f"{'scenario':<24} {'gw ev/s':>9}" + "".join(
        f" {name[:11] + ' ev/s':>16} {'gw/' + name[:4]:>8} {'cpu gw/' + name[:4]:>11}"
        for name in names
    )
    lines = ["", "meshgate and the peer bridges, same run:", header, "-" * len(header)]
    for row in rows:
        gw = row["gateway"]
        cells = [f"{row['scenario']:<24} {_fmt_rate(gw['events_per_s']):>9}"]
        for name in names:
            peer = gw["peers"].get(name, {})
            if "events_per_s" not in peer:
                note = "skipped" if "skipped" in peer else "failed"
                cells.append(f" {note:>16} {'-':>8} {'-':>11}")
                continue
            ratio = peer.get("gateway_ratio")
            cpu = peer.get("gateway_cpu_ratio")
            cells.append(
                f" {_fmt_rate(peer['events_per_s']):>16} "
                f"{'-' if ratio is None else f'{ratio:.2f}':>8} "
                f"{'-' if cpu is None else f'{cpu:.2f}':>11}"
            )
        lines.append("".join(cells))
    lines.extend(_peer_latency(rows, names))
    skipped = {
        peer["skipped"]
        for row in rows
        for peer in row["gateway"]["peers"].values()
        if "skipped" in peer
    }
    lines.extend(f"  ({reason})" for reason in sorted(skipped))
    if any(name in IN_BROKER for name in names):
        lines.append(
            "  (shovel CPU: the RabbitMQ node's CPU during its run minus the node's CPU for the "
            "raw clients; the gateway's CPU for that ratio adds the node's CPU on its behalf)"
        )
    return lines


def _peer_latency(rows: list[dict[str, Any]], names: list[str]) -> list[str]:
    """Added latency (p50/p99/p999 ms at the paced rate) of the gateway and of each peer
    bridge on the same pair in the same run: how much of the gateway's tail any bridge
    in its place has too."""
    measured = [row for row in rows if "added_latency_ms" in row["gateway"]]
    if not measured:
        return []
    lines = ["", "added latency p50/p99/p999 ms, gateway and peer bridges, same run:"]
    for row in measured:
        gw = row["gateway"]
        cells = [f"gateway {_fmt_lat(gw['added_latency_ms'])}"]
        cells += [
            f"{name} {_fmt_lat(gw['peers'][name].get('added_latency_ms'))}"
            for name in names
            if "added_latency_ms" in gw["peers"].get(name, {})
        ]
        lines.append(f"  {row['scenario']:<24} " + "   ".join(cells))
    return lines


def _peer_names(text: str) -> list[str]:
    """``--peers``: 'none', 'all' or a comma-separated list of names."""
    if text == "none":
        return []
    if text == "all":
        return list(PEERS)
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [name for name in names if name not in PEERS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown peer(s) {unknown or text!r}; choose from {', '.join(PEERS)}, all, none"
        )
    return names


def _with_admin(configs: list[dict[str, Any]]) -> list[str]:
    """Turn the admin server (and so the metrics) on in each config; their /metrics URLs."""
    from gateway.localbrokers import free_port

    urls = []
    for config in configs:
        port = free_port()
        config["gateway"]["admin"] = {"listen": f"127.0.0.1:{port}"}
        urls.append(f"http://127.0.0.1:{port}/metrics")
    return urls


SCRAPE_INTERVAL = 1.0
"""Seconds between scrapes of /metrics with --metrics: far more often than a
Prometheus server would (15-60 s), so the collection cost is not understated."""


async def scrape(urls: list[str]) -> None:
    """Scrape every URL each ``SCRAPE_INTERVAL`` from a child process (``bench.scrape``)
    until cancelled."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.scrape", str(SCRAPE_INTERVAL), *urls, cwd=ROOT
    )
    try:
        await asyncio.Event().wait()
    finally:
        process.kill()
        await process.wait()


class SpanSink:
    """The OTLP/HTTP receiver process (``bench.otlp_sink``) traced gateways export to."""

    def __init__(self) -> None:
        from gateway.localbrokers import free_port

        port = free_port()
        self.url = f"http://127.0.0.1:{port}/v1/traces"
        self._count_url = f"http://127.0.0.1:{port}/"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.otlp_sink", str(port)], cwd=ROOT
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                self.count()
                return
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    self.process.kill()
                    raise
                time.sleep(0.05)

    def count(self) -> int:
        """Spans received so far."""
        with urllib.request.urlopen(self._count_url, timeout=5) as response:
            return int(response.read())

    def __enter__(self) -> SpanSink:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def _per_process(config: dict[str, Any], processes: int) -> list[dict[str, Any]]:
    """One config per gateway process; several share the source as a fleet would:
    distinct gateway ids and MQTT client ids, a ``$share`` group on an MQTT source and
    a queue group on a core NATS one (the others share through durable/group/queue)."""
    if processes <= 1:
        return [config]
    configs = []
    for index in range(processes):
        copy = json.loads(json.dumps(config))
        copy["gateway"]["id"] = f"{config['gateway']['id']}-{index}"
        for connector in copy["connectors"].values():
            if connector["type"] == "mqtt":
                connector["client_id"] = f"{connector['client_id']}-{index}"
        for route in copy["routes"]:
            source = route["from"]
            kind = copy["connectors"][source["connector"]]["type"]
            if kind == "mqtt":
                source["share_group"] = "mgb"
            elif kind == "nats" and "jetstream" not in source:
                source["queue_group"] = "mgb"
        configs.append(copy)
    return configs


def _counts(text: str) -> list[int]:
    """``--processes``: one count (2) or a comma-separated list (1,2,3)."""
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a count or list of counts: {text!r}") from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError("process counts are 1 or more")
    return counts


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="meshgate against the raw broker clients, side by side (docs/performance.md).",
    )
    parser.add_argument("--quick", action="store_true", help="small N (CI smoke); a few seconds")
    parser.add_argument(
        "--scenario",
        action="append",
        metavar="NAME",
        help="family (nats-kafka), full name (nats-kafka/bin-256), glob (*/bin-256) or "
        f"{catalogue.MATCHING}; repeatable; default: all. Families: "
        + ", ".join(catalogue.FAMILIES),
    )
    parser.add_argument(
        "--events", type=int, help="events per throughput run (default by scenario)"
    )
    parser.add_argument("--latency-events", type=int, help="events of the paced latency run")
    parser.add_argument("--rate", type=float, default=1000.0, help="paced rate, events/s")
    parser.add_argument("--window", type=int, default=256, help="publisher window (unconfirmed)")
    parser.add_argument("--max-in-flight", type=int, help="route max_in_flight (default 256)")
    parser.add_argument("--jetstream-batch", type=int, help="gateway JetStream pull batch")
    parser.add_argument("--kafka-linger-ms", type=int, help="gateway Kafka linger (ms)")
    parser.add_argument(
        "--processes",
        type=_counts,
        default=[1],
        help="gateway processes sharing each source through the broker's work sharing "
        "(JetStream durable, Kafka group, AMQP queue, MQTT $share group, NATS queue group); "
        "a list (1,2,3) measures each count in turn, in one run: the scaling ratios",
    )
    parser.add_argument(
        "--no-backlog",
        action="store_true",
        help="skip the backlog phase (events published while the gateway is frozen, then "
        "drained: its rate without a publisher competing for the CPU)",
    )
    parser.add_argument(
        "--metrics",
        choices=("off", "on", "both"),
        default="off",
        help="gateway metrics: off (default; no admin server), on (admin server and metrics, "
        f"/metrics scraped every {SCRAPE_INTERVAL:.0f} s), both (after each scenario, --pairs "
        "pairs of throughput runs with metrics off and on: the CPU cost of metrics)",
    )
    parser.add_argument(
        "--tracing",
        choices=("off", "on", "both"),
        default="off",
        help="gateway traces at 100%% sampling, exported by OTLP/HTTP to a sink process "
        "(bench.otlp_sink): off (default), on, both (after each scenario, --pairs pairs of "
        "throughput runs with tracing off and on: the CPU cost of tracing)",
    )
    parser.add_argument(
        "--pairs",
        type=int,
        default=3,
        help="off/on pairs per scenario with --metrics both or --tracing both",
    )
    parser.add_argument(
        "--peers",
        type=_peer_names,
        default=list(PEERS),
        help="peer bridges measured on each scenario after the gateway, for meshgate's "
        f"ratio to them: a comma-separated list of {', '.join(PEERS)}, 'all' (default) or "
        "'none' (bench.peers: a minimal hand-written bridge; an idiomatic FastStream app, "
        "needs meshgate[bench]; the RabbitMQ shovel, amqp-amqp only, needs rabbitmqctl and "
        "root or the rabbitmq_shovel plugin enabled; a Mosquitto bridge, mqtt-mqtt only, "
        "needs the mosquitto binary; a peer that cannot run is skipped, "
        "with the reason)",
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="results JSON file")
    parser.add_argument(
        "--profile",
        metavar="CMD",
        help="profiler attached to the gateway during the throughput phase; {pid} is "
        "replaced by the gateway's pid (else '--pid PID' is appended) and it gets SIGINT at "
        "the end, e.g. 'py-spy record -r 200 -f raw -o gw.txt' or 'strace -c -f -p {pid} -o "
        "sys.txt' (it costs the gateway CPU: do not read the figures of a profiled run)",
    )
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser.parse_args(argv)


async def _main(args: argparse.Namespace) -> int:
    chosen, with_matching = catalogue.select(args.scenario)
    if args.list:
        for scenario in catalogue.all_scenarios():
            print(f"{scenario.name:<28} {scenario.source} -> {', '.join(scenario.targets)}")
        print(catalogue.MATCHING)
        return 0
    if not chosen and not with_matching:
        print(f"no scenario matches {args.scenario}; see --list", file=sys.stderr)
        return 2
    env = Env(window=args.window)
    if args.jetstream_batch is not None:
        NatsJetStream.gateway_batch = args.jetstream_batch
    if args.kafka_linger_ms is not None:
        Kafka.gateway_linger_ms = args.kafka_linger_ms
    started = time.monotonic()
    report: dict[str, Any] = {
        "machine": _machine(),
        "arguments": vars(args) | {"output": str(args.output)},
    }
    matching = None
    if with_matching:
        from bench.matching import run_matching

        matching = run_matching(quick=args.quick)
    results: list[dict[str, Any]] = []
    if chosen:
        with contextlib.ExitStack() as stack:
            if any("kafka" in s.kinds for s in chosen):
                from gateway.localbrokers import KafkaMockCluster

                cluster = stack.enter_context(KafkaMockCluster(brokers=1))
                env.kafka_bootstrap = cluster.bootstrap_servers
            report["machine"]["kafka"] = "librdkafka mock cluster, 1 broker"
            workdir = Path(tempfile.mkdtemp(prefix="meshgate-bench-"))
            bench = Bench(args, env, workdir)
            if args.tracing != "off":
                bench.sink = stack.enter_context(SpanSink())
            results = await bench.run(chosen)
            if any("error" in row for row in results):
                print(f"gateway configs and logs kept in {workdir}", file=sys.stderr)
            else:
                shutil.rmtree(workdir, ignore_errors=True)
    report["scenarios"] = results
    report["matching"] = matching
    report["seconds"] = round(time.monotonic() - started, 1)
    print(render_table(results, matching))
    print(
        f"\n{report['seconds']:.0f} s; event loop of the gateway: "
        f"{report['machine']['event_loop']}; results in {args.output}"
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2, default=str) + "\n")
    return 1 if any("error" in row for row in results) else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s: %(message)s",
    )
    # SIGTERM as Ctrl-C: asyncio.run then cancels the run, and the gateway processes,
    # peers and brokers it started are stopped on the way out, not left running.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    return asyncio.run(_main(args))
