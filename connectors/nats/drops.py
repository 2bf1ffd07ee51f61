"""Counting and reporting core NATS messages lost by a slow consumer.

A core NATS subscription cannot push back: when the gateway falls behind by more than
a source's ``pending_msgs_limit`` messages or ``pending_bytes_limit`` bytes, new
messages are dropped (by nats-py or by the source's own buffer). Each drop is counted
in the connector's ``Health.dropped`` (admin API, ``meshgate_connector_dropped_total``)
and reported by a WARNING with counts: the first drop at once, then at most one line
per ``every`` seconds per connector, each saying how many were dropped since the last
line and in all. A drop held back is reported by a timer at the end of its period, so
the last drops of a burst are logged too, not only counted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Final

from connectors.base import Health

__all__ = ["DROP_WARNING_SECONDS", "DropReport"]

DROP_WARNING_SECONDS: Final = 5.0
"""Least seconds between two slow-consumer warnings of one connector."""


class DropReport:
    """The slow-consumer drops of one connector: counted per message, logged throttled."""

    def __init__(
        self, label: str, health: Health, log: logging.Logger, every: float = DROP_WARNING_SECONDS
    ) -> None:
        self._label = label
        self._health = health
        self._log = log
        self._every = every
        self._logged_at = -float("inf")  # monotonic time of the last warning
        self._unlogged = 0  # drops since the last warning
        self._subjects: dict[str, None] = {}  # subjects of those drops, in order, bounded
        self._timer: asyncio.TimerHandle | None = None

    @property
    def total(self) -> int:
        return self._health.dropped

    def note(self, subject: str) -> None:
        """One message on ``subject`` was dropped."""
        self._health.dropped += 1
        self._unlogged += 1
        if len(self._subjects) < 8:
            self._subjects[subject] = None
        wait = self._logged_at + self._every - time.monotonic()
        if wait <= 0:
            self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(wait, self.flush)

    def flush(self) -> None:
        """Log the drops not logged yet (nothing when there are none)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._unlogged == 0:
            return
        self._log.warning(
            "%s: core NATS slow consumer on %s: %d message(s) dropped since the last "
            "warning, %d in all (the source fell behind by more than pending_msgs_limit "
            "messages or pending_bytes_limit bytes; at-most-once: use a JetStream source "
            "to keep them)",
            self._label,
            ", ".join(repr(subject) for subject in self._subjects),
            self._unlogged,
            self._health.dropped,
        )
        self._logged_at = time.monotonic()
        self._unlogged = 0
        self._subjects.clear()
