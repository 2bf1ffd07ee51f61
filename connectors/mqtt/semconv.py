"""MQTT in OpenTelemetry's messaging semantic conventions (``connectors.semconv``). MQTT
5 has one slot for the trace context, the ``traceparent`` user property that is also
the CloudEvents extension, so the gateway's context goes into the event."""

from __future__ import annotations

from connectors.mqtt.config import MqttSource, MqttTarget
from connectors.semconv import Messaging

__all__ = ["MqttMessaging"]


class MqttMessaging(Messaging):
    system = "mqtt"  # no registered value: the protocol name
    context_in_event = True

    def source_destination(self, source: MqttSource) -> str:
        return source.topic

    def target_destination(self, target: MqttTarget) -> str:
        return target.topic
