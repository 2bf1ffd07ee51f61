"""The core NATS hot path's shortcuts give exactly what the checked path gives.

- Reading: ``from_message`` reads the usual binary message in one pass and builds the
  event with ``CloudEvent.from_plain_text``; any message, usual or not, gives the same
  event (or the same ``InvalidEvent``, which the runtime dead-letters) as the checked
  reader ``_read``. ``from_header_block`` reads the same from the header block as
  received, whenever it reads anything; ``RawHeaders`` parses a block as nats-py does.
- Writing: a binary-mode publish writes its header block itself
  (``binary_header_lines`` + ``binding_block``, then ``MeshClient.publish_blocks``):
  the same bytes nats-py writes for the binding's header dict.
- The mesh stamp of a first hop and ``CloudEvent``'s unrolled copy keep every field.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nats.aio.client import Client

from connectors.nats import sink
from connectors.nats.client import (
    FAST_PUBLISH,
    MeshClient,
    RawHeaders,
    binding_block,
    header_block,
)
from connectors.nats.config import NatsTarget
from gateway.mesh import HOPS, PATH, LoopGuard
from routing.bindings import Mode
from routing.bindings import nats as binding
from routing.bindings.nats import NatsMessage
from routing.errors import InvalidEvent
from routing.event import CheckedExtensions, CloudEvent
from tests.unit.strategies import attribute_names, events

needs_fast = pytest.mark.skipif(not FAST_PUBLISH, reason="the overrides are off with this nats-py")


def _outcome(read: Any, message: NatsMessage) -> object:
    """The event read, or the text of the InvalidEvent raised."""
    try:
        return read(message)
    except InvalidEvent as exc:
        return f"InvalidEvent: {exc}"


def _same_read(message: NatsMessage) -> None:
    fast, checked = _outcome(binding.from_message, message), _outcome(binding._read, message)
    assert fast == checked
    if isinstance(fast, CloudEvent) and isinstance(checked, CloudEvent):
        assert dict(fast.extensions) == dict(checked.extensions)
        assert list(fast.extensions) == list(checked.extensions)  # order kept


# -- reading ------------------------------------------------------------------------

_USUAL = {
    "ce-id": "b1",
    "ce-source": "/meshgate/bench",
    "ce-specversion": "1.0",
    "ce-type": "com.example.bench",
    "ce-datacontenttype": "application/json",
}
# Each: one change to a usual message, which the fast reader must leave to _read.
_ODD: list[dict[str, str | None]] = [
    {},
    {"ce-specversion": "2.0"},  # invalid: dead-lettered
    {"ce-time": "2020-01-01T18:31Z"},  # no seconds: invalid
    {"ce-time": "2020-01-01T18:31:00+05:00"},
    {"ce-dataschema": "not a uri"},
    {"ce-dataschema": "https://example.com/s"},
    {"ce-type": None},  # required attribute missing
    {"ce-id": ""},  # empty
    {"CE-ID": "b1"},  # the same attribute twice, in another case: same value
    {"Ce-Id": "b2"},  # ... a different value: invalid
    {"ce-id": "%62%31"},  # percent-encoded
    {"ce-id": "%zz"},  # a broken escape
    {"ce-id": '"b 1"'},  # quoted
    {"ce-id": "a b"},  # an inner blank
    {"ce-source": " /padded "},
    {"ce-Bad_Name": "x"},  # not an attribute name
    {"ce-data": "x"},  # reserved
    {"ce-": "x"},
    {"ce-ext1": "v", "ce-ext2": "w"},  # extensions
    {"ce-meshpath": "g1", "ce-meshhops": "1"},
    {"Content-Type": "application/cloudevents+json"},  # structured
    {"Content-Type": "text/plain"},  # not an attribute in binary mode
    {"x-other": "ignored", "Nats-Msg-Id": "abc"},
    {"ce-specversion": None},  # no CloudEvent at all
    {"ce-subject": "%C3%A9t%C3%A9"},  # UTF-8 escapes
    {"ce-subject": "caf\u00e9"},  # not ASCII: left to _read
]


def _changed(change: dict[str, str | None]) -> dict[str, str]:
    """The usual headers with ``change`` applied (None: the header removed)."""
    headers = dict(_USUAL)
    for name, value in change.items():
        if value is None:
            headers.pop(name, None)
        else:
            headers[name] = value
    return headers


@pytest.mark.parametrize("change", _ODD)
def test_reading_a_changed_usual_message_is_the_checked_read(change: dict[str, str | None]) -> None:
    headers = _changed(change)
    _same_read(NatsMessage(b'{"a":1}', headers))
    _same_read(NatsMessage(b"", headers))


@settings(max_examples=300, deadline=None)
@given(events())
def test_reading_any_written_event_is_the_checked_read(event: CloudEvent) -> None:
    message = binding.to_message(event, Mode.BINARY)
    _same_read(message)
    assert binding.from_message(message) == binding._read(message)


_header_names = st.sampled_from(
    ["ce-id", "ce-source", "ce-specversion", "ce-type", "ce-time", "CE-ID", "content-type"]
) | attribute_names.map(lambda name: "ce-" + name)
_header_values = st.sampled_from(["1.0", "x", "", " x", "%41", '"q"', "2020-01-01T00:00:00Z"]) | (
    st.text(max_size=8)
)


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(_header_names, _header_values, max_size=8))
def test_reading_any_headers_is_the_checked_read(headers: dict[str, str]) -> None:
    _same_read(NatsMessage(b"data", headers))


def _block(lines: list[bytes]) -> bytes:
    return b"NATS/1.0\r\n" + b"".join(line + b"\r\n" for line in lines) + b"\r\n"


def _nats_py_headers(block: bytes) -> dict[str, str]:
    """What nats-py 2.16 itself makes of a received header block."""
    parsed = asyncio.run(Client()._process_headers(block))  # type: ignore[no-untyped-call]
    return parsed or {}


def _same_block_read(block: bytes, data: bytes = b"data") -> None:
    """``from_header_block`` reads nothing, or what the checked reader reads from the
    headers nats-py parses of the block; ``RawHeaders`` are those headers."""
    headers = RawHeaders.of(block)
    assert headers is not None
    parsed = _nats_py_headers(block)
    fast = _outcome(lambda _: binding.from_header_block(block, data), NatsMessage(data, None))
    assert not headers.parsed
    assert dict(headers) == parsed
    assert list(headers.items()) == list(parsed.items())
    if fast is not None:
        checked = _outcome(binding._read, NatsMessage(data, parsed))
        assert fast == checked
        if isinstance(fast, CloudEvent) and isinstance(checked, CloudEvent):
            assert list(fast.extensions.items()) == list(checked.extensions.items())


@pytest.mark.parametrize("change", _ODD)
def test_reading_a_changed_usual_block_is_the_checked_read(change: dict[str, str | None]) -> None:
    headers = _changed(change)
    block = _block([f"{name}: {value}".encode() for name, value in headers.items()])
    _same_block_read(block)
    _same_block_read(block, b"")


def test_the_usual_block_is_read_without_a_dict() -> None:
    block = _block([f"{name}: {value}".encode() for name, value in _USUAL.items()])
    event = binding.from_header_block(block, b"x")
    assert event is not None and event == binding._read(NatsMessage(b"x", _USUAL))


_line_names = st.sampled_from(
    [
        b"ce-id",
        b"ce-source",
        b"ce-specversion",
        b"ce-type",
        b"ce-time",
        b"CE-ID",
        b" ce-id",
        b"ce-i d",
        b"content-type",
        b"Content-Type",
        b"Nats-Msg-Id",
        b"",
        b"ce-\xc3\xa9",
        b"ce-x\ty",
    ]
) | st.binary(max_size=6)
_line_values = st.sampled_from(
    [b" 1.0", b"x", b"", b"  x ", b"%41", b'"q"', b"2020-01-01T00:00:00Z", b"caf\xc3\xa9", b"\xff"]
) | st.binary(max_size=6)
_lines = st.lists(
    st.tuples(_line_names, st.sampled_from([b":", b": ", b"", b"::"]), _line_values).map(
        lambda parts: b"".join(parts).replace(b"\r\n", b"")
    ),
    max_size=9,
)
_usual_lines = [f"{name}: {value}".encode() for name, value in _USUAL.items()]


@settings(max_examples=500, deadline=None)
@given(_lines, st.booleans())
def test_reading_any_block_is_the_checked_read(lines: list[bytes], usual: bool) -> None:
    _same_block_read(_block((_usual_lines if usual else []) + lines))


_plain = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=12)


@settings(max_examples=300, deadline=None)
@given(
    st.fixed_dictionaries(
        {"id": _plain, "source": _plain, "type": _plain, "specversion": st.just("1.0") | _plain},
        optional={
            "datacontenttype": _plain,
            "dataschema": _plain | st.just("urn:x"),
            "subject": _plain,
            "time": _plain | st.just("2021-02-03T04:05:06.7Z"),
        },
    ),
    st.dictionaries(attribute_names, _plain, max_size=3),
    st.none() | st.binary(min_size=1, max_size=4),
)
def test_from_plain_text_is_the_constructor(
    context: dict[str, str], extensions: dict[str, str], data: bytes | None
) -> None:
    def build(make: Any) -> object:
        try:
            return make()
        except InvalidEvent as exc:
            return f"InvalidEvent: {exc}"

    fast = build(lambda: CloudEvent.from_plain_text(context, extensions, data))
    slow = build(lambda: CloudEvent(**context, extensions=extensions, data=data))
    assert fast == slow
    if isinstance(fast, CloudEvent):
        assert [getattr(fast, f.name) for f in dataclasses.fields(CloudEvent)] == [
            getattr(slow, f.name) for f in dataclasses.fields(CloudEvent)
        ]


# -- the mesh stamp and the copy ----------------------------------------------------


def test_the_copy_keeps_every_field() -> None:
    event = CloudEvent(
        id="i",
        source="s",
        type="t",
        datacontenttype="text/plain",
        dataschema="urn:s",
        subject="sub",
        time="2020-01-01T00:00:00Z",
        extensions={"e": 1},
        data=b"d",
    )
    copy = event.with_extensions({})
    for name in (f.name for f in dataclasses.fields(CloudEvent)):
        assert getattr(copy, name) == getattr(event, name), name


@given(events())
def test_a_first_hop_stamp_is_the_general_one(event: CloudEvent) -> None:
    event = event.with_extensions({PATH: None, HOPS: None})
    stamped = LoopGuard("gw-1").judge(event)
    assert stamped == event.with_extensions({PATH: "gw-1", HOPS: 1})
    assert isinstance(stamped, CloudEvent)
    assert list(stamped.extensions)[-2:] == [PATH, HOPS]


@pytest.mark.parametrize(
    "values",
    [{"Bad": "x"}, {"id": "x"}, {"ok": 1 << 40}, {"ok": "a\x00b"}, {"ok": 1.5}],
)
def test_checked_extensions_refuse_what_with_extensions_refuses(values: dict[str, Any]) -> None:
    event = CloudEvent(id="1", source="s", type="t")
    with pytest.raises(InvalidEvent) as plain:
        event.with_extensions(values)
    with pytest.raises(InvalidEvent) as checked:
        CheckedExtensions(values)
    assert str(checked.value) == str(plain.value)


# -- writing ------------------------------------------------------------------------


def _connected(client: Client) -> Client:
    client._status = Client.CONNECTED
    client._max_payload = 1 << 20
    client._flush_queue = None  # no flusher: what is written stays in _pending
    return client


def _nats_py_wrote(messages: list[tuple[str, bytes, dict[str, str] | None]]) -> bytes:
    """What nats-py's own client writes for these publishes (header dicts)."""
    client = _connected(Client())

    async def run() -> None:
        for subject, data, headers in messages:
            await client.publish(subject, data, headers=headers)

    asyncio.run(run())
    return b"".join(client._pending)


def _blocks_wrote(messages: list[tuple[str, bytes, bytes]]) -> tuple[bytes, list[Any]]:
    client = _connected(MeshClient())
    outcomes = asyncio.run(client.publish_blocks(messages))
    return b"".join(client._pending), outcomes


@settings(max_examples=200, deadline=None)
@given(events())
def test_a_written_binary_header_block_is_the_binding_headers_block(event: CloudEvent) -> None:
    headers = dict(binding.to_message(event, Mode.BINARY).headers or {})
    assert binding_block(binding.binary_header_lines(event)) == header_block(headers)


@needs_fast
@settings(max_examples=100, deadline=None)
@given(st.lists(events(), min_size=1, max_size=5), st.booleans())
def test_a_batch_of_binary_publishes_writes_what_nats_py_writes(
    batch: list[CloudEvent], jetstream: bool
) -> None:
    """The fast path's bytes for a batch (core, or JetStream without the reply) against
    the checked path's: the binding's message (``sink.encode``) through nats-py."""
    target = NatsTarget(connector="n", subject="out.x", jetstream=jetstream)
    written = [sink._encoded(target, event, 1 << 20, {}) for event in batch]
    assert all(isinstance(headers, bytes) for _s, _d, headers in written)
    mine, outcomes = _blocks_wrote(written)  # type: ignore[arg-type]
    theirs = [
        (target.subject, message.data, dict(message.headers or {}))
        for message in (sink.encode(target, event) for event in batch)
    ]
    assert mine == _nats_py_wrote(theirs)
    assert outcomes == [None] * len(batch)


@needs_fast
def test_a_batch_refuses_each_bad_publish_alone() -> None:
    block = binding_block("ce-id: 1\r\n")
    messages = [("ok.1", b"a", block), ("bad subject", b"b", block), ("ok.2", b"c" * 2, block)]
    client = _connected(MeshClient())
    client._max_payload = 1
    outcomes = asyncio.run(client.publish_blocks(messages))
    names = [type(outcome).__name__ for outcome in outcomes]
    assert names == ["NoneType", "BadSubjectError", "MaxPayloadError"]
    assert b"".join(client._pending) == _nats_py_wrote([("ok.1", b"a", {"ce-id": "1"})])


def test_targets_with_headers_or_structured_mode_keep_the_header_dict() -> None:
    event = CloudEvent(id="i", source="s", type="t")
    for target in (
        NatsTarget(connector="n", subject="o", headers={"x-a": "1"}),
        NatsTarget(connector="n", subject="o", mode=Mode.STRUCTURED),
    ):
        _subject, _data, headers = sink._encoded(target, event, None, None)
        assert isinstance(headers, dict)
