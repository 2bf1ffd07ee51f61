"""Signed CloudEvents (routing.verifiability) against the spec's test vectors, tampering,
and two-binding chains.

Vectors: ``cloudevents/spec`` ``cloudevents/extensions/verifiability.md`` ("Test
Vectors", key below). Results, reported in docs/security.md:

* every vector's DSSE signature verifies under the spec's key;
* case 5 (binary data) reproduces byte for byte: same digest, and deterministic
  signing gives the very same ``dssematerial``;
* cases 3 and 4 (the same moment in two time zones) give one material, as required;
* the cases with JSON data (1, 3, 4, 6a, 6b, 7) do not reproduce: the spec does not
  say which bytes of a JSON ``data`` value are hashed. Case 5 reproducing pins
  everything but those bytes, and none of ~12,000 candidate serialisations tried
  (compact, Python's default, indented, the spec's own text, Base64, ...: the list is
  in docs/security.md, "Spec test vectors") gives case 1's digest. They are strict
  xfails, so a fix of the vectors or of our reading shows up.
"""

from __future__ import annotations

import base64
import json
import time

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from routing.bindings import Mode, amqp, kafka, mqtt, nats
from routing.event import CloudEvent
from routing.verifiability import (
    MATERIAL_ATTRIBUTE,
    SIGNED_ATTRIBUTE,
    SignatureError,
    Signer,
    Verifier,
    material,
)

X = 46950820868899156662930047687818585632848591499744589407958293238635476079160
Y = 5640078356564379163099075877009565129882514886557779369047442380624545832820
D = 97358161215184420915383655311931858321456579547487070936769975997791359926199
SPEC_KEY = ec.derive_private_key(D, ec.SECP256R1())
assert SPEC_KEY.public_key().public_numbers() == ec.EllipticCurvePublicNumbers(X, Y, ec.SECP256R1())
VERIFIER = Verifier({"testkey": SPEC_KEY.public_key()})
HELLO = b'{"hello":"world"}'

CASE1 = "eyJwYXlsb2FkVHlwZSI6Imh0dHBzOi8vY2xvdWRldmVudHMuaW8vdmVyaWZpYWJpbGl0eS9kc3NlL3YwLjEiLCJwYXlsb2FkIjoiNXh6NS9WdG94TkpWWWFZeG1MZUw2eEw5STZDYXY5UDNnb2g2cXlDWUdmUT0iLCJzaWduYXR1cmVzIjpbeyJrZXlpZCI6InRlc3RrZXkiLCJzaWciOiJ3WWo4YlJQWFlDSUxyeXdzUDdXR1VCd1RKc25aSFlYTUhpWEZtWWh1QkdhOU1ocDdYNHZFN1FBYkhXbytXZitjTURBYjN6dXlwRjVVbVdwZGtJUGppUT09In1dfQ=="  # noqa: E501
CASE3 = "eyJwYXlsb2FkVHlwZSI6Imh0dHBzOi8vY2xvdWRldmVudHMuaW8vdmVyaWZpYWJpbGl0eS9kc3NlL3YwLjEiLCJwYXlsb2FkIjoid0tDYThzcTNkeWcvMDBaaURReS9hWEFZMXRlcFFucktMYTZ4UDBZM0QvUT0iLCJzaWduYXR1cmVzIjpbeyJrZXlpZCI6InRlc3RrZXkiLCJzaWciOiJQSXhPUHF3MGFJeW9acExtdU5DTlpNS3pBNlgxWVovUXpiZVR3UzMvS3BBMjZJQzF0SU9oLzdkRFBDMWk0RW82b1dxRk1WRXJ4cEZrR0hGMnM0MHAvZz09In1dfQ=="  # noqa: E501
CASE5 = "eyJwYXlsb2FkVHlwZSI6Imh0dHBzOi8vY2xvdWRldmVudHMuaW8vdmVyaWZpYWJpbGl0eS9kc3NlL3YwLjEiLCJwYXlsb2FkIjoicUNTZWlaa1MraEg5V2lDbGZxNnBsZnFZTlZ5Mmt2eFdSZm9CckxFem9Eaz0iLCJzaWduYXR1cmVzIjpbeyJrZXlpZCI6InRlc3RrZXkiLCJzaWciOiJEWXdiU3V4SDRXcWFhQlZPVlU4TllJYTZXYnZDazkvdkc5aGV0d3BKNHpJNWo2am1BTGRNaHcrcVZuc211YzY2NWZqVlJGVDFRUHUvanA1Z0c0U2pzUT09In1dfQ=="  # noqa: E501
CASE6 = "eyJwYXlsb2FkVHlwZSI6Imh0dHBzOi8vY2xvdWRldmVudHMuaW8vdmVyaWZpYWJpbGl0eS9kc3NlL3YwLjEiLCJwYXlsb2FkIjoiUE1nU3ZQdG9nZ0FPY3RIaDZDM1F3VC96a2ZoQUpadFJKaVJnRFBFazhnRT0iLCJzaWduYXR1cmVzIjpbeyJrZXlpZCI6InRlc3RrZXkiLCJzaWciOiJzajBwRS96OW5xalh1QTFNRFRBT29lU2FtYlVXUmhHQ2tJWFdmM2VnaEUwOUd1UzhHQVZYZWdxaStmM1hwOG90WEFudHlyNnY3Q0lOaythWms1SmpUZz09In1dfQ=="  # noqa: E501
CASE7 = "eyJwYXlsb2FkVHlwZSI6Imh0dHBzOi8vY2xvdWRldmVudHMuaW8vdmVyaWZpYWJpbGl0eS9kc3NlL3YwLjEiLCJwYXlsb2FkIjoib3ZhaGZKV2FLYVBWRFRzUGlJUW9Ucjl1NUpOVEFFMjFHQkg1RzVQWkQ4MD0iLCJzaWduYXR1cmVzIjpbeyJrZXlpZCI6InRlc3RrZXkiLCJzaWciOiJONkU0TFJyZGRHZGJqc0FQODVCYkpsZUo5ZnV0c2E2YTdhRWVtc1Ric29XL0lKU3F2Zmc4ZkhPcGtzbkFZcHFtRnJQWk8zeitWUERrWjNEbWpMN1FQZz09In1dfQ=="  # noqa: E501


def event(**changes: object) -> CloudEvent:
    base = CloudEvent(
        id="1",
        source="example/uri",
        type="example.type",
        datacontenttype="application/json",
        data=HELLO,
    )
    return base.replace(**changes)


def envelope(material_b64: str) -> dict[str, object]:
    decoded: dict[str, object] = json.loads(base64.b64decode(material_b64))
    return decoded


@pytest.mark.parametrize("vector", [CASE1, CASE3, CASE5, CASE6, CASE7])
def test_every_vector_signature_verifies_under_the_spec_key(vector: str) -> None:
    binary = event(
        type="example.type.binary",
        datacontenttype="application/octet-stream",
        data=base64.b64decode("8J+koQ=="),
    )
    # The signature check comes before the digest comparison: a mismatch, not a bad
    # signature, is what a JSON-data vector may give (see the module docstring).
    signed = (binary if vector is CASE5 else event()).replace(
        extensions={MATERIAL_ATTRIBUTE: vector}
    )
    try:
        VERIFIER.verify(signed)
    except SignatureError as exc:
        assert exc.reason.startswith("does not verify: mismatch"), exc.reason


def test_case5_binary_data_reproduces_byte_for_byte() -> None:
    binary = event(
        type="example.type.binary",
        datacontenttype="application/octet-stream",
        data=base64.b64decode("8J+koQ=="),
    )
    expected = base64.b64decode(str(envelope(CASE5)["payload"]))
    assert material(binary) == expected
    signed = Signer(SPEC_KEY, "testkey").sign(binary)
    assert signed.extensions[MATERIAL_ATTRIBUTE] == CASE5
    assert VERIFIER.verify(signed.replace(extensions={MATERIAL_ATTRIBUTE: CASE5})) == binary


def test_cases_3_and_4_same_moment_same_material() -> None:
    zulu = event(time="2020-06-18T17:24:53Z")
    offset = event(time="2020-06-18T19:24:53+02:00")
    assert material(zulu) == material(offset)


@pytest.mark.xfail(
    strict=True,
    reason="the spec's JSON-data vectors hash data bytes it does not show (docs/security.md)",
)
@pytest.mark.parametrize(
    ("vector", "changes", "signed"),
    [
        (CASE1, {}, ()),
        (CASE3, {"time": "2020-06-18T17:24:53Z"}, ()),
        (CASE6, {"extensions": {"exta": "value1"}}, ("exta",)),
        (CASE7, {"extensions": {"exta": "value1", "extb": "value2"}}, ("exta", "extb")),
    ],
)
def test_json_data_vectors_digest(
    vector: str, changes: dict[str, object], signed: tuple[str, ...]
) -> None:
    payload = base64.b64decode(str(envelope(vector)["payload"]))
    assert material(event(**changes), signed) == payload


def test_case8_spaces_in_signedextattrs_are_refused() -> None:
    signed = Signer(SPEC_KEY, "testkey").sign(
        event(extensions={"exta": "value1", "extb": "value2"}), ("exta", "extb")
    )
    spaced = signed.replace(extensions={**signed.extensions, SIGNED_ATTRIBUTE: "exta, extb"})
    with pytest.raises(SignatureError, match="malformed name ' extb'"):
        VERIFIER.verify(spaced)


@pytest.fixture
def signed() -> CloudEvent:
    extensions = {"exta": "value1", "extb": 7, "unsigned": "x"}
    return Signer(SPEC_KEY, "testkey").sign(
        event(time="2026-01-02T03:04:05.5+01:00", subject="s", extensions=extensions),
        ("exta", "extb"),
    )


def test_verified_event_keeps_only_signed_extensions(signed: CloudEvent) -> None:
    verified = VERIFIER.verify(signed)
    assert dict(verified.extensions) == {"exta": "value1", "extb": 7}
    assert verified.data == HELLO and verified.subject == "s"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"type": "example.other"}, "mismatch"),
        ({"subject": "t"}, "mismatch"),
        ({"time": "2026-01-02T03:04:06+01:00"}, "mismatch"),
        ({"data": b'{"hello":"World"}'}, "mismatch"),
        ({"exta": "value2"}, "mismatch"),
        ({"unsigned": "changed"}, None),  # not signed: allowed, and dropped on verify
        ({SIGNED_ATTRIBUTE: "exta"}, "mismatch"),
        ({SIGNED_ATTRIBUTE: "exta,exta"}, "repeats"),
        ({SIGNED_ATTRIBUTE: "exta,id"}, "may not name"),
        ({MATERIAL_ATTRIBUTE: None}, "missing"),
        ({MATERIAL_ATTRIBUTE: "bm90IGpzb24="}, "corrupted"),
    ],
)
def test_tampering_is_detected(
    signed: CloudEvent, change: dict[str, object], reason: str | None
) -> None:
    context = {k: v for k, v in change.items() if k in ("type", "subject", "time", "data")}
    extensions = dict(signed.extensions)
    for name, value in change.items():
        if name not in context:
            if value is None:
                extensions.pop(name, None)
            else:
                extensions[name] = value  # type: ignore[assignment]
    tampered = signed.replace(**context, extensions=extensions)
    if reason is None:
        VERIFIER.verify(tampered)
        return
    with pytest.raises(SignatureError, match=reason):
        VERIFIER.verify(tampered)


def test_wrong_key_and_unknown_key_id_are_refused(signed: CloudEvent) -> None:
    """The refusal says "does not verify" (not "missing") and names the key ids tried."""
    other = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(SignatureError) as wrong:
        Verifier({"testkey": other.public_key()}).verify(signed)
    assert wrong.value.reason == (
        "does not verify: no valid signature by an accepted key; key ids in the signature: "
        "'testkey' (accepted, but the signature is wrong); accepted key ids: testkey"
    )
    with pytest.raises(SignatureError) as unknown:
        Verifier({"another": SPEC_KEY.public_key(), "more": other.public_key()}).verify(signed)
    assert unknown.value.reason == (
        "does not verify: no valid signature by an accepted key; key ids in the signature: "
        "'testkey' (unknown); accepted key ids: another, more"
    )
    assert wrong.value.dead_letter_reason == unknown.value.dead_letter_reason == "signature"


def test_missing_signature_says_missing(signed: CloudEvent) -> None:
    unsigned = signed.replace(extensions={"exta": "value1"})
    with pytest.raises(SignatureError) as missing:
        VERIFIER.verify(unsigned)
    assert missing.value.reason.startswith("missing: ")
    assert missing.value.dead_letter_reason == "signature"


BINDINGS = {
    "kafka": (kafka.to_message, kafka.from_message),
    "amqp": (amqp.to_message, amqp.from_message),
    "mqtt5": (mqtt.to_message, mqtt.from_message),
    "nats": (nats.to_message, nats.from_message),
}


@pytest.mark.parametrize("first", sorted(BINDINGS))
@pytest.mark.parametrize("second", sorted(BINDINGS))
@pytest.mark.parametrize("mode", [Mode.BINARY, Mode.STRUCTURED])
def test_a_signed_event_survives_two_bindings(
    signed: CloudEvent, first: str, second: str, mode: Mode
) -> None:
    current = signed
    for name in (first, second):
        encode, decode = BINDINGS[name]
        decoded = decode(encode(current, mode))
        assert decoded is not None
        current = decoded
    # Binary mode carries every attribute as its canonical string (the integer extb
    # comes back as "7"): the string forms, which the digest covers, are unchanged.
    assert current.canonical_attributes() == signed.canonical_attributes()
    assert current.data == signed.data
    verified = VERIFIER.verify(current)
    assert verified.canonical_attributes() == VERIFIER.verify(signed).canonical_attributes()


def test_cost_is_small() -> None:
    """Microseconds per sign and verify (docs/performance.md quotes a measured run)."""
    signer, plain = Signer(SPEC_KEY, "testkey"), event()
    rounds = 200
    started = time.perf_counter()
    for _ in range(rounds):
        one = signer.sign(plain)
    signing = (time.perf_counter() - started) / rounds
    started = time.perf_counter()
    for _ in range(rounds):
        VERIFIER.verify(one)
    verifying = (time.perf_counter() - started) / rounds
    print(f"sign {signing * 1e6:.0f} us, verify {verifying * 1e6:.0f} us")
    assert signing < 0.01 and verifying < 0.01  # generous: a shared 2-core machine
