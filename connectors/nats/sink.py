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

import nats.errors
import nats.js.errors
from nats.aio.client import Client

from connectors.errors import ConnectionLost, ConnectorError, PublishRejected, PublishTimeout
from connectors.nats.config import NatsTarget, check_publish_subject
from connectors.nats.link import Link
from routing.bindings import merge_headers
from routing.bindings.nats import MSG_ID_HEADER, NatsMessage, header_clash, header_key, to_message
from routing.event import CloudEvent

__all__ = ["MSG_ID_HEADER", "dedup_id", "publish", "send"]

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


def _raise_if_denied(link: Link, subject: str, cause: BaseException | None = None) -> None:
    denial = link.take_denial("publish", subject)
    if denial is not None:
        raise PublishRejected(
            f"not authorized: the NATS server refused publish to {subject!r} "
            f"(permissions violation: the user lacks publish permission)"
        ) from cause


def dedup_id(subject: str, event: CloudEvent) -> str:
    """``Nats-Msg-Id`` for ``event`` on ``subject``: stable across retries and gateways."""
    key = "\0".join((subject, event.source, event.id)).encode()
    return hashlib.sha256(key).hexdigest()


def encode(target: NatsTarget, event: CloudEvent) -> NatsMessage:
    """The message ``publish`` sends: the binding's, plus ``Nats-Msg-Id`` for JetStream."""
    problem = check_publish_subject(target.subject)
    if problem:
        raise PublishRejected(f"NATS subject {target.subject!r} {problem}")
    message = to_message(event, target.mode, fmt=target.format)
    if not target.jetstream and not target.headers:
        return message
    own = list((message.headers or {}).items())
    if target.jetstream:
        own.append((MSG_ID_HEADER, dedup_id(target.subject, event)))
    merged = merge_headers(own, target.headers.items(), same=header_key, refused=header_clash)
    return NatsMessage(message.data, dict(merged))


async def publish(link: Link, wait: float, target: NatsTarget, event: CloudEvent) -> None:
    """Encode ``event`` for ``target`` and return once the broker confirmed (see module doc)."""
    message = encode(target, event)
    raw = message.headers  # a fresh dict from encode(), only read by nats-py: no copy
    headers = (raw if isinstance(raw, dict) else dict(raw)) if raw else None
    what = f"event {event.id!r}"
    await send(link, wait, target.subject, message.data, headers, target.jetstream, what)


async def send(
    link: Link,
    wait: float,
    subject: str,
    data: bytes,
    headers: dict[str, str] | None,
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
            await nc.publish(subject, data, headers=headers)
            # The server answers a denied PUB with -ERR before the flush's PONG.
            await link.flusher(nc).flush(math.ceil(wait))
            _raise_if_denied(link, subject)
    except nats.js.errors.NoStreamResponseError as exc:
        raise await _no_responders(link, nc, subject) from exc
    except nats.errors.TimeoutError as exc:
        _raise_if_denied(link, subject, exc)  # a denied JetStream publish gets no PubAck
        link.note_timeout(nc)  # the watchdog: a silent link times out every publish
        if jetstream and await _no_stream(link, nc, subject):
            raise PublishRejected(
                f"no JetStream stream captures subject {subject!r}, and a core NATS "
                "subscriber took the publish without answering (so it timed out instead of "
                "being refused): create a stream, or set jetstream: false on the target"
            ) from exc
        raise PublishTimeout(f"no confirmation for {subject!r} within {wait}s") from exc
    except nats.js.errors.ServiceUnavailableError as exc:
        raise ConnectionLost(f"JetStream unavailable for {subject!r}: {exc}") from exc
    except nats.js.errors.APIError as exc:
        raise PublishRejected(f"JetStream refused {subject!r}: {exc}") from exc
    except _CONNECTION_ERRORS as exc:
        raise ConnectionLost(f"publish to {subject!r}: {exc}") from exc
    except _MESSAGE_ERRORS as exc:
        raise PublishRejected(f"publish to {subject!r}: {exc}") from exc
    except nats.errors.Error as exc:
        raise ConnectorError(f"publish to {subject!r}: {exc}") from exc
