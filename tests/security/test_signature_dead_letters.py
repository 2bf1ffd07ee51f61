"""verify: {policy: strict} on a real broker: refusals end as dead letters with reason
``signature``, in the route's dead-letter destination and in the local store alike,
and ``meshgate dlq list`` shows that reason for both.

System NATS with JetStream (loopback 4222), one stream per test run (unique names).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from collections.abc import Awaitable, Callable
from pathlib import Path

import nats
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from nats.js.api import StreamConfig

from gateway.config import load_config
from gateway.runtime import Gateway
from routing.bindings import Mode
from routing.bindings import nats as binding
from routing.event import CloudEvent
from routing.verifiability import Signer, key_fingerprint
from tests.brokers import NATS_URL, unique_name

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]
ROOT = Path(__file__).resolve().parents[2]


def write_key(directory: Path, name: str) -> tuple[ec.EllipticCurvePrivateKey, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    public = directory / f"{name}.pem"
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return key, public


def event(n: int) -> CloudEvent:
    return CloudEvent(
        id=f"sig-{n}", source="urn:test:sig", type="com.example.signed", data=b'{"n":%d}' % n
    )


async def until(check: Callable[[], bool], timeout: float) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_strict_refusals_are_dead_letters_with_reason_signature(
    tmp_path: Path, nats_url: str
) -> None:
    run = unique_name("sigdl")
    trusted, trusted_pem = write_key(tmp_path, "edge-1")
    stranger, _ = write_key(tmp_path, "stranger")
    nc = await nats.connect(NATS_URL)
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name=run, subjects=[f"{run}.>"]))
    out: list[CloudEvent] = []
    letters: list[CloudEvent] = []

    def collector(into: list[CloudEvent]) -> Callable[[nats.aio.msg.Msg], Awaitable[None]]:
        async def collect(msg: nats.aio.msg.Msg) -> None:
            decoded = binding.from_message(binding.NatsMessage(msg.data, msg.headers))
            assert decoded is not None
            into.append(decoded)

        return collect

    await nc.subscribe(f"{run}.out", cb=collector(out))
    await nc.subscribe(f"{run}.dlq", cb=collector(letters))
    config = tmp_path / "gateway.yaml"
    verify = f'verify: {{public_key_files: ["{trusted_pem}"], policy: strict}}'
    config.write_text(
        textwrap.dedent(f"""
        gateway: {{id: {run}, state_dir: "{tmp_path / "state"}"}}
        connectors:
          edge: {{type: nats, servers: ["{NATS_URL}"]}}
        routes:
          - name: checked
            from: {{connector: edge, subject: "{run}.in", {verify},
                    jetstream: {{stream: {run}, durable: {run}-checked}}}}
            to: [{{connector: edge, subject: "{run}.out"}}]
            dead_letter: {{connector: edge, subject: "{run}.dlq"}}
          - name: checked-local
            from: {{connector: edge, subject: "{run}.local", {verify},
                    jetstream: {{stream: {run}, durable: {run}-local}}}}
            to: [{{connector: edge, subject: "{run}.out"}}]
        """)
    )

    async def publish(subject: str, ev: CloudEvent) -> None:
        message = binding.to_message(ev, Mode.BINARY)
        await js.publish(f"{run}.{subject}", message.data, headers=dict(message.headers or {}))

    gateway = Gateway(load_config(config))
    await gateway.start()
    try:
        await publish("in", Signer(trusted, "edge-1").sign(event(1)))
        await publish("in", event(2))  # not signed
        await publish("in", Signer(stranger, "stranger").sign(event(3)))
        await publish("in", Signer(trusted, "edge-1").sign(event(4)).replace(data=b"{}"))
        await publish("local", event(5))
        await until(lambda: len(out) == 1 and len(letters) == 3, 30)
        await until(lambda: gateway.stats["checked-local"].undeliverable == 1, 30)
    finally:
        await gateway.stop()
        await nc.close()

    assert [ev.id for ev in out] == ["sig-1"]
    # A refused event is not forwarded as an event: its id is in the original headers.
    by_original = {json.loads(str(ev.extensions["dlheaders"]))["ce-id"]: ev for ev in letters}
    assert sorted(by_original) == ["sig-2", "sig-3", "sig-4"]
    for letter in letters:
        assert letter.extensions["dlreason"] == "signature"
    errors = {name: str(letter.extensions["dlerror"]) for name, letter in by_original.items()}
    assert "signature missing: the event is not signed" in errors["sig-2"]
    fingerprint = key_fingerprint(trusted.public_key())
    accepted = ", ".join(sorted([fingerprint, "edge-1"]))  # the refusal lists them sorted
    assert errors["sig-3"].endswith(
        "signature does not verify: no valid signature by an accepted key; key ids in the "
        f"signature: 'stranger' (unknown); accepted key ids: {accepted}"
    )
    assert "does not verify: mismatch" in errors["sig-4"] and "'edge-1'" in errors["sig-4"]

    listed = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "gateway.cli", "dlq", "list", str(config), "--wait", "1"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert listed.returncode == 0, listed.stderr
    rows = [line.split() for line in listed.stdout.splitlines()[1:-1]]
    reasons = {(row[2], row[3]) for row in rows}
    assert reasons == {("checked", "signature"), ("checked-local", "signature")}, listed.stdout
    assert listed.stdout.splitlines()[-1] == "4 dead letters"
