"""Mesh provenance and the loop guard (docs/mesh.md).

Every event a gateway forwards carries its path through the mesh as two CloudEvents
extension attributes: ``meshpath``, the ids of the gateways it passed, comma
separated, oldest first; and ``meshhops``, how many gateways forwarded it (an
Integer). They are this intermediary's own provenance, like ``traceparent``: the
one place where the gateway adds attributes to an event it forwards.

The rule, applied per route after its filter: a gateway does not forward an event
whose path already holds its own ``gateway.id`` *before another gateway's* (unless
the route says ``loop_guard: false``), nor one that already made
``gateway.max_hops`` hops. An event whose path merely *ends* with this gateway came
from one of its own routes (a chain inside one gateway, e.g. route A writes a topic
route B reads): that is not a loop through the mesh, and ``max_hops`` bounds it. Such an
event is acknowledged and counted (``RouteStats.loop_dropped``), with one WARNING
per route and minute. Dead letters are not guarded: they leave the route's flow.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Final

from gateway.throttle import LogThrottle
from routing.event import CheckedExtensions, CloudEvent

__all__ = [
    "DEFAULT_MAX_HOPS",
    "HOPS",
    "MESH_ATTRIBUTES",
    "PATH",
    "LoopGuard",
    "hops_of",
    "path_of",
]

log = logging.getLogger("meshgate.mesh")

PATH: Final = "meshpath"
HOPS: Final = "meshhops"
MESH_ATTRIBUTES: Final = (PATH, HOPS)
DEFAULT_MAX_HOPS: Final = 8
WARN_EVERY: Final = 60.0
"""Seconds between two loop WARNINGs of one route (drops in between are summed)."""


def path_of(event: CloudEvent) -> tuple[str, ...]:
    """The gateway ids in the event's ``meshpath`` (empty when it has none)."""
    value = event.extensions.get(PATH)
    if not isinstance(value, str) or not value:
        return ()
    return tuple(filter(None, value.split(",")))  # empty parts dropped


def hops_of(event: CloudEvent, path: tuple[str, ...]) -> int:
    """The event's hop count: ``meshhops`` (an Integer, or its canonical string after a
    binary-mode hop), never less than the path's length. Unreadable counts as 0."""
    value = event.extensions.get(HOPS)
    hops = 0
    if isinstance(value, int) and not isinstance(value, bool):
        hops = value
    elif isinstance(value, str):
        try:
            hops = int(value.strip())
        except ValueError:
            hops = 0
    return max(hops, len(path))


def _before_own_run(path: tuple[str, ...], own: str) -> tuple[str, ...]:
    """``path`` without its trailing run of ``own``: hops through this gateway's own
    routes (a chain inside it), not a return from elsewhere in the mesh."""
    end = len(path)
    while end and path[end - 1] == own:
        end -= 1
    return path[:end]


@dataclass
class LoopGuard:
    """Stamps forwarded events and refuses the ones that looped or went too far."""

    gateway_id: str
    max_hops: int = DEFAULT_MAX_HOPS
    _warnings: LogThrottle = field(default_factory=lambda: LogThrottle(WARN_EVERY))
    _first_stamp: CheckedExtensions = field(init=False, repr=False)
    """The stamp of an event without provenance: this gateway alone, one hop."""

    def __post_init__(self) -> None:
        self._first_stamp = CheckedExtensions({PATH: self.gateway_id, HOPS: 1})

    def admit(self, route: str, event: CloudEvent, *, guard: bool = True) -> CloudEvent | None:
        """The event as ``route`` forwards it (this gateway added to its path), or None
        when it must be dropped. ``guard=False`` (``loop_guard: false``) skips the own-id
        rule for deliberate re-entry; the hop limit always holds."""
        verdict = self.judge(event, guard=guard)
        if isinstance(verdict, str):
            self.dropped(route, event, verdict)
            return None
        return verdict

    def judge(self, event: CloudEvent, *, guard: bool = True) -> CloudEvent | str:
        """Pure ``admit``: the event as forwarded (stamped), or why it is not forwarded
        (``gateway.plan``; the caller logs a drop with ``dropped``)."""
        extensions = event.extensions
        if PATH not in extensions and HOPS not in extensions:
            # The first gateway on the way (usual at an edge): no path, no hops to read.
            why = self.refusal((), 0, guard=guard)
            return why if why is not None else event.with_extensions(self._first_stamp)
        path = path_of(event)
        hops = hops_of(event, path)
        why = self.refusal(path, hops, guard=guard)
        if why is not None:
            return why
        return event.with_extensions({PATH: ",".join((*path, self.gateway_id)), HOPS: hops + 1})

    def refusal(self, path: tuple[str, ...], hops: int, *, guard: bool = True) -> str | None:
        """Why an event with this path and hop count is not forwarded, or None."""
        if guard and self.gateway_id in _before_own_run(path, self.gateway_id):
            return f"its path already holds {self.gateway_id} before another gateway"
        if hops >= self.max_hops:
            return f"it made max_hops={self.max_hops} hops"
        return None

    def dropped(self, route: str, event: CloudEvent, why: str) -> None:
        """Log that ``route`` did not forward ``event`` because of ``why`` (throttled)."""
        path = path_of(event)
        hops = hops_of(event, path)
        # One WARNING per route and minute: a loop repeats for every event it carries.
        held = self._warnings.admit(route)
        if held is None:
            return
        more = f"; {held} more dropped since the last warning" if held else ""
        log.warning(
            "route %s: mesh loop: event %s from %s not forwarded (acked and counted as "
            "loop_dropped): %s (meshpath=%s, meshhops=%d)%s",
            route,
            event.id,
            event.source,
            why,
            ",".join(path) or "-",
            hops,
            more,
        )
