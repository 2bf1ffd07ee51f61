"""MQTT 5 PUBLISH properties packed straight into bytes, for paho's ``publish``.

paho's ``Properties`` builds two dicts per instance and finds each property by a
linear scan of its names (with ``str.replace``) on every attribute set and again
on ``pack``: on an MQTT target it was the largest single cost per publish in a
profile. meshgate sets only three PUBLISH properties, so ``PublishProperties``
writes them directly, in the order and encoding paho's ``pack`` uses (property
identifier order: Message Expiry Interval 0x02, Content Type 0x03, User Property
0x26; MQTT 5 section 3.3.2.3). tests/unit/test_mqtt_properties.py checks that the
bytes are identical to paho's for any combination.

paho's ``publish`` only calls ``pack()`` on what it gets (and keeps the object on
the queued message), so this class stands in for ``Properties`` there. It packs
at construction: an unencodable value (a string over 65,535 UTF-8 bytes, an
expiry outside 32 bits) fails the publish it belongs to, as ``ValueError``, never
later inside paho when a queued publish is sent.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

__all__ = ["PublishProperties"]

_MESSAGE_EXPIRY_INTERVAL = b"\x02"
_CONTENT_TYPE = b"\x03"
_USER_PROPERTY = b"\x26"
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!L")
_UINT32_MAX = 2**32 - 1
_UINT16_MAX = 2**16 - 1
_MAX_PACKET = 268_435_455  # the largest Variable Byte Integer


def _string(text: str) -> bytes:
    """An MQTT UTF-8 Encoded String: two-byte length, then the bytes."""
    data = text.encode("utf-8")
    if len(data) > _UINT16_MAX:
        raise ValueError(f"an MQTT 5 property string is at most 65,535 bytes, not {len(data):,}")
    return _U16.pack(len(data)) + data


def _variable_byte_integer(value: int) -> bytes:
    out = bytearray()
    while True:
        digit, value = value % 128, value // 128
        out.append(digit | 0x80 if value else digit)
        if not value:
            return bytes(out)


class PublishProperties:
    """The MQTT 5 properties of one PUBLISH, packed once (see the module docstring)."""

    __slots__ = ("_packed", "content_type", "message_expiry", "user_properties")

    def __init__(
        self,
        *,
        content_type: str | None = None,
        user_properties: Sequence[tuple[str, str]] = (),
        message_expiry: int | None = None,
    ) -> None:
        self.content_type = content_type
        self.user_properties = tuple(user_properties)
        self.message_expiry = message_expiry
        body = bytearray()
        if message_expiry is not None:
            if not 0 <= message_expiry <= _UINT32_MAX:
                raise ValueError(f"message expiry {message_expiry} is not a 32-bit interval")
            body += _MESSAGE_EXPIRY_INTERVAL + _U32.pack(message_expiry)
        if content_type is not None:
            body += _CONTENT_TYPE + _string(content_type)
        for name, value in self.user_properties:
            body += _USER_PROPERTY + _string(name) + _string(value)
        if len(body) > _MAX_PACKET:
            raise ValueError(f"{len(body):,} bytes of MQTT 5 properties do not fit a packet")
        # Property Length (a Variable Byte Integer), then the properties.
        self._packed = _variable_byte_integer(len(body)) + bytes(body)

    def pack(self) -> bytes:
        """The Property Length and the properties, as paho's ``Properties.pack``."""
        return self._packed

    def __repr__(self) -> str:  # paho's debug log prints the properties of a PUBLISH
        return (
            f"PublishProperties(content_type={self.content_type!r}, "
            f"user_properties={self.user_properties!r}, message_expiry={self.message_expiry!r})"
        )
