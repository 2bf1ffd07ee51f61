"""A paho-mqtt client whose inbound QoS 2 acknowledgement waits for the application too.

paho 2.x has ``manual_ack=True`` and ``Client.ack(mid, qos)``, which defers the
PUBACK of a QoS 1 message until the application asks. For QoS 2, however, paho
still sends PUBREC as soon as the PUBLISH arrives and only hands the message over
on PUBREL: after PUBREC the broker considers the message delivered and, after a
crash, resends only the PUBREL, so a message received but not yet processed is
lost (measured: docs/decisions/0001-mqtt-deferred-puback.md). paho also ignores a
failing PUBREC reason code on outbound QoS 2 publishes and carries on with PUBREL.

``ManualAckClient`` changes exactly that, following the receiver's "method B" of
MQTT (deliver on PUBLISH, store nothing, discard nothing):

- an inbound QoS 2 PUBLISH is handed to ``on_message`` at once, without PUBREC;
- ``release(mid, qos)`` sends the PUBACK (QoS 1) or PUBREC (QoS 2) when asked;
- every PUBREL is answered with PUBCOMP (the message was already released);
- an outbound QoS 2 publish whose PUBREC carries a failure reason code (MQTT 5,
  >= 0x80) completes through ``on_publish`` with that code and no PUBREL;
- ``read_packet`` reads one packet whatever is in flight: paho's ``loop_read``
  overrides its ``max_packets`` with ``len(_out_messages) + len(_in_messages)``, so
  with nothing outbound in flight it reads one packet per readable event and a burst
  reaches the application one message per event-loop turn (``Session`` loops).

These overrides use paho internals (``_handle_publish``, ``_send_pubrec``,
``_handle_pubrel``, ``_handle_pubrec``, ``_in_messages``, ``_packet_read``,
``_loop_rc_handle``); the import-time check
below and the QoS 2 redelivery test in tests/integration/test_connector_mqtt.py
guard them across paho upgrades.
"""

from __future__ import annotations

from typing import Any

import paho.mqtt.client as paho
from paho.mqtt import _packet
from paho.mqtt.enums import MQTTErrorCode

__all__ = ["ManualAckClient"]

_NEEDED = (
    "_handle_publish",
    "_send_pubrec",
    "_handle_pubrel",
    "_handle_pubrec",
    "_do_on_publish",
    "_packet_read",
    "_loop_rc_handle",
)
_missing = [name for name in _NEEDED if not hasattr(paho.Client, name)]
if _missing or not hasattr(paho.Client, "manual_ack_set"):
    raise ImportError(
        "connectors.mqtt needs paho-mqtt 2.x with manual acknowledgements; the installed "
        f"paho-mqtt lacks {', '.join(_missing) or 'manual_ack_set'}"
    )


class ManualAckClient(paho.Client):
    """paho client in manual-ack mode that also defers PUBREC (see module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["manual_ack"] = True
        super().__init__(*args, **kwargs)
        self._deferred_pubrec: int | None = None

    def release(self, mid: int, qos: int) -> MQTTErrorCode:
        """Acknowledge an inbound message: PUBACK for QoS 1, PUBREC for QoS 2."""
        if qos == 2:
            return super()._send_pubrec(mid)
        return self.ack(mid, qos)

    def read_packet(self) -> MQTTErrorCode:
        """Read (and handle) at most one packet: ``MQTT_ERR_AGAIN`` once the socket has
        nothing more (or only part of a packet), ``MQTT_ERR_SUCCESS`` after a packet, an
        error (> 0) once the connection is gone (``on_disconnect`` has run then)."""
        if self._sock is None:
            return MQTTErrorCode.MQTT_ERR_NO_CONN
        rc = self._packet_read()
        if rc > 0:
            rc = self._loop_rc_handle(rc)
            # paho turns a loss while disconnecting into success: no more to read anyway.
            return rc if rc > 0 else MQTTErrorCode.MQTT_ERR_NO_CONN
        return rc

    def _send_pubrec(self, mid: int) -> MQTTErrorCode:
        # Called by paho's _handle_publish for QoS 2: remember instead of sending.
        self._deferred_pubrec = mid
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def _handle_publish(self) -> MQTTErrorCode:
        self._deferred_pubrec = None
        rc = super()._handle_publish()
        mid, self._deferred_pubrec = self._deferred_pubrec, None
        if mid is not None:
            # paho parked the message until PUBREL; deliver it now instead.
            with self._in_message_mutex:
                message = self._in_messages.pop(mid, None)
            if message is not None:
                self._handle_on_message(message)
        return rc

    def _handle_pubrel(self) -> MQTTErrorCode:
        # Nothing is parked in _in_messages, so paho (in automatic mode) just answers
        # PUBCOMP; in manual mode it would leave the broker waiting forever.
        self._manual_ack = False
        try:
            return super()._handle_pubrel()
        finally:
            self._manual_ack = True

    def _handle_pubrec(self) -> MQTTErrorCode:
        if self._protocol == paho.MQTTv5:
            packet = _packet.decode_pubrec(
                self._in_packet["command"], self._in_packet["packet"], self._protocol
            )
            if packet.reason.is_failure:
                with self._out_message_mutex:
                    if packet.mid in self._out_messages:
                        return self._do_on_publish(packet.mid, packet.reason, packet.properties)
                return MQTTErrorCode.MQTT_ERR_SUCCESS
        return super()._handle_pubrec()
