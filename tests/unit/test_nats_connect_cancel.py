"""``_end_connect``: nats-py's first-connection loop is cancelled until it has ended.

nats-py 2.16 retries a first connection forever (``max_reconnect_attempts: -1``) and
swallows a cancel that lands in its clean-up between two tries; one cancel left the
loop running, and the process then never exited (asyncio.run waits for it).
``tests/security/test_stop_while_connecting.py`` is the real-process proof.
"""

from __future__ import annotations

import asyncio

from connectors.nats.link import _end_connect


async def test_a_connect_loop_that_swallows_cancels_is_cancelled_until_it_ends() -> None:
    swallowed = 0

    async def connect_loop() -> None:  # like nats-py's: a cancel in its clean-up is lost
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if swallowed == 2:
                    raise
                swallowed += 1

    connecting = asyncio.ensure_future(connect_loop())
    await asyncio.sleep(0)
    async with asyncio.timeout(5):
        await _end_connect(connecting)
    assert connecting.cancelled()
    assert swallowed == 2


async def test_an_ended_connect_is_left_alone_and_its_error_retrieved() -> None:
    async def refused() -> None:
        raise OSError("refused")

    connecting = asyncio.ensure_future(refused())
    await asyncio.wait({connecting})
    await _end_connect(connecting)  # no cancel, no "exception was never retrieved"
    assert not connecting.cancelled()
