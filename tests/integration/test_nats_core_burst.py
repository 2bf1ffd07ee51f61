"""Core NATS sources and bursts, against the loopback NATS server (issue 17).

With the default limits (the client libraries': 524,288 messages, 64 MiB) a burst of
30,000 events published while the source is not pulling is buffered whole: nothing is
dropped. With the old default of 1,024 messages, or a small byte limit, the excess is
dropped, and every drop is counted (``Health.dropped``) and reported by WARNING lines
whose counts add up to the total.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator

import nats
import pytest

from connectors.base import Delivery
from connectors.nats import NatsConnector, NatsOptions, NatsSource
from connectors.nats.config import PENDING_BYTES_LIMIT, PENDING_MSGS_LIMIT
from connectors.testing import sample_event
from routing.bindings.nats import to_message
from tests.brokers import NATS_URL, unique_name

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

BURST = 30_000
WAIT = 30.0
LOGGER = "meshgate.connectors.nats"
_DROPPED = re.compile(r"(\d+) message\(s\) dropped since the last warning, (\d+) in all")


async def _live(conn: NatsConnector, subject: str, stream: AsyncIterator[Delivery]) -> None:
    """Publish probes until the subscription hands one out (it is then live)."""
    probe = await nats.connect(NATS_URL)
    first = asyncio.ensure_future(anext(stream))
    try:
        async with asyncio.timeout(WAIT):
            while not first.done():
                await probe.publish(subject, b"probe")
                await asyncio.wait({first}, timeout=0.05)
        await first
    finally:
        first.cancel()
        await probe.close()


async def _burst(subject: str, count: int, *, data_size: int = 256) -> None:
    """``count`` binary-mode CloudEvents (``data_size`` bytes of data) as fast as nats-py goes."""
    nc = await nats.connect(NATS_URL, pending_size=256 * 1024 * 1024)
    try:
        template = to_message(sample_event(0, data=b"x" * data_size))
        headers = dict(template.headers or {})
        for n in range(count):
            headers["ce-id"] = f"burst-{n}"
            await nc.publish(subject, template.data, headers=headers)
        await nc.flush(timeout=WAIT)
    finally:
        await nc.close()


async def _drain(stream: AsyncIterator[Delivery], quiet: float = 1.0) -> set[str]:
    """Ids of the burst events handed out until none came for ``quiet`` seconds."""
    ids: set[str] = set()
    with contextlib.suppress(TimeoutError):
        while True:
            delivery = await asyncio.wait_for(anext(stream), quiet)
            event_id = delivery.headers.get("ce-id", "")
            if event_id.startswith("burst-"):
                ids.add(event_id)
    return ids


async def _run(source: NatsSource, count: int, *, data_size: int = 256) -> tuple[int, int]:
    """(burst events handed out, drops counted) for a burst sent while nobody pulls."""
    conn = NatsConnector(unique_name("burst"), NatsOptions(servers=(NATS_URL,)))
    await conn.start()
    try:
        stream = aiter(conn.consume(source))
        await _live(conn, source.subject, stream)
        await _burst(source.subject, count, data_size=data_size)  # nobody pulls meanwhile
        received = len(await _drain(stream))
        await stream.aclose()  # type: ignore[attr-defined]
    finally:
        await conn.close()
    assert conn.health.dropped == conn.slow_consumer_drops
    return received, conn.health.dropped


def _logged_drops(caplog: pytest.LogCaptureFixture) -> tuple[int, int]:
    """(sum of the 'since the last warning' counts, the last 'in all') of the warnings."""
    since, total = 0, 0
    for record in caplog.records:
        match = _DROPPED.search(record.getMessage())
        if match and record.levelno == logging.WARNING:
            since += int(match.group(1))
            total = int(match.group(2))
    return since, total


async def test_defaults_keep_a_30000_event_burst(caplog: pytest.LogCaptureFixture) -> None:
    source = NatsSource(connector="nats", subject=f"{unique_name('burst')}.x")
    assert (source.pending_msgs_limit, source.pending_bytes_limit) == (524_288, 64 * 1024**2)
    assert (PENDING_MSGS_LIMIT, PENDING_BYTES_LIMIT) == (524_288, 64 * 1024**2)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        received, dropped = await _run(source, BURST)
    assert (received, dropped) == (BURST, 0)
    assert _logged_drops(caplog) == (0, 0)


async def test_old_default_drops_and_says_how_many(caplog: pytest.LogCaptureFixture) -> None:
    source = NatsSource(
        connector="nats", subject=f"{unique_name('burst')}.x", pending_msgs_limit=1024
    )
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        received, dropped = await _run(source, BURST)
    # The buffer held 1,024 (a few more once the drain began pulling while the burst
    # was still arriving): most of the burst is lost, and each loss is counted.
    assert received + dropped == BURST
    assert dropped >= BURST // 2, (received, dropped)
    since, total = _logged_drops(caplog)
    assert since == total == dropped, caplog.text[-2000:]  # every drop logged, in counts
    warnings = [r for r in caplog.records if _DROPPED.search(r.getMessage())]
    assert 1 <= len(warnings) <= 3, "throttled: the first at once, then one per 5 s"
    assert source.subject in warnings[0].getMessage()


async def test_byte_limit_bounds_the_buffer() -> None:
    data_size = 4096
    source = NatsSource(
        connector="nats",
        subject=f"{unique_name('burst')}.x",
        pending_bytes_limit=100 * data_size,
    )
    received, dropped = await _run(source, 1000, data_size=data_size)
    assert received + dropped == 1000
    assert dropped >= 500, (received, dropped)  # 100 fit (more once the drain pulls)
