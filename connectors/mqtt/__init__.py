"""MQTT connector (3.1.1 and 5), type name ``mqtt``, on paho-mqtt driven by asyncio.

Features
--------
- Source: one persistent broker session per route source (client id
  ``<client_id>-<8 hex>``), subscribed with QoS 0, 1 or 2 to a topic filter
  (``+`` one level, ``#`` the rest), optionally as a shared subscription
  (``$share/<share_group>/<filter>``) so several gateways split the messages.
  An inbound QoS 1/2 message is acknowledged (PUBACK / PUBREC) only when the
  runtime calls ``delivery.ack()``, i.e. after every target confirmed, and the
  acks are written in the order the messages arrived (MQTT 4.6); a crash before
  that gets the message redelivered when the session resumes. MQTT 5 Receive
  Maximum (``receive_maximum``) bounds the unacknowledged messages in flight (on
  3.1.1, the broker's own in-flight limit); QoS 0 has no flow control, so the
  socket is not read while ``receive_maximum`` QoS 0 messages wait to be pulled.
  After a reconnect the session is resumed and the subscription made again.
  See docs/decisions/0001-mqtt-deferred-puback.md.
- nack: MQTT has no negative acknowledgement. ``nack(requeue=False)`` acknowledges
  (drops) the message; ``nack(requeue=True)`` withholds its ack, stops the stream,
  lets earlier deliveries settle (up to 10 s) and reconnects so that the broker
  redelivers it (and whatever came after it: duplicates). Needs a persistent
  session (the default).
- QoS 0 is at-most-once both ways: ``ack``/``nack`` do nothing, and a QoS 0
  publish returns once written.
- Delivery: ``message`` is ``routing.bindings.mqtt.MqttMessage``, ``address`` the
  topic, ``headers`` the MQTT 5 User Properties plus ``content-type``,
  ``native_id`` None (packet identifiers are per connection and reused, so MQTT
  has no id that survives redelivery), ``ordering_key`` the topic; coordinates
  record topic, qos and retain.
- Target: topic (template, ``/``-separated levels), qos (1 returns after PUBACK,
  2 after PUBCOMP), retain, MQTT 5 message expiry. An MQTT 5 reason code >= 0x80
  (not authorized, quota exceeded, payload format invalid, ...) raises
  ``PublishRejected``.
- CloudEvents: MQTT 5 binary mode (User Properties named as the attributes,
  Content Type) or structured mode (JSON or Avro); MQTT 3.1.1 structured JSON
  only: a target without ``mode`` is structured there, and ``mode: binary`` on a
  protocol 4 connector is a configuration error (``validate_target``).

URL form
--------
``mqtt://host:1883`` or ``mqtts://host:8883`` for TLS, or ``host``/``port``/``tls``
instead. ``mqtt://user:password@host`` is accepted; the password is never logged
(prefer ``password: ${MQTT_PASSWORD}``).

Options
-------
Connector (``connectors:`` entry): ``url`` or ``host``/``port``, ``tls`` (the
shared ``tls:`` block, docs/security.md), ``protocol`` (5 or 4),
``client_id`` (default ``<gateway id>-<connector name>`` from the gateway,
``meshgate-<connector name>`` standalone; must be unique and stable),
``username``, ``password``, ``keepalive_seconds``, ``session_expiry_seconds`` ( MQTT 5,
default one day), ``clean_start`` (default false), ``receive_maximum``,
``max_in_flight``, ``connect_timeout_seconds``, ``publish_timeout_seconds``.

Source (``from:``): ``topic`` (filter), ``qos`` (default 1), ``share_group``,
``no_local`` (MQTT 5).

Target (``to:``): ``topic`` (template), ``qos`` (default 1), ``retain``,
``mode``, ``format``, ``message_expiry_seconds`` ( MQTT 5).
"""

from connectors.mqtt.config import MqttOptions, MqttSource, MqttTarget
from connectors.mqtt.connector import MqttConnector

__all__ = ["MqttConnector", "MqttOptions", "MqttSource", "MqttTarget"]
