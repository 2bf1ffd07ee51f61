"""Wrap messages that are not CloudEvents (legacy producers) into CloudEvents.

A route's ``ingress`` rules give templates for ``type``, ``source`` and
optionally ``subject`` and ``id``. The id defaults to the message's native id
(JetStream stream sequence, Kafka topic/partition/offset, AMQP message-id), so a
redelivered message gets the same id again; only when the protocol has none
(MQTT, core NATS, AMQP without message-id) is a random UUID used, and then a
redelivery is a new event for deduplicating consumers (see docs/delivery.md).
``datacontenttype`` is fixed by the rules, else taken from the message's own
content type, else guessed from the bytes (JSON, UTF-8 text, or octet-stream).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import orjson

from routing.event import CloudEvent
from routing.templates import Template, TemplateValues, compile_template

__all__ = ["IngressRules", "guess_content_type"]


def guess_content_type(payload: bytes) -> str:
    """A best guess at the media type of a legacy payload."""
    try:
        orjson.loads(payload)
    except orjson.JSONDecodeError:
        pass
    else:
        return "application/json"
    try:
        payload.decode("utf-8")
    except UnicodeDecodeError:
        return "application/octet-stream"
    return "text/plain; charset=utf-8"


@dataclass(frozen=True, slots=True)
class IngressRules:
    """Compiled ingress templates of one route."""

    type: Template
    source: Template
    subject: Template | None = None
    id: Template | None = None
    datacontenttype: str | None = None

    @classmethod
    def compile(
        cls,
        *,
        type: str,
        source: str,
        subject: str | None = None,
        id: str | None = None,
        datacontenttype: str | None = None,
    ) -> IngressRules:
        """Compile the templates; ``TemplateError`` if one is invalid for ingress."""

        def build(text: str | None) -> Template | None:
            return None if text is None else compile_template(text, allow_event=False)

        return cls(
            type=compile_template(type, allow_event=False),
            source=compile_template(source, allow_event=False),
            subject=build(subject),
            id=build(id),
            datacontenttype=datacontenttype,
        )

    def wrap(
        self,
        payload: bytes,
        values: TemplateValues,
        *,
        native_id: str | None,
        content_type: str | None,
    ) -> CloudEvent:
        """The CloudEvent for a legacy message; raises ``TemplateError``/``InvalidEvent``."""
        if self.id is not None:
            event_id = self.id.render(values)
        else:
            event_id = native_id if native_id is not None else str(uuid.uuid4())
        return CloudEvent(
            id=event_id,
            source=self.source.render(values),
            type=self.type.render(values),
            subject=None if self.subject is None else self.subject.render(values),
            datacontenttype=self.datacontenttype or content_type or guess_content_type(payload),
            data=payload or None,
        )
