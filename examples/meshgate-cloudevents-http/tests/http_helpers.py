"""Helpers of the plugin's tests: loopback only, real HTTP, real NATS."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Callable
from typing import Any

from meshgate_cloudevents_http import HttpConnector, HttpOptions, HttpSource, HttpTarget

from routing.event import CloudEvent

NATS_URL = os.environ.get("MESHGATE_TEST_NATS_URL", "nats://127.0.0.1:4222")


def unique(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def sample_event(n: int = 1, **changes: Any) -> CloudEvent:
    event = CloudEvent(
        id=f"evt-{n}",
        source="urn:meshgate:http-test",
        type="com.example.http",
        subject="unit/1",
        time="2026-12-02T10:00:00.123Z",
        datacontenttype="application/json",
        extensions={"comexampleflag": 'Euro € 😀 "quoted" 100%'},
        data=b'{"n":%d}' % n,
    )
    return event.replace(**changes) if changes else event


async def until(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Wait for ``check`` with a deadline (no fixed sleeps)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


def http_connector(**options: Any) -> HttpConnector:
    values: dict[str, Any] = {"port": 0, "retry_initial_seconds": 0.05, "retry_max_seconds": 0.2}
    values.update(options)
    return HttpConnector(unique("http"), HttpOptions.model_validate(values))


def source(path: str | None = None, **options: Any) -> HttpSource:
    return HttpSource.model_validate(
        {"connector": "c", "path": path or "/" + unique("p"), **options}
    )


def target(url: str, **options: Any) -> HttpTarget:
    return HttpTarget.model_validate({"connector": "c", "url": url, **options})
