"""Connectors: one module per broker protocol, plus the plugin contract in ``base``.

The public plugin API is what this package exports; first-party connectors use
only these names, the same as a third-party plugin would.
"""

from connectors.asyncapi import AsyncApi
from connectors.backoff import Backoff
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
from connectors.meshchannel import MeshChannel
from connectors.redact import redact_url
from connectors.registry import ENTRY_POINT_GROUP, ConnectorRegistry, default_registry
from connectors.semconv import Messaging
from connectors.supervision import Supervisor, SupervisorClosed
from connectors.tls import TlsConfigError, TlsOptions, warn_insecure
from connectors.topology import Topology

__all__ = [
    "ENTRY_POINT_GROUP",
    "AsyncApi",
    "Backoff",
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
    "MeshChannel",
    "MessageSpec",
    "MessageSpecError",
    "Messaging",
    "Preflight",
    "PublishRejected",
    "PublishTimeout",
    "SourceOptions",
    "Supervisor",
    "SupervisorClosed",
    "TargetOptions",
    "TlsConfigError",
    "TlsOptions",
    "Topology",
    "UnknownConnectorType",
    "default_registry",
    "dry_run_delivery",
    "find_header",
    "header_text",
    "redact_url",
    "warn_insecure",
]
