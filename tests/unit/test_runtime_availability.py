"""Partial availability with the in-memory connector: connectors that cannot connect
are retried in the background, the routes that need them wait, the others run.

The real-broker proof (a gateway process, a private broker appearing late) is
tests/faults/test_fault_partial_start.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from connectors.base import HealthState
from connectors.errors import ConnectionLost
from connectors.memory import MemoryBroker
from gateway.config import load_config
from gateway.runtime import ConnectorStartFailed, Gateway
from routing.bindings import Mode
from routing.bindings import nats as binding
from routing.event import CloudEvent
from tests.polling import eventually

CONFIG = """
gateway:
  id: avail-gw
  drain_timeout_seconds: 5
  reconnect: {{initial_backoff_seconds: 0.01, max_backoff_seconds: 0.05}}
  fail_fast: {fail_fast}
connectors:
  up: {{type: memory, namespace: up}}
  down: {{type: memory, namespace: down}}
routes:
  - name: healthy
    from: {{connector: up, topic: a}}
    to: [{{connector: up, topic: a.out}}]
  - name: late
    from: {{connector: up, topic: b}}
    to: [{{connector: down, topic: b.out}}]
"""


def event(n: int) -> CloudEvent:
    return CloudEvent(id=f"e{n}", source="urn:test", type="com.acme.thing", data=b"{}")


def put(namespace: str, topic: str, n: int) -> None:
    MemoryBroker.get(namespace).put(topic, binding.to_message(event(n), Mode.BINARY))


def waiting(namespace: str, topic: str) -> int:
    return len(MemoryBroker.get(namespace).topics[topic].messages)


@pytest.fixture(autouse=True)
def fresh_broker() -> None:
    MemoryBroker.reset()


@pytest.fixture
def config_file(tmp_path: Path) -> Callable[..., Path]:
    def write(fail_fast: bool = False, extra: str = "") -> Path:
        path = tmp_path / "config.yaml"
        text = CONFIG.format(fail_fast=str(fail_fast).lower()) + textwrap.dedent(extra)
        path.write_text(text)
        return path

    return write


async def test_a_down_connector_is_retried_and_its_routes_start_when_it_is_up(
    config_file: Callable[..., Path], caplog: pytest.LogCaptureFixture
) -> None:
    down = MemoryBroker.get("down")
    down.fail_starts = [ConnectionLost("connection refused")] * 1000  # down until cleared
    gateway = Gateway(load_config(config_file()))
    caplog.set_level(logging.INFO, logger="meshgate")
    await gateway.start()
    try:
        health = gateway.connectors["down"].health
        assert health.state is HealthState.STARTING
        assert "connection refused" in health.detail
        assert gateway.waiting_routes() == ["late"]
        put("up", "a", 1)
        put("up", "b", 2)
        await eventually(lambda: waiting("up", "a.out") == 1)  # the healthy route runs
        await eventually(lambda: down.starts >= 3)  # retried with the shared backoff
        assert waiting("up", "b") == 1  # the late route does not consume yet
        assert " started: " not in caplog.text
        assert "running with 1 of 2 connectors down (down)" in caplog.text
        assert "connector down (memory): connect failed (attempt 1" in caplog.text

        down.fail_starts = []  # the broker appears
        await eventually(lambda: waiting("down", "b.out") == 1)
        assert health.state is HealthState.UP and health.detail == ""
        assert health.reconnects == 0  # first-connection retries are not reconnects
        assert gateway.waiting_routes() == []
        assert "connector down is up: routes late now consuming" in caplog.text
        assert "gateway avail-gw started: 2 connectors, 2 routes" in caplog.text
    finally:
        await gateway.stop()


async def test_fail_fast_raises_naming_the_connector_and_closes_the_others(
    config_file: Callable[..., Path],
) -> None:
    MemoryBroker.get("down").fail_starts = [ConnectionLost("connection refused")]
    gateway = Gateway(load_config(config_file(fail_fast=True)))
    with pytest.raises(ConnectorStartFailed) as failed:
        await gateway.start()
    assert str(failed.value).startswith("connector down (memory): connect failed:")
    assert gateway.connectors["up"].health.state is HealthState.CLOSED


async def test_forced_fail_fast_overrides_the_config(config_file: Callable[..., Path]) -> None:
    MemoryBroker.get("down").fail_starts = [ConnectionLost("connection refused")]
    gateway = Gateway(load_config(config_file()), fail_fast=True)  # meshgate run --fail-fast
    with pytest.raises(ConnectorStartFailed):
        await gateway.start()


async def test_reload_with_a_down_connector_keeps_running_and_its_route_waits(
    config_file: Callable[..., Path],
) -> None:
    path = config_file()
    gateway = Gateway(load_config(path))
    await gateway.start()
    try:
        text = path.read_text().replace(
            "routes:\n", "  new: {type: memory, namespace: new}\nroutes:\n"
        )
        text += (
            "  - name: fresh\n"
            "    from: {connector: up, topic: c}\n"
            "    to: [{connector: new, topic: c.out}]\n"
        )
        path.write_text(text)
        new = MemoryBroker.get("new")
        new.fail_starts = [ConnectionLost("connection refused")] * 1000
        result = await gateway.reload(load_config(path))  # does not refuse the reload
        assert "fresh" in result.restarted
        assert gateway.waiting_routes() == ["fresh"]
        assert gateway.connectors["new"].health.state is HealthState.STARTING
        put("up", "c", 3)
        put("up", "a", 4)
        await eventually(lambda: waiting("up", "a.out") == 1)  # the kept route runs on
        assert waiting("up", "c") == 1
        new.fail_starts = []
        await eventually(lambda: waiting("new", "c.out") == 1)
        assert gateway.waiting_routes() == []
    finally:
        await gateway.stop()


async def test_stop_while_a_connector_is_still_connecting(
    config_file: Callable[..., Path],
) -> None:
    down = MemoryBroker.get("down")
    down.fail_starts = [ConnectionLost("connection refused")] * 1000
    gateway = Gateway(load_config(config_file()))
    await gateway.start()
    await gateway.stop()
    # no connection attempt is left running: nothing retries after the stop
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("connect:")]
    assert gateway.connectors["down"].health.state is HealthState.CLOSED
    assert gateway.waiting_routes() == ["late"]  # never started


@pytest.mark.timeout(15)  # the bug: stop() waited forever
async def test_stop_when_a_connect_swallows_the_cancel(
    config_file: Callable[..., Path],
) -> None:
    """A client library that swallows the cancel of a connect (nats-py does, in its
    clean-up) must neither keep retrying after a stop nor keep stop() waiting."""
    gateway = Gateway(load_config(config_file()))
    attempts = 0

    async def stubborn_start() -> None:
        nonlocal attempts
        attempts += 1
        if attempts > 1:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(3600)
        raise ConnectionLost("connection refused")

    gateway.connectors["down"].start = stubborn_start  # type: ignore[method-assign]
    await gateway.start()
    await eventually(lambda: attempts == 2)  # the second attempt hangs
    async with asyncio.timeout(5):
        await gateway.stop()
    assert attempts == 2  # not retried after the stop
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("connect:")]
