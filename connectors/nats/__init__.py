"""NATS connector (``type: nats``): core NATS and JetStream, CloudEvents NATS binding.

Features
    - Sources: core NATS subscriptions with wildcards (``*`` one token, ``>`` the
      rest) and optional queue groups for scale-out, **at-most-once**: ack/nack are
      no-ops, a disconnect or a slow consumer (more than ``pending_msgs_limit``
      messages or ``pending_bytes_limit`` bytes buffered; the defaults are nats-py's
      and nats.go's) loses messages, and the drops are logged (throttled) and
      counted (``Health.dropped``, ``NatsConnector.slow_consumer_drops``).
    - Sources with a ``jetstream`` block: a durable pull consumer with explicit acks,
      **at-least-once**. Gateways sharing the durable share the work. ack -> +ACK,
      nack(requeue=True) -> -NAK (redelivered now), nack(requeue=False) -> +TERM
      (never redelivered), ``in_progress`` -> +WPI (extends ``ack_wait_seconds``).
      Deliveries carry ``native_id`` ``<stream>/<stream sequence>`` (stable across
      redeliveries) and coordinates stream/seq/subject/num_delivered. Flow is
      bounded: one pull request of ``batch`` messages at a time, sent when the
      previous one is consumed, and ``max_ack_pending`` on the server.
    - Targets: JetStream publish waiting for the PubAck (default), with a
      ``Nats-Msg-Id`` header (a hash of subject, event source and event id) so
      retries within the stream's duplicate window are stored once; or
      ``jetstream: false``, a core publish + flush (at-most-once).
      No stream for the subject -> ``PublishRejected``; no PubAck in time ->
      ``PublishTimeout``; no connection -> ``ConnectionLost``.
    - Binary and structured mode (``ce-`` headers, percent-encoded; JSON or Avro).
    - A link watchdog replaces a client whose connection went silent while nats-py
      still reports it connected (PubAcks and flushes timing out; ``connectors.nats.link``).
    - Reconnects forever by default, with jitter; TLS / mutual TLS; user+password,
      token, .creds file or nkey seed (the last two need the ``nkeys`` package).
      Credentials are never logged (URLs are redacted).

URL form
    ``nats://[user[:password]@]host[:port]`` or ``tls://...`` (TLS required), one or
    more in ``servers``. Default port 4222.

Options
    Connection (``connectors:`` entry): ``servers``, ``name``, ``user``/``password``,
    ``token``, ``creds_file``, ``nkey_seed_file``, ``tls`` (the shared ``tls:`` block),
    ``connect_timeout_seconds``, ``connect_attempts``, ``max_reconnect_attempts`` (-1 =
    forever), ``reconnect_wait_seconds``, ``reconnect_jitter_seconds``, ``pending_size``,
    ``publish_timeout_seconds``, ``watchdog_timeouts`` (0 = off).

    Source (``from:``): ``subject``, ``queue_group``, ``pending_msgs_limit``,
    ``pending_bytes_limit``, ``jetstream: {stream, durable, deliver_policy,
    ack_wait_seconds, max_ack_pending, batch, ack_sync, create_stream, subjects}``.

    Target (``to:``): ``subject`` (template), ``jetstream`` (default true), ``mode``,
    ``format``.

    Every option is described in ``connectors.nats.config`` (the JSON Schema).
"""

from connectors.nats.config import (
    DeliverPolicy,
    JetStreamSource,
    NatsOptions,
    NatsSource,
    NatsTarget,
)
from connectors.nats.connector import NatsConnector

__all__ = [
    "DeliverPolicy",
    "JetStreamSource",
    "NatsConnector",
    "NatsOptions",
    "NatsSource",
    "NatsTarget",
]
