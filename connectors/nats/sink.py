"""Publishing to NATS: JetStream with PubAck (at-least-once) or core NATS (at-most-once).

JetStream publishes carry ``Nats-Msg-Id`` so the stream drops a retried duplicate
within its duplicate window (2 minutes by default). The id is derived from the
target subject and the event's ``source`` and ``id``: CloudEvents ids are unique
only per source, and one event forwarded to two subjects of one stream (two routes)
must be stored twice. A core publish returns once the bytes reached the server
(a PING/PONG flush); nothing confirms that anyone received them. Core publishes
queued in the same event-loop turn share one flush: the PING goes out after all
of their messages, so its PONG vouches for each of them (one round trip instead
of one per publish).

A JetStream publish answered with "no responders" is refused (``PublishRejected``)
only when the stream-names API confirms that no stream captures the subject; while
JetStream itself is away (a server shutting down or recovering its streams after a
restart) it is the retriable ``ConnectionLost``.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from collections.abc import Sequence

import nats.errors
import nats.js.errors
from nats.aio.client import Client

from connectors.errors import ConnectionLost, ConnectorError, PublishRejected, PublishTimeout
from connectors.nats import client
from connectors.nats.client import Headers
from connectors.nats.config import NatsTarget, check_publish_subject
from connectors.nats.link import Link
from routing.bindings import Mode, merge_headers
from routing.bindings.nats import (
    MSG_ID_HEADER,
    NatsMessage,
    binary_header_lines,
    header_clash,
    header_key,
    to_message,
)
from routing.errors import InvalidEvent
from routing.event import CloudEvent
from routing.formats import EventFormat

__all__ = ["MSG_ID_HEADER", "dedup_id", "publish", "publish_many", "send"]

_CONNECTION_ERRORS = (
    nats.errors.ConnectionClosedError,
    nats.errors.ConnectionDrainingError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.OutboundBufferLimitError,
    nats.errors.StaleConnectionError,
    nats.errors.NoServersError,
    OSError,
)
_MESSAGE_ERRORS = (
    nats.errors.MaxPayloadError,
    nats.errors.BadSubjectError,
    nats.errors.BadHeaderError,
)


async def _no_responders(link: Link, nc: Client, subject: str) -> ConnectorError:
    """What a "no responders" answer to a JetStream publish means right now.

    Nothing listened on ``subject``: either no stream captures it (a configuration
    error: ``PublishRejected``), or JetStream is briefly away, as while a server shuts
    down or recovers its streams after a restart (retriable ``ConnectionLost``). The
    stream-names API tells which; if it does not answer either, JetStream is away.
    """
    try:
        stream = await link.jetstream(nc).find_stream_name_by_subject(subject)
    except nats.js.errors.NotFoundError:
        return PublishRejected(
            f"no JetStream stream captures subject {subject!r}: create one, or set "
            "jetstream: false on the target for core NATS (at-most-once)"
        )
    except (TimeoutError, nats.errors.Error, OSError) as exc:
        return ConnectionLost(f"JetStream unavailable for {subject!r}: {type(exc).__name__}")
    return ConnectionLost(f"JetStream stream {stream!r} did not answer for {subject!r}")


async def _no_stream(link: Link, nc: Client, subject: str) -> bool:
    """After a JetStream publish timed out: True only when the server says for sure
    that no stream captures ``subject`` (a silent link does not answer: False)."""
    try:
        async with asyncio.timeout(1.0):
            await link.jetstream(nc).find_stream_name_by_subject(subject)
    except nats.js.errors.NotFoundError:
        return True
    except (TimeoutError, nats.errors.Error, OSError):
        return False
    return False


def _denied(link: Link, subject: str) -> PublishRejected | None:
    """The refusal of a publish the server denied (its -ERR), else None."""
    if link.take_denial("publish", subject) is None:
        return None
    return PublishRejected(
        f"not authorized: the NATS server refused publish to {subject!r} "
        f"(permissions violation: the user lacks publish permission)"
    )


def _raise_if_denied(link: Link, subject: str) -> None:
    denial = _denied(link, subject)
    if denial is not None:
        raise denial


def dedup_id(subject: str, event: CloudEvent) -> str:
    """``Nats-Msg-Id`` for ``event`` on ``subject``: stable across retries and gateways."""
    key = "\0".join((subject, event.source, event.id)).encode()
    return hashlib.sha256(key).hexdigest()


_Encodings = dict[tuple[int, Mode, EventFormat], NatsMessage | str]
"""The binding's encoding of each event of one batch, by (id(event), mode, format): a
message, or the header lines of binary mode (``_written``)."""


def _check_subject(target: NatsTarget) -> None:
    problem = check_publish_subject(target.subject)
    if problem:
        raise PublishRejected(f"NATS subject {target.subject!r} {problem}")


def encode(
    target: NatsTarget, event: CloudEvent, encodings: _Encodings | None = None
) -> NatsMessage:
    """The message ``publish`` sends: the binding's, plus ``Nats-Msg-Id`` for JetStream.

    ``encodings`` (``publish_many``): an event bound for several targets of one batch
    in the same mode and format is encoded by the binding once, not once per target;
    only the ``Nats-Msg-Id`` (per subject) and the target's own headers differ.
    """
    _check_subject(target)
    key = (id(event), target.mode, target.format)  # the batch holds every event: ids stay
    message = None if encodings is None else encodings.get(key)
    if not isinstance(message, NatsMessage):
        message = to_message(event, target.mode, fmt=target.format)
        if encodings is not None:
            encodings[key] = message
    if not target.jetstream and not target.headers:
        return message
    if not target.headers:  # the common case: the binding's headers and the id, no merge
        headers = dict(message.headers or {})
        headers[MSG_ID_HEADER] = dedup_id(target.subject, event)
        return NatsMessage(message.data, headers)
    own = list((message.headers or {}).items())
    if target.jetstream:
        own.append((MSG_ID_HEADER, dedup_id(target.subject, event)))
    merged = merge_headers(own, target.headers.items(), same=header_key, refused=header_clash)
    return NatsMessage(message.data, dict(merged))


async def publish(link: Link, wait: float, target: NatsTarget, event: CloudEvent) -> None:
    """Encode ``event`` for ``target`` and return once the broker confirmed (see module doc)."""
    subject, data, headers = _encoded(target, event, None, None)  # send checks the size
    what = f"event {event.id!r}"
    await send(link, wait, subject, data, headers, target.jetstream, what)


async def send(
    link: Link,
    wait: float,
    subject: str,
    data: bytes,
    headers: Headers,
    jetstream: bool,
    what: str,
) -> None:
    """Publish one encoded message; ``what`` names it in a size refusal."""
    nc = link.current()
    if len(data) > nc.max_payload:
        raise PublishRejected(
            f"{what} is {len(data)} bytes; the server accepts "
            f"at most {nc.max_payload} (max_payload)"
        )
    try:
        if jetstream:
            await link.pubacks(nc).publish(subject, data, headers, wait)
        else:
            await client.publish(nc, subject, data, headers)
            # The server answers a denied PUB with -ERR before the flush's PONG.
            await link.flusher(nc).flush(math.ceil(wait))
            _raise_if_denied(link, subject)
    except (nats.errors.Error, OSError) as exc:
        raise await _failure(link, nc, wait, subject, jetstream, exc) from exc


async def _failure(
    link: Link, nc: Client, wait: float, subject: str, jetstream: bool, exc: BaseException
) -> BaseException:
    """The meshgate error for a nats-py error of a publish to ``subject`` (``exc`` itself
    when it is no client error)."""
    if isinstance(exc, nats.js.errors.NoStreamResponseError):
        return await _no_responders(link, nc, subject)
    if isinstance(exc, nats.errors.TimeoutError):
        denial = _denied(link, subject)  # a denied JetStream publish gets no PubAck
        if denial is not None:
            return denial
        link.note_timeout(nc)  # the watchdog: a silent link times out every publish
        if jetstream and await _no_stream(link, nc, subject):
            return PublishRejected(
                f"no JetStream stream captures subject {subject!r}, and a core NATS "
                "subscriber took the publish without answering (so it timed out instead of "
                "being refused): create a stream, or set jetstream: false on the target"
            )
        return PublishTimeout(f"no confirmation for {subject!r} within {wait}s")
    if isinstance(exc, nats.js.errors.ServiceUnavailableError):
        return ConnectionLost(f"JetStream unavailable for {subject!r}: {exc}")
    if isinstance(exc, nats.js.errors.APIError):
        return PublishRejected(f"JetStream refused {subject!r}: {exc}")
    if isinstance(exc, _CONNECTION_ERRORS):
        return ConnectionLost(f"publish to {subject!r}: {exc}")
    if isinstance(exc, _MESSAGE_ERRORS):
        return PublishRejected(f"publish to {subject!r}: {exc}")
    if isinstance(exc, nats.errors.Error):
        return ConnectorError(f"publish to {subject!r}: {exc}")
    return exc


async def publish_many(
    link: Link, wait: float, items: Sequence[tuple[NatsTarget, CloudEvent]]
) -> list[Exception | None]:
    """Publish every item; one outcome per item (``BatchPublisher``).

    JetStream publishes are all written, then their PubAcks awaited together; core
    ones are all written, then share one flush (``SharedFlush``).
    """
    outcomes: list[Exception | None] = [None] * len(items)
    try:
        nc = link.current()
    except ConnectionLost as exc:  # every item fails the same way
        return [exc] * len(items)
    core: dict[int, _Publish] = {}
    sends: dict[int, _Publish] = {}
    # Shared encodings pay only where an event goes to several targets (a fan-out);
    # else their key and lookups are per-event cost for nothing.
    events = {id(event) for _target, event in items}
    encodings: _Encodings | None = {} if len(events) < len(items) else None
    for index, (target, event) in enumerate(items):
        try:
            encoded = _encoded(target, event, nc.max_payload, encodings)
        except (ConnectorError, InvalidEvent) as exc:
            outcomes[index] = exc
        else:
            (sends if target.jetstream else core)[index] = encoded
    if core:
        outcomes_core = await _publish_core(link, nc, wait, core)
        for index, failure in outcomes_core.items():
            outcomes[index] = failure
    if sends:
        replies = await link.pubacks(nc).publish_many(list(sends.values()), wait)
        failed = {index: error for index, error in zip(sends, replies, strict=True) if error}
        for index, failure in (await _failures(link, nc, wait, sends, failed)).items():
            outcomes[index] = failure
    return outcomes


async def _publish_core(
    link: Link, nc: Client, wait: float, core: dict[int, _Publish]
) -> dict[int, Exception | None]:
    """Write every core publish of a batch back to back, then one shared flush: its
    PONG vouches for all of them (and each denied one has had its -ERR by then).
    Returns the outcome by index of those that failed or might have (None: accepted);
    an index missing was accepted."""
    outcomes: dict[int, Exception | None] = {}
    written: list[int] = []
    results = await client.publish_many(nc, list(core.values()))
    for (index, (subject, _data, _headers)), error in zip(core.items(), results, strict=True):
        if error is None:
            written.append(index)
        else:
            outcomes[index] = _outcome(await _failure(link, nc, wait, subject, False, error))
    if not written:
        return outcomes
    try:
        await link.flusher(nc).flush(math.ceil(wait))
    except (nats.errors.Error, OSError) as exc:
        known: dict[str, Exception | None] = {}  # one meaning per subject, as for JetStream
        for index in written:
            subject = core[index][0]
            if subject not in known:
                known[subject] = _outcome(await _failure(link, nc, wait, subject, False, exc))
            outcomes[index] = known[subject]
        return outcomes
    if link.has_denials():  # else every written one was accepted: no outcome to note
        for index in written:
            outcomes[index] = _denied(link, core[index][0])
    return outcomes


async def _failures(
    link: Link,
    nc: Client,
    wait: float,
    sends: dict[int, _Publish],
    failed: dict[int, BaseException],
) -> dict[int, Exception | None]:
    """The meshgate error of each failed JetStream publish of a batch (by index).

    A timeout or "no responders" asks the server what it means: once per subject and
    kind in a batch (an outage fails a whole batch the same way).
    """
    known: dict[tuple[str, type], BaseException] = {}
    outcomes: dict[int, Exception | None] = {}
    for index, error in failed.items():
        subject = sends[index][0]
        if isinstance(error, nats.errors.TimeoutError):
            # Each denied publish has its own -ERR: take this one's before asking once.
            denial = _denied(link, subject)
            if denial is not None:
                outcomes[index] = denial
                continue
        failure = known.get((subject, type(error)))
        if failure is None:
            failure = await _failure(link, nc, wait, subject, True, error)
            if isinstance(error, _ASKED):
                known[(subject, type(error))] = failure
        outcomes[index] = _outcome(failure)
    return outcomes


_ASKED = (nats.errors.TimeoutError, nats.js.errors.NoStreamResponseError)
"""Publish errors whose meaning ``_failure`` asks the server for."""


_Publish = tuple[str, bytes, Headers]
"""(subject, data, headers) of one publish."""


def _encoded(
    target: NatsTarget, event: CloudEvent, limit: int | None, encodings: _Encodings | None
) -> _Publish:
    """(subject, data, headers) of a publish of ``event``; raises what ``send`` would
    for a message over the server's ``max_payload`` (``limit``; None: not checked)."""
    if client.FAST_PUBLISH and target.mode is Mode.BINARY and not target.headers:
        _check_subject(target)
        data: bytes = event.data or b""
        _check_size(event, data, limit)
        return target.subject, data, _written(target, event, encodings)
    message = encode(target, event, encodings)
    _check_size(event, message.data, limit)
    raw = message.headers  # a fresh dict from encode(), only read by nats-py: no copy
    headers = (raw if isinstance(raw, dict) else dict(raw)) if raw else None
    return target.subject, message.data, headers


def _check_size(event: CloudEvent, data: bytes, limit: int | None) -> None:
    if limit is not None and len(data) > limit:
        raise PublishRejected(
            f"event {event.id!r} is {len(data)} bytes; the server accepts "
            f"at most {limit} (max_payload)"
        )


def _written(target: NatsTarget, event: CloudEvent, encodings: _Encodings | None) -> bytes:
    """The header block ``encode`` would give ``target`` in binary mode (no headers of
    its own), written here: the binding's header lines, then ``Nats-Msg-Id`` for
    JetStream, as nats-py would write them (``client.binding_block``)."""
    key = (id(event), Mode.BINARY, target.format)
    lines = None if encodings is None else encodings.get(key)
    if not isinstance(lines, str):
        lines = binary_header_lines(event)
        if encodings is not None:
            encodings[key] = lines
    if target.jetstream:
        lines = f"{lines}{MSG_ID_HEADER}: {dedup_id(target.subject, event)}\r\n"
    return client.binding_block(lines)


def _outcome(result: BaseException | None) -> Exception | None:
    """An item's outcome; what is no ``Exception`` (a cancellation) is raised."""
    if result is None or isinstance(result, Exception):
        return result
    raise result
