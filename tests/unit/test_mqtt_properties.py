"""``PublishProperties`` packs the MQTT 5 PUBLISH properties meshgate sets into the same
bytes as paho's ``Properties.pack`` (which it replaces on the publish path), for any
combination of content type, user properties and message expiry."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from connectors.mqtt.properties import PublishProperties

# Any Unicode paho can encode (surrogates cannot be UTF-8), up to a few bytes over the
# one-byte Property Length boundary once several are combined.
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
PAIRS = st.lists(st.tuples(TEXT, TEXT), max_size=6)
EXPIRY = st.none() | st.integers(0, 2**32 - 1)


def paho_pack(content_type: str | None, user: list[tuple[str, str]], expiry: int | None) -> bytes:
    """What the connector used to build: paho's properties, set the same way."""
    properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    if content_type is not None:
        properties.ContentType = content_type
    if user:
        properties.UserProperty = list(user)
    if expiry is not None:
        properties.MessageExpiryInterval = expiry
    packed: bytes = properties.pack()  # type: ignore[no-untyped-call]
    return packed


@given(content_type=st.none() | TEXT, user=PAIRS, expiry=EXPIRY)
def test_byte_identical_to_paho(
    content_type: str | None, user: list[tuple[str, str]], expiry: int | None
) -> None:
    ours = PublishProperties(content_type=content_type, user_properties=user, message_expiry=expiry)
    assert ours.pack() == paho_pack(content_type, user, expiry)


@pytest.mark.parametrize(
    ("content_type", "user", "expiry"),
    [
        (None, [], None),  # no property at all: a zero Property Length
        ("application/json", [], None),
        (None, [("id", "1"), ("id", "2")], None),  # a name may repeat, order kept
        ("text/plain; charset=utf-8", [("é", "ü€𝄞")], 0),
        ("", [("", "")], 2**32 - 1),
        # Property Length over 127 (two bytes) and over 16,383 (three bytes)
        ("x" * 200, [("n" * 100, "v" * 100)] * 3, 3600),
        (None, [("k" * 60_000, "v" * 60_000)], None),
    ],
)
def test_byte_identical_to_paho_at_the_edges(
    content_type: str | None, user: list[tuple[str, str]], expiry: int | None
) -> None:
    ours = PublishProperties(content_type=content_type, user_properties=user, message_expiry=expiry)
    assert ours.pack() == paho_pack(content_type, user, expiry)


def test_what_mqtt_cannot_encode_fails_at_construction() -> None:
    with pytest.raises(ValueError, match="65,535"):
        PublishProperties(content_type="x" * 65_536)
    with pytest.raises(ValueError, match="65,535"):
        PublishProperties(user_properties=[("k", "€" * 30_000)])  # 90,000 bytes of UTF-8
    with pytest.raises(ValueError, match="32-bit"):
        PublishProperties(message_expiry=2**32)
