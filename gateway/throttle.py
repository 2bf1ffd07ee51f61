"""Rate limits for log lines that repeat per event (one failing target, one loop).

An outage makes every in-flight event fail the same way: logging each attempt floods
the log with hundreds of identical lines a second. ``LogThrottle`` lets one line per
key through every ``every`` seconds and counts the rest, so the next line can say how
many it stands for.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

__all__ = ["LogThrottle"]


@dataclass
class LogThrottle:
    every: float
    """Seconds between two lines of one key."""
    _last: dict[str, float] = field(default_factory=dict)
    _held: dict[str, int] = field(default_factory=dict)

    def admit(self, key: str) -> int | None:
        """None when this line is held back (counted); else how many were held back
        since the last line of ``key`` (0 for the first)."""
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.every:
            self._held[key] = self._held.get(key, 0) + 1
            return None
        self._last[key] = now
        return self._held.pop(key, 0)
