"""The NATS link watchdog's decisions, with a stand-in client (no server).

When it probes (timeouts in a row, nothing received in between, the client says it
is connected), what an answered probe means (a slow server: keep the client) and what
an unanswered one does (replace the client, fail what waits on it, one WARNING,
Health reconnecting). The real silent link is reproduced with a blackholing proxy in
tests/faults/test_fault_silent_link.py.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlparse

import nats.errors
import pytest

from connectors.base import Health, HealthState
from connectors.nats.config import NatsOptions
from connectors.nats.link import Link, LinkReplaced
from connectors.supervision import Supervisor
from gateway.localbrokers import LOOPBACK, free_port


def _supervisor() -> Supervisor:
    supervisor = Supervisor(Health(), lambda: "connector edge (nats)", logging.getLogger("test"))
    supervisor.connected("")  # up, as after start()
    return supervisor


class StandIn:
    """Enough of nats-py's Client for the watchdog, PubAcks and SharedFlush."""

    def __init__(self, answers: bool) -> None:
        self.answers = answers  # does the probe get its "no responders"?
        self.is_connected = True
        self.is_closed = False
        self.stats = {"in_msgs": 0}
        self.probes = 0
        self.closed = asyncio.Event()
        self.connected_url = urlparse("nats://127.0.0.1:4222")

    def new_inbox(self) -> str:
        return f"_INBOX.{self.probes}"

    async def request(self, subject: str, payload: bytes, timeout: float) -> None:
        self.probes += 1
        if self.answers:
            raise nats.errors.NoRespondersError
        await asyncio.sleep(timeout)
        raise nats.errors.TimeoutError

    async def subscribe(self, subject: str, cb: Any) -> None:
        pass

    async def publish(self, *args: Any, **kwargs: Any) -> None:
        pass  # swallowed: nothing ever answers

    async def flush(self, timeout: int) -> None:
        if self.answers:
            return
        await asyncio.sleep(timeout)  # no PONG
        raise nats.errors.FlushTimeoutError

    async def close(self) -> None:
        self.is_closed, self.is_connected = True, False
        self.closed.set()


@pytest.fixture
async def link() -> AsyncIterator[Link]:
    # A closed port: the replacement client keeps trying until the link closes.
    options = NatsOptions(
        servers=(f"nats://{LOOPBACK}:{free_port()}",),
        publish_timeout=0.2,
        reconnect_wait=0.1,
        connect_timeout=0.2,
        watchdog_timeouts=3,
    )
    link = Link("edge", options, _supervisor(), logging.getLogger("meshgate.connectors.nats"))
    try:
        yield link
    finally:
        await link.close()


def adopt(link: Link, client: StandIn) -> None:
    link._adopt(client)  # type: ignore[arg-type]


async def settle(link: Link) -> None:
    """Let a started probe finish."""
    probe = link._probe
    if probe is not None:
        await asyncio.wait_for(asyncio.gather(probe, return_exceptions=True), 5)


async def test_no_probe_below_the_threshold_or_while_messages_arrive(link: Link) -> None:
    client = StandIn(answers=False)
    adopt(link, client)
    nc: Any = client
    link.note_timeout(nc)
    link.note_timeout(nc)
    client.stats["in_msgs"] += 1  # the server sent something: the link is not silent
    link.note_timeout(nc)
    link.note_timeout(nc)
    await settle(link)
    assert client.probes == 0 and link.watchdog_replacements == 0


async def test_no_probe_while_nats_py_knows_it_is_disconnected(link: Link) -> None:
    client = StandIn(answers=False)
    adopt(link, client)
    client.is_connected = False  # reconnecting: nats-py handles it
    for _ in range(10):
        link.note_timeout(client)  # type: ignore[arg-type]
    await settle(link)
    assert client.probes == 0


async def test_an_answered_probe_keeps_the_client(
    link: Link, caplog: pytest.LogCaptureFixture
) -> None:
    client = StandIn(answers=True)
    adopt(link, client)
    with caplog.at_level(logging.DEBUG, "meshgate.connectors.nats"):
        for _ in range(3):
            link.note_timeout(client)  # type: ignore[arg-type]
        await settle(link)
    assert client.probes == 1 and link.watchdog_replacements == 0
    assert link.current() is client and not client.is_closed
    assert "slow, not silent" in caplog.text
    for _ in range(3):
        link.note_timeout(client)  # type: ignore[arg-type]
    await settle(link)
    assert client.probes == 1  # calm for publish_timeout after an answered probe
    await asyncio.sleep(0.25)
    for _ in range(3):
        link.note_timeout(client)  # type: ignore[arg-type]
    await settle(link)
    assert client.probes == 2


async def test_traffic_or_a_reconnect_during_the_probe_keeps_the_client(link: Link) -> None:
    client = StandIn(answers=False)
    adopt(link, client)
    for _ in range(3):
        link.note_timeout(client)  # type: ignore[arg-type]
    await asyncio.sleep(0.05)  # the probe is waiting
    client.stats["in_msgs"] += 1  # a PubAck trickles in meanwhile
    await settle(link)
    assert client.probes == 1 and link.watchdog_replacements == 0
    await asyncio.sleep(0.25)  # past the calm period
    for _ in range(3):
        link.note_timeout(client)  # type: ignore[arg-type]
    await asyncio.sleep(0.05)
    adopt(link, client)  # nats-py reconnected by itself meanwhile (reconnected_cb)
    await settle(link)
    assert link.watchdog_replacements == 0 and link.current() is client


async def test_an_unanswered_probe_replaces_the_client(
    link: Link, caplog: pytest.LogCaptureFixture
) -> None:
    client = StandIn(answers=False)
    nc: Any = client
    adopt(link, client)
    waiting = asyncio.create_task(link.pubacks(nc).publish("s", b"", None, 60))
    flushing = asyncio.create_task(link.flusher(nc).flush(60))
    await asyncio.sleep(0.01)
    with caplog.at_level(logging.INFO, "meshgate.connectors.nats"):
        for _ in range(5):
            link.note_timeout(nc)
        await settle(link)
        await asyncio.wait_for(client.closed.wait(), 5)
    assert client.probes == 1 and link.watchdog_replacements == 1
    # What waited on the silent client fails at once, retriably (ConnectionClosedError).
    for task in (waiting, flushing):
        with pytest.raises(LinkReplaced):
            await asyncio.wait_for(task, 1)
    assert link._supervisor.health.state is HealthState.RECONNECTING
    assert "went silent" in link._supervisor.health.detail
    silent = [r for r in caplog.records if "silent (" in r.getMessage()]
    assert len(silent) == 1 and silent[0].levelno == logging.WARNING
    assert silent[0].getMessage().startswith("edge: NATS link to nats://127.0.0.1:4222 silent")
    link.note_timeout(nc)  # an old client's late timeouts are ignored
    assert link.watchdog_replacements == 1


async def test_off_when_zero() -> None:
    options = NatsOptions(watchdog_timeouts=0)
    link = Link("edge", options, _supervisor(), logging.getLogger("test"))
    client = StandIn(answers=False)
    adopt(link, client)
    for _ in range(10):
        link.note_timeout(client)  # type: ignore[arg-type]
    assert link._probe is None
