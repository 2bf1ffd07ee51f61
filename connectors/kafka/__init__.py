"""Apache Kafka connector, type name ``kafka``, built on aiokafka.

Features
--------
- Source: a consumer-group member per route (``group_id``), subscribed to
  ``topics`` or a topic ``pattern``; gateways sharing a group split the
  partitions (scale-out through the broker, nothing else). Auto-commit is off:
  ``ack()`` only marks a record done, and a background task commits per
  partition the highest *contiguous* acked offset + 1 — the runtime acks out of
  order, so an unacked record is never skipped by a commit of a later one.
  Commits run every ``commit_interval_seconds``, after ``commit_every`` acks, when a
  rebalance revokes partitions and on close; acks arriving after their partition
  was revoked are ignored (the new owner redelivers from the last commit:
  duplicates, never loss). See ``connectors.kafka.offsets``.
- ``nack(requeue=True)`` seeks the partition back to that record, which
  redelivers it and every later record of the partition. ``nack(requeue=False)``
  marks the record done like ``ack()``: Kafka cannot drop a single record, and
  the runtime only gives up on a message after dead-lettering it.
- Backpressure: at most ``max_in_flight`` unacked deliveries per source; at that
  limit the partitions are paused (the consumer keeps polling only to stay in
  the group) and aiokafka's prefetch is one fetch response per partition.
- Target: one producer per connector, ``acks=all`` and idempotent by default
  (falls back, with a warning, when the brokers refuse idempotence);
  ``publish`` returns once all in-sync replicas have the record. Errors map by
  aiokafka's ``retriable`` class data: timeouts -> ``PublishTimeout``,
  retriable/connection errors -> ``ConnectionLost``, the rest (record too large,
  authorization, invalid topic) -> ``PublishRejected``.
- Delivery: ``message`` is ``routing.bindings.kafka.KafkaMessage``; ``address`` the
  topic; ``headers`` as text (UTF-8, else ``base64:`` + base64; the last of
  repeated names wins); ``native_id`` ``topic/partition/offset``; ``ordering_key``
  ``topic/partition``; coordinates topic, partition, offset and key.
- Reconnects are aiokafka's own (consumers also re-join their group); ``health``
  follows a periodic metadata request and consumer/producer errors.
- CloudEvents: Kafka protocol binding, binary mode (``ce_`` headers,
  ``content-type``) or structured mode (JSON or Avro); record key from the
  target's ``key`` or, opt-in, from the ``partitionkey`` extension.

URL form
--------
Kafka has no URL: ``bootstrap_servers`` lists ``host:port`` pairs (a list, or one
comma-separated string). Credentials never go there: TLS and SASL have their own
options, and the SASL password is a secret that is never logged.

Options
-------
Connector (``connectors:`` entry): ``bootstrap_servers``, ``client_id``,
``security_protocol`` (PLAINTEXT|SSL|SASL_PLAINTEXT|SASL_SSL), ``sasl_mechanism``
(PLAIN|SCRAM-SHA-256|SCRAM-SHA-512), ``sasl_username``, ``sasl_password``,
``tls`` (the shared ``tls:`` block, docs/security.md), ``request_timeout_seconds``,
``enable_idempotence``, ``linger_seconds``, ``max_batch_size``, ``max_request_size``,
``compression_type`` (gzip|snappy|lz4|zstd), ``health_interval_seconds``.

Source (``from:``): ``topics`` or ``pattern``, ``group_id`` (required),
``auto_offset_reset`` (earliest|latest, default earliest), ``max_in_flight``,
``session_timeout_seconds``, ``commit_interval_seconds``, ``commit_every``.

Target (``to:``): ``topic`` (template), ``key`` (template, UTF-8),
``key_from_partitionkey``, ``mode``, ``format``.
"""

from connectors.kafka.config import (
    Compression,
    KafkaOptions,
    KafkaSource,
    KafkaTarget,
    OffsetReset,
    SaslMechanism,
    SecurityProtocol,
)
from connectors.kafka.connector import KafkaConnector

__all__ = [
    "Compression",
    "KafkaConnector",
    "KafkaOptions",
    "KafkaSource",
    "KafkaTarget",
    "OffsetReset",
    "SaslMechanism",
    "SecurityProtocol",
]
