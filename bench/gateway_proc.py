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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

__all__ = ["ROOT", "GatewayProcess"]

ROOT = Path(__file__).resolve().parents[1]
_TICKS = os.sysconf("SC_CLK_TCK")


class GatewayProcess:
    """Start, watch and stop the gateway process(es) of one scenario.

    With several ``configs``, one process each (scale-out on one source through the
    broker's work sharing): CPU seconds are their sum, the peak RSS is the largest,
    the profiler attaches to the first.
    """

    def __init__(
        self,
        configs: list[dict[str, Any]],
        workdir: Path,
        profiler: str | None = None,
        module: str | None = None,
    ) -> None:
        # module: run ``python -m <module> <config>`` instead of the gateway (a peer
        # bridge of bench.peers, measured the same way)
        self.module = module
        self.config_paths: list[Path] = []
        self.log_paths: list[Path] = []
        for index, config in enumerate(configs):
            suffix = "" if len(configs) == 1 else f"-{index}"
            path = workdir / f"gateway{suffix}.yaml"
            path.write_text(yaml.safe_dump(config, sort_keys=False))
            self.config_paths.append(path)
            self.log_paths.append(workdir / f"gateway{suffix}.log")
        self.profiler = shlex.split(profiler) if profiler else []
        self.processes: list[subprocess.Popen[bytes]] = []
        self._profiling: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        for config_path, log_path in zip(self.config_paths, self.log_paths, strict=True):
            cmd = [
                sys.executable,
                "-m",
                "gateway.cli",
                "--log-level",
                "warning",
                "run",
                "--no-watch",
                str(config_path),
            ]
            if self.module is not None:
                cmd = [sys.executable, "-m", self.module, str(config_path)]
            with log_path.open("wb") as log:
                self.processes.append(
                    subprocess.Popen(
                        cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log
                    )
                )

    @property
    def pid(self) -> int:
        return self.processes[0].pid

    def alive(self) -> bool:
        return bool(self.processes) and all(p.poll() is None for p in self.processes)

    def cpu_seconds(self) -> float:
        """User + system CPU time of the gateway process(es) so far (every thread)."""
        total = 0.0
        for process in self.processes:
            text = Path(f"/proc/{process.pid}/stat").read_text()
            fields = text[text.rindex(")") + 2 :].split()
            total += (int(fields[11]) + int(fields[12])) / _TICKS
        return total

    def peak_rss_bytes(self) -> int:
        """The largest peak resident set size (VmHWM) of the gateway process(es)."""
        peak = 0
        for process in self.processes:
            for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]) * 1024)
        return peak

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        """SIGSTOP every gateway process for the block; SIGCONT always follows."""
        for process in self.processes:
            process.send_signal(signal.SIGSTOP)
        try:
            yield
        finally:
            for process in self.processes:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGCONT)

    def log_tail(self, lines: int = 30) -> str:
        tails = []
        for log_path in self.log_paths:
            with contextlib.suppress(OSError):
                text = log_path.read_text(errors="replace").splitlines()[-lines:]
                tails.append(f"== {log_path.name}\n" + "\n".join(text))
        return "\n".join(tails)

    def start_profiler(self) -> None:
        """Attach the profiler command, if one was given: ``{pid}`` in it is replaced by
        the (first) gateway's pid, else ``--pid PID`` is appended (py-spy)."""
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
        """SIGTERM (drain), then SIGKILL after ``grace`` seconds; the worst exit code."""
        if not self.processes:
            return None
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        codes = []
        for process in self.processes:
            try:
                process.wait(grace)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            codes.append(process.returncode)
        return next((code for code in codes if code), codes[0])
