"""What the sessions of one MQTT connector share: options, supervisor and the open sessions.

A connector holds one publishing session and one session per consumed source (each
its own persistent MQTT session, so one slow route cannot exhaust another's Receive
Maximum). ``Hub`` creates them and closes them all on ``close()``; each session's
losses and returns are reported to the core's ``Supervisor`` under its client id
(one health state and one reconnect count for the connector).
"""

from __future__ import annotations

import logging

from connectors.mqtt.config import MqttOptions
from connectors.mqtt.session import Session
from connectors.mqtt.takeover import ConnectionWatch
from connectors.supervision import Supervisor

__all__ = ["Hub"]


class Hub:
    """Registry of a connector's live sessions, reporting them to its supervisor."""

    def __init__(
        self, name: str, options: MqttOptions, supervisor: Supervisor, log: logging.Logger
    ):
        self.name = name
        self.options = options
        self.log = log
        self.supervisor = supervisor
        self.base_client_id = options.client_id or f"meshgate-{name}"
        self.closing = False
        self.resumed: set[str] = set()
        """Client ids whose stream connected before: MQTT 5 resumes their session when
        the core subscribes again after a loss."""
        self._sessions: set[Session] = set()
        self._owners: dict[str, object] = {}
        self._watches: dict[str, ConnectionWatch] = {}

    @property
    def label(self) -> str:
        """How log lines name the connector (``connector NAME (mqtt URL)``)."""
        return self.supervisor.label

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

    def release(self, client_id: str, owner: object, *, stopped: bool) -> None:
        """``owner`` no longer uses ``client_id``; ``stopped``: for good (not a loss),
        so the connection is no longer part of the connector's health."""
        if self._owners.get(client_id) is owner:
            del self._owners[client_id]
            if stopped:  # a new stream of this source starts afresh (clean_start)
                self.supervisor.forget(client_id)
                self.resumed.discard(client_id)

    def watch(self, client_id: str) -> ConnectionWatch:
        """Takeover detection of ``client_id`` (kept across its connections)."""
        watch = self._watches.get(client_id)
        if watch is None:
            watch = self._watches[client_id] = ConnectionWatch(self, client_id)
        return watch

    def down(self, key: str, detail: str, *, suspect: bool = False) -> None:
        """Session ``key`` lost its connection (or could not connect)."""
        if not self.closing:
            self.supervisor.lost(key, detail, suspect=suspect)

    def up(self, key: str) -> None:
        """Session ``key`` is connected (again): a reconnect if it was down."""
        self.supervisor.connected(key)

    async def close(self) -> None:
        """Close every session cleanly (persistent sessions stay on the broker)."""
        self.closing = True
        for session in self.sessions():
            await session.close()
            self.forget(session)
        self.supervisor.closed()
