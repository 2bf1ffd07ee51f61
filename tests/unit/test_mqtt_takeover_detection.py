"""Recognising an MQTT session takeover (``connectors.mqtt.takeover``), without a broker.

The real-broker test (two connectors with one client id on the loopback Mosquitto)
is tests/integration/test_mqtt_takeover.py; Mosquitto 2.0 closes the socket without
DISCONNECT 0x8E, so the reason-code path is proven here.
"""

from __future__ import annotations

import logging

import paho.mqtt.client as paho
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from connectors.backoff import Backoff
from connectors.base import Health
from connectors.mqtt import MqttOptions
from connectors.mqtt.hub import Hub
from connectors.mqtt.session import Session
from connectors.mqtt.takeover import QUICK_LOSSES, QUICK_SECONDS

LABEL = "connector plant (mqtt mqtt://127.0.0.1:1883)"


def hub() -> Hub:
    options = MqttOptions(url="mqtt://127.0.0.1:1883", client_id="dup")
    return Hub(
        "plant",
        options,
        Health(),
        logging.getLogger("meshgate.connectors.mqtt"),
        new_backoff=lambda: Backoff(0.2, 10.0),
    )


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
        watch.connected()  # and closed by the broker at once, without a reason
        disconnect(session, None)
        assert not session.taken_over
        watch.lost(session, session.closed.result())
        assert watch.taken_over is (n == QUICK_LOSSES)
        watch.backoff.next_delay()  # what pause() draws
    assert watch.backoff.attempt == QUICK_LOSSES  # never reset: the waits grow
    (error,) = takeover_errors(caplog)
    assert f"{QUICK_LOSSES} times in a row" in error and "client id 'dup'" in error


async def test_a_connection_that_held_resets_the_backoff_and_is_no_takeover(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sessions = hub()
    watch = sessions.watch("dup")
    for _ in range(QUICK_LOSSES + 2):
        session = sessions.session("dup", clean_start=True, session_expiry=0)
        watch.connected()
        assert watch._since is not None
        watch._since -= QUICK_SECONDS + 1  # it held for a while (a broker restart, say)
        disconnect(session, None)
        assert watch.lost(session, "disconnected (Unspecified error)").startswith("disconnected")
        assert not watch.taken_over and watch.level == logging.WARNING
        watch.backoff.next_delay()
        watch.backoff.next_delay()  # failed attempts while the broker is away
    watch.connected()
    watch._since -= QUICK_SECONDS + 1
    watch.lost(session, "disconnected")
    assert watch.backoff.attempt == 0
    assert takeover_errors(caplog) == []


async def test_failed_attempts_are_not_immediate_disconnects() -> None:
    sessions = hub()
    watch = sessions.watch("dup")
    for _ in range(QUICK_LOSSES + 2):
        session = sessions.session("dup", clean_start=True, session_expiry=0)
        session.abort("connect failed: refused")  # no CONNACK: connected() never ran
        watch.lost(session, "cannot connect")
        assert not watch.taken_over


async def test_after_a_takeover_the_backoff_grows_until_a_connection_held_long() -> None:
    sessions = hub()
    watch = sessions.watch("dup")
    session = sessions.session("dup", clean_start=True, session_expiry=0)
    watch.connected()
    disconnect(session, 0x8E)
    watch.lost(session, session.closed.result())
    watch.backoff.next_delay()
    # The other client's next connect ends a connection that held a few seconds: no
    # reason code (Mosquitto 2.0), not immediate, yet no reset while the takeover lasts.
    session = sessions.session("dup", clean_start=True, session_expiry=0)
    watch.connected()
    assert watch._since is not None
    watch._since -= QUICK_SECONDS + 3
    disconnect(session, None)
    watch.lost(session, session.closed.result())
    assert watch.backoff.attempt == 1
    # Held for a long while: calm again, the next loss starts from a short wait.
    session = sessions.session("dup", clean_start=True, session_expiry=0)
    watch.connected()
    watch._since -= 3600
    disconnect(session, None)
    watch.lost(session, session.closed.result())
    assert watch.backoff.attempt == 0 and not watch.taken_over
