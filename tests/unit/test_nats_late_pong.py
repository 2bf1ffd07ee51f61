"""A flush that timed out must not let its late PONG break the read loop (nats-py 2.16)."""

from __future__ import annotations

import asyncio

import pytest

from connectors.nats.client import FAST_PUBLISH, MeshClient


@pytest.mark.skipif(not FAST_PUBLISH, reason="the override is for nats-py 2.16 only")
def test_late_pong_of_a_timed_out_flush_is_ignored() -> None:
    async def run() -> None:
        client = MeshClient()
        loop = asyncio.get_running_loop()
        timed_out, waiting = loop.create_future(), loop.create_future()
        timed_out.cancel()  # what nats-py's flush does on its timeout, leaving it queued
        client._pongs = [timed_out, waiting]
        await client._process_pong()  # nats-py's raised InvalidStateError here
        assert client._pongs == [waiting]
        await client._process_pong()  # the next PONG answers the next PING
        assert waiting.result() is True
        assert client._pongs == []
        assert client._pongs_received == 2

    asyncio.run(run())
