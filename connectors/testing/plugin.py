"""The pytest plugin: the fixtures a connector provides to run the conformance suite.

Loaded by ``pytest_plugins = ["connectors.testing.plugin"]`` in a ``conftest.py``, or
automatically through the ``pytest11`` entry point ``meshgate-conformance`` once
meshgate is installed. Override the fixtures below in the test class that subclasses
``ConnectorConformance`` (or in a ``conftest.py`` / test module); pytest then uses the
nearest definition.

Required: ``conformance_connector`` and ``conformance_pair``. The others are optional;
a test needing one that is not provided is skipped and says which fixture is missing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from connectors.base import Capabilities, SourceOptions, TargetOptions
from connectors.testing.harness import (
    AnyConnector,
    BounceFactory,
    ConnectorFactory,
    Harness,
    InFlightFactory,
    PairFactory,
    Publish,
    RawPublish,
    Timeouts,
)
from routing.bindings import Mode

__all__ = [
    "conformance",
    "conformance_bounce",
    "conformance_capabilities",
    "conformance_connector",
    "conformance_in_flight",
    "conformance_pair",
    "conformance_publish",
    "conformance_publish_raw",
    "conformance_timeouts",
]


async def pair_capabilities(
    connector: AnyConnector, source: SourceOptions, target: TargetOptions
) -> Capabilities:
    """What ``connector`` promises for this kind of pair: acknowledgements and ordering
    of the source, confirmation and size of the target, headers where both have them
    (``Connector.source_capabilities`` / ``target_capabilities``)."""
    kind = type(connector)
    reading = kind.source_capabilities(connector.options, source)
    writing = kind.target_capabilities(connector.options, target)
    return dataclasses.replace(
        reading,
        confirmed_publish=writing.confirmed_publish,
        headers=reading.headers and writing.headers,
        max_message_bytes=writing.max_message_bytes,
    )


@pytest.fixture
def conformance_connector() -> ConnectorFactory:
    """REQUIRED. A factory of new, not yet started connectors talking to the test broker.

    Called several times per test (a second connector plays the restarted gateway);
    every instance must reach the same broker and resume the same sources.
    """
    pytest.fail(
        "the conformance suite needs a `conformance_connector` fixture: "
        "a zero-argument factory of new (not started) connectors",
        pytrace=False,
    )


@pytest.fixture
def conformance_pair() -> PairFactory:
    """REQUIRED. ``async (mode) -> (source, target)`` for a fresh, unique address.

    Everything published to ``target`` (with binding ``mode``) must reach ``source``,
    in one ordering lane (one partition, queue, topic or subject). It may create
    broker resources (queues, streams, topics) before returning.
    """
    pytest.fail(
        "the conformance suite needs a `conformance_pair` fixture: "
        "async (mode) -> (source options, target options) for a fresh address",
        pytrace=False,
    )


@pytest.fixture
def conformance_publish_raw() -> RawPublish | None:
    """Optional. ``async (target, payload)``: publish a plain, non-CloudEvent payload to
    the target's address with the broker's own client (legacy producers)."""
    return None


@pytest.fixture
def conformance_bounce() -> BounceFactory | None:
    """Optional. ``async (connector)``: break the started connector's link to the broker
    the way a network fault or broker restart would (close its sockets, have the broker
    drop its connections); the connector must notice and reconnect by itself."""
    return None


@pytest.fixture
def conformance_in_flight() -> InFlightFactory | None:
    """Optional. ``(source, limit) -> (connector, source)``: a new connector (not started)
    and a copy of ``source`` that together hand out at most ``limit`` deliveries not
    yet acked (prefetch, receive maximum, max in flight)."""
    return None


@pytest.fixture
def conformance_capabilities() -> Capabilities | None:
    """Optional. The capabilities the suite assumes for the pairs; by default what the
    connector's ``source_capabilities`` and ``target_capabilities`` answer for a pair."""
    return None


@pytest.fixture
def conformance_publish() -> Publish | None:
    """Optional. ``async (connector, target, event)``: how the suite publishes; default
    ``await connector.publish(target, event)``. For a synchronous transport (HTTP: the
    publish is confirmed only once the receiving source acked), start the publish and
    return once the receiver has the message, letting it finish in the background."""
    return None


@pytest.fixture
def conformance_timeouts() -> Timeouts:
    """Optional. The suite's deadlines (``connectors.testing.Timeouts``)."""
    return Timeouts()


@pytest_asyncio.fixture
async def conformance(
    conformance_connector: ConnectorFactory,
    conformance_pair: PairFactory,
    conformance_publish_raw: RawPublish | None,
    conformance_bounce: BounceFactory | None,
    conformance_in_flight: InFlightFactory | None,
    conformance_capabilities: Capabilities | None,
    conformance_timeouts: Timeouts,
    conformance_publish: Publish | None,
) -> AsyncIterator[Harness]:
    """The suite's per-test harness, built from the fixtures above (not for overriding)."""
    if conformance_capabilities is None:
        conformance_capabilities = await pair_capabilities(
            conformance_connector(), *await conformance_pair(Mode.STRUCTURED)
        )
    harness = Harness(
        make_connector=conformance_connector,
        make_pair=conformance_pair,
        publish_raw=conformance_publish_raw,
        bounce=conformance_bounce,
        in_flight=conformance_in_flight,
        capabilities=conformance_capabilities,
        timeouts=conformance_timeouts,
        publish=conformance_publish,
    )
    try:
        yield harness
    finally:
        await harness.aclose()
