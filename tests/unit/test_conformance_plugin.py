"""The conformance plugin's public surface, its loading, and the readiness bookkeeping.

Plugins code against ``connectors.testing``: its exported names and fixture names are
the API this pins. The plugin must load both through the ``pytest11`` entry point and
through ``pytest_plugins``, and tell a plugin author which fixture is missing.
"""

from __future__ import annotations

import asyncio
from importlib.metadata import entry_points

import pytest

import connectors.testing
from connectors.memory import MemorySource
from connectors.readiness import Subscriptions

pytest_plugins = ["pytester"]

FIXTURES = [
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

PLUGIN_TEST = """
import uuid
import pytest
from connectors.memory import MemoryConnector, MemoryOptions, MemorySource, MemoryTarget
from connectors.testing import ConnectorConformance

@pytest.fixture
def conformance_connector():
    return lambda: MemoryConnector("m", MemoryOptions(type="memory", namespace="x"))

@pytest.fixture
def conformance_pair():
    async def pair(mode):
        topic = uuid.uuid4().hex
        return (MemorySource(connector="m", topic=topic),
                MemoryTarget(connector="m", topic=topic, mode=mode))
    return pair

class TestMemory(ConnectorConformance):
    pass
"""


def test_public_surface() -> None:
    assert sorted(connectors.testing.__all__) == sorted(
        ["ConnectorConformance", "Consumer", "Harness", "Timeouts", "sample_event", *FIXTURES]
    )
    for name in connectors.testing.__all__:
        assert hasattr(connectors.testing, name), name


def test_registered_as_pytest11_plugin() -> None:
    found = [ep for ep in entry_points(group="pytest11") if ep.name == "connectors.testing"]
    assert [ep.value for ep in found] == ["connectors.testing"]


def test_suite_has_at_least_25_tests() -> None:
    names = [n for n in dir(connectors.testing.ConnectorConformance) if n.startswith("test_")]
    assert len(names) >= 25, names


def test_runs_with_fixtures_from_a_conftest(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_plugin=PLUGIN_TEST)
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-o", "asyncio_mode=auto", "-k", "round_trip or close"
    )
    result.assert_outcomes(passed=13)


def test_loads_through_pytest_plugins_without_autoload(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    pytester.makeconftest('pytest_plugins = ["pytest_asyncio.plugin", "connectors.testing"]')
    pytester.makepyfile(test_plugin=PLUGIN_TEST)
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-o", "asyncio_mode=strict", "-k", "test_close_is_idempotent"
    )
    result.assert_outcomes(passed=1)


def test_missing_fixture_is_named(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_plugin="""
from connectors.testing import ConnectorConformance

class TestNothing(ConnectorConformance):
    pass
"""
    )
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-o", "asyncio_mode=auto", "-k", "test_close_is_idempotent"
    )
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*needs a `conformance_connector` fixture*"])


async def test_subscriptions_count_iterators_per_source() -> None:
    subscriptions = Subscriptions()
    source = MemorySource(connector="m", topic="a")
    first, second = subscriptions.track(source), subscriptions.track(source)
    waiting = asyncio.ensure_future(subscriptions.wait(MemorySource(connector="m", topic="a")))
    await asyncio.sleep(0)
    assert not waiting.done() and not subscriptions.is_subscribed(source)
    first.up()
    await asyncio.wait_for(waiting, 1)  # an equal source, not the same object
    second.up()
    first.down()
    first.down()  # idempotent: the other iterator still counts
    assert subscriptions.is_subscribed(source)
    second.down()
    assert not subscriptions.is_subscribed(source)
    assert not subscriptions.is_subscribed(MemorySource(connector="m", topic="b"))
