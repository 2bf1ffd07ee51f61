"""Hot reload: re-read the config file on SIGHUP or when it changes on disk.

The new file is validated completely first; if it has any problem the running
configuration stays as it is and the problems are logged. Only then does
``Gateway.reload`` apply the difference (see its docstring for what is kept).
The file is polled (a hash of its content) rather than watched with
inotify, so it also works on network and container-mounted files.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from pathlib import Path

from connectors.errors import ConnectorError
from gateway import heap
from gateway.config import load_config
from gateway.errors import ConfigError
from gateway.runtime import Gateway

__all__ = ["reload_from", "watch_config"]

log = logging.getLogger("meshgate.reload")


def _digest(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


async def reload_from(path: str | Path, gateway: Gateway) -> bool:
    """Validate ``path`` and apply it; False (old config kept) when it is invalid."""
    try:
        config = load_config(path)
    except ConfigError as exc:
        log.error("config reload rejected, the running config stays in force:\n%s", exc)
        return False
    try:
        await gateway.reload(config)
    except (ConnectorError, OSError) as exc:
        # Only with fail_fast: otherwise a new connector that is down is retried in the
        # background and the routes that need it wait.
        log.error("config reload failed to start a connector, nothing changed: %s", exc)
        return False
    heap.resettle()  # the replaced config's objects were frozen at start (gateway/heap.py)
    return True


async def watch_config(
    path: str | Path, gateway: Gateway, trigger: asyncio.Event, interval: float | None = 2.0
) -> None:
    """Reload when ``trigger`` is set (SIGHUP) or, polled every ``interval`` seconds
    (None: never), the file's content changed."""
    file = Path(path)
    seen = _digest(file)
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(trigger.wait(), interval)
        forced = trigger.is_set()
        trigger.clear()
        current = _digest(file)
        if current is None:
            continue  # being replaced (editors write a new file and rename it)
        if forced or current != seen:
            seen = current
            log.info("reloading %s (%s)", file, "SIGHUP" if forced else "file changed")
            await reload_from(file, gateway)
