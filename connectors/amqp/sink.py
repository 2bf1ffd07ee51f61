"""Publishing side of the AMQP connector: one confirm-mode channel per connection.

Publishes go through a dedicated channel (separate from every consuming channel)
opened with publisher confirms and ``on_return_raises``: ``publish`` returns after
the broker's ``basic.ack``; a ``basic.nack`` or, with ``mandatory``, a
``basic.return`` of an unroutable message becomes ``PublishRejected``; no answer
within ``confirm_timeout_seconds`` becomes ``PublishTimeout``; a dropped connection or
channel becomes ``ConnectionLost``. Exchanges are checked (or declared) once per
channel on a throwaway channel, because a publish to a missing exchange makes the
broker close the channel and fail every publish in flight on it; a channel the
broker closed anyway is replaced on the next publish, and only the publish at
fault gets ``PublishRejected`` (the others get the retriable ``ConnectionLost``).

aiormq matches a ``basic.return`` to its publish by ``message_id``, and the
connector sets ``message_id`` to the CloudEvent id, so two publishes of the same
event (fan-out to two exchanges) are sent one after the other, never overlapping.

``publish_many`` (the connector's ``BatchPublisher`` hook) writes the publishes of a
batch on the confirm channel in one socket write (``Publisher._pipelined``), then
waits for all the confirmations at once; each item keeps the guarantees above (its
own outcome, the same error mapping, one publish per message_id at a time: a repeated
or in-flight id goes alone, after the earlier one) and one item's failure never fails
the others.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
from collections.abc import Sequence
from typing import Any, cast

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, DeliveryMode
from aiormq.abc import ChannelFrame
from pamqp.common import FieldTable
from pamqp.header import ContentHeader

from connectors.amqp.config import AmqpOptions, AmqpTarget
from connectors.amqp.link import Link
from connectors.base import RawMessage
from connectors.errors import ConnectionLost, PublishRejected, PublishTimeout
from routing.bindings import amqp as binding
from routing.event import CloudEvent

__all__ = ["Publisher"]

# Channel-level refusals: the broker closed the channel because of this message.
_REFUSALS = (
    aiormq.exceptions.ChannelNotFoundEntity,
    aiormq.exceptions.ChannelAccessRefused,
    aiormq.exceptions.ChannelPreconditionFailed,
)
_SIZE_LIMIT = re.compile(r"larger than configured max size (\d+)")
_KNOWN_MAX = 10_000
_LOST = (
    aiormq.exceptions.AMQPError,
    RuntimeError,  # aio-pika's "connection/channel not opened", ChannelInvalidStateError
    ConnectionError,
)


# aiormq 7 lets a publish skip waiting for the socket to drain (``wait=False``): the
# batch's publishes then queue their frames back to back (the writer drains anyway).
_NO_DRAIN: dict[str, Any] = (
    {"wait": False} if "wait" in inspect.signature(aiormq.Channel.basic_publish).parameters else {}
)


# ``Publisher._pipelined`` does for a batch what aiormq's ``basic_publish`` does for one
# message, with these attributes of an aiormq channel (aiormq 6 and 7); where one is
# missing, a batch is published by ``basic_publish`` calls (``_confirmed``).
_INTERNALS = (
    "lock",
    "delivery_tag",
    "confirmations",
    "message_id_delivery_tag",
    "write_queue",
    "number",
    "create_future",
    "_split_body",
)
_MAX_ROUTING_KEY = 255


class _IdSlot:
    """Serializes publishes sharing one message_id (see the module docstring)."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0


class Publisher:
    """Confirmed publishing over the link's current connection."""

    def __init__(self, link: Link, options: AmqpOptions, log: logging.Logger) -> None:
        self._link = link
        self._timeout = options.confirm_timeout_seconds
        self._log = log
        self._channel: AbstractChannel | None = None
        self._known: set[str] = set()  # exchanges checked/declared on the current channel
        self._known_lock = asyncio.Lock()
        self._open_lock = asyncio.Lock()
        self._ids: dict[str, _IdSlot] = {}
        self._pending = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def publish(
        self, target: AmqpTarget, event: CloudEvent, message: binding.AmqpMessage
    ) -> None:
        """Publish ``message`` (``event`` encoded for the rendered ``target``); return
        once the broker confirmed."""
        outgoing = aio_pika.Message(
            message.body,
            content_type=message.content_type,
            headers=cast(FieldTable, dict(message.headers)),
            message_id=event.id,
            delivery_mode=DeliveryMode.PERSISTENT
            if target.persistent
            else DeliveryMode.NOT_PERSISTENT,
        )
        slot = self._slot(event.id)
        self._begin(1)
        try:
            async with slot.lock:
                await self._send(target, outgoing)
        finally:
            self._release(event.id, slot)
            self._end(1)

    async def publish_many(
        self, items: Sequence[tuple[AmqpTarget, CloudEvent, binding.AmqpMessage]]
    ) -> list[Exception | None]:
        """Publish every item (``(target, event, message)`` as for ``publish``) without
        waiting in between, then wait for all confirmations: one outcome per item, in
        order, None when confirmed, else the error ``publish`` would have raised."""
        self._begin(len(items))
        try:
            return await self._publish_many(items)
        finally:
            self._end(len(items))

    async def publish_raw(self, target: AmqpTarget, message: RawMessage) -> None:
        """Publish a message rebuilt from an original's parts; return once confirmed."""
        outgoing = aio_pika.Message(
            message.payload,
            content_type=message.content_type,
            headers=cast(FieldTable, dict(message.headers)),
            delivery_mode=DeliveryMode.PERSISTENT,
        )
        self._begin(1)
        try:
            await self._send(target, outgoing)
        finally:
            self._end(1)

    async def drain(self, grace: float) -> None:
        """Wait up to ``grace`` seconds for in-flight publishes to finish."""
        try:
            await asyncio.wait_for(self._idle.wait(), grace)
        except TimeoutError:
            self._log.warning("closing with %d publishes unconfirmed", self._pending)

    async def close(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None and not channel.is_closed:
            try:
                await channel.close()
            except _LOST as exc:
                self._log.debug("closing the publish channel failed: %r", exc)

    async def _send(self, target: AmqpTarget, outgoing: aio_pika.Message) -> None:
        where = f"exchange {target.exchange!r} routing key {target.routing_key!r}"
        channel: AbstractChannel | None = None
        try:
            async with asyncio.timeout(self._timeout):
                channel = await self._open()
                if target.exchange:
                    await self._ensure_exchange(target)
                    exchange = await channel.get_exchange(target.exchange, ensure=False)
                else:
                    exchange = channel.default_exchange
                await exchange.publish(outgoing, target.routing_key, mandatory=target.mandatory)
        except TimeoutError as exc:
            if channel is None:
                raise ConnectionLost(
                    f"not connected within {self._timeout}s ({self._link.detail})"
                ) from exc
            raise PublishTimeout(f"no confirm within {self._timeout}s for {where}") from exc
        except _FAILURES as exc:
            raise _failure(exc, target, len(outgoing.body)) from exc

    def _begin(self, count: int) -> None:
        self._pending += count
        self._idle.clear()

    def _end(self, count: int) -> None:
        self._pending -= count
        if self._pending == 0:
            self._idle.set()

    def _slot(self, event_id: str) -> _IdSlot:
        slot = self._ids.get(event_id)
        if slot is None:
            slot = self._ids[event_id] = _IdSlot()
        slot.users += 1
        return slot

    def _release(self, event_id: str, slot: _IdSlot) -> None:
        slot.users -= 1
        if slot.users == 0:
            del self._ids[event_id]

    async def _publish_many(
        self, items: Sequence[tuple[AmqpTarget, CloudEvent, binding.AmqpMessage]]
    ) -> list[Exception | None]:
        try:
            async with asyncio.timeout(self._timeout):
                channel = await self._open()
                underlay = await channel.get_underlay_channel()
        except TimeoutError:
            lost = ConnectionLost(f"not connected within {self._timeout}s ({self._link.detail})")
            return [lost] * len(items)
        except ConnectionLost as exc:  # the connector is closed
            return [exc] * len(items)
        except _LOST as exc:
            lost = ConnectionLost(f"publish failed: {type(exc).__name__}: {exc}")
            return [lost] * len(items)
        refused = await self._check_exchanges(items)
        outcomes: list[Exception | None] = [None] * len(items)
        # Items whose event id is unique in the batch and not in flight elsewhere are
        # written together (``_pipelined``); the others one by one (``_confirmed``),
        # each waiting for the earlier publishes of its event id.
        fast: list[int] = []
        slow: list[int] = []
        held: list[tuple[str, _IdSlot]] = []
        pipelined = all(hasattr(underlay, name) for name in _INTERNALS)
        try:
            for index, (target, event, _message) in enumerate(items):
                failure = refused.get(target.exchange)
                if failure is not None:
                    outcomes[index] = failure
                elif pipelined and event.id not in self._ids:
                    # A fresh slot's lock is taken without yielding: from here on any
                    # other publish of this event id waits for this batch's.
                    slot = self._slot(event.id)
                    await slot.lock.acquire()
                    held.append((event.id, slot))
                    fast.append(index)
                else:
                    slow.append(index)
            one_by_one = asyncio.gather(
                *(self._confirmed(underlay, *items[index]) for index in slow)
            )
            together = self._pipelined(underlay, [items[index] for index in fast], held)
            slow_results, fast_results = await asyncio.gather(one_by_one, together)
        finally:
            self._let_go(held)  # if ``_pipelined`` never ran (cancelled)
        for index, result in zip(slow, slow_results, strict=True):
            outcomes[index] = result
        for index, result in zip(fast, fast_results, strict=True):
            outcomes[index] = result
        return outcomes

    async def _check_exchanges(
        self, items: Sequence[tuple[AmqpTarget, CloudEvent, binding.AmqpMessage]]
    ) -> dict[str, Exception]:
        """The batch's exchanges checked (or declared) once each: exchange -> why its
        publishes fail, for those that cannot be used."""
        targets = {target.exchange: target for target, _event, _message in items if target.exchange}
        refused: dict[str, Exception] = {}
        for name, target in targets.items():
            if name in self._known:
                continue
            try:
                async with asyncio.timeout(self._timeout):
                    await self._ensure_exchange(target)
            except TimeoutError:
                refused[name] = ConnectionLost(
                    f"exchange {name!r} not checked within {self._timeout}s ({self._link.detail})"
                )
            except ConnectionLost as exc:  # the connector is closed
                refused[name] = exc
            except _FAILURES as exc:
                refused[name] = _failure(exc, target, 0)
        return refused

    async def _pipelined(
        self,
        underlay: Any,
        items: Sequence[tuple[AmqpTarget, CloudEvent, binding.AmqpMessage]],
        held: list[tuple[str, _IdSlot]],
    ) -> list[Exception | None]:
        """Publish ``items`` (distinct event ids, their ``_IdSlot`` locks ``held``) in
        one write, then wait for all their confirmations: one outcome each; the locks
        are let go at the end (later publishes of those ids, in this batch too, wait).

        What aiormq's ``basic_publish`` does for one message (a delivery tag, a
        confirmation future, the message_id that a basic.return is matched by), done
        for the whole batch under the channel's lock, so the batch leaves as one
        frame sequence in one socket write instead of one write and two tasks each.
        """
        outcomes: list[Exception | None] = [None] * len(items)
        if not items:
            return outcomes
        try:
            await self._write_and_wait(underlay, items, outcomes)
        finally:
            self._let_go(held)
        return outcomes

    def _let_go(self, held: list[tuple[str, _IdSlot]]) -> None:
        """Release the ``_IdSlot`` locks in ``held`` (emptied: a second call is a no-op)."""
        for event_id, slot in held:
            slot.lock.release()
            self._release(event_id, slot)
        held.clear()

    async def _write_and_wait(
        self,
        underlay: Any,
        items: Sequence[tuple[AmqpTarget, CloudEvent, binding.AmqpMessage]],
        outcomes: list[Exception | None],
    ) -> None:
        """``_pipelined``'s work: the batch written, its confirmations awaited."""
        confirmations: dict[int, tuple[int, asyncio.Future[Any]]] = {}
        try:
            frames: list[Any] = []
            async with underlay.lock:
                if underlay.is_closed:
                    raise aiormq.exceptions.ChannelInvalidStateError(f"{underlay!r} closed")
                first = underlay.delivery_tag
                for index, (target, event, message) in enumerate(items):
                    if len(target.routing_key) > _MAX_ROUTING_KEY:
                        outcomes[index] = _failure(
                            ValueError("Routing key too long (max 255 bytes)"), target, 0
                        )
                        continue
                    underlay.delivery_tag += 1
                    tag = underlay.delivery_tag
                    future = underlay.create_future()
                    underlay.confirmations[tag] = future
                    underlay.message_id_delivery_tag[event.id] = tag
                    confirmations[index] = (tag, future)
                    frames += _frames(underlay, target, event, message)
                if frames:
                    try:
                        await underlay.write_queue.put(
                            ChannelFrame.marshall(channel_number=underlay.number, frames=frames)
                        )
                    except BaseException:  # not written: the tags are free again
                        underlay.delivery_tag = first
                        self._forget(underlay, items, confirmations)
                        raise
            await self._settled(items, confirmations, outcomes)
        except _FAILURES as exc:  # the channel closed before the batch was written
            for index, (target, _event, message) in enumerate(items):
                outcomes[index] = outcomes[index] or _failure(exc, target, len(message.body))
        finally:
            self._forget(underlay, items, confirmations)

    async def _settled(
        self,
        items: Sequence[tuple[AmqpTarget, CloudEvent, binding.AmqpMessage]],
        confirmations: dict[int, tuple[int, asyncio.Future[Any]]],
        outcomes: list[Exception | None],
    ) -> None:
        """Wait (up to the confirm timeout) for the confirmations; fill ``outcomes``."""
        futures = [future for _tag, future in confirmations.values()]
        if futures:
            await asyncio.wait(futures, timeout=self._timeout)
        for index, (_tag, future) in confirmations.items():
            target, _event, message = items[index]
            if not future.done():
                future.cancel()
                where = f"exchange {target.exchange!r} routing key {target.routing_key!r}"
                outcomes[index] = PublishTimeout(f"no confirm within {self._timeout}s for {where}")
            elif future.cancelled():
                outcomes[index] = ConnectionLost("publish channel closed before the confirm")
            elif (error := future.exception()) is not None:
                if not isinstance(error, _FAILURES):
                    error = ConnectionLost(f"publish failed: {type(error).__name__}: {error}")
                outcomes[index] = _failure(error, target, len(message.body))

    @staticmethod
    def _forget(
        underlay: Any,
        items: Sequence[tuple[AmqpTarget, CloudEvent, binding.AmqpMessage]],
        confirmations: dict[int, tuple[int, asyncio.Future[Any]]],
    ) -> None:
        """Drop what aiormq keeps for the batch's publishes (as ``basic_publish`` does)."""
        for index, (tag, future) in confirmations.items():
            if not future.done():
                underlay.confirmations.pop(tag, None)
                future.cancel()
            message_id = items[index][1].id
            if underlay.message_id_delivery_tag.get(message_id) == tag:
                underlay.message_id_delivery_tag.pop(message_id)

    async def _confirmed(
        self,
        underlay: aiormq.abc.AbstractChannel,
        target: AmqpTarget,
        event: CloudEvent,
        message: binding.AmqpMessage,
    ) -> Exception | None:
        """One publish of a batch on the confirm channel: None once confirmed, else why
        not (as ``publish`` would raise it)."""
        properties = aiormq.spec.Basic.Properties(
            content_type=message.content_type,
            headers=cast(FieldTable, dict(message.headers)),
            message_id=event.id,
            delivery_mode=2 if target.persistent else 1,
        )
        slot = self._slot(event.id)
        try:
            async with slot.lock, asyncio.timeout(self._timeout):
                await underlay.basic_publish(
                    message.body,
                    exchange=target.exchange,
                    routing_key=target.routing_key,
                    properties=properties,
                    mandatory=target.mandatory,
                    **_NO_DRAIN,
                )
        except TimeoutError:
            where = f"exchange {target.exchange!r} routing key {target.routing_key!r}"
            return PublishTimeout(f"no confirm within {self._timeout}s for {where}")
        except _FAILURES as exc:
            return _failure(exc, target, len(message.body))
        finally:
            self._release(event.id, slot)
        return None

    async def _open(self) -> AbstractChannel:
        async with self._open_lock:
            channel = self._channel
            if channel is not None and not channel.is_closed:
                return channel
            connection = await self._link.connection()
            channel = connection.channel(publisher_confirms=True, on_return_raises=True)
            await channel.initialize()
            self._channel = channel
            self._known.clear()
            return channel

    async def _ensure_exchange(self, target: AmqpTarget) -> None:
        """Check (or declare) the exchange once per channel, on a throwaway channel.

        A publish to a missing exchange makes the broker close the channel, failing
        every publish in flight on it; checking first on a separate channel keeps
        that error on the one target that caused it.
        """
        name = target.exchange
        if name in self._known:
            return
        async with self._known_lock:
            if name in self._known:
                return
            connection = await self._link.connection()
            scratch = connection.channel(publisher_confirms=False)
            await scratch.initialize()
            try:
                declaration = target.declare_exchange
                if declaration is None:
                    await scratch.get_exchange(name, ensure=True)
                else:
                    await scratch.declare_exchange(
                        name, declaration.type.value, durable=declaration.durable
                    )
            finally:
                if not scratch.is_closed:
                    await scratch.close()
            if len(self._known) >= _KNOWN_MAX:
                self._known.clear()
            self._known.add(name)


_FAILURES = (
    aiormq.exceptions.PublishError,
    aiormq.exceptions.DeliveryError,
    *_REFUSALS,
    ValueError,
    *_LOST,
)


def _failure(exc: BaseException, target: AmqpTarget, body_size: int) -> Exception:
    """The meshgate error for a publish (or exchange check) that failed with ``exc``."""
    where = f"exchange {target.exchange!r} routing key {target.routing_key!r}"
    if isinstance(exc, aiormq.exceptions.PublishError):
        return PublishRejected(f"unroutable: {where}: {_reply(exc)}")
    if isinstance(exc, aiormq.exceptions.DeliveryError):
        return PublishRejected(f"broker nacked the message to {where}")
    if isinstance(exc, _REFUSALS):
        if not _blames(exc, target, body_size):
            # Another publish made the broker close the shared channel: not this one's fault.
            return ConnectionLost(f"publish channel closed by the broker: {exc}")
        if isinstance(exc, aiormq.exceptions.ChannelAccessRefused):
            return PublishRejected(
                f"not authorized: the user lacks write permission on {where}: {exc}"
            )
        return PublishRejected(f"broker refused the publish to {where}: {exc}")
    if isinstance(exc, ValueError):  # routing key too long, internal exchange
        return PublishRejected(f"cannot publish to {where}: {exc}")
    return ConnectionLost(f"publish to {where} failed: {type(exc).__name__}: {exc}")


def _frames(
    underlay: Any, target: AmqpTarget, event: CloudEvent, message: binding.AmqpMessage
) -> list[Any]:
    """The frames of one publish: basic.publish, content header, body frames."""
    properties = aiormq.spec.Basic.Properties(
        content_type=message.content_type,
        headers=cast(FieldTable, dict(message.headers)),
        message_id=event.id,
        delivery_mode=2 if target.persistent else 1,
    )
    return [
        aiormq.spec.Basic.Publish(
            exchange=target.exchange, routing_key=target.routing_key, mandatory=target.mandatory
        ),
        ContentHeader(properties=properties, body_size=len(message.body)),
        *underlay._split_body(message.body),
    ]


def _blames(exc: BaseException, target: AmqpTarget, body_size: int) -> bool:
    """Whether a channel-closing refusal was caused by this publish (vs a concurrent one)."""
    text = str(exc.args[0]) if exc.args else ""
    if isinstance(exc, aiormq.exceptions.ChannelPreconditionFailed):
        limit = _SIZE_LIMIT.search(text)
        return limit is None or body_size > int(limit.group(1))
    return f"'{target.exchange or 'amq.default'}'" in text


def _reply(exc: Any) -> str:
    frame = getattr(exc, "frame", None)
    code = getattr(frame, "reply_code", None)
    text = getattr(frame, "reply_text", None)
    return f"{code} {text}" if code is not None else str(exc)
