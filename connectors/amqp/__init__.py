"""AMQP 0-9-1 (RabbitMQ) connector, type name ``amqp``, built on aio-pika.

Features
--------
- Source: consumes one queue per route with manual acks; ``ack()`` sends
  ``basic.ack``, ``nack(requeue)`` sends ``basic.nack``. ``prefetch`` (basic.qos)
  bounds the unacknowledged deliveries in flight. The queue can be declared
  (durable, classic or quorum, with arguments) and bound to existing exchanges
  (topic wildcards ``*`` and ``#``) before consuming.
- Survives connection loss: meshgate manages its own reconnect loop (plain
  connection, exponential backoff with jitter) and re-declares, re-binds and
  re-consumes every source; deliveries from a dead channel cannot be acked on the
  new one (the broker redelivers them). See ``connectors.amqp.link``.
- Target: publishes on a dedicated channel with publisher confirms; ``mandatory``
  turns unroutable messages into ``PublishRejected`` instead of silent loss;
  ``persistent`` messages (delivery_mode 2) by default; the AMQP ``message_id``
  is the CloudEvent id so consumers can deduplicate. Exchange and routing key are
  templates; the exchange can be declared on first use.
- Delivery: ``message`` is ``routing.bindings.amqp.AmqpMessage``, ``address`` the
  routing key, ``headers`` the field table as canonical text, ``native_id`` the
  ``message_id`` property, ``ordering_key`` the queue; coordinates record
  exchange, routing key, queue, delivery tag and the redelivered flag.
- CloudEvents: binary mode with ``ce-`` headers (``cloudEvents_``/``cloudEvents:``
  accepted on ingest) and the ``content_type`` property; structured mode in JSON
  or Avro.

URL form
--------
``amqp://user:password@host:5672/vhost`` or ``amqps://...:5671/...`` for TLS; an
empty path is the ``/`` vhost, ``%2F`` encodes a slash. Query parameters that
aiormq understands (``cafile``, ``certfile``, ``keyfile``) also work; the options
below take precedence. The password is redacted in every log line and error.

Options
-------
Connector (``connectors:`` entry): ``url``, ``tls`` (the shared ``tls:`` block,
docs/security.md), ``heartbeat_seconds``, ``connection_name`` (shown in management,
default ``meshgate:<name>``), ``connect_timeout_seconds``, ``confirm_timeout_seconds``.

Source (``from:``): ``queue``, ``declare``, ``queue_type`` (classic|quorum),
``arguments``, ``bind`` (list of ``{exchange, binding_key}``), ``prefetch``,
``consumer_tag_prefix``.

Target (``to:``): ``exchange`` (template, "" = default exchange), ``routing_key``
(template), ``mode``, ``format``, ``persistent``, ``mandatory``,
``declare_exchange`` (``{type, durable}``).
"""

from connectors.amqp.config import (
    AmqpOptions,
    AmqpSource,
    AmqpTarget,
    Binding,
    ExchangeDeclaration,
    ExchangeKind,
    QueueType,
)
from connectors.amqp.connector import AmqpConnector

__all__ = [
    "AmqpConnector",
    "AmqpOptions",
    "AmqpSource",
    "AmqpTarget",
    "Binding",
    "ExchangeDeclaration",
    "ExchangeKind",
    "QueueType",
]
