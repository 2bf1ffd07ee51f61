"""`meshgate demo | head`: a closed stdout stops the demo without a traceback, and the
JetStream stream it created on the shared NATS server is deleted."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys

import nats

from tests.brokers import require_port


async def _demo_streams() -> list[str]:
    client = await nats.connect("nats://127.0.0.1:4222")
    try:
        return [
            info.config.name or ""
            for info in await client.jetstream().streams_info()
            if (info.config.name or "").startswith("DEMO_")
        ]
    finally:
        await client.close()


def test_closed_pipe_stops_the_demo_and_removes_its_stream() -> None:
    require_port("NATS", 4222)
    demo = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "demo", "--seconds", "60", "--rate", "5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert demo.stdout is not None and demo.stderr is not None
    stream = None
    try:
        for line in demo.stdout:  # until the first frame: the gateway runs, the stream exists
            found = re.search(r"stream: (DEMO_\w+)", line)
            stream = stream or (found.group(1) if found else None)
            if line.startswith("--- meshgate demo"):
                break
        assert stream is not None and stream in asyncio.run(_demo_streams())
        demo.stdout.close()  # what `| head` does
        assert demo.wait(timeout=60) == 0
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    stderr = demo.stderr.read()
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr, stderr
    assert stream not in asyncio.run(_demo_streams())
