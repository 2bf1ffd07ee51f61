"""Optional contract hook: a connector type's names in OpenTelemetry's messaging
semantic conventions, for the gateway's spans and metrics (docs/observability.md).

The core's telemetry (``gateway.telemetry``, ``gateway.tracing``) knows no protocol:
it asks the connector class's ``semconv`` (``Connector.semconv``, a ``Messaging`` or
None) for ``messaging.system``, the destination names and protocol attributes (Kafka
partition and offset, RabbitMQ routing key). A type without the hook gets the generic
``Messaging`` (system = the type name, destination = the first of the source's or
target's ``topic``/``subject``/``queue``/``exchange`` fields, trace context in the
target's ``headers`` if it has them), and the gateway logs that once at start.

Pure: reads config models and deliveries, no OpenTelemetry import.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from connectors.base import Delivery

__all__ = ["Messaging"]

_SOURCE_KEYS = ("subject", "topic", "queue", "topics")
_TARGET_KEYS = ("topic", "subject", "exchange", "routing_key")


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list | tuple) and value:
        return ",".join(str(item) for item in value)
    return ""


class Messaging:
    """How one connector type appears in spans and metrics; the base class is the
    generic answer a type without the hook gets (see the module doc)."""

    system: ClassVar[str | None] = None
    """``messaging.system`` (a semantic-conventions value such as ``kafka`` or
    ``rabbitmq``); None: the connector type name."""
    context_in_event: ClassVar[bool] = False
    """True where the binding has no native trace-context slot apart from the
    CloudEvents ``traceparent`` extension (MQTT 5 user properties): the gateway's
    context then goes into the event, as ``gateway.tracing.mqtt_traceparent`` says.
    False: into the target's ``headers``, if it has such a field."""

    def system_name(self, connector_type: str) -> str:
        return self.system or connector_type

    def source_destination(self, source: Any) -> str:
        """What ``source`` reads, as ``messaging.destination.name`` of receive metrics
        and ``messaging.destination.subscription.name`` of process spans."""
        for key in _SOURCE_KEYS:
            text = _text(getattr(source, key, None))
            if text:
                return text
        return ""

    def target_destination(self, target: Any) -> str:
        """Where a (rendered) target publishes, as ``messaging.destination.name``."""
        for key in _TARGET_KEYS:
            text = _text(getattr(target, key, None))
            if text:
                return text
        return ""

    def process_attributes(self, source: Any, delivery: Delivery) -> Mapping[str, Any]:
        """Protocol attributes of the process span of ``delivery`` read by ``source``."""
        return {}

    def send_attributes(self, target: Any) -> Mapping[str, Any]:
        """Protocol attributes of the send span of a publish to ``target``."""
        return {}
