"""Errors raised by connectors; the runtime decides retry vs dead-letter from them.

Hierarchy::

    MeshgateError (routing.errors)
    └── ConnectorError                  anything a connector reports; ``retriable`` = True
        ├── ConnectionLost              broker unreachable or connection dropped (retriable)
        ├── PublishTimeout              no confirmation in time (retriable)
        ├── PublishRejected             the broker refused this message: nack, unroutable,
        │                               too large, not authorized (not retriable)
        ├── NotAuthorized               the broker refused a subscription or consumer
        │                               the credentials lack permission for (not retriable)
        ├── UnknownConnectorType (ValueError)  no plugin registers the ``type`` name
        └── MessageSpecError (ValueError)      ``routes check --message`` cannot build
                                               this native message (bad spec, or a
                                               plugin without the hook)

Client-library exceptions are translated at the connector boundary with
``raise ... from exc`` so the original stays visible in tracebacks.
"""

from __future__ import annotations

from typing import ClassVar

from routing.errors import MeshgateError

__all__ = [
    "ConnectionLost",
    "ConnectorError",
    "MessageSpecError",
    "NotAuthorized",
    "PublishRejected",
    "PublishTimeout",
    "UnknownConnectorType",
]


class ConnectorError(MeshgateError):
    """A connector could not do what was asked."""

    retriable: ClassVar[bool] = True
    """Whether trying the same operation again later may succeed."""


class ConnectionLost(ConnectorError):
    """The broker is unreachable or the connection dropped.

    ``suspect``: the connector recognised a loss that repeats if retried soon (an MQTT
    session takeover); the core's supervisor then keeps the waits growing.
    """

    def __init__(self, *args: object, suspect: bool = False) -> None:
        super().__init__(*args)
        self.suspect = suspect


class PublishTimeout(ConnectorError):
    """The broker did not confirm a publish in time; it may or may not have it."""


class PublishRejected(ConnectorError):
    """The broker refused the message itself (nack, unroutable, too large, denied)."""

    retriable = False


class NotAuthorized(ConnectorError):
    """The broker refused a subscription (or consumer) for lack of permission."""

    retriable = False


class UnknownConnectorType(ConnectorError, ValueError):
    """No installed plugin provides the requested connector ``type``."""

    retriable = False


class MessageSpecError(ConnectorError, ValueError):
    """A ``routes check --message`` description that cannot become a native message."""

    retriable = False
