"""``meshgate validate --connect``: the config against the live brokers.

Every connector is started once (one connection attempt, bounded by ``seconds``);
each one that implements the optional ``connectors.base.Preflight`` hook then checks
that the broker has what the routes need: JetStream streams, AMQP queues and
exchanges, Kafka topics. Nothing is created and nothing is consumed or published.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

from connectors.base import Connector, Preflight
from gateway.config import GatewayConfig
from routing.errors import MeshgateError

__all__ = ["Report", "check"]

AnyConnector = Connector[Any, Any, Any]


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)
    problems: int = 0


def _needs(config: GatewayConfig, name: str) -> tuple[list[Any], list[Any]]:
    sources, targets = [], []
    for route in config.table.routes:
        if route.source_connector == name:
            sources.append(route.source)
        for target in route.targets:
            if target.connector == name:
                targets.append(target.options)
        if route.dead_letter is not None and route.dead_letter.connector == name:
            targets.append(route.dead_letter.options)
    return sources, targets


async def _one(config: GatewayConfig, connector: AnyConnector, seconds: float) -> list[str]:
    """Problems of one connector ([] = fine); the connector is closed afterwards."""
    try:
        async with asyncio.timeout(seconds):
            await connector.start()
    except TimeoutError:
        return [f"cannot connect within {seconds:g} s"]
    except (MeshgateError, OSError) as exc:
        return [f"cannot connect: {exc}"]
    try:
        if not isinstance(connector, Preflight):
            return []
        sources, targets = _needs(config, connector.name)
        async with asyncio.timeout(seconds):
            return await connector.preflight(sources, targets)
    except TimeoutError:
        return [f"the broker did not answer the checks within {seconds:g} s"]
    except (MeshgateError, OSError) as exc:
        return [f"check failed: {type(exc).__name__}: {exc}"]
    finally:
        with contextlib.suppress(MeshgateError, OSError, TimeoutError):
            async with asyncio.timeout(seconds):
                await connector.close()


async def check(config: GatewayConfig, seconds: float = 5.0) -> Report:
    """Check every connector of ``config`` concurrently; one line per connector/problem."""
    connectors = {name: cls(name, opts) for name, (cls, opts) in config.connectors.items()}
    results = await asyncio.gather(
        *(_one(config, connector, seconds) for connector in connectors.values())
    )
    report = Report()
    for connector, problems in zip(connectors.values(), results, strict=True):
        verified = "connected" + (
            ", routes' resources exist" if isinstance(connector, Preflight) else ""
        )
        if not problems:
            report.lines.append(f"{connector.label}: OK ({verified})")
            continue
        report.problems += len(problems)
        report.lines.extend(f"{connector.label}: {problem}" for problem in problems)
    return report
