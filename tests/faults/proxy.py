"""A small asyncio TCP proxy that makes a broker slow and unreliable, for the fault tests.

``FaultyProxy(upstream_port)`` listens on a free loopback port and forwards every
connection to ``127.0.0.1:upstream_port``. While it runs, its knobs can change:

* ``latency``: seconds each chunk waits before it is forwarded (both directions,
  order kept per direction);
* ``bandwidth``: bytes per second per direction and connection (None = unlimited);
* ``reset_every``: roughly every that many seconds one random open connection is
  reset (RST, as a broken network would), None = never.

``silence()`` makes the connections open now go silent without closing them: the
proxy keeps reading both sides and drops the bytes, so neither peer sees an error
(a middlebox that lost the flow). Connections made afterwards pass normally.

A side that fails (reset, write error) gets the other side reset too, as a broken
path would show both peers; before, the other side stayed open and heard nothing
more: a silent link made by the proxy. It counts connections made and resets done.
Only loopback is ever used.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
import time

from gateway.localbrokers import LOOPBACK

__all__ = ["FaultyProxy"]

_CHUNK = 16 * 1024


class _Link:
    """One proxied connection: two pumps, and the sockets to reset."""

    def __init__(self, client: asyncio.StreamWriter, upstream: asyncio.StreamWriter) -> None:
        self.writers = (client, upstream)
        self.tasks: list[asyncio.Task[None]] = []
        self.silent = False  # drop what arrives, keep the connection

    def reset(self) -> None:
        self.cut()
        for task in self.tasks:
            task.cancel()

    def cut(self) -> None:
        """RST both sockets: what a broken path shows each peer (the pumps then end)."""
        for writer in self.writers:
            sock = writer.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):  # linger 0: close sends RST
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()


class FaultyProxy:
    """TCP proxy with adjustable latency, bandwidth and connection resets."""

    def __init__(self, upstream_port: int, *, seed: int = 0) -> None:
        self.upstream_port = upstream_port
        self.latency = 0.0
        self.bandwidth: float | None = None
        self.reset_every: float | None = None
        self.connections = 0
        self.resets = 0
        self.silenced = 0
        self._links: set[_Link] = set()
        self._server: asyncio.Server | None = None
        self._resetter: asyncio.Task[None] | None = None
        self._random = random.Random(seed)
        self.port = 0

    @property
    def url_host_port(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    async def start(self) -> FaultyProxy:
        self._server = await asyncio.start_server(self._accept, LOOPBACK, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        self._resetter = asyncio.create_task(self._reset_loop())
        return self

    async def close(self) -> None:
        if self._resetter is not None:
            self._resetter.cancel()
            await asyncio.gather(self._resetter, return_exceptions=True)
        if self._server is not None:
            self._server.close()
        for link in list(self._links):
            link.reset()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)

    def silence(self) -> int:
        """Blackhole the connections open now (see the module docstring); how many."""
        for link in self._links:
            link.silent = True
        self.silenced += len(self._links)
        return len(self._links)

    async def __aenter__(self) -> FaultyProxy:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(LOOPBACK, self.upstream_port)
        except OSError:
            writer.transport.abort()
            return
        self.connections += 1
        link = _Link(writer, up_writer)
        self._links.add(link)
        link.tasks = [
            asyncio.create_task(self._pump(reader, up_writer, link)),
            asyncio.create_task(self._pump(up_reader, writer, link)),
        ]
        try:
            await asyncio.gather(*link.tasks, return_exceptions=True)
        except asyncio.CancelledError:  # the proxy is closing
            pass
        finally:
            self._links.discard(link)
            for side in (writer, up_writer):
                side.transport.abort()

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link: _Link
    ) -> None:
        """Forward one direction; each chunk is delayed, and paced to the bandwidth."""
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def send() -> None:
            while True:
                due, chunk = await queue.get()
                if not chunk:
                    if not link.silent:  # a lost flow does not pass the FIN on either
                        writer.write_eof() if writer.can_write_eof() else None
                    return
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                if link.silent:
                    continue
                try:
                    writer.write(chunk)
                    await writer.drain()
                except (ConnectionError, OSError):
                    broken()
                    return
                if self.bandwidth:
                    await asyncio.sleep(len(chunk) / self.bandwidth)

        def broken() -> None:
            # One side failed: reset the other too, or it would stay open and never
            # hear another byte (a silent link the proxy made, not the network).
            if not link.silent:
                link.cut()

        sender = asyncio.create_task(send())
        try:
            while True:
                chunk = await reader.read(_CHUNK)
                await queue.put((time.monotonic() + self.latency, chunk))
                if not chunk:
                    break
            await sender
        except (ConnectionError, OSError):
            broken()
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)

    async def _reset_loop(self) -> None:
        while True:
            every = self.reset_every
            if every is None:
                await asyncio.sleep(0.2)
                continue
            await asyncio.sleep(self._random.uniform(0.5 * every, 1.5 * every))
            if self.reset_every is not None and self._links:
                link = self._random.choice(sorted(self._links, key=id))
                self.resets += 1
                link.reset()
