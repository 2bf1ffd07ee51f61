"""Where NATS routes read and publish, for static analysis (``connectors.topology``),
and NATS subject matching.

An address is ``(subject,)``. A source reads what its subject matches (``*`` one
token, ``>`` one or more at the end); JetStream sources with one durable, and core
sources in one queue group, split the messages.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connectors.nats.config import NatsOptions, NatsSource, NatsTarget
from connectors.topology import ANY, ANY_TEXT, Matcher, Topology, match_levels

__all__ = ["NatsTopology", "nats_match"]


def nats_match(pattern: str, subject: str, any_marker: str | None = None) -> bool:
    """NATS subject match: ``*`` one token, ``>`` one or more tokens at the end."""
    return match_levels(pattern.split("."), subject.split("."), "*", ">", False, any_marker)


class NatsTopology(Topology[NatsOptions, NatsSource, NatsTarget]):
    address_fields = ("subject",)

    def broker_identity(self, options: NatsOptions) -> Mapping[str, Any]:
        return {"servers": list(options.servers)}

    def source_reads(self, source: NatsSource) -> Matcher:
        subject = source.subject
        return lambda address: nats_match(subject, address[0], ANY)

    def source_text(self, source: NatsSource) -> str:
        return source.subject

    def text_reads(self, source_text: str, address_text: str) -> bool:
        # "{...}" holds the NATS separator: mark it before splitting into tokens.
        return nats_match(source_text, address_text.replace(ANY_TEXT, ANY), ANY)

    def sources_share(self, a: NatsSource, b: NatsSource) -> bool:
        if a.jetstream is not None and b.jetstream is not None:
            return a.jetstream.durable == b.jetstream.durable
        return a.queue_group is not None and a.queue_group == b.queue_group
