"""NATS in OpenTelemetry's messaging semantic conventions (``connectors.semconv``)."""

from __future__ import annotations

from connectors.nats.config import NatsSource, NatsTarget
from connectors.semconv import Messaging

__all__ = ["NatsMessaging"]


class NatsMessaging(Messaging):
    system = "nats"  # no registered value: the protocol name

    def source_destination(self, source: NatsSource) -> str:
        return source.subject

    def target_destination(self, target: NatsTarget) -> str:
        return target.subject
