"""Core NATS -> core NATS through a gateway, on the hot path's shortcuts (issue 17).

A burst of binary-mode messages, usual and unusual ones mixed, is forwarded through
one gateway on the loopback NATS server: every valid one arrives with exactly the
headers the checked path gives (the checked reader ``_read``, the general mesh stamp,
``to_message``), in the same order; every malformed one goes to the dead-letter
subject, its payload byte for byte, with the reason ``InvalidEvent``.
"""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import Awaitable, Callable
from pathlib import Path

import nats
import pytest
from nats.aio.msg import Msg

from gateway.config import load_config
from gateway.mesh import LoopGuard
from gateway.runtime import Gateway
from routing.bindings import nats as binding
from routing.bindings.nats import NatsMessage
from routing.event import CloudEvent
from tests.brokers import unique_name
from tests.polling import eventually

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

GATEWAY = "fast-it"
PROBE = b"{}"
USUAL = {
    "ce-id": "?",
    "ce-source": "/it",
    "ce-specversion": "1.0",
    "ce-type": "com.acme.t",
    "ce-datacontenttype": "application/json",
}
VALID: list[dict[str, str]] = [
    {},
    {"ce-time": "2020-01-01T18:31:00Z", "ce-subject": "s"},
    {"CE-SOURCE": "/it"},  # the same attribute twice, same value
    {"ce-subject": "%C3%A9t%C3%A9"},  # escapes
    {"ce-subject": '"quoted value"'},
    {"ce-ext": "a b", "x-other": "dropped"},
    {"ce-meshpath": "elsewhere", "ce-meshhops": "1"},  # from another gateway
]
MALFORMED: list[dict[str, str]] = [
    {"ce-specversion": "2.0"},
    {"ce-time": "2020-01-01T18:31Z"},
    {"ce-dataschema": "not a uri"},
    {"Ce-Id": "other"},  # the same attribute twice, different values
    {"ce-id": "%zz"},
    {"ce-Bad_Name": "x"},
]


def _headers(n: int, change: dict[str, str]) -> dict[str, str]:
    return {**USUAL, "ce-id": f"e{n}", **change}


def _expected(data: bytes, headers: dict[str, str]) -> list[tuple[str, str]]:
    """The checked path's headers for a forwarded message."""
    event = binding._read(NatsMessage(data, headers))
    assert isinstance(event, CloudEvent)
    stamped = LoopGuard(GATEWAY).judge(event)
    assert isinstance(stamped, CloudEvent)
    return list((binding.to_message(stamped).headers or {}).items())


def _into(messages: list[Msg]) -> Callable[[Msg], Awaitable[None]]:
    async def collect(msg: Msg) -> None:
        messages.append(msg)

    return collect


async def test_core_burst_forwards_as_the_checked_path_and_dead_letters_the_malformed(
    nats_url: str, tmp_path: Path
) -> None:
    src, out, dlq = unique_name("fs"), unique_name("fo"), unique_name("fd")
    config = tmp_path / "config.yaml"
    config.write_text(
        textwrap.dedent(f"""
        gateway: {{id: {GATEWAY}, drain_timeout_seconds: 5, state_dir: '{tmp_path}'}}
        connectors:
          n: {{type: nats, servers: ['{nats_url}']}}
        routes:
          - name: r
            from: {{connector: n, subject: '{src}.in'}}
            to: [{{connector: n, subject: '{out}.x', jetstream: false}}]
            dead_letter: {{connector: n, subject: '{dlq}.x', jetstream: false}}
        """)
    )
    nc = await nats.connect(nats_url)
    forwarded: list[Msg] = []
    dead: list[Msg] = []

    await nc.subscribe(f"{out}.x", cb=_into(forwarded))
    await nc.subscribe(f"{dlq}.x", cb=_into(dead))
    gateway = Gateway(load_config(config))
    await gateway.start()
    try:
        # Core NATS keeps nothing: probe until the route forwards (probes, PROBE as
        # data, may still arrive during the burst: left out below).
        async with asyncio.timeout(20):
            while not forwarded:
                await nc.publish(f"{src}.in", PROBE, headers=_headers(-1, {}))
                await nc.flush()
                await asyncio.sleep(0.05)  # the probe's pace, not a wait for a condition
        sent: dict[bytes, dict[str, str]] = {}
        n = 0
        for _round in range(10):  # a burst: the gateway takes it in batches
            for change in [*VALID, *MALFORMED]:
                data = f'{{"n":{n}}}'.encode()
                sent[data] = _headers(n, change)
                await nc.publish(f"{src}.in", data, headers=sent[data])
                n += 1
        await nc.flush()
        valid, malformed = 10 * len(VALID), 10 * len(MALFORMED)

        def burst() -> list[Msg]:
            return [msg for msg in forwarded if msg.data != PROBE]

        await eventually(lambda: len(burst()) >= valid and len(dead) >= malformed, 30)
        await asyncio.sleep(0.2)  # a grace period: no copy may follow (a negative check)
        assert (len(burst()), len(dead)) == (valid, malformed)
        assert gateway.pipelines[0].batcher.batches >= 1
        for msg in burst():
            assert list((msg.headers or {}).items()) == _expected(msg.data, sent[msg.data])
        wanted = {data for data, headers in sent.items() if _is_malformed(headers)}
        assert {msg.data for msg in dead} == wanted
        for msg in dead:
            letter = binding.from_message(NatsMessage(msg.data, msg.headers))
            assert letter is not None
            assert letter.extensions["dlreason"] == "InvalidEvent"
    finally:
        await gateway.stop()
        await nc.close()


def _is_malformed(headers: dict[str, str]) -> bool:
    return any(all(headers.get(k) == v for k, v in change.items()) for change in MALFORMED)
