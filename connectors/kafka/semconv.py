"""Kafka in OpenTelemetry's messaging semantic conventions (``connectors.semconv``):
partition, offset, key and consumer group on process spans, the key on send spans."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connectors.base import Delivery
from connectors.kafka.config import KafkaSource, KafkaTarget
from connectors.semconv import Messaging

__all__ = ["KafkaMessaging"]


class KafkaMessaging(Messaging):
    system = "kafka"

    def source_destination(self, source: KafkaSource) -> str:
        return ",".join(source.topics or ()) or (source.pattern or "")

    def target_destination(self, target: KafkaTarget) -> str:
        return target.topic

    def process_attributes(self, source: KafkaSource, delivery: Delivery) -> Mapping[str, Any]:
        coordinates = delivery.coordinates
        attributes: dict[str, Any] = {
            "messaging.destination.partition.id": str(coordinates.get("partition")),
            "messaging.kafka.offset": coordinates.get("offset", -1),
        }
        if "key" in coordinates:
            attributes["messaging.kafka.message.key"] = str(coordinates["key"])
        if source.group_id:
            attributes["messaging.consumer.group.name"] = str(source.group_id)
        return attributes

    def send_attributes(self, target: KafkaTarget) -> Mapping[str, Any]:
        if target.key is None:
            return {}
        return {"messaging.kafka.message.key": str(target.key)}
