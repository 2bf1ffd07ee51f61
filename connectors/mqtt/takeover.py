"""Recognising an MQTT session takeover, an input to the core's reconnect pacing.

Two clients connected with the same client id take the session from each other:
the broker closes the older connection whenever the other one connects (MQTT 5
sends DISCONNECT with reason 0x8E "Session taken over"; MQTT 3.1.1 brokers, and
Mosquitto 2.0 even on MQTT 5, just close the socket). Reconnecting at once and
resetting the backoff after every successful CONNACK turned that into a loop of
about 12 connections a second on each side, logged only as "Unspecified error".

The core's ``Supervisor`` paces every reconnect (its backoff starts over only after
a connection held ``STEADY_SECONDS``). ``ConnectionWatch`` recognises a takeover
from reason 0x8E, or from ``QUICK_LOSSES`` connections in a row that the broker
closed within ``QUICK_SECONDS`` of their CONNACK, logs one ERROR naming the
connector and the duplicate client id, and reports the loss as suspect
(``ConnectionLost(..., suspect=True)`` / ``Hub.down(..., suspect=True)``): the
supervisor then keeps the waits growing until a connection held ``CALM_SECONDS``
(then a new takeover is reported anew).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from connectors.supervision import CALM_SECONDS, STEADY_SECONDS

if TYPE_CHECKING:
    from connectors.mqtt.hub import Hub
    from connectors.mqtt.session import Session

__all__ = ["CALM_SECONDS", "QUICK_LOSSES", "QUICK_SECONDS", "ConnectionWatch"]

QUICK_SECONDS = STEADY_SECONDS
"""A connection the broker closes sooner than this after its CONNACK is 'immediate'."""
QUICK_LOSSES = 3
"""Immediate disconnects in a row that count as a session takeover without reason 0x8E."""


class ConnectionWatch:
    """Takeover detection for the connections of one client id (kept by the hub)."""

    def __init__(self, hub: Hub, client_id: str) -> None:
        self._hub = hub
        self.client_id = client_id
        self._since: float | None = None  # CONNACK time of the current connection
        self._quick = 0  # immediate disconnects in a row
        self._reported = False
        self.taken_over = False
        """The last loss looked like a session takeover (reason 0x8E or repeated)."""

    @property
    def level(self) -> int:
        """Log level of a loss: the takeover ERROR already said it all."""
        return logging.DEBUG if self.taken_over else logging.WARNING

    def connected(self) -> None:
        """The session got its CONNACK."""
        self._since = asyncio.get_running_loop().time()

    def lost(self, session: Session, reason: str) -> str:
        """The session's connection ended (or an attempt failed); returns the health
        detail. ``taken_over`` then says whether to report the loss as suspect."""
        now = asyncio.get_running_loop().time()
        lived = None if self._since is None else now - self._since
        self._since = None
        if lived is not None:
            self._quick = self._quick + 1 if lived < QUICK_SECONDS else 0
        longest = self._hub.supervisor.policy.maximum
        if lived is not None and lived >= max(CALM_SECONDS, 3 * longest):
            self._reported = False  # calm again: a new takeover is reported anew
        certain = session.taken_over
        self.taken_over = certain or self._quick >= QUICK_LOSSES
        if not self.taken_over:
            return reason
        if not self._reported:
            self._reported = True
            cause = (
                "the broker disconnected it with reason 0x8E (Session taken over)"
                if certain
                else f"the broker closed it right after connecting, {self._quick} times in a "
                "row (what brokers do when another client connects with the same id)"
            )
            self._hub.log.error(
                "%s: MQTT session taken over: another client is connected with the same "
                "client id %r: %s. Is a second gateway running with the same gateway id "
                "and connector name, or is client_id set twice? Reconnecting with "
                "growing backoff (up to %.0f s) meanwhile.",
                self._hub.label,
                self.client_id,
                cause,
                longest,
            )
        return f"session taken over: another client uses client id {self.client_id!r} ({reason})"
