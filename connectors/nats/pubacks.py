"""JetStream publishes awaiting their PubAck, many at a time on one client.

nats-py's ``JetStreamContext.publish`` is a request per message: a fresh NUID and
random token, an ``asyncio.wait_for`` (a timer and a wrapper task) and a ``PubAck``
dataclass per PubAck. In the gateway's hot path that was a fifth of the CPU per
event. ``PubAcks`` keeps what matters (one reply subscription per client, a future
per publish, the same errors) and drops the rest: tokens are a counter under a
per-client NUID prefix, and one sweep per ``SWEEP`` seconds fails the publishes
whose PubAck is overdue, instead of one timer per publish. What is pending is
bounded by the gateway's in-flight windows, so the sweep stays short.

Errors are nats-py's own, so callers map them exactly as for ``js.publish``:
``NoStreamResponseError`` (no responders), ``nats.errors.TimeoutError``, and
``APIError`` subclasses built by ``APIError.from_error`` (503 is
``ServiceUnavailableError``).

``SharedFlush`` is the core-NATS counterpart: one PING/PONG confirms every core
publish queued before it. The link keeps one of each per client, so that a client
it replaces can fail what still waits on it (``fail_all``) at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Final

import nats.errors
import nats.js.errors
import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg

from connectors.nats import client
from connectors.nats.client import Headers

__all__ = ["PubAcks", "SharedFlush"]

SWEEP: Final = 0.1
"""Seconds between checks for overdue PubAcks (how late a timeout may be reported)."""
_NO_RESPONDERS: Final = "503"


class PubAcks:
    """Publishes to JetStream on one nats-py client and awaits their PubAcks."""

    def __init__(self, nc: Client) -> None:
        self._nc = nc
        self._prefix = ""
        self._subscribing: asyncio.Future[None] | None = None
        self._next = 0
        self._pending: dict[str, tuple[float, asyncio.Future[Msg]]] = {}
        self._sweeper: asyncio.Task[None] | None = None

    async def publish(self, subject: str, data: bytes, headers: Headers, wait: float) -> None:
        """Publish; return once the stream stored it, within ``wait`` seconds (see module)."""
        if not self._prefix:
            await self._subscribe()
        loop = asyncio.get_running_loop()
        self._next += 1
        token = str(self._next)
        future: asyncio.Future[Msg] = loop.create_future()
        self._pending[token] = (loop.time() + wait, future)
        if self._sweeper is None:
            self._sweeper = loop.create_task(self._sweep())
        try:
            await client.publish(self._nc, subject, data, headers, self._prefix + token)
            reply = await future
        finally:
            self._pending.pop(token, None)
        _check(reply)

    async def publish_many(
        self, messages: Sequence[tuple[str, bytes, Headers]], wait: float
    ) -> list[BaseException | None]:
        """Publish every (subject, data, headers), then await all their PubAcks: one
        outcome per message (None: stored), each within ``wait`` seconds of its write."""
        if not messages:
            return []
        if not self._prefix:
            await self._subscribe()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        tokens: list[str] = []
        futures: list[asyncio.Future[Msg]] = []
        outcomes: list[BaseException | None] = [None] * len(messages)
        try:
            for index, (subject, data, headers) in enumerate(messages):
                self._next += 1
                token = str(self._next)
                future: asyncio.Future[Msg] = loop.create_future()
                self._pending[token] = (deadline, future)
                tokens.append(token)
                futures.append(future)
                if self._sweeper is None:
                    self._sweeper = loop.create_task(self._sweep())
                reply = self._prefix + token
                try:
                    await client.publish(self._nc, subject, data, headers, reply)
                except Exception as exc:  # this one is not sent: the others may be
                    self._pending.pop(token, None)
                    future.cancel()
                    outcomes[index] = exc
            for index, future in enumerate(futures):
                if outcomes[index] is not None:
                    continue
                try:
                    _check(await future)
                except Exception as exc:
                    outcomes[index] = exc
        finally:
            for token in tokens:
                self._pending.pop(token, None)
        return outcomes

    async def _subscribe(self) -> None:
        # Concurrent first publishes share one subscription.
        if self._subscribing is None:
            self._subscribing = asyncio.get_running_loop().create_future()
            prefix = f"{self._nc.new_inbox()}."
            try:
                await self._nc.subscribe(prefix + "*", cb=self._on_reply)
            except BaseException as exc:
                waiting, self._subscribing = self._subscribing, None
                # The others waiting get a nats error (retriable), even when this
                # publish was cancelled: a future cannot hold a CancelledError.
                cause = exc if isinstance(exc, Exception) else None
                waiting.set_exception(nats.errors.Error(f"PubAck subscription failed: {cause}"))
                waiting.exception()  # retrieved: whoever waits sees it raised
                raise
            self._prefix = prefix
            self._subscribing.set_result(None)
            return
        await asyncio.shield(self._subscribing)

    def fail_all(self, error: Callable[[], Exception]) -> int:
        """Fail every publish still awaiting its PubAck with ``error()``; how many.

        For a client being replaced: its PubAcks will never come.
        """
        failed = 0
        for _deadline, future in list(self._pending.values()):
            if not future.done():
                future.set_exception(error())
                failed += 1
        return failed

    async def _on_reply(self, msg: Msg) -> None:
        entry = self._pending.get(msg.subject[len(self._prefix) :])
        if entry is not None and not entry[1].done():
            entry[1].set_result(msg)

    async def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                await asyncio.sleep(SWEEP)
                now = loop.time()
                for deadline, future in list(self._pending.values()):
                    if deadline <= now and not future.done():
                        future.set_exception(nats.errors.TimeoutError())
        finally:
            self._sweeper = None


class SharedFlush:
    """Coalesces the PING/PONG flushes of one client's core publishes.

    A publish first queues its message, then joins the next flush. That flush starts
    on a later loop turn, so every publish queued until then has its message ahead
    of the PING; a publish made after the PING was queued joins the flush after it.
    """

    def __init__(self, nc: Client) -> None:
        self._nc = nc
        self._next: asyncio.Future[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._waiting: set[asyncio.Future[None]] = set()  # flushes not answered yet

    async def flush(self, timeout: int) -> None:  # noqa: ASYNC109 - nats-py's flush timeout
        future = self._next
        if future is None:
            future = self._next = asyncio.get_running_loop().create_future()
            future.add_done_callback(_retrieve)
            self._waiting.add(future)
            future.add_done_callback(self._waiting.discard)
            task = asyncio.ensure_future(self._run(future, timeout))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        # One waiter cancelled (its task stopped) must not cancel the others' flush.
        await asyncio.shield(future)

    def fail_all(self, error: Callable[[], Exception]) -> int:
        """Fail the flushes still waiting for their PONG with ``error()``; how many."""
        failed = 0
        for future in list(self._waiting):
            if not future.done():
                future.set_exception(error())
                failed += 1
        return failed

    async def _run(self, future: asyncio.Future[None], timeout: int) -> None:  # noqa: ASYNC109
        self._next = None  # later publishes wait for the next PING
        try:
            await self._nc.flush(timeout=timeout)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:  # handed to every waiting publish
            if not future.done():
                future.set_exception(exc)
        else:
            if not future.done():
                future.set_result(None)


def _retrieve(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()  # seen: waiters that were cancelled meanwhile never will


def _check(reply: Msg) -> None:
    """Raise what nats-py's ``js.publish`` raises for a reply that is no PubAck."""
    if not reply.data and reply.headers:
        status = next((v for k, v in reply.headers.items() if k == "Status"), None)
        if status == _NO_RESPONDERS:
            raise nats.js.errors.NoStreamResponseError
    try:
        answer = orjson.loads(reply.data)
    except orjson.JSONDecodeError as exc:
        raise nats.js.errors.APIError(description=f"PubAck is not JSON: {exc}") from None
    if not isinstance(answer, dict):
        raise nats.js.errors.APIError(description=f"PubAck is not a JSON object: {answer!r}")
    error = answer.get("error")
    if error is not None:
        raise nats.js.errors.APIError.from_error(error)
