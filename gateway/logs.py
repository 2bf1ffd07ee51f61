"""Logging for ``meshgate``: text or JSON lines, quieter client libraries, a minute summary.

* ``setup(level, fmt)``: one record per line on standard error, ``text`` (human) or
  ``json`` (one object per line: ``time`` RFC 3339 UTC, ``level``, ``logger``,
  ``message``, ``exception`` when there is one, and any ``extra=`` fields such as
  ``connector`` or ``route``), for log shippers.
* Client-library noise: aio-pika and aiormq log an ordinary broker reconnect at ERROR
  with a traceback; the connector already reports the connection state in its own
  words, so their ERROR records become one-line WARNINGs (the exception's class and
  text kept, the traceback only at DEBUG).
* asyncio's "returning true from eof_received() has no effect when using ssl", logged
  at every closed TLS link of nats-py, goes down to DEBUG.
* ``summarize(gateway)``: one INFO line per minute with every route's counters.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import sys
from collections.abc import Callable
from typing import Any, Final

__all__ = ["FORMATS", "JsonFormatter", "setup", "summarize"]

FORMATS: Final = ("text", "json")
TEXT_FORMAT: Final = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
SUMMARY_SECONDS: Final = 60.0

# Attributes every LogRecord has; anything else came from ``extra=``.
_STANDARD = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}
_NOISY_CLIENTS: Final = ("aio_pika", "aiormq")
_NATS_TLS_EOF: Final = "returning true from eof_received() has no effect when using ssl"


class JsonFormatter(logging.Formatter):
    """One JSON object per record."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
        entry: dict[str, Any] = {
            "time": stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in vars(record).items():
            if name not in _STANDARD and not name.startswith("_"):
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class _ClientNoise(logging.Filter):
    """ERROR records of a client library become one-line WARNINGs (see module doc)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "asyncio" and record.msg == _NATS_TLS_EOF:
            # nats-py's protocol over TLS says this on every closed TLS link: not news.
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger("asyncio").isEnabledFor(logging.DEBUG)
        noisy = record.name.partition(".")[0] in _NOISY_CLIENTS
        if noisy and logging.ERROR <= record.levelno < logging.CRITICAL:
            if record.exc_info and record.exc_info[1] is not None:
                exc = record.exc_info[1]
                record.msg = f"{record.getMessage()} ({type(exc).__name__}: {exc})"
                record.args = ()
                if not logging.getLogger(record.name).isEnabledFor(logging.DEBUG):
                    record.exc_info = None
                    record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def setup(level: str = "info", fmt: str = "text") -> None:
    """Configure the root logger (replacing what was there)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    # On the handler: a logger's own filters do not see records of its child loggers.
    handler.addFilter(_ClientNoise())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper()))


def _line(stats: dict[str, Any]) -> str:
    parts = []
    for route, counters in stats.items():
        # Counters only: RouteStats also holds a duration histogram and the last error.
        fields = " ".join(
            f"{name}={value}" for name, value in vars(counters).items() if type(value) is int
        )
        parts.append(f"{route}[{fields}]")
    return "; ".join(parts) or "no routes"


async def summarize(
    stats: Callable[[], dict[str, Any]],
    interval: float = SUMMARY_SECONDS,
    log: logging.Logger | None = None,
) -> None:
    """Log every route's counters once per ``interval`` until cancelled.

    ``stats`` is read anew each time (a reload replaces the per-route counters).
    """
    out = log or logging.getLogger("meshgate.summary")
    while True:
        await asyncio.sleep(interval)
        out.info("routes: %s", _line(stats()))
