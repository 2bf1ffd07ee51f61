"""RabbitMQ in OpenTelemetry's messaging semantic conventions (``connectors.semconv``):
system ``rabbitmq``, routing key and delivery tag on process spans, the routing key on
send spans; a target's destination is ``exchange/routing_key``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connectors.amqp.config import AmqpSource, AmqpTarget
from connectors.base import Delivery
from connectors.semconv import Messaging

__all__ = ["AmqpMessaging"]


class AmqpMessaging(Messaging):
    system = "rabbitmq"

    def source_destination(self, source: AmqpSource) -> str:
        return source.queue

    def target_destination(self, target: AmqpTarget) -> str:
        if not target.exchange:  # the default exchange routes by queue name
            return target.routing_key
        return f"{target.exchange}/{target.routing_key}" if target.routing_key else target.exchange

    def process_attributes(self, source: AmqpSource, delivery: Delivery) -> Mapping[str, Any]:
        coordinates = delivery.coordinates
        return {
            "messaging.rabbitmq.destination.routing_key": str(coordinates.get("routing_key", "")),
            "messaging.rabbitmq.message.delivery_tag": coordinates.get("delivery_tag", 0),
            "messaging.message.body.size": len(delivery.payload),
        }

    def send_attributes(self, target: AmqpTarget) -> Mapping[str, Any]:
        return {"messaging.rabbitmq.destination.routing_key": target.routing_key or ""}
