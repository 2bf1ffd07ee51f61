"""Connectors: one module per broker protocol, plus the plugin contract in ``base``.

The public plugin API is what this package exports; first-party connectors use
only these names, the same as a third-party plugin would.
"""

from connectors.base import (
    Capabilities,
    Connector,
    ConnectorOptions,
    Delivery,
    EgressOptions,
    Health,
    HealthState,
    MessageSpec,
    Preflight,
    SourceOptions,
    TargetOptions,
    dry_run_delivery,
    find_header,
)
from connectors.errors import (
    ConnectionLost,
    ConnectorError,
    MessageSpecError,
    PublishRejected,
    PublishTimeout,
    UnknownConnectorType,
)
from connectors.headertext import header_text
from connectors.registry import ENTRY_POINT_GROUP, ConnectorRegistry, default_registry
from connectors.topology import Topology

__all__ = [
    "ENTRY_POINT_GROUP",
    "Capabilities",
    "ConnectionLost",
    "Connector",
    "ConnectorError",
    "ConnectorOptions",
    "ConnectorRegistry",
    "Delivery",
    "EgressOptions",
    "Health",
    "HealthState",
    "MessageSpec",
    "MessageSpecError",
    "Preflight",
    "PublishRejected",
    "PublishTimeout",
    "SourceOptions",
    "TargetOptions",
    "Topology",
    "UnknownConnectorType",
    "default_registry",
    "dry_run_delivery",
    "find_header",
    "header_text",
]
