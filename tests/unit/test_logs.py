"""Log output: JSON lines, quieter client libraries, the minute summary, global options."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from gateway import logs
from gateway.runtime import RouteStats

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def restore_logging() -> object:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def test_json_lines_carry_extra_fields_and_exceptions(capsys: pytest.CaptureFixture[str]) -> None:
    logs.setup("info", "json")
    log = logging.getLogger("meshgate.test")
    log.warning("connector %s down", "edge", extra={"connector": "edge"})
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("bug")
    first, second = (json.loads(line) for line in capsys.readouterr().err.splitlines())
    assert first["level"] == "WARNING" and first["logger"] == "meshgate.test"
    assert first["message"] == "connector edge down" and first["connector"] == "edge"
    assert first["time"].endswith("Z")
    assert "ValueError: boom" in second["exception"]


def test_client_library_errors_become_one_line_warnings(
    capsys: pytest.CaptureFixture[str],
) -> None:
    logs.setup("info", "text")
    try:
        raise ConnectionResetError("reset by peer")
    except ConnectionResetError:
        logging.getLogger("aiormq.connection").exception("Unexpected connection close")
    (line,) = capsys.readouterr().err.splitlines()
    assert " WARNING " in line
    assert line.endswith("Unexpected connection close (ConnectionResetError: reset by peer)")


async def test_summary_lists_every_route() -> None:
    stats = {"orders": RouteStats(received=3, delivered=2, filtered=1)}
    logged = asyncio.Event()
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())
            logged.set()

    log = logging.getLogger("meshgate.test-summary")
    log.addHandler(Collect())
    log.setLevel(logging.INFO)
    task = asyncio.create_task(logs.summarize(lambda: stats, interval=0.01, log=log))
    await asyncio.wait_for(logged.wait(), 5)
    task.cancel()
    assert lines[0].startswith("routes: orders[received=3 delivered=2 filtered=1 ")
    assert "duration" not in lines[0] and "last_error" not in lines[0]  # counters only


def test_global_options_after_the_command_and_invalid_values_refused(tmp_path: Path) -> None:
    config = tmp_path / "gw.yaml"
    config.write_text(
        "gateway: {id: g}\nconnectors: {m: {type: memory}}\n"
        "routes: [{name: r, from: {connector: m, topic: a}, to: [{connector: m, topic: b}]}]\n"
    )

    def meshgate(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "gateway.cli", *args],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=60,
            check=False,
        )

    assert meshgate("validate", str(config), "--log-level", "DEBUG").returncode == 0
    assert meshgate("dlq", "list", str(config), "--local", "--log-format", "json").returncode == 0
    refused = meshgate("validate", str(config), "--log-level", "verbose")
    assert refused.returncode == 2 and "invalid choice: 'verbose'" in refused.stderr
