"""``meshgate top --admin URL``: the live view of ``/ui`` in a terminal.

Reads a running gateway's admin API (``/readyz``, ``/api/routes``, ``/api/connectors``,
``/api/events``) and prints routes (state, events/s, counters, in-flight, latency),
connectors (state, reason, reconnects, publishes) and the recent events. On a
terminal it redraws in place every ``--interval`` seconds until Ctrl-C; otherwise
(a pipe, a file) or with ``--once`` it prints plain snapshots, ``--once`` exactly one
(no rates then: a rate needs two snapshots).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import sys
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import aiohttp

__all__ = ["add_parser", "run"]

RECENT = 15
"""Recent events shown."""

_COUNTERS = (
    ("recv", "received"),
    ("deliv", "delivered"),
    ("filt", "filtered"),
    ("dlq", "dead_lettered"),
    ("undeliv", "undeliverable"),
    ("fail", "failed"),
    ("loop", "loop_dropped"),
    ("retry", "retries"),
)


class TopError(Exception):
    """The admin API could not be read (the message says why)."""


def add_parser(commands: Any) -> None:
    top = commands.add_parser(
        "top",
        help="live view of a running gateway in the terminal (its admin API)",
        description="Show a running gateway's routes, connectors and recent events, read "
        "from its admin API; redrawn in place on a terminal, plain snapshots otherwise.",
    )
    top.add_argument(
        "--admin",
        required=True,
        metavar="URL",
        help="the gateway's admin server, e.g. http://127.0.0.1:9464",
    )
    top.add_argument(
        "--token-file", type=Path, metavar="FILE", help="file holding the admin bearer token"
    )
    top.add_argument("--once", action="store_true", help="print one snapshot and exit")
    top.add_argument(
        "--interval", type=float, default=1.0, help="seconds between refreshes (default 1)"
    )


def run(args: argparse.Namespace) -> int:
    """``meshgate top``: 0 when stopped (Ctrl-C) or after ``--once``; 1 when the gateway
    cannot be read; 2 when the token file cannot."""
    token: str | None = None
    if args.token_file is not None:
        try:
            token = args.token_file.expanduser().read_text(encoding="utf-8").strip()
        except OSError as exc:
            print(f"top: cannot read {args.token_file}: {exc.strerror}", file=sys.stderr)
            return 2
    view = Top(args.admin.rstrip("/"), token)
    try:
        asyncio.run(view.main(once=args.once, interval=max(args.interval, 0.1)))
    except TopError as exc:
        print(f"top: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:  # `meshgate top | head`: the reader is gone, not an error
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


class Top:
    """Snapshots of one gateway's admin API, and their rendering as text."""

    def __init__(self, base: str, token: str | None, out: TextIO | None = None) -> None:
        self.base = base
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.out = out or sys.stdout
        self.events: deque[dict[str, Any]] = deque(maxlen=RECENT)
        self.previous: tuple[float, dict[str, int]] | None = None
        self.rates: dict[str, float] = {}

    async def main(self, *, once: bool, interval: float) -> None:
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=None)
        async with aiohttp.ClientSession(headers=self.headers, timeout=timeout) as session:
            if once:
                await self._backlog(session)
                self.out.write(self.render(await self.snapshot(session)))
                return
            follower = asyncio.create_task(self._follow(session))
            live = self.out.isatty()
            try:
                while True:
                    text = self.render(await self.snapshot(session))
                    if live:  # home, draw, clear what is left of the previous frame
                        self.out.write("\x1b[H" + text.replace("\n", "\x1b[K\n") + "\x1b[J")
                    else:
                        self.out.write(text + "\n")
                    self.out.flush()
                    await asyncio.sleep(interval)
            finally:
                follower.cancel()
                with contextlib.suppress(asyncio.CancelledError, aiohttp.ClientError):
                    await follower

    async def _get(self, session: aiohttp.ClientSession, path: str) -> Any:
        try:
            async with session.get(
                self.base + path, timeout=aiohttp.ClientTimeout(total=10)
            ) as response:
                if response.status == 401:
                    raise TopError(
                        f"{self.base}{path}: 401, the admin API needs a bearer token (--token-file)"
                    )
                if response.status not in (200, 503):  # /readyz answers 503 when not ready
                    raise TopError(f"{self.base}{path}: HTTP {response.status}")
                return await response.json()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TopError(f"cannot read {self.base}{path}: {exc or type(exc).__name__}") from exc

    async def snapshot(self, session: aiohttp.ClientSession) -> dict[str, Any]:
        ready, routes, connectors = await asyncio.gather(
            self._get(session, "/readyz"),
            self._get(session, "/api/routes"),
            self._get(session, "/api/connectors"),
        )
        now = time.monotonic()
        received = {r["name"]: r["counters"]["received"] for r in routes["routes"]}
        if self.previous is not None:
            at, before = self.previous
            seconds = now - at
            if seconds > 0:
                self.rates = {
                    name: max(0.0, (count - before.get(name, count)) / seconds)
                    for name, count in received.items()
                }
        self.previous = (now, received)
        return {"ready": ready, "routes": routes, "connectors": connectors}

    async def _stream(self, session: aiohttp.ClientSession, idle: float | None) -> None:
        """Read /api/events into ``self.events``; with ``idle``, stop once nothing came
        for that long (the kept backlog has been sent by then)."""
        async with session.get(self.base + "/api/events") as response:
            if response.status == 401:
                raise TopError(
                    f"{self.base}/api/events: 401, the admin API needs a bearer token "
                    "(--token-file)"
                )
            while True:
                try:
                    async with asyncio.timeout(idle):
                        line = await response.content.readline()
                except TimeoutError:
                    return
                if not line:
                    return
                text = line.decode("utf-8", "replace").rstrip("\r\n")
                if text.startswith("data: "):
                    with contextlib.suppress(ValueError):
                        self.events.append(json.loads(text[len("data: ") :]))

    async def _backlog(self, session: aiohttp.ClientSession) -> None:
        try:
            await self._stream(session, idle=0.5)
        except aiohttp.ClientError as exc:
            raise TopError(f"cannot read {self.base}/api/events: {exc}") from exc

    async def _follow(self, session: aiohttp.ClientSession) -> None:
        while True:
            with contextlib.suppress(aiohttp.ClientError, TopError):
                await self._stream(session, idle=None)
            await asyncio.sleep(2.0)

    # -- rendering ------------------------------------------------------------------------

    def render(self, snapshot: dict[str, Any]) -> str:
        width = shutil.get_terminal_size((120, 40)).columns
        routes: list[dict[str, Any]] = snapshot["routes"]["routes"]
        connectors: list[dict[str, Any]] = snapshot["connectors"]["connectors"]
        ready = snapshot["ready"]["ready"]
        gateway = snapshot["routes"].get("gateway", "")
        lines = [
            f"meshgate {gateway}  {'READY' if ready else 'NOT READY'}  {self.base}  "
            + time.strftime("%H:%M:%S"),
            "",
        ]
        header = ["ROUTE", "STATE", "EV/S", *(label.upper() for label, _ in _COUNTERS)]
        header += ["INFL", "P50MS", "P99MS"]
        rows = [header]
        for route in routes:
            counters = route["counters"]
            latency = route.get("latency") or {}
            rate = self.rates.get(route["name"])
            rows.append(
                [
                    route["name"],
                    route.get("state", "?"),
                    "-" if rate is None else f"{rate:.1f}",
                    *(str(counters.get(name, 0)) for _, name in _COUNTERS),
                    str(route.get("in_flight", 0)),
                    _num(latency.get("p50_ms")),
                    _num(latency.get("p99_ms")),
                ]
            )
        lines += _table(rows)
        for route in routes:
            if route.get("last_error"):
                lines.append(_cut(f"  {route['name']}: last error: {route['last_error']}", width))
        lines.append("")
        rows = [["CONNECTOR", "TYPE", "STATE", "RECONN", "PUBLISHED", "PUB.FAIL", "REASON"]]
        for connector in connectors:
            rows.append(
                [
                    connector["name"],
                    connector["type"],
                    connector["state"],
                    str(connector.get("reconnects", 0)),
                    str(connector.get("published", 0)),
                    str(connector.get("publish_failures", 0)),
                    connector.get("reason") or "",
                ]
            )
        lines += [_cut(line, width) for line in _table(rows)]
        lines += ["", "RECENT EVENTS"]
        for event in reversed(self.events):
            attributes = event.get("attributes") or {}
            what = f"id={attributes.get('id')} type={attributes.get('type')}" if attributes else ""
            error = f"  {event['error']}" if event.get("error") else ""
            text = (
                f"  {event.get('time', '')[11:23]} {event.get('outcome', ''):<13} "
                f"{event.get('route', '')} {event.get('address', '')} {what}{error}"
            )
            lines.append(_cut(text, width))
        if not self.events:
            lines.append("  (none yet)")
        return "\n".join(lines) + "\n"


def _num(value: Any) -> str:
    return "-" if value is None else f"{value:g}"


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 10)] + "…"


def _table(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [
            cell.ljust(widths[i]) if i < 2 or i == len(row) - 1 else cell.rjust(widths[i])
            for i, cell in enumerate(row)
        ]
        lines.append("  ".join(cells).rstrip())
    return lines
