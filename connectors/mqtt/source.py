"""Consuming an ``MqttSource``: one persistent session per source, deliveries with ordered acks.

Each source has its own client id (``subscriber_client_id``) and so its own broker
session: subscriptions and unacknowledged messages outlive a crash for
``session_expiry_seconds`` (MQTT 5) or until a clean session (3.1.1). A stream is
one connection: it ends with ``ConnectionLost`` and the core subscribes again (the
connect paced by the core's supervisor under the client id), resubscribing even
when the broker kept the subscription.

Acknowledgement semantics (see docs/decisions/0001-mqtt-deferred-puback.md):

- QoS 1/2: ``ack()`` releases the PUBACK/PUBREC, in receive order (``AckSequencer``).
- ``nack(requeue=False)``: MQTT cannot reject a message; it is acknowledged (dropped).
- ``nack(requeue=True)``: MQTT cannot requeue either. The message is never acked on
  this connection; the stream stops handing out messages, waits up to
  ``REQUEUE_DRAIN_SECONDS`` for the acks in front of it, then reconnects so that the
  broker redelivers it, together with anything received after it (duplicates).
- QoS 0: at-most-once; ``ack``/``nack`` do nothing.
- Acks of a delivery whose connection is gone are dropped: the broker redelivers it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import paho.mqtt.client as paho

from connectors.base import Delivery, Nack
from connectors.errors import ConnectionLost, ConnectorError
from connectors.mqtt.acks import PendingAck
from connectors.mqtt.config import MqttSource, subscriber_client_id
from connectors.mqtt.hub import Hub
from connectors.mqtt.session import Session
from connectors.readiness import Subscription as Ready
from connectors.supervision import SupervisorClosed
from routing.bindings.mqtt import MqttMessage

__all__ = ["REQUEUE_DRAIN_SECONDS", "subscribe"]

REQUEUE_DRAIN_SECONDS = 10.0
"""Longest wait, after a nack with requeue, for earlier deliveries to be settled."""


async def subscribe(
    hub: Hub, source: MqttSource, scope: str, ready: Ready
) -> AsyncIterator[Delivery[MqttMessage]]:
    """Deliveries from ``source`` on one connection of its session; ``ConnectionLost``
    when that ends (the core subscribes again), a plain return once the connector
    closes or a newer stream of the same source took over. ``scope``: the source's
    supervisor key, which the session's connection is attached to; ``ready`` is up
    from the SUBACK until the session's connection ends."""
    options = hub.options
    if source.no_local and options.protocol == 4:
        raise ConnectorError("no_local needs MQTT 5; this connector uses protocol 4 (3.1.1)")
    client_id = subscriber_client_id(hub.base_client_id, source)
    owner = object()
    hub.claim(client_id, owner)
    hub.supervisor.attach(scope, client_id)  # a source stopped while down is forgotten
    watch = hub.watch(client_id)  # recognises a takeover: the core's waits then grow

    async def connect() -> tuple[Session, int]:
        # MQTT 5 resumes the session on every reconnect of this run; clean_start
        # applies to the first connect only. 3.1.1 has one flag for both.
        first = client_id not in hub.resumed
        clean = options.clean_start if (first or options.protocol == 4) else False
        session = hub.session(
            client_id, clean_start=clean, session_expiry=options.session_expiry_seconds
        )
        try:
            await session.connect()
            watch.connected()
            granted = await session.subscribe(
                source.subscription, source.qos, no_local=source.no_local
            )
        except ConnectionLost as exc:
            session.abort(str(exc))
            hub.forget(session)
            detail = watch.lost(session, str(exc))
            raise ConnectionLost(
                f"cannot consume {source.subscription!r}: {detail}", suspect=watch.taken_over
            ) from exc
        except ConnectorError as exc:  # refused: credentials, authorization
            session.abort("refused")
            hub.forget(session)
            hub.down(client_id, str(exc))
            raise  # a configuration problem: reported by the runtime, which retries
        hub.resumed.add(client_id)
        return session, granted

    stopped = True  # returned or closed, not lost: the session leaves the health
    try:
        try:
            session, granted = await hub.supervisor.retry(
                client_id, connect, first_wait=hub.supervisor.is_down(client_id)
            )
        except SupervisorClosed:
            return
        ready.up()
        hub.log.info(
            "%s: consuming %r as %r (session present: %s, granted QoS %d)",
            hub.label,
            source.subscription,
            client_id,
            session.session_present,
            granted,
        )
        try:
            while (message := await session.next_message()) is not None:
                delivery = _delivery(session, message, options.protocol, hub)
                if delivery is not None:
                    yield delivery
            if session.requeue_wanted and not session.closed.done():
                await session.settle_before_restart(REQUEUE_DRAIN_SECONDS)
                hub.log.info(
                    "%s: reconnecting %r to have nacked messages redelivered", hub.label, client_id
                )
                if not options.persistent:
                    hub.log.warning(
                        "session of %r is not persistent: nacked messages are lost", client_id
                    )
                stopped = False
                raise ConnectionLost(f"{client_id!r}: reconnecting for a redelivery")
            if not hub.closing and hub.owns(client_id, owner):
                reason = session.closed.result() if session.closed.done() else "closed"
                detail = watch.lost(session, reason)
                hub.down(client_id, detail, suspect=watch.taken_over)
                hub.log.log(
                    watch.level,
                    "%s: consumer %r lost its connection: %s",
                    hub.label,
                    client_id,
                    reason,
                )
                stopped = False
                raise ConnectionLost(detail, suspect=watch.taken_over)
        finally:
            ready.down()
            await session.close()
            hub.forget(session)
    finally:
        hub.release(client_id, owner, stopped=stopped)


Settle = tuple[Callable[[], Awaitable[None]], Nack]


async def _no_op() -> None:
    return None


async def _no_op_nack(*, requeue: bool) -> None:
    return None


def _settlers(session: Session, entry: PendingAck | None) -> Settle:
    if entry is None:  # QoS 0: nothing to acknowledge
        return _no_op, _no_op_nack

    async def ack() -> None:
        session.acks.settle(entry)

    async def nack(*, requeue: bool) -> None:
        if requeue:
            if session.acks.hold(entry):  # not after an ack: no reconnect for nothing
                session.request_requeue()
        else:
            session.acks.settle(entry)

    return ack, nack


def _delivery(
    session: Session, message: paho.MQTTMessage, protocol: int, hub: Hub
) -> Delivery[MqttMessage] | None:
    entry = session.acks.track(message.mid, message.qos) if message.qos > 0 else None
    try:
        topic = message.topic
    except UnicodeDecodeError:
        hub.log.warning("dropping a message whose topic is not valid UTF-8")
        if entry is not None:
            session.acks.settle(entry)
        return None
    properties = message.properties
    content_type = getattr(properties, "ContentType", None)
    user_properties = tuple(
        (str(name), str(value)) for name, value in getattr(properties, "UserProperty", None) or ()
    )
    payload = bytes(message.payload)
    headers = dict(user_properties)
    if content_type is not None:
        headers["content-type"] = content_type
    ack, nack = _settlers(session, entry)
    return Delivery(
        message=MqttMessage(payload, content_type, user_properties, protocol),
        address=topic,
        payload=payload,
        headers=headers,
        ack=ack,
        nack=nack,
        native_id=None,  # packet ids are per connection and reused: nothing stable
        ordering_key=topic,
        content_type=content_type,
        coordinates={"topic": topic, "qos": message.qos, "retain": int(message.retain)},
    )
