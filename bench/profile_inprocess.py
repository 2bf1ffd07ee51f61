"""``python -m bench.profile_inprocess``: where a gateway's CPU goes, under cProfile.

The bench's gateway runs in a child process, where only a sampling profiler can
attach (``python -m bench --profile``). This runs the gateway in this process
instead, on the bench's own endpoints (a JetStream or Kafka source; JetStream or
Kafka targets): the backlog of ``--events`` is published first, then the gateway is
started with cProfile on and timed until every event was delivered on its route,
so the profile holds the gateway's work only (no load generator runs meanwhile).
cProfile inflates call-heavy code: read the shares, not the microseconds.

    python -m bench.profile_inprocess --targets nats,nats,kafka --events 20000 -o fan.prof
    python -m bench.profile_inprocess --targets nats --no-profile   # CPU per event only
    python -m bench.profile_inprocess --source kafka --targets nats -o kafka.prof
    python -m bench.profile_inprocess --source nats-core --targets nats-core --no-profile

A core NATS source keeps no backlog (what nobody is subscribed to is gone): there the
gateway is started first, probed until an event passes, and the events are then
published by a child process, whose CPU is not counted. How the gateway's batches fall
then depends on how fast that child is; ``--inject`` takes the timing out instead:
the events are handed to the gateway's NATS client as if its read loop had just read
them all (``_process_msg``, for the gateway's own subscription), so every run
processes the same full batches and only the socket read and protocol parse are left
out. For comparing two versions of the gateway's per-event path.
``--inject --handwritten`` feeds the hand-written bridge's core NATS callback
(``bench.peers.handwritten``: nats-py's own subscription path, the ``carry`` header
copy, ``nc.publish``) the same way instead of the gateway, for the same comparison
with it; ``valgrind --tool=callgrind`` counts the instructions of either (two event
counts, subtracted: instructions per event, whatever else the machine does).

``--no-profile`` reports the process CPU per event without the profiler (the
in-process figure: no consumer, no publisher, so lower than the bench's).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import json
import pstats
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import yaml

from bench.endpoints import ENDPOINTS, Endpoint, Env
from bench.events import make_event
from connectors.nats.client import header_block
from gateway import heap
from gateway.config import load_config
from gateway.runtime import Gateway
from routing.bindings import Mode
from routing.bindings.nats import to_message


async def _backlog(source: Endpoint, events: int, size: int, mode: Mode, window: int) -> None:
    pending: list[Any] = []
    for seq in range(events):
        pending.append(await source.send(source.encode(make_event(seq, size), mode)))
        if len(pending) >= window:
            await asyncio.gather(*pending)
            pending.clear()
    await asyncio.gather(*pending)


async def handwritten(args: argparse.Namespace, env: Env) -> None:
    """The hand-written bridge's core NATS path, fed as ``--inject`` feeds the gateway."""
    import nats

    from bench.peers.carry import from_headers, to_headers

    mode = Mode(args.mode)
    token = uuid.uuid4().hex[:8]
    inbound, outbound = f"mgbh.{token}.in", f"mgbh.{token}.out"
    nc = await nats.connect(env.nats_url)
    out = await nats.connect(env.nats_url)
    done = asyncio.Event()
    forwarded = 0

    async def on_core(msg: Any) -> None:  # bench.peers.handwritten's, core NATS
        nonlocal forwarded
        ctype, attrs = from_headers("nats-core", (msg.headers or {}).items(), None)
        await out.publish(outbound, msg.data, headers=to_headers("nats-core", ctype, attrs) or None)
        forwarded += 1
        if forwarded == args.events:
            done.set()

    sub = await nc.subscribe(inbound, cb=on_core)
    await nc.flush()
    message = to_message(make_event(0, args.size), mode)
    data, headers = message.data, dict(message.headers or {})
    blocks = [header_block(dict(headers, **{"ce-id": f"b{seq}"})) for seq in range(args.events)]
    cpu = time.thread_time()
    for block in blocks:
        await nc._process_msg(sub._id, inbound.encode(), b"", data, block)
    await asyncio.wait_for(done.wait(), 60 + args.events / 1000)
    await out.flush()
    spent = time.thread_time() - cpu
    per_event = spent / args.events * 1e6
    print(f"{args.events} events, hand-written core bridge: {per_event:.1f} µs CPU/event")
    await nc.close()
    await out.close()


async def run(args: argparse.Namespace, env: Env) -> None:
    mode = Mode(args.mode)
    token = uuid.uuid4().hex[:8]
    source = ENDPOINTS[args.source](env, f"p{token}s")
    targets: list[Endpoint] = []
    await source.open()
    try:
        for n, kind in enumerate(args.targets.split(",")):
            endpoint = ENDPOINTS[kind](env, f"p{token}t{n}")
            await endpoint.open()
            targets.append(endpoint)
        connectors: dict[str, Any] = {}
        for endpoint in (source, *targets):
            connectors.setdefault(endpoint.kind, endpoint.connector(token))
        route = {
            "name": "r",
            "from": {"connector": source.kind, **source.source()},
            "to": [{"connector": t.kind, **t.target(mode)} for t in targets],
        }
        live = source.kind != "nats-core"  # a core subject keeps nothing: publish later
        if live:
            await _backlog(source, args.events, args.size, mode, env.window)
        with tempfile.TemporaryDirectory() as tmp:
            config = {
                "gateway": {"id": f"prof-{token}", "drain_timeout_seconds": 10, "state_dir": tmp},
                "connectors": connectors,
                "routes": [route],
            }
            path = Path(tmp) / "gateway.yaml"
            path.write_text(yaml.safe_dump(config, sort_keys=False))
            feed = None if live else _Feed(source, args, mode)
            await _measure(Gateway(load_config(path)), args, feed)
    finally:
        for endpoint in (source, *targets):
            await endpoint.close()


class _Feed:
    """Publishes to a core NATS source from a child process, once the gateway is live."""

    def __init__(self, source: Endpoint, args: argparse.Namespace, mode: Mode) -> None:
        self.source = source
        self.args = args
        self.mode = mode
        self.probes = 0

    async def probe(self, gateway: Gateway) -> None:
        """Publish probe events until one went through the gateway."""
        deadline = time.monotonic() + 30
        while gateway.stats["r"].delivered == 0:
            if time.monotonic() > deadline:
                raise SystemExit("the gateway did not forward a probe within 30 s")
            await self.source.send(self.source.encode(make_event(-1, self.args.size), self.mode))
            await self.source.flush()
            self.probes += 1
            await asyncio.sleep(0.05)

    def blocks(self) -> list[bytes]:
        """The header blocks ``inject`` hands over (made before anything is measured)."""
        _data, headers = self.source.encode(make_event(0, self.args.size), self.mode)
        return [
            header_block(dict(headers, **{"ce-id": f"b{seq}"})) for seq in range(self.args.events)
        ]

    async def inject(self, gateway: Gateway, blocks: list[bytes]) -> None:
        """Hand ``blocks`` to the gateway's NATS client as read (see the module doc)."""
        client = await gateway.connectors[self.source.kind]._link.client()  # type: ignore[attr-defined]
        sid = next(iter(client._direct))  # the route's subscription, read directly
        subject = self.source.subject.encode()  # type: ignore[attr-defined]
        data, _headers = self.source.encode(make_event(0, self.args.size), self.mode)
        for block in blocks:
            await client._process_msg(sid, subject, b"", data, block)

    async def start(self) -> asyncio.subprocess.Process:
        data, headers = self.source.encode(make_event(0, self.args.size), self.mode)
        spec = {
            "url": self.source.env.nats_url,
            "subject": getattr(self.source, "subject", ""),
            "events": self.args.events,
            "data": data.decode(),
            "headers": headers,
        }
        return await asyncio.create_subprocess_exec(
            sys.executable, "-c", _PUBLISHER, json.dumps(spec), stdout=asyncio.subprocess.DEVNULL
        )


_PUBLISHER = """
import asyncio, json, sys
import nats

async def main(spec):
    nc = await nats.connect(spec["url"])
    data = spec["data"].encode()
    for seq in range(spec["events"]):
        headers = dict(spec["headers"], **{"ce-id": f"b{seq}"})
        await nc.publish(spec["subject"], data, headers=headers)
        if seq % 1000 == 999:
            await nc.flush(30)
    await nc.flush(30)
    await nc.close()

asyncio.run(main(json.loads(sys.argv[1])))
"""


async def _measure(gateway: Gateway, args: argparse.Namespace, feed: _Feed | None = None) -> None:
    # CPU time of this thread (the event loop), not wall time: on a shared machine the
    # wall clock counts others' work, and the Kafka mock cluster runs in threads here.
    profiler = cProfile.Profile(time.thread_time) if args.output else None
    blocks: list[bytes] = []
    if feed is not None:  # start-up and probes are not measured: events come later
        await gateway.start()
        heap.settle()  # as `meshgate run` does after start
        await feed.probe(gateway)
        if args.inject:
            blocks = feed.blocks()
    cpu = time.thread_time()
    wall = time.monotonic()
    if profiler is not None:
        profiler.enable()
    publisher = None
    if feed is None:
        await gateway.start()
    elif args.inject:
        await feed.inject(gateway, blocks)
    else:
        publisher = await feed.start()
    expected = args.events + (0 if feed is None else gateway.stats["r"].delivered)
    try:
        deadline = time.monotonic() + 60 + args.events / 20
        while gateway.stats["r"].delivered < expected:
            if time.monotonic() > deadline:
                raise SystemExit(f"only {gateway.stats['r'].delivered} of {args.events} delivered")
            await asyncio.sleep(0.01)
        if profiler is not None:
            profiler.disable()
        spent = time.thread_time() - cpu
        took = time.monotonic() - wall
    finally:
        if publisher is not None:
            with contextlib.suppress(Exception):
                await publisher.wait()
        with contextlib.suppress(Exception):
            await gateway.stop()
    how = "start-up included"
    if feed is not None:
        how = "handed to its client" if args.inject else "published meanwhile by a child process"
    print(
        f"{args.events} events to {args.targets}: {spent / args.events * 1e6:.1f} µs CPU/event "
        f"({args.events / took:.0f} ev/s{', under cProfile' if profiler else ''}), {how}"
    )
    if profiler is not None:
        profiler.dump_stats(args.output)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(args.top)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_inprocess")
    parser.add_argument("--source", default="nats", choices=["nats", "nats-core", "kafka"])
    parser.add_argument("--targets", default="nats", help="target kinds, comma-separated")
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--mode", default="binary", choices=["binary", "structured"])
    parser.add_argument("-o", "--output", default="gateway.prof", help="pstats file")
    parser.add_argument("--no-profile", dest="output", action="store_const", const="")
    parser.add_argument("--top", type=int, default=40, help="rows of the tottime table")
    parser.add_argument(
        "--handwritten",
        action="store_true",
        help="with --inject: the hand-written bridge's core NATS path instead (see the doc)",
    )
    parser.add_argument(
        "--inject",
        action="store_true",
        help="nats-core source: hand the events to the gateway's client as read (see the doc)",
    )
    args = parser.parse_args()
    env = Env()
    with contextlib.ExitStack() as stack:
        if "kafka" in (args.source, *args.targets.split(",")):
            from gateway.localbrokers import KafkaMockCluster

            env.kafka_bootstrap = stack.enter_context(KafkaMockCluster(brokers=1)).bootstrap_servers
        asyncio.run(handwritten(args, env) if args.handwritten else run(args, env))


if __name__ == "__main__":
    main()
