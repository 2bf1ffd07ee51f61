"""sign: on targets and verify: on sources, through the runtime (in-memory connector)."""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from connectors.memory import MemoryBroker
from connectors.signing import SignOptions
from gateway.config import load_config
from gateway.errors import ConfigError
from gateway.runtime import Gateway
from routing.bindings import Mode
from routing.bindings import nats as binding
from routing.event import CloudEvent
from routing.verifiability import (
    MATERIAL_ATTRIBUTE,
    Signer,
    Verifier,
    key_fingerprint,
    load_private_key,
)
from tests.polling import eventually

HEADER = """
gateway: {{id: sign-gw, drain_timeout_seconds: 5, state_dir: '{state}'}}
connectors:
  mem: {{type: memory}}
routes:
"""


def event(n: int, **changes: object) -> CloudEvent:
    base = CloudEvent(id=f"e{n}", source="urn:test", type="com.acme.thing", data=b'{"n":%d}' % n)
    return base.replace(**changes) if changes else base


def put(topic: str, ev: CloudEvent) -> None:
    MemoryBroker.get("default").put(topic, binding.to_message(ev, Mode.BINARY))


def received(topic: str) -> list[CloudEvent]:
    out = []
    for message in MemoryBroker.get("default").drain(topic):
        decoded = binding.from_message(message)
        assert decoded is not None
        out.append(decoded)
    return out


@pytest.fixture(autouse=True)
def fresh_broker() -> None:
    MemoryBroker.reset()


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    """A signing key, its public key, and another public key."""
    paths = {}
    for name in ("edge", "other"):
        key = ec.generate_private_key(ec.SECP256R1())
        private = tmp_path / f"{name}.key"
        private.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        public = tmp_path / f"{name}.pem"
        public.write_bytes(
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        paths[f"{name}_private"], paths[f"{name}_public"] = private, public
    return paths


@pytest.fixture
async def gateway_for(tmp_path: Path) -> AsyncIterator[Callable[[str], object]]:
    started: list[Gateway] = []

    async def start(routes: str) -> Gateway:
        path = tmp_path / "config.yaml"
        header = HEADER.format(state=tmp_path / "state")
        path.write_text(header + textwrap.indent(textwrap.dedent(routes), "  "))
        gw = Gateway(load_config(path))
        await gw.start()
        started.append(gw)
        return gw

    yield start  # type: ignore[misc]
    for gw in started:
        await gw.stop()


async def test_signed_by_one_route_verified_by_the_next(gateway_for, keys) -> None:  # type: ignore[no-untyped-def]
    await gateway_for(f"""
        - name: signer
          from: {{connector: mem, topic: in}}
          to: [{{connector: mem, topic: signed, sign: {{key_file: "{keys["edge_private"]}",
                 extensions: [tenant]}}}}]
        - name: checker
          from: {{connector: mem, topic: signed,
                  verify: {{public_key_files: ["{keys["edge_public"]}"]}}}}
          to: [{{connector: mem, topic: out}}]
          dead_letter: {{connector: mem, topic: dlq}}
    """)
    put("in", event(1, extensions={"tenant": "acme", "unsigned": "x"}))
    broker = MemoryBroker.get("default")
    await eventually(lambda: len(broker.acked) == 2)
    (got,) = received("out")
    # Only what was verified goes on: the signed extension, not the unsigned one, plus
    # the mesh provenance (never signed: every gateway changes it), so loops stay seen.
    assert got.extensions["tenant"] == "acme" and "unsigned" not in got.extensions
    assert "sign-gw" in str(got.extensions["meshpath"]) and got.data == b'{"n":1}'
    assert MATERIAL_ATTRIBUTE not in got.extensions
    assert received("dlq") == []


@pytest.mark.parametrize("case", ["unsigned", "wrong key", "tampered"])
async def test_strict_refuses_to_the_dead_letter(gateway_for, keys, case) -> None:  # type: ignore[no-untyped-def]
    await gateway_for(f"""
        - name: checker
          from: {{connector: mem, topic: in,
                  verify: {{public_key_files: ["{keys["edge_public"]}"], policy: strict}}}}
          to: [{{connector: mem, topic: out}}]
          dead_letter: {{connector: mem, topic: dlq}}
    """)
    private = keys["other_private" if case == "wrong key" else "edge_private"]
    key = load_private_key(private)
    signed = Signer(key, key_fingerprint(key.public_key())).sign(event(1))
    if case == "unsigned":
        signed = event(1)
    elif case == "tampered":
        signed = signed.replace(data=b'{"n":2}')
    put("in", signed)
    broker = MemoryBroker.get("default")
    await eventually(lambda: len(broker.acked) == 1)
    assert received("out") == []
    (letter,) = received("dlq")
    assert letter.extensions["dlreason"] == "signature"
    assert "signature" in str(letter.extensions["dlerror"])


async def test_passthrough_forwards_and_counts(gateway_for, keys) -> None:  # type: ignore[no-untyped-def]
    gw = await gateway_for(f"""
        - name: lenient
          from: {{connector: mem, topic: in,
                  verify: {{public_key_files: ["{keys["edge_public"]}"], policy: passthrough}}}}
          to: [{{connector: mem, topic: out}}]
    """)
    put("in", event(1))
    broker = MemoryBroker.get("default")
    await eventually(lambda: len(broker.acked) == 1)
    (got,) = received("out")
    assert got.id == "e1" and MATERIAL_ATTRIBUTE not in got.extensions
    assert sum(p.signature_failures for p in gw.pipelines) == 1


def test_key_files_are_checked_when_the_config_loads(tmp_path: Path, keys) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "config.yaml"
    path.write_text(
        HEADER.format(state=tmp_path / "s")
        + f"""
  - name: r
    from: {{connector: mem, topic: in, verify: {{public_key_files: ["{tmp_path / "none.pem"}"]}}}}
    to: [{{connector: mem, topic: out, sign: {{key_file: "{keys["edge_public"]}"}}}}]
"""
    )
    with pytest.raises(ConfigError) as failure:
        load_config(path)
    text = str(failure.value)
    assert "none.pem" in text and "verify" in text
    assert "sign.key_file" in text  # a public key is no signing key


def test_verifier_knows_keys_by_fingerprint_and_file_name(keys) -> None:  # type: ignore[no-untyped-def]
    key = load_private_key(keys["edge_private"])
    verifier = Verifier.from_files([keys["edge_public"]])
    for key_id in ("edge", key_fingerprint(key.public_key())):
        verifier.verify(Signer(key, key_id).sign(event(1)))


@pytest.mark.parametrize("name", ["meshpath", "meshhops", "id", "dssematerial"])
def test_sign_refuses_attributes_it_cannot_cover(keys, name) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=repr(name)):
        SignOptions(key_file=keys["edge_private"], extensions=(name,))
