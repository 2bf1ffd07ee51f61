"""A gateway that cannot log in still stops promptly on SIGTERM.

``meshgate run`` with a wrong password for a broker with authentication (NATS,
MQTT, AMQP, over TLS as in production) gets SIGTERM at three moments: while its first
connection attempt runs (``start``; the admin port is open, so the signal handlers
are installed), while it connects again after a failed attempt, and during the
backoff wait between two attempts. Each time it must exit with status 0 (a SIGTERM
stop, docs/operations.md) within ``BOUND`` seconds.

The NATS connector uses ``reconnect_wait_seconds: 0``: nats-py then retries its
first connection back to back, so a stop mostly lands in its clean-up between two
tries, where it swallows a cancel. Before ``connectors.nats.link._end_connect`` the
abandoned connect loop kept the process alive after "gateway ... stopped" (asyncio.run
waits for every task it cancels at exit): about half of such stops hung for good.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from pathlib import Path

import pytest

from gateway.localbrokers import LOOPBACK, free_port, port_open
from tests.faults.gateway import GatewayProcess
from tests.polling import until
from tests.security.brokers import USER, Pki, SecureMosquitto, SecureNats, SecureRabbit

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

WRONG = "wrong-Tk57-secret"
BOUND = 10.0
"""Seconds from SIGTERM to exit: the drain has nothing to do, connectors never connected."""

MOMENTS = ("first attempt", "connecting again", "backoff")


def _connector(kind: str, request: pytest.FixtureRequest, pki: Pki) -> str:
    """The YAML of connector ``c`` with a wrong password, against the private broker."""
    if kind == "nats":
        nats: SecureNats = request.getfixturevalue("nats_users")
        return (
            f'{{type: nats, servers: ["{nats.url}"], user: {USER}, password: "{WRONG}", '
            f'tls: {{ca_file: "{pki.ca}"}}, connect_timeout_seconds: 2, '
            "reconnect_wait_seconds: 0}"
        )
    if kind == "mqtt":
        mqtt: SecureMosquitto = request.getfixturevalue("mosquitto")
        return (
            f'{{type: mqtt, url: "mqtts://{LOOPBACK}:{mqtt.port}", username: {USER}, '
            f'password: "{WRONG}", tls: {{ca_file: "{pki.ca}"}}}}'
        )
    rabbit: SecureRabbit = request.getfixturevalue("rabbit")
    return (
        f'{{type: amqp, url: "amqps://{USER}:{WRONG}@{LOOPBACK}:{rabbit.port}/", '
        f'tls: {{ca_file: "{pki.ca}"}}}}'
    )


_ROUTES = {
    "nats": "from: {connector: c, subject: ok.in}\n    to: [{connector: c, subject: ok.out}]",
    "mqtt": "from: {connector: c, topic: ok/in, qos: 1}\n    to: [{connector: c, topic: ok/out}]",
    "amqp": (
        "from: {connector: c, queue: ok.in}\n"
        "    to: [{connector: c, exchange: amq.default, routing_key: ok.out}]"
    ),
}


def _config(path: Path, connector: str, kind: str, admin: int, backoff: float) -> Path:
    path.write_text(
        f"""
gateway:
  id: stop-while-connecting
  state_dir: "{path.parent / "state"}"
  admin: {{listen: "{LOOPBACK}:{admin}"}}
  reconnect: {{initial_backoff_seconds: {backoff}, max_backoff_seconds: {max(backoff, 1.0)}}}
connectors:
  c: {connector}
routes:
  - name: r
    {_ROUTES[kind]}
"""
    )
    return path


@pytest.mark.parametrize("moment", MOMENTS)
@pytest.mark.parametrize("kind", ["nats", "mqtt", "amqp"])
async def test_sigterm_stops_a_gateway_that_cannot_log_in(
    kind: str, moment: str, request: pytest.FixtureRequest, pki: Pki, tmp_path: Path
) -> None:
    admin = free_port()
    backoff = 5.0 if moment == "backoff" else 0.2  # the first wait: 2.5-5 s, or 0.1-0.2 s
    cfg = _config(tmp_path / "gw.yaml", _connector(kind, request, pki), kind, admin, backoff)
    gateway = GatewayProcess(cfg, tmp_path / "gateway.log", log_level="debug").start()
    try:
        assert await until(lambda: port_open(admin), 30), "admin port not open"
        if moment != "first attempt":
            failed = await until(lambda: "connect failed (attempt 1" in gateway.current_log(), 30)
            assert failed, f"no failed attempt:\n{gateway.current_log()[-3000:]}"
            if moment == "connecting again":
                # Not a wait for a condition but the moment itself: past the 0.1-0.2 s
                # backoff, into the second attempt (no log line marks its start).
                await asyncio.sleep(0.5)
        assert gateway.process is not None
        signalled = time.monotonic()
        gateway.process.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.to_thread(gateway.process.wait, BOUND)
        except subprocess.TimeoutExpired:
            pytest.fail(f"no exit {BOUND}s after SIGTERM:\n{gateway.current_log()[-3000:]}")
        took = time.monotonic() - signalled
    finally:
        gateway.close()
    log = gateway.current_log()
    assert code == 0, log[-3000:]
    assert "gateway stop-while-connecting stopped" in log, log[-3000:]
    assert WRONG not in log
    print(f"{kind} / {moment}: exited {took:.2f}s after SIGTERM")
