"""Where Kafka routes read and publish, for static analysis (``connectors.topology``).

An address is ``(topic,)``. A source reads its ``topics`` or the topics its
``pattern`` (a regex over the whole name) matches; sources in one consumer group
share the records.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from connectors.kafka.config import KafkaOptions, KafkaSource, KafkaTarget
from connectors.topology import ANY, Matcher, Topology, may_equal

__all__ = ["KafkaTopology"]


class KafkaTopology(Topology[KafkaOptions, KafkaSource, KafkaTarget]):
    address_fields = ("topic",)

    def broker_identity(self, options: KafkaOptions) -> Mapping[str, Any]:
        return {"bootstrap_servers": list(options.bootstrap_servers)}

    def source_reads(self, source: KafkaSource) -> Matcher:
        if source.pattern is not None:
            regex = re.compile(source.pattern)
            return lambda address: regex.fullmatch(address[0].replace(ANY, "x")) is not None
        topics = tuple(source.topics or ())
        return lambda address: any(may_equal(topic, address[0]) for topic in topics)

    def source_text(self, source: KafkaSource) -> str:
        return ",".join(source.topics or ()) or f"/{source.pattern}/"

    def text_reads(self, source_text: str, address_text: str) -> bool:
        return address_text in source_text.split(",")

    def same_messages(self, a: KafkaSource, b: KafkaSource) -> bool:
        return bool(set(a.topics or ()) & set(b.topics or ())) or (
            a.pattern is not None and a.pattern == b.pattern
        )

    def sources_share(self, a: KafkaSource, b: KafkaSource) -> bool:
        return a.group_id == b.group_id
