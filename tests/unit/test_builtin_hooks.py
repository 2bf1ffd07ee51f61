"""Every built-in connector type provides the optional contract hooks a plugin may skip."""

from __future__ import annotations

import pytest

from connectors.base import Connector
from connectors.registry import default_registry
from gateway.schema import bundled_connector_types

BUILT_IN = bundled_connector_types()


@pytest.mark.parametrize("kind", BUILT_IN)
def test_builtin_provides_the_optional_hooks(kind: str) -> None:
    cls = default_registry.get(kind)
    assert cls.topology is not None, "static analysis would skip it"
    assert cls.header_clash.__func__ is not Connector.header_clash.__func__  # type: ignore[attr-defined]
    assert cls.dry_run_delivery.__func__ is not Connector.dry_run_delivery.__func__  # type: ignore[attr-defined]
    assert callable(getattr(cls, "publish_raw", None)), "meshgate dlq redrive needs it"


def test_the_four_protocols_and_memory_are_built_in() -> None:
    assert {"amqp", "kafka", "mqtt", "nats", "memory"} <= set(BUILT_IN)
