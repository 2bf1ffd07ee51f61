"""Errors raised by the pure routing core.

Hierarchy (every meshgate error derives from ``MeshgateError``)::

    MeshgateError
    ├── InvalidEvent (ValueError)       a message or event breaks the CloudEvents spec
    ├── FilterError (ValueError)        a CESQL / filter expression cannot be compiled
    │   └── CesqlEvaluationError        raised while evaluating (math, cast, ...)
    └── TemplateError (ValueError)      a target/ingress template is malformed or
                                        references something the source cannot supply

``gateway.errors`` adds ``ConfigError`` and ``connectors.errors`` adds the
connector errors; both derive from ``MeshgateError`` too.
"""

from __future__ import annotations

__all__ = [
    "FilterError",
    "InvalidEvent",
    "MeshgateError",
    "TemplateError",
]


class MeshgateError(Exception):
    """Root of every error meshgate raises on purpose."""


class InvalidEvent(MeshgateError, ValueError):
    """A message or event violates the CloudEvents 1.0 spec or a binding.

    ``attribute`` names the attribute (or message part, such as ``header ce_time``)
    at fault and ``rule`` says what was expected, so the message is actionable.
    """

    def __init__(self, attribute: str, rule: str) -> None:
        self.attribute = attribute
        self.rule = rule
        super().__init__(f"invalid CloudEvent: {attribute}: {rule}")


class FilterError(MeshgateError, ValueError):
    """A filter expression is invalid; ``position`` is a 0-based offset when known."""

    def __init__(self, message: str, position: int | None = None) -> None:
        self.position = position
        where = f" at position {position}" if position is not None else ""
        super().__init__(f"{message}{where}")


class TemplateError(MeshgateError, ValueError):
    """A template is malformed or references a value the source can never provide."""
