"""Reading NATS: core subscriptions (at-most-once) and JetStream durable pull consumers.

Core NATS has no acknowledgements: a delivery's ack/nack do nothing. Messages wait
in a buffer of ``pending_msgs_limit`` messages and ``pending_bytes_limit`` payload
bytes (nats-py's and nats.go's defaults: 524,288 and 64 MiB); while it is full, new
ones are dropped (a slow consumer: at-most-once), counted and logged by the link.

JetStream: one pull request for up to ``batch`` messages is outstanding at a time,
and the next one is sent only once the consumer has taken the last message of the
previous one, so a consumer that stops pulling stops the flow; the server bounds
unacknowledged deliveries by ``max_ack_pending``. Each message is yielded as it
arrives (no waiting for a full batch). Ack -> ``+ACK``, nack(requeue) -> ``-NAK``
(redeliver now), nack(no requeue) -> ``+TERM``, in_progress -> ``+WPI``; the first
ack/nack of a delivery wins, later ones are no-ops. An unacknowledged delivery is
redelivered after ``ack_wait_seconds``; messages received but never handed out are
nak'ed when the iterator closes.

``+ACK`` is sent without waiting for the server (``ack_sync: false``, the default):
an ack lost in a crash means a redelivery (a duplicate), never a loss, and waiting
costs a round trip per message (measured on loopback: ~2.7k acks/s with
``ack_sync`` against ~17k/s without, for the whole consume+decode+ack loop).
``ack_sync: true`` is for the cases where a duplicate costs more than that.

A JetStream API request the server's permissions refuse (stream lookup, consumer
info or creation, pull) gets an asynchronous -ERR and no reply; the iterator then
fails at once with ``NotAuthorized`` naming the durable and the refused subject
(instead of timing out like an unavailable server), so the runtime reports the
source not ready with that reason and subscribes again with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from types import MappingProxyType
from typing import Final, Generic, TypeVar

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import api

from connectors.base import Delivery, find_header
from connectors.errors import ConnectionLost, NotAuthorized
from connectors.nats.client import MeshClient, Parts, RawHeaders
from connectors.nats.config import JetStreamSource, NatsSource
from connectors.nats.link import Link
from connectors.readiness import Subscription as Ready
from routing.bindings.nats import NatsMessage

__all__ = ["subscribe_core", "subscribe_jetstream"]

_PULL_EXPIRES: Final = 2.0
"""Seconds a pull request waits on the server for messages before it expires (408)."""
_POLL: Final = 1.0
"""Seconds between local checks for a lost pull request (reconnect, missing consumer)."""
_DRAIN_TIMEOUT: Final = 2.0
"""Longest wait, when a pull subscription ends, for messages still on their way."""
_EXPIRY_MARGIN: Final = 1.0
"""Seconds added to a pull request's expiry: the server starts counting on receipt."""
_QUIET: Final = 0.1
"""Seconds without a message after which an ending subscription stops waiting for its
outstanding request to be over (see ``_end_pull``)."""
_ClientErrors = (nats.errors.Error, asyncio.TimeoutError, OSError)
_Item = TypeVar("_Item")


class _Inbox(Generic[_Item]):
    """Messages handed over by a nats-py subscription callback.

    Taking a buffered message does not touch the event loop (``next_msg`` would start
    a task per message), so a run of deliveries and their acks is processed in one go
    and the acks leave in one write.
    """

    def __init__(self) -> None:
        self._items: deque[_Item] = deque()
        self._arrived = asyncio.Event()

    def put_now(self, item: _Item) -> None:
        """Buffer ``item`` (``MeshClient.deliver_directly`` calls it from the read loop)."""
        self._items.append(item)
        self._arrived.set()

    def _took(self, item: _Item) -> _Item:
        return item

    async def get(self, wait: float) -> _Item | None:
        """The next message, or None when none came within ``wait`` seconds."""
        if not self._items:
            self._arrived.clear()
            try:
                async with asyncio.timeout(wait):
                    await self._arrived.wait()
            except TimeoutError:
                return None
        return self._took(self._items.popleft())

    def pop(self) -> _Item | None:
        """The next buffered message without waiting, or None when none is buffered."""
        return self._took(self._items.popleft()) if self._items else None

    def take_all(self) -> list[_Item]:
        items = list(self._items)
        self._items.clear()
        return items


class _MsgInbox(_Inbox[Msg]):
    """A JetStream pull subscription's messages (bounded by its pull requests)."""

    async def put(self, msg: Msg) -> None:
        """The subscription's callback (where ``deliver_directly`` does not apply)."""
        self.put_now(msg)


class _CoreInbox(_Inbox[Parts]):
    """A core subscription's messages, as (subject, data, headers): no ``Msg`` each.

    At most ``max_msgs`` messages and ``max_bytes`` payload bytes wait; a message past
    either is dropped and reported to ``on_drop`` (the nats-py subscription's own buffer
    only holds a message until this inbox has taken it).
    """

    def __init__(self, max_msgs: int, max_bytes: int, on_drop: Callable[[str], None]) -> None:
        super().__init__()
        self._max_msgs = max_msgs
        self._max_bytes = max_bytes
        self._bytes = 0
        self._on_drop = on_drop

    async def put(self, msg: Msg) -> None:
        """The subscription's callback (where ``deliver_parts`` does not apply)."""
        self.put_now((msg.subject, msg.data, msg.headers))

    def put_now(self, item: Parts) -> None:
        size = len(item[1])
        items = self._items
        if len(items) >= self._max_msgs or self._bytes + size > self._max_bytes:
            self._on_drop(item[0])
            return
        self._bytes += size
        items.append(item)  # _Inbox.put_now, inline: this runs per message
        self._arrived.set()

    def _took(self, item: Parts) -> Parts:
        self._bytes -= len(item[1])
        return item

    def take_all(self) -> list[Parts]:
        self._bytes = 0
        return super().take_all()


async def _settled(*, requeue: bool = True) -> None:
    """Ack/nack of a core NATS delivery: nothing to tell the broker (at-most-once)."""


_NO_HEADERS: Final[Mapping[str, str]] = MappingProxyType({})


def _content_type(headers: Mapping[str, str] | None) -> str | None:
    """The message's Content-Type header; a block as received stays unparsed if it has
    none (``RawHeaders.content_type``), so the binding can still read the block."""
    if headers is None:
        return None
    if type(headers) is RawHeaders:
        return headers.content_type()
    return find_header(headers, "content-type")


def _core_delivery(item: Parts) -> Delivery:
    subject, data, headers = item
    return Delivery(
        message=NatsMessage(data, headers),
        address=subject,
        payload=data,
        headers=_NO_HEADERS if headers is None else headers,
        ack=_settled,
        nack=_settled,
        ordering_key=subject,
        content_type=_content_type(headers),
        coordinates={"subject": subject},
        settles=False,  # at-most-once: the runtime skips the no-op ack
    )


def _directly(nc: Client, sub: Subscription, inbox: _MsgInbox) -> None:
    """Messages of ``sub`` into ``inbox`` from the read loop (``deliver_directly``)."""
    if isinstance(nc, MeshClient):
        nc.deliver_directly(sub, inbox.put_now)


_SUBSCRIBE_CHECK = 5
"""Seconds to wait for the server to confirm (or deny) a subscription."""


def _raise_if_denied(link: Link, subject: str) -> None:
    if link.take_denial("subscription", subject) is not None:
        raise NotAuthorized(
            f"connector {link.label!r}: the NATS server refused the subscription to "
            f"{subject!r} (permissions violation: the user lacks subscribe permission)"
        )


async def subscribe_core(
    link: Link, source: NatsSource, log: logging.Logger, ready: Ready
) -> AsyncIterator[Delivery]:
    """Deliveries of a core NATS subscription (optionally in a queue group) on the
    current client; ``ConnectionLost`` once that client is closed for good (the core
    subscribes again on the next one).

    ``ready`` is up once the server has the SUB (the flush's PONG came back).
    """
    nc = await link.client()
    if nc is None:
        return
    # Bounded: past pending_msgs_limit messages or pending_bytes_limit bytes not handed
    # out yet, new ones are dropped (counted and logged by the link).
    inbox = _CoreInbox(source.pending_msgs_limit, source.pending_bytes_limit, link.note_drop)
    try:
        sub = await nc.subscribe(
            source.subject,
            queue=source.queue_group or "",
            cb=inbox.put,
            pending_msgs_limit=source.pending_msgs_limit,
            pending_bytes_limit=source.pending_bytes_limit,
        )
        if isinstance(nc, MeshClient):  # from the read loop, no Msg made
            nc.deliver_parts(sub, inbox.put_now)
        # The server answers a denied SUB with -ERR before this flush's PONG.
        await nc.flush(_SUBSCRIBE_CHECK)
    except _ClientErrors as exc:
        raise ConnectionLost(f"subscribe to {source.subject!r} failed: {exc}") from exc
    ready.up()
    try:
        # nats-py replays the subscription after a reconnect; once this client is
        # closed for good, the next client gets a new subscription.
        while True:
            # Usually the server's -ERR came before the flush's PONG; a late one is
            # seen at the next poll.
            _raise_if_denied(link, source.subject)
            msg = await inbox.get(_POLL)
            if msg is not None:
                yield _core_delivery(msg)
                # The rest of what is buffered: no denial check and no wait per message
                # (a denied subscription receives nothing).
                while (msg := inbox.pop()) is not None:
                    yield _core_delivery(msg)
            elif nc.is_closed:
                if link.closing:
                    return
                raise ConnectionLost(f"client closed under the subscription to {source.subject!r}")
    finally:
        ready.down()
        await _unsubscribe(sub, log)


class _Pull:
    """The outstanding pull request of one subscription, as far as the client knows,
    and the -NAKs waiting for it to end.

    A -NAK'ed message is redelivered at once, possibly to that request, and the
    server may still hold it after its subscriber is gone (an ended subscription, a
    stopped gateway). Delivering a redelivery to such a request fails, and
    nats-server releases before nats-io/nats-server#5305 (April 2024) then rewound the
    consumer, so the message came again with delivery count 1: one copy to the next
    pull request, a second one right behind it (a duplicate), or none until
    ack_wait_seconds. So a -NAK while a request is outstanding is held until the
    request is over (its last message or a status arrived): the pull loop sends the
    held ones before its next request, the end of the subscription (``_end_pull``)
    once it has outlasted the request.
    """

    __slots__ = ("deferred", "expires_at", "owed")

    def __init__(self) -> None:
        self.expires_at = 0.0  # monotonic; 0: no request outstanding
        self.owed = 0  # messages the outstanding request may still bring
        self.deferred: list[Msg] = []  # to -NAK once no request is outstanding

    def sent(self, batch: int) -> None:
        self.owed = batch
        self.expires_at = time.monotonic() + _PULL_EXPIRES

    def took(self) -> None:
        """A message of the request arrived."""
        self.owed -= 1
        if self.owed == 0:  # the request is complete
            self.expires_at = 0.0

    def over(self) -> None:
        """The server ended the request (a status: 404, 408, 409) or forgot it (reconnect)."""
        self.owed = 0
        self.expires_at = 0.0

    def take_deferred(self) -> list[Msg]:
        deferred, self.deferred = self.deferred, []
        return deferred

    def nak_delay(self) -> float:
        """Seconds a -NAK must defer its redelivery (0 when no request is outstanding)."""
        if self.expires_at == 0.0:
            return 0.0
        return max(self.expires_at - time.monotonic(), 0.0) + _EXPIRY_MARGIN


class _Settle:
    """The ack/nack/in_progress closures of one JetStream delivery."""

    __slots__ = ("_deferred", "_msg", "_pull", "_sync", "_timeout")

    def __init__(self, msg: Msg, sync: bool, timeout: float, pull: _Pull) -> None:
        self._msg = msg
        self._sync = sync
        self._timeout = timeout
        self._pull = pull
        self._deferred = False  # its -NAK waits for the outstanding request to end

    def _settled(self) -> bool:
        return self._deferred or self._msg.is_acked  # the first ack/nack wins

    async def ack(self) -> None:
        if self._settled():
            return
        try:
            if self._sync:
                await self._msg.ack_sync(timeout=self._timeout)
            else:
                await self._msg.ack()
        except _ClientErrors as exc:
            raise ConnectionLost(f"ack of {self._msg.subject!r} not sent: {exc}") from exc

    async def nack(self, *, requeue: bool) -> None:
        if self._settled():
            return
        if requeue and self._pull.expires_at:  # see _Pull: sent once the request is over
            self._deferred = True
            self._pull.deferred.append(self._msg)
            return
        try:
            if requeue:
                await self._msg.nak()
            else:
                await self._msg.term()
        except _ClientErrors as exc:
            raise ConnectionLost(f"nack of {self._msg.subject!r} not sent: {exc}") from exc

    async def in_progress(self) -> None:
        if self._settled():
            return
        try:
            await self._msg.in_progress()
        except _ClientErrors as exc:
            raise ConnectionLost(f"in-progress of {self._msg.subject!r} not sent: {exc}") from exc


def _ack_coordinates(reply: str) -> tuple[str, int, int]:
    """(stream, stream sequence, deliveries so far) from a JetStream ack subject.

    ``$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<dseq>.<ts>.<pending>``, or with
    ``<domain>.<account hash>`` after ``ACK`` (and a trailing token) on newer servers.
    Read directly: nats-py's ``msg.metadata`` also builds a datetime and two objects.
    """
    tokens = reply.split(".")
    if tokens[:2] == ["$JS", "ACK"]:
        with contextlib.suppress(ValueError):
            if len(tokens) == 9:
                return tokens[2], int(tokens[5]), int(tokens[4])
            if len(tokens) >= 11:
                return tokens[4], int(tokens[7]), int(tokens[6])
    raise nats.errors.NotJSMessageError


def _jetstream_delivery(
    msg: Msg, options: JetStreamSource, timeout: float, pull: _Pull
) -> Delivery:
    stream, seq, delivered = _ack_coordinates(msg.reply)
    settle = _Settle(msg, options.ack_sync, timeout, pull)
    headers = msg.headers
    return Delivery(
        message=NatsMessage(msg.data, headers),
        address=msg.subject,
        payload=msg.data,
        headers=_NO_HEADERS if headers is None else headers,
        content_type=_content_type(headers),
        ack=settle.ack,
        nack=settle.nack,
        in_progress=settle.in_progress,
        native_id=f"{stream}/{seq}",
        ordering_key=msg.subject,
        coordinates={
            "stream": stream,
            "seq": seq,
            "subject": msg.subject,
            "num_delivered": delivered,
        },
    )


async def ensure_consumer(nc: Client, link: Link, source: NatsSource) -> str:
    """Create (if missing) the stream and the durable of ``source``; returns the stream name."""
    options = source.jetstream
    if options is None:
        raise ValueError("ensure_consumer needs a jetstream source")
    js = link.jetstream(nc)
    if options.stream is None:
        stream = await js.find_stream_name_by_subject(source.subject)
    else:
        stream = options.stream
    if options.create_stream:
        try:
            await js.stream_info(stream)
        except nats.js.errors.NotFoundError:
            subjects = list(options.subjects or (source.subject,))
            await js.add_stream(name=stream, subjects=subjects)
    try:
        await js.consumer_info(stream, options.durable)
    except nats.js.errors.NotFoundError:
        await js.add_consumer(
            stream,
            api.ConsumerConfig(
                name=options.durable,
                durable_name=options.durable,
                ack_policy=api.AckPolicy.EXPLICIT,
                deliver_policy=api.DeliverPolicy(options.deliver_policy.value),
                ack_wait=options.ack_wait_seconds,
                max_ack_pending=options.max_ack_pending,
                filter_subject=source.subject,
            ),
        )
    return stream


_DENIAL_POLL: Final = 0.05
"""Seconds between checks for a permissions violation while a JetStream API call waits."""


def _raise_if_js_denied(link: Link, source: NatsSource) -> None:
    """NotAuthorized when the server refused a JetStream API or ack publish of this link."""
    denied = link.take_denied_prefix("publish", "$JS.")
    if denied is None:
        return
    options = source.jetstream
    durable = options.durable if options is not None else "?"
    raise NotAuthorized(
        f"connector {link.label!r}: the NATS server refused the JetStream consumer "
        f"{durable!r} for {source.subject!r}: permissions violation for publish to "
        f"{denied[0]!r} (the user lacks publish permission on the JetStream API subject)"
    )


async def _checked_consumer(nc: Client, link: Link, source: NatsSource) -> str:
    """``ensure_consumer``, failing at once on a permissions violation.

    The server answers a denied JetStream API request with an asynchronous -ERR and
    never replies, so the request alone would only time out (``publish_timeout_seconds``)
    and look like an unavailable server; this watches for the denial meanwhile.
    """
    task = asyncio.ensure_future(ensure_consumer(nc, link, source))
    try:
        while not task.done():
            await asyncio.wait({task}, timeout=_DENIAL_POLL)
            if not task.done():
                _raise_if_js_denied(link, source)
        return task.result()
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, *_ClientErrors):
                await task


async def subscribe_jetstream(
    link: Link, source: NatsSource, log: logging.Logger, confirm_wait: float, ready: Ready
) -> AsyncIterator[Delivery]:
    """Deliveries of a JetStream durable pull consumer on the current client;
    ``ConnectionLost`` when the pulls stop working (the core checks the consumer and
    pulls again after its backoff), a plain return once the connector closes.

    ``ready`` is up once the durable exists (it keeps what is published from then on).
    """
    options = source.jetstream
    if options is None:
        raise ValueError("subscribe_jetstream needs a jetstream source")
    request = json.dumps({"batch": options.batch, "expires": int(_PULL_EXPIRES * 1e9)}).encode()
    nc = await link.client()
    if nc is None:
        return
    try:
        stream = await _checked_consumer(nc, link, source)
        inbox = _MsgInbox()  # bounded by the pull requests: batch messages at a time
        sub = await nc.subscribe(nc.new_inbox(), cb=inbox.put)
        _directly(nc, sub, inbox)
    except _ClientErrors as exc:
        _raise_if_js_denied(link, source)  # a late -ERR: a refusal, not an outage
        if isinstance(exc, TimeoutError):  # nats-py's too: the API did not answer
            link.note_timeout(nc)
        raise ConnectionLost(
            f"JetStream consumer {options.durable!r} on {source.subject!r} unavailable: {exc}"
        ) from exc
    next_subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{options.durable}"
    pull = _Pull()
    sent_at = 0.0
    generation = link.generation
    ready.up()
    try:
        while not nc.is_closed:
            if pull.owed == 0:
                if nc.is_reconnecting:  # a request now would only sit in the buffer
                    await asyncio.sleep(_POLL / 10)
                    continue
                if pull.deferred:  # the request they waited for is over
                    await _nak(pull.take_deferred(), log)
                await nc.publish(next_subject, request, reply=sub.subject)
                sent_at, generation = time.monotonic(), link.generation
                pull.sent(options.batch)
            msg = await inbox.get(_POLL)
            if msg is None:
                if generation != link.generation:
                    pull.over()  # reconnected: the server forgot the request
                elif time.monotonic() - sent_at > _PULL_EXPIRES + 2 * _POLL:
                    _raise_if_js_denied(link, source)  # the pull request was refused
                    link.note_timeout(nc)  # a silent link, maybe: tell the watchdog
                    raise ConnectionLost(  # no answer, not even a 408: re-check the consumer
                        f"pull from {options.durable!r}: no answer in {_PULL_EXPIRES} s"
                    )
                continue
            if msg.reply:
                pull.took()
                yield _jetstream_delivery(msg, options, confirm_wait, pull)
                continue
            status = _header(msg, "Status")
            if status == "100":  # idle heartbeat
                continue
            pull.over()  # 404 no messages, 408 expired, 409 ...: the request is over
            if status == "409":
                description = _header(msg, "Description")
                log.warning("pull from %r: %s", options.durable, description)
                if "deleted" in description.lower():
                    raise ConnectionLost(f"pull from {options.durable!r}: {description}")
    except _ClientErrors as exc:
        raise ConnectionLost(f"pull from {options.durable!r} failed: {exc}") from exc
    finally:
        ready.down()
        if generation != link.generation:
            pull.over()  # reconnected: the server forgot the request
        await _end_pull(nc, sub, inbox, pull, log)
    if not link.closing:
        raise ConnectionLost(f"client closed under the pull from {options.durable!r}")


def _header(msg: Msg, name: str) -> str:
    # nats-py keys status headers with a str Enum whose hash differs from the plain str.
    return next((value for key, value in (msg.headers or {}).items() if key == name), "")


async def _end_pull(
    nc: Client, sub: Subscription, inbox: _MsgInbox, pull: _Pull, log: logging.Logger
) -> None:
    """End a pull subscription without stranding a message the server sent to it.

    JetStream hands a message to the request and counts it delivered before the
    server routes it to the subscriber; unsubscribed by then, the client never sees
    it and the server redelivers it only after ``ack_wait_seconds``. So while its
    request is outstanding and messages keep coming, the subscription stays until the
    request is over (its last message or a status arrived, at most its expiry); a
    request quiet for ``_QUIET`` seconds is left (waiting out its expiry would hold
    every stop of an idle source up to 2 s; a message can then still arrive in the
    moment of the UNSUB, as likely as one arriving in any millisecond). Then UNSUB and
    a PING/PONG round trip (a drain), and every message received but not handed out
    is nak'ed, with the -NAKs that waited for the request (see ``_Pull``); while the
    request is still outstanding, its redelivery is deferred until the request has
    expired, so the next consumer (a restarted gateway) gets it soon.
    """
    held = await _outlast(inbox, pull) if nc.is_connected and pull.expires_at else []
    drained = False
    if nc.is_connected:
        try:
            await asyncio.wait_for(sub.drain(), _DRAIN_TIMEOUT)  # type: ignore[no-untyped-call]
            drained = True
        except _ClientErrors as exc:
            log.debug("draining the pull subscription failed: %s", exc)
    if not drained:
        await _unsubscribe(sub, log)
    # Given back (deferred ones first: they came first), each redelivered once the
    # request is over: at once, or after its expiry if it outlasted the wait.
    await _nak(pull.take_deferred() + held + inbox.take_all(), log, pull.nak_delay())


async def _outlast(inbox: _MsgInbox, pull: _Pull) -> list[Msg]:
    """Wait until the outstanding request is over, or quiet for ``_QUIET`` seconds;
    returns the messages it brought (those buffered first: the request counted them)."""
    deadline = pull.expires_at + _EXPIRY_MARGIN  # the server counts from receipt
    msgs: list[Msg] = []
    while pull.expires_at and (left := deadline - time.monotonic()) > 0:
        msg = await inbox.get(min(left, _QUIET))
        if msg is None:
            break
        if msg.reply:
            msgs.append(msg)
            pull.took()
        elif _header(msg, "Status") != "100":  # 404, 408, 409: the request is over
            pull.over()
    return msgs


async def _nak(msgs: list[Msg], log: logging.Logger, delay: float = 0.0) -> None:
    """Give back messages (received but never handed out, or deferred -NAKs), so
    others get them soon."""
    try:
        for msg in msgs:
            if msg.reply:
                await msg.nak(delay=delay or None)
    except _ClientErrors as exc:
        log.debug("could not nak %d buffered message(s): %s", len(msgs), exc)


async def _unsubscribe(sub: Subscription, log: logging.Logger) -> None:
    try:
        await sub.unsubscribe()
    except _ClientErrors as exc:
        log.debug("unsubscribe failed: %s", exc)
