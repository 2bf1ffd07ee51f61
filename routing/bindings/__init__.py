"""Protocol bindings: CloudEvent <-> native message of each broker, as pure functions.

One module per protocol, each with the same shape: a message dataclass holding the
parts of a native message the binding reads and writes (never changed once made; not
frozen, since one is made per message and a frozen dataclass's ``__init__`` sets each
field through ``object.__setattr__``, several times a plain one's cost), plus

- ``to_message(event, mode=Mode.BINARY, *, fmt=EventFormat.JSON, ...)``, and
- ``from_message(message) -> CloudEvent | None``: ``None`` when the message is no
  CloudEvent (a legacy producer), ``InvalidEvent`` when it claims to be one but
  breaks the spec.

=================  ==========================================================
``kafka``          Kafka records (``ce_`` headers, ``content-type`` header)
``amqp``           AMQP 0-9-1 / RabbitMQ (``ce-`` headers, ``content_type``)
``mqtt``           MQTT 5 (User Properties, Content Type) and 3.1.1 (JSON)
``nats``           NATS 2.2+ (percent-encoded ``ce-`` headers)
=================  ==========================================================

Each module also has ``header_clash(name)``: the one rule saying which native header
names a target's ``headers:`` may not use beside that binding (names that read back
as attributes or as the binding's own headers); ``merge_headers`` puts the two
together in one precedence.

No module here imports a broker client or does I/O; connectors turn their client's
message objects into these dataclasses and back.
"""

from __future__ import annotations

from routing.bindings._headers import Mode, merge_headers, prefix_clash
from routing.bindings.amqp import AmqpMessage
from routing.bindings.kafka import KafkaMessage
from routing.bindings.mqtt import MqttMessage
from routing.bindings.nats import NatsMessage

__all__ = [
    "AmqpMessage",
    "KafkaMessage",
    "Mode",
    "MqttMessage",
    "NatsMessage",
    "merge_headers",
    "prefix_clash",
]
