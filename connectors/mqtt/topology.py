"""Where MQTT routes read and publish, for static analysis (``connectors.topology``),
and MQTT topic-filter matching.

An address is ``(topic,)``. A source reads what its topic filter matches (``+`` one
level, ``#`` this level and all below); sources in one ``share_group`` split the
messages.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connectors.mqtt.config import MqttOptions, MqttSource, MqttTarget
from connectors.topology import ANY, ANY_TEXT, Matcher, Topology, match_levels

__all__ = ["MqttTopology", "mqtt_match"]


def mqtt_match(topic_filter: str, topic: str, any_marker: str | None = None) -> bool:
    """MQTT filter match: ``+`` one level, ``#`` this level and all below (also zero)."""
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False  # MQTT 4.7.2: wildcards at the start do not match $-topics
    return match_levels(topic_filter.split("/"), topic.split("/"), "+", "#", True, any_marker)


class MqttTopology(Topology[MqttOptions, MqttSource, MqttTarget]):
    address_fields = ("topic",)

    def broker_identity(self, options: MqttOptions) -> Mapping[str, Any]:
        return options.model_dump(include={"url", "host", "port"})

    def source_reads(self, source: MqttSource) -> Matcher:
        topic = source.topic
        return lambda address: mqtt_match(topic, address[0], ANY)

    def source_text(self, source: MqttSource) -> str:
        return source.topic

    def text_reads(self, source_text: str, address_text: str) -> bool:
        return mqtt_match(source_text, address_text.replace(ANY_TEXT, ANY), ANY)

    def sources_share(self, a: MqttSource, b: MqttSource) -> bool:
        return a.share_group is not None and a.share_group == b.share_group
