"""What the sessions of one MQTT connector share: options, health and the open sessions.

A connector holds one publishing session and one session per consumed source (each
its own persistent MQTT session, so one slow route cannot exhaust another's Receive
Maximum). ``Hub`` creates them, closes them all on ``close()``, and folds their
states into the connector's ``Health``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from connectors.backoff import Backoff
from connectors.base import Health, HealthState
from connectors.mqtt.config import MqttOptions
from connectors.mqtt.session import Session
from connectors.mqtt.takeover import ConnectionWatch

__all__ = ["Hub"]


class Hub:
    """Registry of a connector's live sessions, and its health bookkeeping."""

    def __init__(
        self,
        name: str,
        options: MqttOptions,
        health: Health,
        log: logging.Logger,
        label: str = "",
        new_backoff: Callable[[], Backoff] = Backoff,
    ):
        self.name = name
        self.options = options
        self.log = log
        self.label = label or f"connector {name} (mqtt {options.endpoint()})"
        """How log lines name the connector (``connector NAME (mqtt URL)``)."""
        self.new_backoff = new_backoff
        """An attempt counter of the connector's (shared) reconnect policy."""
        self.base_client_id = options.client_id or f"meshgate-{name}"
        self.closing = False
        self._health = health
        self._sessions: set[Session] = set()
        self._down: dict[str, str] = {}
        self._owners: dict[str, object] = {}

    def session(self, client_id: str, *, clean_start: bool, session_expiry: int) -> Session:
        """A new, not yet connected session, closed with the connector."""
        session = Session(
            self.options,
            client_id,
            clean_start=clean_start,
            session_expiry=session_expiry,
            log=self.log,
            connector=self.name,
        )
        self._sessions.add(session)
        return session

    def forget(self, session: Session) -> None:
        self._sessions.discard(session)

    def sessions(self) -> list[Session]:
        return list(self._sessions)

    def claim(self, client_id: str, owner: object) -> None:
        """Make ``owner`` the only stream using ``client_id``; an older one stops."""
        self._owners[client_id] = owner
        for session in self._sessions:
            if session.client_id == client_id:
                session.abort("taken over by a newer consumer of the same source")

    def owns(self, client_id: str, owner: object) -> bool:
        return self._owners.get(client_id) is owner

    def release(self, client_id: str, owner: object) -> None:
        if self._owners.get(client_id) is owner:
            del self._owners[client_id]
        self._settle(client_id)

    def watch(self, client_id: str) -> ConnectionWatch:
        """Backoff and takeover detection for one session's reconnect loop."""
        return ConnectionWatch(self, client_id)

    def down(self, key: str, detail: str) -> None:
        """Session ``key`` lost its connection and is reconnecting."""
        self._down[key] = detail
        if not self.closing:
            self._health.state = HealthState.RECONNECTING
            self._health.detail = f"{key}: {detail}"

    def up(self, key: str) -> None:
        """Session ``key`` is connected (again): a reconnect if it was down."""
        if key in self._down:
            self._health.reconnects += 1
        self._settle(key)

    def _settle(self, key: str) -> None:
        self._down.pop(key, None)
        if self.closing or self._health.state is HealthState.STARTING:
            return
        if self._down:
            key, detail = next(iter(self._down.items()))
            self._health.state = HealthState.RECONNECTING
            self._health.detail = f"{key}: {detail}"
        else:
            self._health.state = HealthState.UP
            self._health.detail = ""

    async def close(self) -> None:
        """Close every session cleanly (persistent sessions stay on the broker)."""
        self.closing = True
        for session in self.sessions():
            await session.close()
            self.forget(session)
        self._health.state = HealthState.CLOSED
        self._health.detail = ""
