"""The gateway under test: ``python -m gateway.cli run cfg.yaml`` in a child process.

A separate process keeps the gateway's CPU time and memory apart from the load
generator's: CPU seconds (user + system, all threads) come from
``/proc/<pid>/stat``, the peak resident set (VmHWM) from ``/proc/<pid>/status``.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

__all__ = ["ROOT", "GatewayProcess"]

ROOT = Path(__file__).resolve().parents[1]
_TICKS = os.sysconf("SC_CLK_TCK")


class GatewayProcess:
    """Start, watch and stop one gateway process for one scenario."""

    def __init__(self, config: dict[str, Any], workdir: Path, profiler: str | None = None) -> None:
        self.config_path = workdir / "gateway.yaml"
        self.log_path = workdir / "gateway.log"
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.profiler = shlex.split(profiler) if profiler else []
        self.process: subprocess.Popen[bytes] | None = None
        self._profiling: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        cmd = [
            sys.executable,
            "-m",
            "gateway.cli",
            "--log-level",
            "warning",
            "run",
            "--no-watch",
            str(self.config_path),
        ]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def cpu_seconds(self) -> float:
        """User + system CPU time of the gateway so far (every thread)."""
        text = Path(f"/proc/{self.pid}/stat").read_text()
        fields = text[text.rindex(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / _TICKS

    def peak_rss_bytes(self) -> int:
        """The peak resident set size (VmHWM) of the gateway process."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        return 0

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def start_profiler(self) -> None:
        """Attach the profiler command, if one was given: ``{pid}`` in it is replaced by
        the gateway's pid, else ``--pid PID`` is appended (py-spy)."""
        if self.profiler:
            pid = str(self.pid)
            if any("{pid}" in part for part in self.profiler):
                cmd = [part.replace("{pid}", pid) for part in self.profiler]
            else:
                cmd = [*self.profiler, "--pid", pid]
            self._profiling = subprocess.Popen(cmd, stdin=subprocess.DEVNULL)

    def stop_profiler(self) -> None:
        """SIGINT the profiler (py-spy writes its output then) and wait for it."""
        profiling, self._profiling = self._profiling, None
        if profiling is not None and profiling.poll() is None:
            profiling.send_signal(signal.SIGINT)
            try:
                profiling.wait(60)
            except subprocess.TimeoutExpired:
                profiling.kill()

    def stop(self, grace: float = 30.0) -> int | None:
        """SIGTERM (drain), then SIGKILL after ``grace`` seconds; the exit code."""
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(grace)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return process.returncode
