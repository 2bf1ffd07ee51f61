"""The gateway under test as a child process: ``python -m gateway.cli run <config>``.

``GatewayProcess`` starts it (again and again: a restart appends to the same log),
waits for the runtime's "started" line, kills it (SIGKILL, as a crash), terminates it
(SIGTERM, the graceful drain) and samples its resident memory. It dies with the test
process and is registered in ``tests.faults.brokers.LIVE`` like the brokers.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

from tests.faults.brokers import LIVE, ROOT, preexec, rss_kib, terminate

__all__ = ["GatewayProcess"]


class GatewayProcess:
    """``python -m gateway.cli run <config>`` as a child process, with its log file."""

    def __init__(self, config: Path, log: Path, *, log_level: str = "info") -> None:
        self.config = config
        self.log = log
        self.log_level = log_level
        self.process: subprocess.Popen[bytes] | None = None
        self._offset = 0
        self.starts = 0

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> GatewayProcess:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        cmd = [sys.executable, "-m", "gateway.cli", "--log-level", self.log_level, "run"]
        self._offset = self.log.stat().st_size if self.log.exists() else 0
        self.starts += 1
        with self.log.open("ab") as log:
            log.write(f"---- start {time.strftime('%H:%M:%S')}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                [*cmd, "--no-watch", str(self.config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=ROOT,
                preexec_fn=preexec(),
            )
        LIVE.add(self)
        return self

    def current_log(self) -> str:
        """What the current (latest) run logged so far."""
        with self.log.open("rb") as log:
            log.seek(self._offset)
            return log.read().decode(errors="replace")

    async def wait_started(self, timeout: float = 60.0) -> None:
        """Wait for the runtime's 'gateway ... started' line (connectors up, consuming)."""
        deadline = time.monotonic() + timeout
        while " started: " not in self.current_log():
            if not self.running():
                raise RuntimeError(f"gateway exited:\n{self.current_log()[-3000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"gateway did not start:\n{self.current_log()[-3000:]}")
            await asyncio.sleep(0.1)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def rss_kib(self) -> int:
        return rss_kib(self.pid) if self.running() else 0

    def kill(self) -> None:
        """SIGKILL: no drain, no commit (as a crash)."""
        if self.running():
            assert self.process is not None
            self.process.kill()
            self.process.wait()

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM and wait for the graceful exit; returns the exit code."""
        assert self.process is not None
        if self.running():
            self.process.terminate()
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise

    def close(self) -> None:
        if self.process is not None:
            terminate(self.process, 30.0)
        LIVE.discard(self)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""
