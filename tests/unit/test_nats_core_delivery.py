"""Core NATS deliveries: what the cheaper construction must keep (pure, no broker)."""

from __future__ import annotations

from connectors.nats.client import RawHeaders
from connectors.nats.source import _content_type, _core_delivery


def test_core_delivery_settles_nothing_and_keeps_the_message() -> None:
    delivery = _core_delivery(("a.b", b"x", {"Content-Type": "t/u"}))
    assert delivery.settles is False  # at-most-once: the runtime skips the no-op ack
    assert delivery.headers == {"Content-Type": "t/u"}
    assert delivery.content_type == "t/u"
    assert delivery.address == delivery.ordering_key == "a.b"
    assert dict(delivery.coordinates) == {"subject": "a.b"}


def test_core_delivery_without_headers() -> None:
    delivery = _core_delivery(("a", b"", None))
    assert dict(delivery.headers) == {}
    assert delivery.content_type is None
    assert delivery.message.headers is None


def test_core_delivery_of_a_block_as_received() -> None:
    block = b"NATS/1.0\r\nce-id: 1\r\nCONTENT-type:  text/plain \r\n\r\n"
    delivery = _core_delivery(("a", b"x", RawHeaders(block)))
    assert delivery.content_type == "text/plain"
    assert dict(delivery.headers) == {"ce-id": "1", "CONTENT-type": "text/plain"}


def test_a_block_without_content_type_is_not_parsed_to_say_so() -> None:
    headers = RawHeaders(b"NATS/1.0\r\nce-id: 1\r\nce-type: t\r\n\r\n")
    delivery = _core_delivery(("a", b"x", headers))
    assert delivery.content_type is None
    assert not headers.parsed  # the binding can still read the block itself


def test_content_type_of_either_kind_of_headers() -> None:
    block = b"NATS/1.0\r\nce-id: 1\r\nCONTENT-type:  text/plain \r\n\r\n"
    assert _content_type(RawHeaders(block)) == "text/plain"
    assert _content_type({"Content-Type": "a/b"}) == "a/b"
    assert _content_type(None) is None
    plain = RawHeaders(b"NATS/1.0\r\nce-id: 1\r\n\r\n")
    assert _content_type(plain) is None and not plain.parsed
