"""Secrets never appear in what the gateway prints, logs or dead-letters.

A gateway subprocess (DEBUG logs) runs with known secrets: a NATS password from the
environment, an MQTT password from a file, both over verified TLS to the private
brokers. An event goes through a route whose MQTT target the ACL refuses, so it is
dead-lettered; a second gateway has a wrong password and fails to start. Every output
(the logs of both runs, ``validate``, ``routes check``, the dead letter) is searched
for every secret.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import subprocess
import sys
import urllib.request
from pathlib import Path

import nats
import pytest

from gateway.localbrokers import free_port
from tests.faults.brokers import ROOT
from tests.faults.gateway import GatewayProcess
from tests.security.brokers import PASSWORD, USER, Pki, SecureMosquitto, SecureNats

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

WRONG = "wrong-Vq40-secret"


def config(
    path: Path, nats_url: str, mqtt_port: int, pki: Pki, password_file: Path, admin: int
) -> Path:
    path.write_text(
        f"""
gateway: {{id: secrets-test, admin: {{listen: "127.0.0.1:{admin}"}}}}
connectors:
  edge:
    type: nats
    servers: ["{nats_url}"]
    user: {USER}
    password: "${{MESHGATE_TEST_NATS_PASSWORD}}"
    tls: {{ca_file: "{pki.ca}"}}
  plant:
    type: mqtt
    url: "mqtts://127.0.0.1:{mqtt_port}"
    username: {USER}
    password_file: "{password_file}"
    tls: {{ca_file: "{pki.ca}"}}
routes:
  - name: denied
    from: {{connector: edge, subject: ok.in}}
    ingress: {{type: com.example.secret, source: /test}}
    to: [{{connector: plant, topic: ro/denied, qos: 1}}]
    retry: {{max_attempts: 1}}
    dead_letter: {{connector: edge, subject: ok.dlq, jetstream: false}}
"""
    )
    return path


def http_get(port: int, path: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as answer:
        return str(answer.read().decode())


def meshgate(*args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
    )
    return done.stdout + done.stderr


async def test_no_secret_in_logs_errors_or_dead_letters(
    nats_users: SecureNats,
    mosquitto: SecureMosquitto,
    pki: Pki,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    password_file = tmp_path / "mqtt-password"
    password_file.write_text(PASSWORD + "\n")
    monkeypatch.setenv("MESHGATE_TEST_NATS_PASSWORD", PASSWORD)
    admin = free_port()
    cfg = config(tmp_path / "gw.yaml", nats_users.url, mosquitto.port, pki, password_file, admin)
    outputs = {"validate": meshgate("validate", str(cfg))}
    event = json.dumps({"specversion": "1.0", "id": "1", "source": "/t", "type": "t.t"})
    event_file = tmp_path / "event.json"
    event_file.write_text(event)
    outputs["routes check"] = meshgate("routes", "check", str(cfg), "--event", str(event_file))

    client = await nats.connect(
        nats_users.url,
        user=USER,
        password=PASSWORD,
        tls=ssl.create_default_context(cafile=str(pki.ca)),
    )
    dead = await client.subscribe("ok.dlq")
    await client.flush()
    gateway = GatewayProcess(cfg, tmp_path / "gateway.log", log_level="debug").start()
    try:
        await gateway.wait_started(30)
        await client.publish("ok.in", b'{"reading": 1}')
        await client.flush()
        letter = await dead.next_msg(timeout=30)
        for path in ("/api/connectors", "/api/routes", "/metrics", "/readyz"):
            outputs[f"admin {path}"] = await asyncio.to_thread(http_get, admin, path)
    finally:
        code = gateway.terminate()
        await client.close()
    outputs["dead letter"] = letter.data.decode(errors="replace") + json.dumps(letter.headers)
    assert "0x87" in outputs["dead letter"] or "Not authorized" in outputs["dead letter"]
    outputs["gateway log"] = gateway.log_text()
    assert code == 0, outputs["gateway log"][-2000:]

    # A wrong password: the gateway says why it cannot connect, without the password.
    monkeypatch.setenv("MESHGATE_TEST_NATS_PASSWORD", WRONG)
    wrong = GatewayProcess(cfg, tmp_path / "wrong.log", log_level="debug")
    wrong.start()
    try:
        deadline = asyncio.get_running_loop().time() + 30
        while (
            "connector edge" not in wrong.current_log()
            or "connect failed" not in wrong.current_log()
        ):
            assert asyncio.get_running_loop().time() < deadline, wrong.current_log()
            await asyncio.sleep(0.2)
        assert "WARNING asyncio" not in wrong.current_log()  # nats-py TLS noise is DEBUG
    finally:
        wrong.terminate()
    outputs["wrong-password log"] = wrong.log_text()

    for where, text in outputs.items():
        assert text, f"{where}: no output to check"
        for secret in (PASSWORD, WRONG, pki.key_password_file.read_text().strip()):
            assert secret not in text, f"{where} shows a secret:\n{text[-3000:]}"
