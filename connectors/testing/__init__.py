"""The connector conformance suite, shipped as a pytest plugin (docs/plugins.md).

Every built-in connector runs it against its real broker, and so can a plugin::

    # tests/test_conformance.py of a plugin
    import pytest
    from connectors.testing import ConnectorConformance

    class TestMyConformance(ConnectorConformance):
        @pytest.fixture
        def conformance_connector(self):
            return lambda: MyConnector("my", MyOptions(url=...))

        @pytest.fixture
        def conformance_pair(self):
            async def pair(mode):
                name = f"conformance-{uuid.uuid4().hex}"
                return MySource(connector="my", queue=name), MyTarget(
                    connector="my", queue=name, mode=mode)
            return pair

The fixtures (``connectors.testing.plugin``) are available once this package is a
pytest plugin: installed meshgate registers it through the ``pytest11`` entry point
``connectors.testing``; without plugin autoloading, put
``pytest_plugins = ["connectors.testing"]`` in the root ``conftest.py``. Tests are
``async`` and need pytest-asyncio (``asyncio_mode = "auto"`` or strict both work).
"""

import pytest

# Plain asserts in the suite report their values like test-module asserts do.
pytest.register_assert_rewrite(
    *(f"connectors.testing.{name}" for name in ("acks", "bindings", "delivery", "harness"))
)

from connectors.testing.harness import (  # noqa: E402
    Consumer,
    Harness,
    Timeouts,
    sample_event,
)
from connectors.testing.plugin import (  # noqa: E402
    conformance,
    conformance_bounce,
    conformance_capabilities,
    conformance_connector,
    conformance_in_flight,
    conformance_pair,
    conformance_publish,
    conformance_publish_raw,
    conformance_timeouts,
)
from connectors.testing.suite import ConnectorConformance  # noqa: E402

__all__ = [
    "ConnectorConformance",
    "Consumer",
    "Harness",
    "Timeouts",
    "conformance",
    "conformance_bounce",
    "conformance_capabilities",
    "conformance_connector",
    "conformance_in_flight",
    "conformance_pair",
    "conformance_publish",
    "conformance_publish_raw",
    "conformance_timeouts",
    "sample_event",
]
