"""PubAcks: a failed or cancelled first subscription fails its waiters and is retried.

The happy paths, timeouts and error replies run against the real server in
tests/integration/test_connector_nats.py; this covers the subscription race with a
stand-in client (no server can be made to fail a SUB on demand).
"""

from __future__ import annotations

import asyncio
from typing import Any

import nats.errors
import pytest

from connectors.nats.pubacks import PubAcks


class FlakyClient:
    """Enough of nats-py's Client for PubAcks: subscribe fails (or hangs) on demand."""

    def __init__(self, failures: list[BaseException | None]) -> None:
        self.failures = failures
        self.subscribed = 0
        self.gate = asyncio.Event()
        self.published: list[str] = []

    def new_inbox(self) -> str:
        return "_INBOX.test"

    async def subscribe(self, subject: str, cb: Any) -> None:
        await self.gate.wait()
        failure = self.failures.pop(0)
        if failure is not None:
            raise failure
        self.subscribed += 1

    async def publish(self, subject: str, data: bytes, reply: str, headers: Any) -> None:
        self.published.append(reply)  # nobody answers: the PubAck never comes


async def test_waiters_of_a_failed_subscription_fail_and_the_next_publish_retries() -> None:
    client = FlakyClient([nats.errors.ConnectionClosedError(), None])
    pubacks = PubAcks(client)  # type: ignore[arg-type]
    first = asyncio.create_task(pubacks.publish("s", b"", None, 1.0))
    second = asyncio.create_task(pubacks.publish("s", b"", None, 1.0))
    await asyncio.sleep(0)
    client.gate.set()
    results = await asyncio.gather(first, second, return_exceptions=True)
    assert isinstance(results[0], nats.errors.ConnectionClosedError)
    assert type(results[1]) is nats.errors.Error and "subscription failed" in str(results[1])
    # No stale state: the next publish subscribes again, sends, and (unanswered) times
    # out through the overdue-PubAck sweep.
    with pytest.raises(nats.errors.TimeoutError):
        await pubacks.publish("s", b"", None, 0.2)
    assert client.subscribed == 1
    assert client.published == ["_INBOX.test.1"]
    await asyncio.sleep(0.15)  # the sweep ends once nothing is pending


async def test_a_cancelled_first_publish_does_not_cancel_the_others() -> None:
    client = FlakyClient([None])
    pubacks = PubAcks(client)  # type: ignore[arg-type]
    first = asyncio.create_task(pubacks.publish("s", b"", None, 1.0))
    second = asyncio.create_task(pubacks.publish("s", b"", None, 1.0))
    await asyncio.sleep(0)
    first.cancel()
    results = await asyncio.gather(first, second, return_exceptions=True)
    assert isinstance(results[0], asyncio.CancelledError)
    assert type(results[1]) is nats.errors.Error  # retriable for the sink, not a cancel
