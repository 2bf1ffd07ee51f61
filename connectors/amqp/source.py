"""Consuming side of the AMQP connector: one channel and one consumer per route source.

Each subscription opens its own channel on the current connection, applies
``basic.qos(prefetch)``, optionally declares and binds its queue, and consumes
with manual acks. The prefetch is the in-flight bound: the broker pushes no more
than ``prefetch`` unacknowledged deliveries, so a runtime that stops pulling
(or stops acking) stops the broker.

When the channel dies (connection lost, broker cancelled the consumer, queue
deleted) the subscription ends, buffered deliveries are dropped (the broker
requeues everything unacknowledged on a dead channel) with ``ConnectionLost``; the
core's supervision subscribes again once the link has reconnected. A delivery carries a reference
to the channel it arrived on, so its ``ack``/``nack`` can never reach a newer
channel where the same delivery tag names another message: on a dead channel the
settle is skipped with a log line, and the broker redelivers the message.

Acks are coalesced (``_Acks``): an ``ack()`` is recorded and sent at the end of the
event-loop turn, together with every other ack recorded in that turn (a batch's acks,
or concurrent ones). Delivery tags of a channel count up from 1 (one consumer per
channel, no basic.get); the subscription tracks which are settled, and the run of
settled tags from 1 (or the last run's end) up to one being acked leaves as one
``basic.ack`` with ``multiple``, which acks every unacknowledged tag up to it. The run
only crosses tags known settled: one still unsettled (an event in retry, one left
unacked after a failed dead letter) stops it, and the acks past it leave one by one
(correct, only no longer coalesced while it stays). No ack waits for the socket to
drain (it has no reply).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any, Final

import aiormq
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage
from aio_pika.exceptions import MessageProcessError

from connectors.amqp.config import AmqpSource
from connectors.amqp.link import Link, LinkClosed
from connectors.base import Delivery
from connectors.errors import ConnectionLost, NotAuthorized
from connectors.headertext import header_text
from connectors.readiness import Subscription as Ready
from routing.bindings.amqp import AmqpMessage

__all__ = ["subscribe"]

# What a dead or refused channel raises while subscribing or settling.
CHANNEL_ERRORS = (
    aiormq.exceptions.AMQPError,
    RuntimeError,  # aio-pika's "connection/channel not opened", ChannelInvalidStateError
    ConnectionError,
    TimeoutError,
)
SETUP_TIMEOUT: Final = 10.0
# aiormq 7 sends an ack without waiting for the socket to drain (``wait=False``).
_NO_DRAIN: dict[str, Any] = (
    {"wait": False} if "wait" in inspect.signature(aiormq.Channel.basic_ack).parameters else {}
)


class _End:
    """Marker put in a subscription's buffer when its channel or consumer ends."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


_MAX_ABOVE = 65_536
"""Tags settled one by one above the run that ``_Acks`` keeps at most."""


class _Acks:
    """Which delivery tags of one channel are settled, and the acks not yet sent."""

    def __init__(self) -> None:
        self.floor = 0
        """Every tag up to this one is settled."""
        self.pending: set[int] = set()
        """Acked by the runtime, not sent yet."""
        self.above: set[int] = set()
        """Settled one by one above ``floor``."""
        self.nacking: set[int] = set()
        """Being nacked (not settled until the nack frame is queued)."""

    def settled(self, tag: int) -> bool:
        """Whether ``tag`` was settled (or is being) already."""
        return tag <= self.floor or tag in self.pending or tag in self.above or tag in self.nacking

    def plan(self) -> tuple[int | None, list[int]]:
        """(the tag to ack with ``multiple``, or None; the tags to ack alone), and
        the pending acks are taken as sent."""
        tag, last = self.floor + 1, None
        while tag in self.pending or tag in self.above:
            if tag in self.pending:
                last = tag
            tag += 1
        self.floor = tag - 1
        alone = sorted(t for t in self.pending if t > self.floor)
        self.pending.clear()
        self.above = {t for t in self.above if t > self.floor}
        self.above.update(alone)
        if len(self.above) > _MAX_ABOVE:
            # The run is stuck behind a tag never settled (left unacked after a failed
            # dead letter): forget the tags acked alone above it, or this set would
            # grow for the channel's life. Runs stop at the first one forgotten.
            self.above.clear()
        return last, alone


class Subscription:
    """One channel consuming one queue; ends for good when the channel does."""

    def __init__(self, source: AmqpSource, log: logging.Logger) -> None:
        self.source = source
        self._log = log
        self._buffer: asyncio.Queue[AbstractIncomingMessage | _End] = asyncio.Queue()
        self._channel: AbstractChannel | None = None
        self._acks = _Acks()
        self._flush: asyncio.Task[None] | None = None
        self._unsent: dict[int, AbstractIncomingMessage] = {}
        self.dead = False
        self.tag = f"{source.consumer_tag_prefix}.{source.queue}.{uuid.uuid4().hex[:12]}"

    async def open(self, connection: AbstractConnection) -> None:
        """Open the channel, set prefetch, declare/bind the queue and start consuming."""
        source = self.source
        channel = connection.channel(publisher_confirms=False)
        await channel.initialize(timeout=SETUP_TIMEOUT)
        self._channel = channel
        channel.close_callbacks.add(self._on_channel_close)
        underlay = await channel.get_underlay_channel()
        underlay.on_consumer_cancel_callbacks.add(self._on_cancel)
        await channel.set_qos(prefetch_count=source.prefetch, timeout=SETUP_TIMEOUT)
        if source.declare:
            queue = await channel.declare_queue(
                source.queue,
                durable=True,
                arguments=dict(source.queue_arguments()),
                timeout=SETUP_TIMEOUT,
            )
        else:
            queue = await channel.get_queue(source.queue, ensure=True)
        for binding in source.bind:
            await queue.bind(binding.exchange, binding.binding_key, timeout=SETUP_TIMEOUT)
        await queue.consume(
            self._on_message, no_ack=False, consumer_tag=self.tag, timeout=SETUP_TIMEOUT
        )

    async def next(self) -> AbstractIncomingMessage | None:
        """The next delivery, or None once the channel is gone (buffer discarded)."""
        item = await self._buffer.get()
        if isinstance(item, _End) or self.dead:
            if isinstance(item, _End):
                self._log.info(
                    "consumer %s on %r ended: %s", self.tag, self.source.queue, item.reason
                )
            return None
        return item

    async def close(self) -> None:
        """Send the acks recorded, close the channel; the broker requeues every
        unacknowledged delivery."""
        while self._flush is not None and not self.dead:
            await asyncio.gather(self._flush, return_exceptions=True)
        self.dead = True
        channel, self._channel = self._channel, None
        if channel is not None and not channel.is_closed:
            try:
                await channel.close()
            except CHANNEL_ERRORS as exc:
                self._log.debug("closing consumer channel %s failed: %r", self.tag, exc)

    async def settle(self, message: AbstractIncomingMessage, ack: bool, requeue: bool) -> None:
        """ack or nack ``message`` on its own channel; skipped if that channel is dead.
        An ack is sent at the end of this event-loop turn (see the module docstring)."""
        tag = message.delivery_tag
        if message.processed or tag is None or self._acks.settled(tag):
            return
        if self.dead:
            self._stale(message, "its channel is closed")
            return
        if ack:
            self._acks.pending.add(tag)
            self._unsent[tag] = message
            if self._flush is None:
                self._flush = asyncio.ensure_future(self._send_acks())
            return
        # Counted as settled (so a run of acks may cover it) only once the nack frame
        # is queued: an ack with ``multiple`` written first would ack it instead.
        self._acks.nacking.add(tag)
        try:
            await message.nack(requeue=requeue)
        except MessageProcessError:
            return  # settled concurrently
        except CHANNEL_ERRORS as exc:
            self._stale(message, repr(exc))
        else:
            self._acks.above.add(tag)
        finally:
            self._acks.nacking.discard(tag)

    async def _send_acks(self) -> None:
        """The acks recorded in this event-loop turn, in as few frames as it can."""
        try:
            unsent, self._unsent = self._unsent, {}
            multiple, alone = self._acks.plan()
            if self.dead or self._channel is None:
                for message in unsent.values():
                    self._stale(message, "its channel is closed")
                return
            try:
                channel = await self._channel.get_underlay_channel()
                if multiple is not None:
                    await channel.basic_ack(multiple, multiple=True, **_NO_DRAIN)
                for tag in alone:
                    await channel.basic_ack(tag, **_NO_DRAIN)
            except CHANNEL_ERRORS as exc:
                for message in unsent.values():
                    self._stale(message, repr(exc))
        finally:
            self._flush = None
            if self._acks.pending:  # recorded while this one was writing
                self._flush = asyncio.ensure_future(self._send_acks())

    def _stale(self, message: AbstractIncomingMessage, why: str) -> None:
        self._log.info(
            "settling delivery %s from %r skipped (%s); the broker redelivers it",
            message.delivery_tag,
            self.source.queue,
            why,
        )

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        self._buffer.put_nowait(message)

    def _on_channel_close(self, _sender: Any, exc: BaseException | None) -> None:
        self.dead = True
        self._buffer.put_nowait(_End(f"channel closed: {exc!r}"))

    def _on_cancel(self, frame: Any) -> None:
        self.dead = True
        self._buffer.put_nowait(_End("consumer cancelled by the broker (queue deleted?)"))


def _delivery(
    subscription: Subscription, message: AbstractIncomingMessage
) -> Delivery[AmqpMessage]:
    raw_headers = dict(message.headers or {})
    body = message.body

    async def ack() -> None:
        await subscription.settle(message, ack=True, requeue=False)

    async def nack(*, requeue: bool) -> None:
        await subscription.settle(message, ack=False, requeue=requeue)

    queue = subscription.source.queue
    return Delivery(
        message=AmqpMessage(body=body, content_type=message.content_type, headers=raw_headers),
        address=message.routing_key or "",
        payload=body,
        headers={str(name): header_text(value) for name, value in raw_headers.items()},
        ack=ack,
        nack=nack,
        native_id=message.message_id or None,
        ordering_key=queue,
        content_type=message.content_type,
        coordinates={
            "exchange": message.exchange or "",
            "routing_key": message.routing_key or "",
            "queue": queue,
            "delivery_tag": message.delivery_tag or 0,
            "redelivered": bool(message.redelivered),
        },
    )


async def subscribe(
    link: Link, source: AmqpSource, log: logging.Logger, ready: Ready
) -> AsyncIterator[Delivery[AmqpMessage]]:
    """Deliveries from ``source`` on one channel of the current connection; returns
    when the connector closes, raises ``ConnectionLost`` when the channel ends (the
    core subscribes again once the link is back).

    ``ready`` is up while the broker has the consumer (after consume-ok, so the
    queue and its bindings exist): the readiness signal of ``wait_subscribed``.
    """
    try:
        connection = await link.connection()
    except LinkClosed:
        return
    subscription = Subscription(source, log)
    try:
        try:
            await subscription.open(connection)
        except aiormq.exceptions.ChannelAccessRefused as exc:
            raise NotAuthorized(
                f"{link.label}: the broker refused access to queue {source.queue!r} "
                f"(not authorized: the user lacks configure/read permission): {exc}"
            ) from exc
        except CHANNEL_ERRORS as exc:
            raise ConnectionLost(
                f"cannot consume {source.queue!r}: {type(exc).__name__}: {exc}"
            ) from exc
        log.info("consuming %r as %s", source.queue, subscription.tag)
        ready.up()
        while (message := await subscription.next()) is not None:
            yield _delivery(subscription, message)
        if not link.closing:
            raise ConnectionLost(f"consumer {subscription.tag} on {source.queue!r} ended")
    finally:
        ready.down()
        await subscription.close()
