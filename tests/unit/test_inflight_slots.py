"""``gateway.inflight.Slots``: the pipeline's max_in_flight bound, without a coroutine
per slot taken while one is free (pure asyncio, no broker)."""

from __future__ import annotations

import asyncio

import pytest

from gateway.inflight import Slots


def test_free_slots_are_taken_at_once_and_then_refused() -> None:
    slots = Slots(2)
    assert slots.take_now() and slots.take_now()
    assert not slots.take_now()
    slots.release()
    assert slots.take_now()


async def test_a_full_pipeline_waits_for_a_release() -> None:
    slots = Slots(1)
    assert slots.take_now()
    waiting = asyncio.create_task(slots.take())
    await asyncio.sleep(0)
    assert not waiting.done()  # no slot: it waits
    slots.release()
    await asyncio.wait_for(waiting, 1)
    assert slots.free == 0  # the released slot went to the waiter


async def test_a_cancelled_wait_takes_nothing() -> None:
    slots = Slots(1)
    assert slots.take_now()
    waiting = asyncio.create_task(slots.take())
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    slots.release()  # no waiter left to wake: the slot is free again
    assert slots.free == 1 and slots.take_now()
