"""Conformance: CloudEvents binding round trips (binary and structured mode), sizes."""

from __future__ import annotations

from typing import Any

import pytest

from connectors.base import Capabilities
from connectors.errors import PublishRejected
from connectors.testing.harness import AnyConnector, Harness, sample_event
from routing.bindings import Mode
from routing.event import CloudEvent

__all__ = ["BindingTests"]

MODES = pytest.mark.parametrize(
    "mode", [Mode.BINARY, Mode.STRUCTURED], ids=["binary", "structured"]
)
LARGE_CAP = 1024 * 1024
"""Largest message the suite sends (a declared maximum above it is tested at this size)."""
HEADROOM = 16 * 1024
"""Room left under the declared maximum for attributes, headers and framing."""
REJECT_CAP = 8 * 1024 * 1024
"""Declared maxima above this are not probed with an oversized message (too slow)."""


async def _pair_in(conformance: Harness, connector: AnyConnector, mode: Mode) -> tuple[Any, Any]:
    if mode is Mode.BINARY and not conformance.capabilities.headers:
        pytest.skip("capabilities.headers is false: no binary mode")
    source, target = await conformance.pair(mode)
    problem = conformance.target_problem(connector, target)
    if problem is not None:
        pytest.skip(f"{mode.value} mode refused by validate_target: {problem}")
    return source, target


async def _round_trip(
    conformance: Harness, sent: CloudEvent, mode: Mode, **target_changes: Any
) -> tuple[CloudEvent, Any]:
    """Publish ``sent`` in ``mode``; return the decoded event and its delivery."""
    connector = await conformance.connector()
    source, target = await _pair_in(conformance, connector, mode)
    if target_changes:
        target = target.model_copy(update=target_changes)
        problem = conformance.target_problem(connector, target)
        if problem is not None:
            pytest.skip(f"{sorted(target_changes)} refused by validate_target: {problem}")
    consumer = await conformance.subscribe(connector, source)
    await conformance.publish(connector, target, sent)
    delivery = await consumer.next()
    got = connector.decode(delivery)
    await delivery.ack()
    assert got is not None, "a published CloudEvent decoded as a non-CloudEvent"
    return got, delivery


def _assert_same(got: CloudEvent, sent: CloudEvent) -> None:
    assert got.canonical_attributes() == sent.canonical_attributes()
    assert got.data == sent.data


class BindingTests:
    """Events come out as they went in: attributes, extensions, content type, data."""

    @MODES
    async def test_event_round_trip(self, conformance: Harness, mode: Mode) -> None:
        """Every attribute and the data survive publish -> consume -> decode."""
        sent = sample_event()
        got, _ = await _round_trip(conformance, sent, mode)
        _assert_same(got, sent)

    @MODES
    async def test_extensions_round_trip(self, conformance: Harness, mode: Mode) -> None:
        """Extension attributes of each CloudEvents type (string, integer, boolean,
        URI) arrive with their values (binary mode carries them as text)."""
        sent = sample_event(
            2,
            extensions={
                "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                "partitionkey": "device-7",
                "sequence": 42,
                "flag": True,
                "origin": "https://example.com/a?b=c&d=%20",
            },
        )
        got, _ = await _round_trip(conformance, sent, mode)
        assert got.canonical_attributes() == sent.canonical_attributes()

    @MODES
    async def test_unicode_round_trip(self, conformance: Harness, mode: Mode) -> None:
        """Non-ASCII text in attributes, extensions and data is kept exactly."""
        sent = sample_event(
            3,
            source="urn:meshgate:usine/Köln/温度",
            subject="capteur/é-ß/😀",
            type="com.example.température",
            extensions={"note": "naïve café — 東京 ✓"},
            data='{"temp":"21 °C","city":"Zürich"}'.encode(),
        )
        got, _ = await _round_trip(conformance, sent, mode)
        _assert_same(got, sent)

    @MODES
    async def test_binary_data_and_content_type(self, conformance: Harness, mode: Mode) -> None:
        """Non-JSON data (every byte value) with its ``datacontenttype`` arrives unchanged."""
        sent = sample_event(
            4, datacontenttype="application/octet-stream", data=bytes(range(256)) * 2
        )
        got, _ = await _round_trip(conformance, sent, mode)
        _assert_same(got, sent)
        text = sample_event(5, datacontenttype="text/plain; charset=utf-8", data="ünï".encode())
        got, _ = await _round_trip(conformance, text, mode)
        _assert_same(got, text)

    @MODES
    async def test_minimal_event_gets_nothing_invented(
        self, conformance: Harness, mode: Mode
    ) -> None:
        """An event with only the required attributes and no data comes out the same:
        no id, time or content type is added on the way."""
        sent = CloudEvent(id="min-1", source="urn:meshgate:conformance", type="com.example.min")
        got, _ = await _round_trip(conformance, sent, mode)
        _assert_same(got, sent)
        assert got.time is None and got.datacontenttype is None and got.data is None

    @MODES
    async def test_64_kib_event(self, conformance: Harness, mode: Mode) -> None:
        """An intermediary must forward events up to 64 KiB (CloudEvents spec)."""
        sent = sample_event(6, datacontenttype="application/octet-stream", data=b"\x5a" * 65536)
        got, _ = await _round_trip(conformance, sent, mode)
        _assert_same(got, sent)

    async def test_large_message_up_to_declared_max(self, conformance: Harness) -> None:
        """A payload just under ``capabilities.max_message_bytes`` (at most 1 MiB) is
        published and consumed intact."""
        size = _large_size(conformance.capabilities)
        data = bytes(range(256)) * (size // 256)
        sent = sample_event(7, datacontenttype="application/octet-stream", data=data)
        got, delivery = await _round_trip(conformance, sent, conformance.default_mode)
        assert got.data == data
        assert len(delivery.payload) >= len(data)

    async def test_oversized_publish_is_rejected(self, conformance: Harness) -> None:
        """A message over the declared maximum fails with ``PublishRejected`` (not
        retriable: retrying cannot help) and the connector keeps working."""
        limit = conformance.capabilities.max_message_bytes
        if limit is None:
            pytest.skip("capabilities.max_message_bytes is not declared")
        if limit > REJECT_CAP:
            pytest.skip(f"declared maximum {limit} B is above the {REJECT_CAP} B the suite sends")
        connector = await conformance.connector()
        source, target = await conformance.usable_pair(connector)
        consumer = await conformance.subscribe(connector, source)
        big = sample_event(8, datacontenttype="application/octet-stream", data=b"x" * (limit + 1))
        with pytest.raises(PublishRejected) as caught:
            await conformance.publish(connector, target, big)
        assert not caught.value.retriable
        await conformance.publish(connector, target, sample_event(9))
        event = connector.decode(await consumer.next())
        assert event is not None and event.id == "evt-9"

    async def test_target_headers_are_published(self, conformance: Harness) -> None:
        """A target's ``headers:`` travel as native headers next to the event's
        attributes (binary mode), and the event decodes unchanged."""
        if not conformance.capabilities.headers:
            pytest.skip("capabilities.headers is false: no native headers")
        sent = sample_event(10)
        extra = {"x-request-id": "req-1 ü", "x-tenant": "acme"}
        got, delivery = await _round_trip(conformance, sent, Mode.BINARY, headers=extra)
        _assert_same(got, sent)
        lowered = {name.lower(): value for name, value in delivery.headers.items()}
        assert lowered["x-request-id"] == "req-1 ü"
        assert lowered["x-tenant"] == "acme"


def _large_size(capabilities: Capabilities) -> int:
    declared = capabilities.max_message_bytes
    return min(declared, LARGE_CAP) - HEADROOM if declared is not None else LARGE_CAP
