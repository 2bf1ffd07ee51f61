"""Exponential backoff with full jitter, shared by every connector's reconnect loop.

``BackoffPolicy`` is the configured shape (``gateway.reconnect`` in the config file);
the core hands one policy to every connector, and each reconnect loop draws its own
``Backoff`` (the attempt counter) from it, so all connections wait alike.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field

__all__ = ["Backoff", "BackoffPolicy"]


@dataclass(slots=True)
class Backoff:
    """Delays of ``initial * 2**n`` capped at ``maximum``, each drawn from [initial/2, d].

    Full jitter keeps a fleet of gateways from reconnecting in lockstep after a
    broker restart.
    """

    initial: float = 0.1
    maximum: float = 10.0
    attempt: int = field(default=0, init=False)

    def next_delay(self) -> float:
        ceiling = min(self.maximum, self.initial * (2**self.attempt))
        self.attempt += 1
        return random.uniform(self.initial / 2, ceiling)  # jitter, not crypto

    async def sleep(self) -> None:
        await asyncio.sleep(self.next_delay())

    def reset(self) -> None:
        self.attempt = 0


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    """How long reconnect attempts wait: from ``initial`` doubling up to ``maximum`` s."""

    initial: float = 0.2
    maximum: float = 10.0

    def backoff(self) -> Backoff:
        """A fresh attempt counter following this policy."""
        return Backoff(self.initial, self.maximum)
