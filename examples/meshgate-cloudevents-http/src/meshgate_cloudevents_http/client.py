"""The HTTP client behind the targets: one POST per event, confirmed by a 2xx answer.

What an answer means for the route (the runtime retries what is retriable and
dead-letters the rest):

- 2xx: delivered. A body (e.g. a Knative reply event) is ignored.
- 3xx: ``PublishRejected`` naming the Location. Redirects are never followed: an
  event silently re-sent to another address (maybe another host) is worse than a
  configuration error the operator sees.
- 408, 429, 5xx, connection errors, timeouts: tried again within this publish up to
  ``retries`` times, waiting ``Retry-After`` when the answer has one (seconds or an
  HTTP date, up to ``max_retry_after_seconds``), else exponential backoff with jitter; then
  ``ReceiverUnavailable`` / ``ConnectionLost`` / ``PublishTimeout`` (retriable).
- any other 4xx: ``PublishRejected`` with the status and the start of the answer's
  body (the receiver refuses this event: retrying cannot help; dead letter).

URLs appear in errors without their query string (webhook tokens often live there).
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import ssl
import time
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from connectors import (
    Backoff,
    ConnectionLost,
    ConnectorError,
    PublishRejected,
    PublishTimeout,
    TlsOptions,
    warn_insecure,
)
from meshgate_cloudevents_http.binding import HttpMessage
from meshgate_cloudevents_http.config import HttpOptions, url_problem

__all__ = ["ReceiverUnavailable", "Sender", "retry_after_seconds", "shown"]

_BODY_SHOWN = 300
"""Characters of an error answer's body quoted in the error."""


class ReceiverUnavailable(ConnectorError):
    """The receiver answered 408, 429 or 5xx: it may take the event later."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def shown(url: str) -> str:
    """``url`` without its query and fragment, safe to log."""
    parts = urlsplit(url)
    query = "?..." if parts.query else ""
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")) + query


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks to wait (delta-seconds or HTTP-date), or None."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class Sender:
    """One aiohttp session for every target of the connector."""

    def __init__(self, name: str, options: HttpOptions, log: logging.Logger) -> None:
        self._name = name
        self._options = options
        self._log = log
        self._session: aiohttp.ClientSession | None = None
        self._ssl: ssl.SSLContext | None = None

    async def start(self) -> None:
        if self._session is not None:
            return
        options = self._options
        # Built at every start, so renewed certificates are picked up on reconnect.
        self._ssl = (options.tls or TlsOptions()).ssl_context(self._name)
        warn_insecure(options.tls, self._log, self._name)
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(
                total=options.timeout_seconds, connect=options.connect_timeout_seconds
            ),
            auto_decompress=True,
        )

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def post(self, url: str, message: HttpMessage, what: str) -> None:
        """POST ``message`` to ``url``; return on 2xx, else raise (see the module doc)."""
        problem = url_problem(url)
        if problem is not None:
            raise PublishRejected(f"target url {shown(url)!r}: {problem}")
        if self._options.tls is not None and not url.startswith("https://"):
            raise PublishRejected(
                f"target url {shown(url)!r} is plaintext but connector {self._name!r} has a "
                "tls: block: use https://"
            )
        backoff = Backoff(self._options.retry_initial_seconds, self._options.retry_max_seconds)
        attempt = 0
        while True:
            error = await self._attempt(url, message, what)
            if error is None:
                return
            if not error.retriable or attempt >= self._options.retries:
                raise error
            wait = getattr(error, "retry_after", None)
            if wait is None:
                wait = backoff.next_delay()
            elif wait > self._options.max_retry_after_seconds:
                raise error  # the route's retry (or dead letter) decides
            attempt += 1
            self._log.debug("%s: retry %d in %.2fs after: %s", what, attempt, wait, error)
            await asyncio.sleep(wait)

    async def _attempt(self, url: str, message: HttpMessage, what: str) -> ConnectorError | None:
        session = self._session
        if session is None or session.closed:
            return ConnectionLost(f"connector {self._name!r} is closed")
        where = shown(url)
        try:
            async with session.post(
                url,
                data=message.body,
                headers=message.headers,
                allow_redirects=False,
                # No invented Content-Type: in binary mode it is the datacontenttype.
                skip_auto_headers=("Content-Type",),
                ssl=self._ssl if self._ssl is not None and url.startswith("https://") else True,
            ) as answer:
                if 200 <= answer.status < 300:
                    return None
                body = (await answer.text(errors="replace"))[:_BODY_SHOWN].strip()
                return _refusal(where, what, answer, body)
        except TimeoutError:
            return PublishTimeout(
                f"{what}: no answer from {where} within {self._options.timeout_seconds}s"
            )
        except aiohttp.ClientSSLError as exc:
            return ConnectionLost(f"{what}: TLS with {where} failed: {exc}")
        except (aiohttp.ClientError, OSError) as exc:
            return ConnectionLost(f"{what}: {where} unreachable: {type(exc).__name__}: {exc}")


def _refusal(where: str, what: str, answer: aiohttp.ClientResponse, body: str) -> ConnectorError:
    status = f"{answer.status} {answer.reason or ''}".strip()
    said = f": {body}" if body else ""
    if 300 <= answer.status < 400:
        location = answer.headers.get("Location", "(no Location header)")
        return PublishRejected(
            f"{what}: {where} answered {status} redirecting to {location}; redirects are "
            "not followed: set the target url to the final address"
        )
    if answer.status in (408, 429) or answer.status >= 500:
        wait = retry_after_seconds(answer.headers.get("Retry-After"))
        return ReceiverUnavailable(f"{what}: {where} answered {status}{said}", wait)
    if 400 <= answer.status < 500:
        return PublishRejected(f"{what}: {where} refused the event: {status}{said}")
    return ConnectorError(f"{what}: {where} answered {status}{said}")
