"""The local dead-letter store on its own: durable entries, the size bound, sharing."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from gateway.dlstore import (
    FILE_NAME,
    STATE_DIR_ENV,
    DeadLetterStore,
    StoreError,
    StoreFull,
    default_state_dir,
)


def letter(payload: bytes = b"payload", **changes: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "route": "r",
        "connector": "c",
        "address": "a/b",
        "headers": {"x-id": "1", "bad": "\udcff"},  # a lone surrogate, as header_text makes
        "payload": payload,
        "content_type": "application/json",
        "key": "k",
        "native_id": "topic/0/7",
        "coordinates": {"topic": "a/b", "partition": 0, "offset": 7},
        "reason": "PublishRejected",
        "error": "too large",
        "target": "nats{'subject': 'x'}",
        "attempts": 1,
        "event_id": "e1",
    }
    return fields | changes


async def test_entries_survive_a_reopen_byte_for_byte(tmp_path: Path) -> None:
    store = DeadLetterStore(tmp_path / "state")
    await store.open()
    first = await store.put(**letter(b"\x00\xffbinary"))
    second = await store.put(**letter(route="other"))
    await store.close()
    again = DeadLetterStore(tmp_path / "state")
    entries = await again.entries()
    assert [e.id for e in entries] == [first, second]
    assert entries[0].payload == b"\x00\xffbinary"
    assert entries[0].headers["x-id"] == "1"
    assert entries[0].coordinates == {"topic": "a/b", "partition": 0, "offset": 7}
    assert (entries[0].key, entries[0].native_id, entries[0].event_id) == ("k", "topic/0/7", "e1")
    assert [e.id for e in await again.entries("other")] == [second]
    assert await again.remove([first, 999]) == 1
    assert await again.get(first) is None and (await again.get(second)) is not None
    await again.close()


async def test_wal_with_full_sync(tmp_path: Path) -> None:
    store = DeadLetterStore(tmp_path)
    await store.open()
    await store.put(**letter())
    db = sqlite3.connect(tmp_path / FILE_NAME)
    assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    db.close()
    await store.close()


async def test_the_bound_refuses_and_a_purge_elsewhere_makes_room(tmp_path: Path) -> None:
    store = DeadLetterStore(tmp_path, max_bytes=3000)
    await store.open()
    entry = await store.put(**letter(b"x" * 2000))
    with pytest.raises(StoreFull, match="does not fit"):
        await store.put(**letter(b"y" * 2000))
    # Another process (``meshgate dlq purge``) removes the entry from the same file.
    other = DeadLetterStore(tmp_path)
    assert await other.remove([entry]) == 1
    await other.close()
    await store.put(**letter(b"y" * 2000))
    assert 2000 < await store.used_bytes() < 3000
    await store.close()


async def test_concurrent_writers_share_the_file(tmp_path: Path) -> None:
    stores = [DeadLetterStore(tmp_path) for _ in range(3)]
    await asyncio.gather(*(s.open() for s in stores))
    await asyncio.gather(*(s.put(**letter(b"%d" % n)) for n in range(30) for s in stores))
    assert len(await stores[0].entries()) == 90
    await asyncio.gather(*(s.close() for s in stores))


async def test_an_unwritable_state_dir_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    store = DeadLetterStore(blocker / "state")
    with pytest.raises(StoreError, match=r"cannot open the dead-letter store .*state"):
        await store.open()
    await store.close()


def test_default_state_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(STATE_DIR_ENV, raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert default_state_dir("edge-1") == tmp_path / "meshgate" / "edge-1"
    monkeypatch.setenv(STATE_DIR_ENV, "/var/lib/meshgate")
    assert default_state_dir("edge-1") == Path("/var/lib/meshgate")
