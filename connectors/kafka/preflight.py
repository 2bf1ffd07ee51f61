"""``meshgate validate --connect`` for Kafka: do the topics the routes need exist?

Source topics and target topics (templated ones are skipped) are looked up in the
cluster metadata; a pattern source should match at least one topic. A missing topic
is reported even though a broker with ``auto.create.topics.enable`` would create it
on first use: relying on that is rarely meant.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from connectors.kafka.config import KafkaSource, KafkaTarget

__all__ = ["preflight"]

_TEMPLATE = re.compile(r"\{[^{}]*\}")


async def preflight(
    client: Any, sources: Sequence[KafkaSource], targets: Sequence[KafkaTarget]
) -> list[str]:
    metadata = await client.fetch_all_metadata()
    topics = set(metadata.topics())
    problems: list[str] = []
    for source in sources:
        if source.pattern is not None:
            if not any(re.fullmatch(source.pattern, topic) for topic in topics):
                problems.append(f"source pattern {source.pattern!r} matches no topic yet")
            continue
        for topic in source.topics or ():
            if topic not in topics:
                problems.append(f"source topic {topic!r} does not exist")
    for name in dict.fromkeys(t.topic for t in targets if not _TEMPLATE.search(t.topic)):
        if name not in topics:
            problems.append(
                f"target topic {name!r} does not exist (created on first publish only where "
                "the brokers allow auto.create.topics.enable)"
            )
    return problems
