"""The in-memory connector passes the shipped conformance suite (``connectors.testing``).

No broker: every test gets its own namespace. A bounce has no meaning in-process, so
the reconnect tests skip, saying so.
"""

from __future__ import annotations

import uuid

import pytest

from connectors.base import SourceOptions
from connectors.memory import MemoryConnector, MemoryOptions, MemorySource, MemoryTarget
from connectors.testing import ConnectorConformance
from connectors.testing.harness import (
    AnyConnector,
    ConnectorFactory,
    InFlightFactory,
    PairFactory,
    RawPublish,
    Timeouts,
)
from routing.bindings import Mode
from routing.bindings.nats import NatsMessage


class TestMemoryConformance(ConnectorConformance):
    @pytest.fixture
    def conformance_timeouts(self) -> Timeouts:
        # In-process: a wrong (re)delivery is a queue put, seen within a few event-loop
        # turns (no I/O, no timers), so the "nothing arrives" windows need not be the
        # suite's 1.5 s, sized for brokers.
        return Timeouts(quiet=0.25)

    @pytest.fixture
    def namespace(self) -> str:
        return f"conformance-{uuid.uuid4().hex}"

    @pytest.fixture
    def conformance_connector(self, namespace: str) -> ConnectorFactory:
        return lambda: MemoryConnector("memory", MemoryOptions(type="memory", namespace=namespace))

    @pytest.fixture
    def conformance_pair(self) -> PairFactory:
        async def pair(mode: Mode) -> tuple[MemorySource, MemoryTarget]:
            topic = f"topic-{uuid.uuid4().hex[:12]}"
            source = MemorySource(connector="memory", topic=topic)
            return source, MemoryTarget(connector="memory", topic=topic, mode=mode)

        return pair

    @pytest.fixture
    def conformance_publish_raw(self, namespace: str) -> RawPublish:
        async def publish_raw(target: object, payload: bytes) -> None:
            assert isinstance(target, MemoryTarget)
            connector = MemoryConnector("raw", MemoryOptions(type="memory", namespace=namespace))
            connector.broker.put(target.topic, NatsMessage(payload, None))

        return publish_raw

    @pytest.fixture
    def conformance_in_flight(self, conformance_connector: ConnectorFactory) -> InFlightFactory:
        def bounded(source: SourceOptions, limit: int) -> tuple[AnyConnector, SourceOptions]:
            return conformance_connector(), source.model_copy(update={"max_in_flight": limit})

        return bounded
