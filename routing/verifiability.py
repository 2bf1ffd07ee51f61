"""Signed CloudEvents: the CloudEvents verifiability extension (DSSE, ECDSA P-256).

Spec: ``cloudevents/spec`` ``cloudevents/extensions/verifiability.md``. An event is
signed by a digest over its context attributes, its data and a chosen list of
extension attributes (``signedextattrs``); the digest is the payload of a DSSE v1
envelope (payload type ``https://cloudevents.io/verifiability/dsse/v0.1``) signed
with ECDSA over P-256 and SHA-256 (signature = raw ``r || s``, deterministic per RFC
6979 so the spec's test vectors reproduce byte for byte), and the envelope travels
Base64-encoded in the ``dssematerial`` extension attribute. Every binding carries
extension attributes, so a signed event survives any chain of bindings.

``Signer.sign`` adds the two attributes; ``Verifier.verify`` returns the event with
exactly the verified attributes (context, data, signed extensions) or raises
``SignatureError`` with the reason. Pure: no I/O beyond reading key files.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import UTC
from pathlib import Path
from typing import ClassVar

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from routing.errors import InvalidEvent
from routing.event import CONTEXT_ATTRIBUTES, CloudEvent, canonical_string

__all__ = [
    "MATERIAL_ATTRIBUTE",
    "PAYLOAD_TYPE",
    "SIGNED_ATTRIBUTE",
    "SignatureError",
    "Signer",
    "Verifier",
    "key_fingerprint",
    "load_private_key",
    "load_public_key",
    "material",
]

PAYLOAD_TYPE = "https://cloudevents.io/verifiability/dsse/v0.1"
MATERIAL_ATTRIBUTE = "dssematerial"
SIGNED_ATTRIBUTE = "signedextattrs"
_ECDSA = ec.ECDSA(hashes.SHA256())
_DETERMINISTIC = ec.ECDSA(hashes.SHA256(), deterministic_signing=True)
_CORE = ("id", "source", "specversion", "type", "datacontenttype", "dataschema", "subject")


class SignatureError(InvalidEvent):
    """An event's signature is missing, malformed, by an unknown key or does not match.

    An ``InvalidEvent``: the runtime dead-letters it like any event it must not forward,
    with the reason ``signature`` (``dead_letter_reason``). ``reason`` starts with
    ``missing``, ``corrupted``, ``does not verify`` or ``malformed signedextattrs``.
    """

    dead_letter_reason: ClassVar[str] = "signature"
    """The dead letter's ``dlreason`` (and the local store's reason) for every refusal."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(MATERIAL_ATTRIBUTE, f"signature {reason}")


def _sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _zulu(event: CloudEvent) -> bytes:
    moment = event.time_datetime
    if moment is None:
        return b""
    text = moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}".rstrip("0")
    return (text + "Z").encode()


def _check_signed(names: Sequence[str]) -> None:
    if len(set(names)) != len(names):
        raise SignatureError(f"malformed signedextattrs: repeats a name: {','.join(names)}")
    for name in names:
        if name in CONTEXT_ATTRIBUTES or name in (MATERIAL_ATTRIBUTE, SIGNED_ATTRIBUTE):
            raise SignatureError(f"malformed signedextattrs: may not name {name!r}")
        if not name or name != name.strip():
            raise SignatureError(f"malformed signedextattrs: malformed name {name!r}")


def material(event: CloudEvent, signed: Sequence[str] = ()) -> bytes:
    """The 32-byte verification material of ``event`` with the ``signed`` extensions."""
    parts = [_sha((getattr(event, name) or "").encode()) for name in _CORE]
    parts.append(_sha(_zulu(event)))
    parts.append(_sha(event.data or b""))
    for name in signed:
        value = event.extensions.get(name)
        parts.append(_sha(name.encode()))
        parts.append(_sha(b"" if value is None else canonical_string(value).encode()))
    return _sha(b"".join(parts))


def _pae(payload_type: str, body: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(body), body)


def load_private_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """A P-256 private key from a PEM file (unencrypted PKCS#8 or SEC1)."""
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise ValueError(f"{path}: expected an ECDSA P-256 private key")
    return key


def load_public_key(path: Path) -> ec.EllipticCurvePublicKey:
    """A P-256 public key from a PEM file."""
    key = serialization.load_pem_public_key(path.read_bytes())
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise ValueError(f"{path}: expected an ECDSA P-256 public key")
    return key


def key_fingerprint(key: ec.EllipticCurvePublicKey) -> str:
    """Default key id: SHA-256 (hex) of the DER SubjectPublicKeyInfo of the public key."""
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


class Signer:
    """Signs events with one P-256 key under one key id."""

    def __init__(self, key: ec.EllipticCurvePrivateKey, key_id: str) -> None:
        self._key = key
        self.key_id = key_id

    def sign(self, event: CloudEvent, extensions: Sequence[str] = ()) -> CloudEvent:
        """``event`` with ``dssematerial`` (and ``signedextattrs`` when ``extensions``)."""
        signed = list(extensions)
        _check_signed(signed)
        body = material(event, signed)
        r, s = decode_dss_signature(self._key.sign(_pae(PAYLOAD_TYPE, body), _DETERMINISTIC))
        envelope = {
            "payloadType": PAYLOAD_TYPE,
            "payload": base64.b64encode(body).decode(),
            "signatures": [
                {
                    "keyid": self.key_id,
                    "sig": base64.b64encode(r.to_bytes(32, "big") + s.to_bytes(32, "big")).decode(),
                }
            ],
        }
        compact = json.dumps(envelope, separators=(",", ":")).encode()
        added: dict[str, str] = {MATERIAL_ATTRIBUTE: base64.b64encode(compact).decode()}
        if signed:
            added[SIGNED_ATTRIBUTE] = ",".join(signed)
        rest = {k: v for k, v in event.extensions.items() if k not in added}
        return event.replace(extensions={**rest, **added})


class Verifier:
    """Verifies events against the acceptable keys, by key id."""

    def __init__(self, keys: Mapping[str, ec.EllipticCurvePublicKey]) -> None:
        self._keys = dict(keys)

    @classmethod
    def from_files(cls, paths: Sequence[Path]) -> Verifier:
        """Accept each key under its fingerprint and under its file name without suffix."""
        keys: dict[str, ec.EllipticCurvePublicKey] = {}
        for path in paths:
            key = load_public_key(path)
            keys[key_fingerprint(key)] = key
            keys[path.stem] = key
        return cls(keys)

    def verify(self, event: CloudEvent) -> CloudEvent:
        """The event with only verified attributes, or ``SignatureError`` (spec steps)."""
        raw = event.extensions.get(MATERIAL_ATTRIBUTE)
        if not raw:
            raise SignatureError("missing: the event is not signed (no dssematerial)")
        try:
            envelope = json.loads(base64.b64decode(canonical_string(raw), validate=True))
            payload_type = envelope["payloadType"]
            body = base64.b64decode(envelope["payload"], validate=True)
            signatures = envelope["signatures"]
        except (binascii.Error, ValueError, KeyError, TypeError) as exc:
            raise SignatureError(f"corrupted dssematerial: {exc}") from None
        if not isinstance(payload_type, str) or not isinstance(signatures, list):
            raise SignatureError("corrupted dssematerial: not a DSSE envelope")
        signer = self._valid_key_id(signatures, _pae(payload_type, body))
        if signer is None:
            raise SignatureError(f"does not verify: {self._no_valid_signature(signatures)}")
        if payload_type != PAYLOAD_TYPE:
            raise SignatureError(f"unknown payloadType {payload_type!r}")
        if len(body) != 32:
            raise SignatureError("corrupted verification material (not 32 bytes)")
        listed = event.extensions.get(SIGNED_ATTRIBUTE)
        signed = canonical_string(listed).split(",") if listed else []
        _check_signed(signed)
        if material(event, signed) != body:
            raise SignatureError(
                f"does not verify: mismatch, the event was modified after key id {signer!r} "
                "signed it"
            )
        kept = {name: event.extensions[name] for name in signed if name in event.extensions}
        return event.replace(extensions=kept)

    def _valid_key_id(self, signatures: list[object], pae: bytes) -> str | None:
        """The key id of the first signature that verifies under an accepted key, or None."""
        for entry in signatures:
            if not isinstance(entry, dict):
                continue
            key_id = str(entry.get("keyid", ""))
            key = self._keys.get(key_id)
            if key is None:
                continue
            try:
                sig = base64.b64decode(str(entry.get("sig", "")), validate=True)
                if len(sig) != 64:
                    continue
                der = encode_dss_signature(
                    int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
                )
                key.verify(der, pae, _ECDSA)
            except (binascii.Error, InvalidSignature):
                continue
            return key_id
        return None

    def _no_valid_signature(self, signatures: list[object]) -> str:
        """Why no signature verified: each key id tried, and the key ids accepted here."""
        tried = []
        for entry in signatures:
            key_id = str(entry.get("keyid", "")) if isinstance(entry, dict) else ""
            known = "accepted, but the signature is wrong" if key_id in self._keys else "unknown"
            tried.append(f"{key_id!r} ({known})")
        accepted = ", ".join(sorted(self._keys)) or "none"
        return (
            f"no valid signature by an accepted key; key ids in the signature: "
            f"{', '.join(tried) or 'none'}; accepted key ids: {accepted}"
        )
