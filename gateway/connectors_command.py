"""``meshgate connectors``: the installed connector types, their versions and origin."""

from __future__ import annotations

import json

from connectors.errors import UnknownConnectorType
from connectors.registry import ConnectorRegistry, default_registry

__all__ = ["listing"]


def _rows(registry: ConnectorRegistry) -> list[dict[str, str]]:
    rows = []
    for item in registry.installed():
        try:
            cls = registry.get(item.name)
            status = "ok"
            summary = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        except UnknownConnectorType as exc:
            status, summary = f"broken: {exc}", ""
        if item.builtin:
            origin = "built-in"
        elif item.distribution is not None:
            origin = f"plugin {item.distribution}"
        else:
            origin = "registered in code"
        rows.append(
            {
                "type": item.name,
                "version": item.version or "-",
                "from": origin,
                "entry_point": item.target,
                "status": status,
                "summary": summary,
            }
        )
    return rows


def listing(as_json: bool = False, registry: ConnectorRegistry = default_registry) -> list[str]:
    """Lines to print: a table (or one JSON document) of the installed connector types."""
    rows = _rows(registry)
    if as_json:
        return [json.dumps(rows, indent=2)]
    columns = ("type", "version", "from", "entry_point", "status")
    widths = {c: max([len(c), *(len(row[c]) for row in rows)]) for c in columns}
    lines = ["  ".join(c.upper().replace("_", " ").ljust(widths[c]) for c in columns).rstrip()]
    for row in rows:
        lines.append("  ".join(row[c].ljust(widths[c]) for c in columns).rstrip())
    return lines
