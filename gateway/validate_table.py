"""``meshgate validate``'s tables: the connectors and routes of a config as plain text.

No Python reprs: targets print as ``connector field=value ...`` (``describe_target``),
sources through each connector's ``describe_source``. A source that does not
acknowledge, or a target whose publishes are not confirmed (its connector's
``source_capabilities`` / ``target_capabilities``), is marked ``[at-most-once]``.
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway.config import GatewayConfig
from routing.router import TargetSpec

__all__ = ["route_table"]


def route_table(config: GatewayConfig) -> list[str]:
    """The connectors and routes of ``config`` as plain-text tables (no Python reprs)."""
    # Connectors are constructed (for endpoint() and describe_source()), never started.
    built = {name: cls(name, options) for name, (cls, options) in config.connectors.items()}
    connector_rows = [("CONNECTOR", "TYPE", "ENDPOINT")]
    for name, connector in built.items():
        connector_rows.append((name, connector.options.type, connector.endpoint()))
    rows = [("ROUTE", "FROM", "FILTER", "TO")]
    for route in config.table.routes:
        cls, options = config.connectors[route.source_connector]
        source = built[route.source_connector].describe_source(route.source)
        if not cls.source_capabilities(options, route.source).acknowledgements:
            source += _AT_MOST_ONCE
        targets = [_target(config, t) for t in route.targets]
        if route.dead_letter is not None:
            targets.append(f"dead letter: {_target(config, route.dead_letter)}")
        filter_text = route.filter_text or ("filters: (Subscriptions API)" if route.filter else "-")
        for i, target in enumerate(targets):
            rows.append(
                (route.name, source, filter_text, target) if i == 0 else ("", "", "", target)
            )
        if not targets:
            rows.append((route.name, source, filter_text, "-"))
    return [*_table(connector_rows), "", *_table(rows)]


_AT_MOST_ONCE = " [at-most-once]"


def _target(config: GatewayConfig, target: TargetSpec) -> str:
    cls, options = config.connectors[target.connector]
    confirmed = cls.target_capabilities(options, target.options).confirmed_publish
    return target.describe() + ("" if confirmed else _AT_MOST_ONCE)


def _table(rows: Sequence[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
