"""``ConnectorConformance``: the tests every connector passes against its real broker.

Subclass it in a test module and provide the fixtures of ``connectors.testing.plugin``;
the tests read the capabilities (``Capabilities``) and skip, saying why, what does not
apply. The tests are grouped by theme in sibling modules; this class joins them.
"""

from __future__ import annotations

from connectors.testing.acks import AckTests
from connectors.testing.bindings import BindingTests
from connectors.testing.delivery import DeliveryTests
from connectors.testing.lifecycle import LifecycleTests

__all__ = ["ConnectorConformance"]


class ConnectorConformance(DeliveryTests, AckTests, BindingTests, LifecycleTests):
    """The shared connector contract tests; see docs/plugins.md for the list."""
