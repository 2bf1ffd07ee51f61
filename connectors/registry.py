"""Registry of connector types, loaded lazily from the ``meshgate.connectors`` entry points.

Built-in connectors are registered in pyproject.toml under the same entry-point
group a third-party plugin uses, so they are found the same way. Tests and
embedders may also ``register`` a class directly (e.g. an in-memory connector).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from connectors.base import Connector
from connectors.errors import UnknownConnectorType

__all__ = ["ENTRY_POINT_GROUP", "ConnectorRegistry", "InstalledType", "default_registry"]

ENTRY_POINT_GROUP = "meshgate.connectors"

AnyConnector = type[Connector[Any, Any, Any]]


# What people call the brokers, for "did you mean" (the built-in type names).
_OTHER_NAMES = {
    "rabbitmq": "amqp",
    "rabbit": "amqp",
    "amqp091": "amqp",
    "mosquitto": "mqtt",
    "emqx": "mqtt",
    "jetstream": "nats",
    "redpanda": "kafka",
}


@dataclass(frozen=True, slots=True)
class InstalledType:
    """Where a connector type comes from (``meshgate connectors``)."""

    name: str
    target: str
    """``module:Class`` of the entry point, or the registered class's qualified name."""
    distribution: str | None
    """The distribution that declares the entry point; None for a class registered in code."""
    version: str | None
    builtin: bool
    """Declared by meshgate itself (the built-ins register the way a plugin does)."""


class ConnectorRegistry:
    """Maps ``type`` names to connector classes; imports a plugin only when asked for."""

    def __init__(self, group: str = ENTRY_POINT_GROUP) -> None:
        self._group = group
        self._entry_points: dict[str, EntryPoint] | None = None
        self._classes: dict[str, AnyConnector] = {}

    def _discover(self) -> dict[str, EntryPoint]:
        if self._entry_points is None:
            self._entry_points = {ep.name: ep for ep in entry_points(group=self._group)}
        return self._entry_points

    def names(self) -> list[str]:
        """Every known type name, sorted."""
        return sorted(set(self._discover()) | set(self._classes))

    def installed(self) -> list[InstalledType]:
        """Every type name with its origin, sorted by name; imports no plugin."""
        found = []
        for name in self.names():
            if name in self._classes and name not in self._discover():
                cls = self._classes[name]
                target = f"{cls.__module__}:{cls.__qualname__}"
                found.append(InstalledType(name, target, None, None, False))
                continue
            entry_point = self._discover()[name]
            dist = entry_point.dist
            dist_name = None if dist is None else dist.metadata["Name"]
            version = None if dist is None else dist.version
            builtin = dist_name is not None and dist_name.lower() == "meshgate"
            found.append(InstalledType(name, entry_point.value, dist_name, version, builtin))
        return found

    def register(self, name: str, cls: AnyConnector) -> None:
        """Add a connector class under ``name`` (overrides an entry point of that name)."""
        self._classes[name] = cls

    def get(self, name: str) -> AnyConnector:
        """The connector class for ``name``; ``UnknownConnectorType`` with suggestions."""
        if name in self._classes:
            return self._classes[name]
        entry_point = self._discover().get(name)
        if entry_point is None:
            names = self.names()
            lowered = {known.lower(): known for known in names}
            guess = (
                lowered.get(name.lower())  # MQTT -> mqtt
                or _OTHER_NAMES.get(name.lower())  # rabbitmq -> amqp
                or next(iter(difflib.get_close_matches(name.lower(), names, n=1)), None)
            )
            hint = f"; did you mean {guess!r}?" if guess in names else ""
            raise UnknownConnectorType(
                f"unknown connector type {name!r} (installed: {', '.join(self.names())}){hint}"
            )
        try:
            cls = entry_point.load()
        except Exception as exc:  # a broken plugin must not crash config validation
            raise UnknownConnectorType(
                f"connector type {name!r}: plugin {entry_point.value!r} failed to import: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        if not (isinstance(cls, type) and issubclass(cls, Connector)):
            raise UnknownConnectorType(
                f"entry point {entry_point.value!r} for connector type {name!r} "
                "is not a meshgate.connectors.base.Connector subclass"
            )
        self._classes[name] = cls
        return cls


default_registry = ConnectorRegistry()
