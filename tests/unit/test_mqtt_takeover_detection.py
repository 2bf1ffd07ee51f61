"""Recognising an MQTT session takeover (``connectors.mqtt.takeover``), without a broker.

The real-broker test (two connectors with one client id on the loopback Mosquitto)
is tests/integration/test_mqtt_takeover.py; Mosquitto 2.0 closes the socket without
DISCONNECT 0x8E, so the reason-code path is proven here.
"""

from __future__ import annotations

import asyncio
import logging

import paho.mqtt.client as paho
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from connectors.backoff import Backoff, BackoffPolicy
from connectors.base import Health
from connectors.mqtt import MqttOptions
from connectors.mqtt.hub import Hub
from connectors.mqtt.session import Session
from connectors.mqtt.takeover import QUICK_LOSSES, QUICK_SECONDS, ConnectionWatch
from connectors.supervision import Supervisor

LABEL = "connector plant (mqtt mqtt://127.0.0.1:1883)"


def hub() -> Hub:
    options = MqttOptions(url="mqtt://127.0.0.1:1883", client_id="dup")
    log = logging.getLogger("meshgate.connectors.mqtt")
    supervisor = Supervisor(Health(), lambda: LABEL, log, policy=BackoffPolicy(0.2, 10.0))
    return Hub("plant", options, supervisor, log)


class Clock:
    """The event loop's clock, moved by hand: how long connections held."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = 1000.0
        monkeypatch.setattr(asyncio.get_running_loop(), "time", lambda: self.now)


def connected(sessions: Hub, watch: ConnectionWatch) -> None:
    """A CONNACK, as the source and the publisher report it."""
    watch.connected()
    sessions.up(watch.client_id)


def lost(sessions: Hub, watch: ConnectionWatch, session: Session, reason: str) -> str:
    """A loss, as the source and the publisher report it (takeover as suspect)."""
    detail = watch.lost(session, reason)
    sessions.down(watch.client_id, detail, suspect=watch.taken_over)
    return detail


def backoff(sessions: Hub) -> Backoff:
    return sessions.supervisor._lines["dup"].backoff


def disconnect(session: Session, reason: int | None) -> None:
    """What paho reports: DISCONNECT with ``reason`` from the broker, or a closed socket."""
    code = ReasonCode(PacketTypes.DISCONNECT, identifier=reason if reason is not None else 0x80)
    flags = paho.DisconnectFlags(is_disconnect_packet_from_server=reason is not None)
    session._on_disconnect(session._client, None, flags, code, None)


def takeover_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.ERROR and "session taken over" in r.getMessage()
    ]


async def test_reason_0x8e_is_a_takeover_reported_once(caplog: pytest.LogCaptureFixture) -> None:
    sessions = hub()
    watch = sessions.watch("dup")
    for _ in range(5):
        session = sessions.session("dup", clean_start=True, session_expiry=0)
        watch.connected()
        disconnect(session, 0x8E)
        assert session.taken_over
        detail = watch.lost(session, session.closed.result())
        assert detail.startswith("session taken over: another client uses client id 'dup'")
        assert watch.taken_over and watch.level == logging.DEBUG
        await session.close()
    (error,) = takeover_errors(caplog)  # one ERROR, not one per reconnect
    assert error.startswith(f"{LABEL}: MQTT session taken over")
    assert "client id 'dup'" in error and "0x8E" in error


async def test_immediate_disconnects_in_a_row_count_as_a_takeover_and_grow_the_backoff(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sessions = hub()
    watch = sessions.watch("dup")
    for n in range(1, QUICK_LOSSES + 1):
        session = sessions.session("dup", clean_start=True, session_expiry=0)
        connected(sessions, watch)  # and closed by the broker at once, without a reason
        disconnect(session, None)
        assert not session.taken_over
        lost(sessions, watch, session, session.closed.result())
        assert watch.taken_over is (n == QUICK_LOSSES)
        sessions.supervisor.next_delay("dup")  # what the core's pause draws
    assert backoff(sessions).attempt == QUICK_LOSSES  # never reset: the waits grow
    (error,) = takeover_errors(caplog)
    assert f"{QUICK_LOSSES} times in a row" in error and "client id 'dup'" in error


async def test_a_connection_that_held_resets_the_backoff_and_is_no_takeover(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock(monkeypatch)
    sessions = hub()
    watch = sessions.watch("dup")
    for _ in range(QUICK_LOSSES + 2):
        session = sessions.session("dup", clean_start=True, session_expiry=0)
        connected(sessions, watch)
        clock.now += QUICK_SECONDS + 1  # it held for a while (a broker restart, say)
        disconnect(session, None)
        detail = lost(sessions, watch, session, "disconnected (Unspecified error)")
        assert detail.startswith("disconnected")
        assert not watch.taken_over and watch.level == logging.WARNING
        sessions.supervisor.next_delay("dup")
        sessions.supervisor.next_delay("dup")  # failed attempts while the broker is away
    connected(sessions, watch)
    clock.now += QUICK_SECONDS + 1
    lost(sessions, watch, session, "disconnected")
    assert backoff(sessions).attempt == 0
    assert takeover_errors(caplog) == []


async def test_failed_attempts_are_not_immediate_disconnects() -> None:
    sessions = hub()
    watch = sessions.watch("dup")
    for _ in range(QUICK_LOSSES + 2):
        session = sessions.session("dup", clean_start=True, session_expiry=0)
        session.abort("connect failed: refused")  # no CONNACK: connected() never ran
        lost(sessions, watch, session, "cannot connect")
        assert not watch.taken_over


async def test_after_a_takeover_the_backoff_grows_until_a_connection_held_long(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = Clock(monkeypatch)
    sessions = hub()
    watch = sessions.watch("dup")
    session = sessions.session("dup", clean_start=True, session_expiry=0)
    connected(sessions, watch)
    disconnect(session, 0x8E)
    lost(sessions, watch, session, session.closed.result())
    sessions.supervisor.next_delay("dup")
    # The other client's next connect ends a connection that held a few seconds: no
    # reason code (Mosquitto 2.0), not immediate, yet no reset while the takeover lasts.
    session = sessions.session("dup", clean_start=True, session_expiry=0)
    connected(sessions, watch)
    clock.now += QUICK_SECONDS + 3
    disconnect(session, None)
    lost(sessions, watch, session, session.closed.result())
    assert backoff(sessions).attempt == 1
    # Held for a long while: calm again, the next loss starts from a short wait.
    session = sessions.session("dup", clean_start=True, session_expiry=0)
    connected(sessions, watch)
    clock.now += 3600
    disconnect(session, None)
    lost(sessions, watch, session, session.closed.result())
    assert backoff(sessions).attempt == 0 and not watch.taken_over
    assert sessions.supervisor.health.reconnects == 2  # returns after a loss, per key
