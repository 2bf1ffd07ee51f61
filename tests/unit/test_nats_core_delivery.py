"""Core NATS deliveries: what the cheaper construction must keep (pure, no broker)."""

from __future__ import annotations

from nats.aio.msg import Msg

from connectors.nats.source import _core_delivery


def test_core_delivery_settles_nothing_and_keeps_the_message() -> None:
    msg = Msg(None, subject="a.b", reply="", data=b"x", headers={"Content-Type": "t/u"})  # type: ignore[arg-type]
    delivery = _core_delivery(msg)
    assert delivery.settles is False  # at-most-once: the runtime skips the no-op ack
    assert delivery.headers == {"Content-Type": "t/u"}
    assert delivery.content_type == "t/u"
    assert delivery.address == delivery.ordering_key == "a.b"
    assert dict(delivery.coordinates) == {"subject": "a.b"}


def test_core_delivery_without_headers() -> None:
    delivery = _core_delivery(Msg(None, subject="a", reply="", data=b"", headers=None))  # type: ignore[arg-type]
    assert dict(delivery.headers) == {}
    assert delivery.content_type is None
    assert delivery.message.headers is None
