"""The Kafka source's record -> Delivery step (connectors.kafka.records): the lazily
decoded header text and the content type say what a decoded dict would have said."""

from __future__ import annotations

from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord

from connectors.base import find_header
from connectors.headertext import header_text
from connectors.kafka.records import TextHeaders, delivery, raw_headers


async def _settled(*_: Any, **__: Any) -> None:
    """Ack/nack stand-in: nothing to settle."""


def _record(headers: tuple[tuple[str, bytes | None], ...], key: bytes | None = None) -> Any:
    return ConsumerRecord("orders", 3, 41, 0, 0, key, b"v", None, 0, 1, headers)


def _eager(raw: tuple[tuple[str, bytes], ...]) -> dict[str, str]:
    """What the source built per record before the text was made lazy."""
    return {name: header_text(value) for name, value in raw}


@pytest.mark.parametrize(
    "headers",
    [
        (),
        (("ce_id", b"1"), ("content-type", b"application/json")),
        (("Content-Type", b"text/plain"),),
        (("CONTENT-TYPE", b"a"), ("Content-Type", b"b"), ("CONTENT-TYPE", b"c")),
        (("content-type", b"a"), ("Content-Type", b"b"), ("content-type", b"c")),
        (("x", b"\xff\xfe"), ("content-type", b"\xff")),
        (("ce_id", b"1"), ("ce_id", b"2")),
    ],
)
def test_text_and_content_type_match_a_decoded_dict(headers: Any) -> None:
    made = delivery(_record(headers), "orders/3", _settled, _settled)
    eager = _eager(headers)
    assert dict(made.headers) == eager
    assert made.headers == eager
    assert len(made.headers) == len(eager)
    assert list(made.headers) == list(eager)
    assert made.content_type == find_header(eager, "content-type")


def test_text_is_decoded_once_on_first_read() -> None:
    headers = TextHeaders((("a", b"1"),))
    assert not headers.parsed  # nothing decoded until read
    assert headers["a"] == "1"
    first = headers._parsed
    assert headers.get("a") == "1" and headers.get("b") is None
    assert headers._parsed is first


def test_null_and_empty_values_read_as_empty() -> None:
    usual = (("a", b"1"), ("b", b"2"))
    assert raw_headers(usual) is usual  # the usual tuple is taken as it is
    assert raw_headers((("a", b"1"), ("b", b""))) == (("a", b"1"), ("b", b""))
    assert raw_headers([("a", None), ("b", b"x")]) == (("a", b""), ("b", b"x"))


def test_delivery_coordinates_and_ids() -> None:
    made = delivery(_record((), key=b"k1"), "orders/3", _settled, _settled)
    assert made.native_id == "orders/3/41"
    assert made.ordering_key == "orders/3"
    assert made.address == "orders"
    assert dict(made.coordinates) == {"topic": "orders", "partition": 3, "offset": 41, "key": "k1"}
    assert made.message.headers == ()
    assert made.content_type is None
