"""``ConnectorConformance``: the tests every connector passes against its real broker.

Subclass it in a test module and provide the fixtures of ``connectors.testing.plugin``;
the tests read the capabilities (``Capabilities``) and skip, saying why, what does not
apply. The tests are grouped by theme in sibling modules; this class joins them.
"""

from __future__ import annotations

from typing import ClassVar

import pytest

from connectors.testing.acks import AckTests
from connectors.testing.bindings import BindingTests
from connectors.testing.delivery import DeliveryTests
from connectors.testing.lifecycle import LifecycleTests

__all__ = ["ConnectorConformance"]


class ConnectorConformance(DeliveryTests, AckTests, BindingTests, LifecycleTests):
    """The shared connector contract tests; see docs/plugins.md for the list."""

    # Every test is a coroutine: marked, so pytest-asyncio's strict mode runs them too.
    pytestmark: ClassVar[list[pytest.MarkDecorator]] = [pytest.mark.asyncio]
