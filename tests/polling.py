"""Waiting for a condition with a deadline, the tests' way (never a fixed sleep)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

__all__ = ["eventually", "until"]


async def eventually(check: Callable[[], object], timeout: float = 5.0, step: float = 0.01) -> None:
    """Poll ``check`` every ``step`` s until it is truthy; AssertionError after ``timeout`` s."""
    if not await until(check, timeout, step):
        raise AssertionError(f"condition not met within {timeout} s")


async def until(check: Callable[[], object], seconds: float, step: float = 0.05) -> bool:
    """Poll ``check`` every ``step`` s: True once it is truthy, False after ``seconds``."""
    deadline = asyncio.get_running_loop().time() + seconds
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(step)
    return True
