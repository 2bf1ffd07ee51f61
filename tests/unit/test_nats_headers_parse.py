"""The NATS connector's header parsing and writing give exactly what nats-py's own give."""

from __future__ import annotations

import asyncio

import nats.errors
import pytest
from nats.aio.client import Client

from connectors.nats.client import FAST_PUBLISH, MeshClient, parse_header_lines

BLOCKS = [
    b"ce-id: 1\r\nce-source: /s\r\nce-specversion: 1.0\r\nce-type: t\r\n\r\n",
    b"Nats-Msg-Id:abc\r\nce-x:\tvalue with  spaces \r\n",
    b"bad name: x\r\nok: y\r\n",  # whitespace inside a name: skipped
    b"tab\tname: x\r\nfs\x1cname: x\r\nus\x1fname: x\r\n",
    b"\xc3\xa9t\xc3\xa9: x\r\nascii: \xc3\xa9\xff\r\n",  # non-ASCII name skipped, value replaced
    b"no colon here\r\n\r\n\r\nempty:\r\n  padded  :  v  \r\n",
    b"dup: 1\r\nDup: 2\r\ndup: 3\r\n",
    b": no name\r\n\x0bvt: v\r\n",
    b"",
]


@pytest.mark.parametrize("raw", BLOCKS)
def test_same_as_nats_py(raw: bytes) -> None:
    want = Client._parse_header_lines(raw)
    assert parse_header_lines(raw) == want
    assert list(parse_header_lines(raw).items()) == list(want.items())
    assert parse_header_lines(raw) == want  # the names' verdicts cached: same again


def test_the_client_uses_it() -> None:
    assert MeshClient._parse_header_lines(BLOCKS[0]) == Client._parse_header_lines(BLOCKS[0])
    assert MeshClient._parse_header_lines is parse_header_lines


HEADERS = [
    {"ce-id": "1", "ce-source": "/s", "Nats-Msg-Id": "abc"},
    {" padded ": "  v  ", "nl": "a\r\nb\nc", "utf": "é ü"},
    {"": "skipped", "  ": "skipped too", "x": ""},
    {},
]


def _written(client: Client, headers: dict[str, str] | None) -> bytes:
    client._pending.clear()
    client._flush_queue = None  # no flusher: what is written stays in _pending
    asyncio.run(client._send_publish("s.1", "r.1", b"data", 4, headers))
    return b"".join(client._pending)


@pytest.mark.skipif(not FAST_PUBLISH, reason="the override is off with this nats-py")
@pytest.mark.parametrize("headers", [*HEADERS, None])
def test_publish_writes_what_nats_py_writes(headers: dict[str, str] | None) -> None:
    mine, theirs = MeshClient(), Client()
    assert _written(mine, headers) == _written(theirs, headers)
    assert mine.stats["out_msgs"] == theirs.stats["out_msgs"] == 1
    assert mine.stats["out_bytes"] == theirs.stats["out_bytes"] == 4


@pytest.mark.skipif(not FAST_PUBLISH, reason="the override is off with this nats-py")
def test_publish_refuses_what_nats_py_refuses() -> None:
    for _ in range(2):  # a refused name is refused every time, not remembered as good
        with pytest.raises(nats.errors.BadHeaderError):
            _written(MeshClient(), {"bad name": "x"})
        with pytest.raises(nats.errors.BadHeaderError):
            _written(Client(), {"bad name": "x"})
    with pytest.raises(nats.errors.BadSubjectError):
        asyncio.run(MeshClient()._send_publish("", "", b"", 0, {"a": "b"}))
