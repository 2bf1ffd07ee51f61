"""The local dead-letter store: the last resort that keeps a route from stalling.

When a message can be neither delivered nor dead-lettered (the target refused it for
good and so did the route's ``dead_letter``, or the route has no ``dead_letter`` and
the failure is permanent), the runtime writes the original message here, waits until
SQLite has synced it to disk, and only then acks the source. So no route ever stalls
behind one poison message, and nothing is dropped. ``meshgate dlq`` reads, redrives
and purges the entries.

One SQLite file, ``<state_dir>/deadletters.sqlite3``, in WAL mode with
``synchronous=FULL``: a commit returns only once the write-ahead log is fsynced.
Writes run in one worker thread so the event loop never waits on the disk. Several
processes may share the file (replicas on one host, the ``dlq`` command while the
gateway runs): SQLite locks it and the busy timeout waits for the other writer.

The store is bounded (``max_bytes`` of payloads and headers): past it ``put`` raises
``StoreFull`` and the runtime stops the route loudly instead of discarding anything.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import orjson

from routing.errors import MeshgateError

__all__ = [
    "DEFAULT_MAX_BYTES",
    "STATE_DIR_ENV",
    "DeadLetterStore",
    "StoreError",
    "StoreFull",
    "StoredLetter",
    "default_state_dir",
]

STATE_DIR_ENV: Final = "MESHGATE_STATE_DIR"
DEFAULT_MAX_BYTES: Final = 1 << 30  # 1 GiB
FILE_NAME: Final = "deadletters.sqlite3"
_BUSY_TIMEOUT_MS: Final = 10_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS letters (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    stored_at   REAL    NOT NULL,
    route       TEXT    NOT NULL,
    connector   TEXT    NOT NULL,
    address     TEXT    NOT NULL,
    headers     TEXT    NOT NULL,
    payload     BLOB    NOT NULL,
    content_type TEXT,
    key         TEXT,
    native_id   TEXT,
    coordinates TEXT    NOT NULL,
    reason      TEXT    NOT NULL,
    error       TEXT    NOT NULL,
    target      TEXT,
    attempts    INTEGER NOT NULL,
    event_id    TEXT,
    size        INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS letters_route ON letters (route);
"""
_COLUMNS: Final = (
    "id, stored_at, route, connector, address, headers, payload, content_type, key, "
    "native_id, coordinates, reason, error, target, attempts, event_id"
)


class StoreError(MeshgateError):
    """The local dead-letter store cannot be opened or written."""


class StoreFull(StoreError):
    """Writing would take the store past its size limit."""


def default_state_dir(gateway_id: str) -> Path:
    """Where a gateway keeps its state when the config names no ``state_dir``:
    ``$MESHGATE_STATE_DIR``, else ``$XDG_STATE_HOME/meshgate/<id>`` (``~/.local/state``)."""
    override = os.environ.get(STATE_DIR_ENV)
    if override:
        return Path(override).expanduser()
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "meshgate" / gateway_id


@dataclass(frozen=True, slots=True)
class StoredLetter:
    """One message kept in the store: the original, byte for byte, and why it is here."""

    id: int
    stored_at: float
    route: str
    connector: str
    """The source connector: the message is redriven there by default."""
    address: str
    headers: Mapping[str, str]
    payload: bytes
    content_type: str | None
    key: str | None
    native_id: str | None
    coordinates: Mapping[str, Any]
    reason: str
    """The error class, as in a dead letter's ``dlreason``."""
    error: str
    target: str | None
    """The target (or dead-letter target) that refused it, when publishing failed."""
    attempts: int
    event_id: str | None

    @property
    def size(self) -> int:
        return len(self.payload)


def _row(values: Sequence[Any]) -> StoredLetter:
    (id_, stored_at, route, connector, address, headers, payload, content_type, key,
     native_id, coordinates, reason, error, target, attempts, event_id) = values  # fmt: skip
    return StoredLetter(
        id=id_,
        stored_at=stored_at,
        route=route,
        connector=connector,
        address=address,
        headers=json.loads(headers),  # not orjson: it refuses escaped lone surrogates
        payload=bytes(payload),
        content_type=content_type,
        key=key,
        native_id=native_id,
        coordinates=json.loads(coordinates),
        reason=reason,
        error=error,
        target=target,
        attempts=attempts,
        event_id=event_id,
    )


def _json(value: Mapping[str, Any]) -> str:
    # Header texts may hold lone surrogates (undecodable bytes): keep them escaped.
    try:
        return orjson.dumps(dict(value)).decode()
    except orjson.JSONEncodeError:
        return json.dumps(dict(value), ensure_ascii=True, default=str)


class DeadLetterStore:
    """The SQLite file of one gateway; every method but ``path`` runs off the loop."""

    def __init__(self, state_dir: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.path = state_dir / FILE_NAME
        self.max_bytes = max_bytes
        self._db: sqlite3.Connection | None = None
        self._bytes = 0
        # One thread owns the connection: writes are serialized and never block the loop.
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="meshgate-dlstore")

    # -- lifecycle ------------------------------------------------------------------

    async def open(self) -> None:
        """Create the directory and the file if needed; ``StoreError`` says why not."""
        await self._call(self._connection)

    def _connection(self) -> sqlite3.Connection:
        if self._db is not None:
            return self._db
        deadline = time.monotonic() + _BUSY_TIMEOUT_MS / 1000
        while True:
            try:
                self._db = self._open()
                return self._db
            except sqlite3.OperationalError as exc:
                # Switching a new file to WAL needs an exclusive lock that SQLite does not
                # wait for: a second process opening the same new file at that moment gets
                # "database is locked" at once. It is free again within milliseconds.
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise StoreError(
                        f"cannot open the dead-letter store {self.path}: {exc}"
                    ) from exc
                time.sleep(0.02)
            except (OSError, sqlite3.Error) as exc:
                raise StoreError(f"cannot open the dead-letter store {self.path}: {exc}") from exc

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")  # fsync the WAL at every commit
            db.executescript(_SCHEMA)
            (self._bytes,) = db.execute("SELECT COALESCE(SUM(size), 0) FROM letters").fetchone()
        except BaseException:
            db.close()
            raise
        return db

    async def close(self) -> None:
        await self._call(self._close)
        self._thread.shutdown(wait=True)

    def _close(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            db.close()

    async def _call(self, function: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._thread, function, *args)

    # -- writing --------------------------------------------------------------------

    async def put(
        self,
        *,
        route: str,
        connector: str,
        address: str,
        headers: Mapping[str, str],
        payload: bytes,
        content_type: str | None,
        key: str | None,
        native_id: str | None,
        coordinates: Mapping[str, Any],
        reason: str,
        error: str,
        target: str | None,
        attempts: int,
        event_id: str | None,
    ) -> int:
        """Store one message durably (synced to disk) and return its entry id.

        Raises ``StoreFull`` past ``max_bytes`` and ``StoreError`` when the disk fails.
        """
        headers_json = _json(headers)
        size = len(payload) + len(headers_json)
        row = (
            time.time(),
            route,
            connector,
            address,
            headers_json,
            payload,
            content_type,
            key,
            native_id,
            _json(coordinates),
            reason,
            error,
            target,
            attempts,
            event_id,
            size,
        )
        result: int = await self._call(self._insert, row, size)
        return result

    def _insert(self, row: tuple[Any, ...], size: int) -> int:
        try:
            db = self._connection()
            if self._bytes + size > self.max_bytes:
                # Another process (``dlq purge``) may have made room meanwhile.
                (self._bytes,) = db.execute("SELECT COALESCE(SUM(size), 0) FROM letters").fetchone()
                if self._bytes + size > self.max_bytes:
                    raise StoreFull(
                        f"the dead-letter store {self.path} holds {self._bytes} of at most "
                        f"{self.max_bytes} bytes; a {size}-byte message does not fit"
                    )
            cursor = db.execute(
                "INSERT INTO letters (stored_at, route, connector, address, headers, payload, "
                "content_type, key, native_id, coordinates, reason, error, target, attempts, "
                "event_id, size) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write to the dead-letter store {self.path}: {exc}") from exc
        self._bytes += size
        return int(cursor.lastrowid or 0)

    # -- reading and removing (the ``dlq`` command) -----------------------------------

    async def entries(self, route: str | None = None) -> list[StoredLetter]:
        """Every entry (oldest first), or those of one route."""
        result: list[StoredLetter] = await self._call(self._select, route)
        return result

    def _select(self, route: str | None) -> list[StoredLetter]:
        query = f"SELECT {_COLUMNS} FROM letters"
        args: tuple[Any, ...] = ()
        if route is not None:
            query, args = query + " WHERE route = ?", (route,)
        try:
            rows = self._connection().execute(query + " ORDER BY id", args).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the dead-letter store {self.path}: {exc}") from exc
        return [_row(row) for row in rows]

    async def get(self, entry: int) -> StoredLetter | None:
        result: StoredLetter | None = await self._call(self._get, entry)
        return result

    def _get(self, entry: int) -> StoredLetter | None:
        try:
            row = (
                self._connection()
                .execute(f"SELECT {_COLUMNS} FROM letters WHERE id = ?", (entry,))
                .fetchone()
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the dead-letter store {self.path}: {exc}") from exc
        return None if row is None else _row(row)

    async def remove(self, entries: Sequence[int]) -> int:
        """Delete entries (after a confirmed redrive, or a purge); returns how many."""
        result: int = await self._call(self._delete, list(entries))
        return result

    def _delete(self, entries: list[int]) -> int:
        try:
            db = self._connection()
            removed = 0
            for entry in entries:
                removed += db.execute("DELETE FROM letters WHERE id = ?", (entry,)).rowcount
            (self._bytes,) = db.execute("SELECT COALESCE(SUM(size), 0) FROM letters").fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write to the dead-letter store {self.path}: {exc}") from exc
        return removed

    async def used_bytes(self) -> int:
        result: int = await self._call(self._used)
        return result

    def _used(self) -> int:
        (self._bytes,) = (
            self._connection().execute("SELECT COALESCE(SUM(size), 0) FROM letters").fetchone()
        )
        return self._bytes
