"""Keep credentials out of logs and error messages."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

__all__ = ["redact_url"]


def redact_url(url: str, *, user_is_secret: bool = False) -> str:
    """``url`` with its password replaced by ``***``, safe to log.

    ``user_is_secret`` also hides a user part that has no password (NATS puts a
    token there: ``nats://TOKEN@host``).
    """
    parts = urlsplit(url)
    if parts.password is None and (parts.username is None or not user_is_secret):
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = "***" if parts.password is None else f"{parts.username or ''}:***"
    return urlunsplit((parts.scheme, f"{user}@{host}", parts.path, parts.query, parts.fragment))
