"""DropReport: every core NATS drop counted, the warnings throttled and complete."""

from __future__ import annotations

import asyncio
import logging

import pytest

from connectors.base import Health
from connectors.nats.drops import DropReport

LOGGER = "test.drops"


class _Signal(logging.Handler):
    """Sets an event on the next record."""

    def __init__(self, event: asyncio.Event) -> None:
        super().__init__()
        self._event = event

    def emit(self, record: logging.LogRecord) -> None:
        self._event.set()


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


async def test_first_drop_at_once_then_one_line_per_period(
    caplog: pytest.LogCaptureFixture,
) -> None:
    health = Health()
    report = DropReport("edge", health, logging.getLogger(LOGGER), every=0.2)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        report.note("a.b")
        assert health.dropped == 1
        assert len(_lines(caplog)) == 1
        assert "'a.b': 1 message(s) dropped since the last warning, 1 in all" in _lines(caplog)[0]
        for _ in range(5):
            report.note("a.c")
        assert health.dropped == report.total == 6
        assert len(_lines(caplog)) == 1  # held back, counted
        logged = asyncio.Event()
        handler = _Signal(logged)
        logging.getLogger(LOGGER).addHandler(handler)
        try:
            async with asyncio.timeout(5):  # the timer reports them at the end of the period
                await logged.wait()
        finally:
            logging.getLogger(LOGGER).removeHandler(handler)
    assert "'a.c': 5 message(s) dropped since the last warning, 6 in all" in _lines(caplog)[1]


async def test_flush_reports_held_drops_once(caplog: pytest.LogCaptureFixture) -> None:
    report = DropReport("edge", Health(), logging.getLogger(LOGGER), every=60)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        report.note("x")
        report.note("x")
        report.flush()  # what closing the link does
        report.flush()
    lines = _lines(caplog)
    assert len(lines) == 2 and "1 message(s) dropped since the last warning, 2 in all" in lines[1]
