"""Plan one delivery: what a route does with a source message. Pure: no I/O, no counters.

The steps, in order::

    decode            the source connector's binding: a CloudEvent, None (not one), or
                      InvalidEvent (a broken one)                        ``decode``
    verify            with ``verify:`` on the source: the signed attributes only,
                      or SignatureError                                  ``verify``
    per route:        ingress rules wrap a message that is not a CloudEvent,
                      filter, mesh loop guard, then each target rendered
                      (options + the event as that target publishes it)  ``plan_route``

The pipeline (``gateway.pipeline``) runs these for every delivery, then publishes,
counts and acks; ``meshgate routes check`` (``gateway.dryrun``) runs the same steps
and shows the plan. One implementation, so a dry run says what the runtime does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from connectors.base import Connector, Delivery
from connectors.signing import VerifyOptions, VerifyPolicy
from gateway.mesh import MESH_ATTRIBUTES, LoopGuard
from routing.errors import InvalidEvent, MeshgateError, TemplateError
from routing.event import CloudEvent
from routing.router import Route, TargetSpec
from routing.templates import TemplateValues
from routing.verifiability import SignatureError, Verifier

__all__ = [
    "Filtered",
    "Forward",
    "Looped",
    "NotACloudEvent",
    "Rejected",
    "Rendered",
    "RoutePlan",
    "decode",
    "plan_event",
    "plan_route",
    "source_values",
    "source_verifier",
    "verify",
]

_NO_VALUES = TemplateValues()


class NotACloudEvent(MeshgateError):
    """A message is not a CloudEvent and its route has no ingress rules to wrap it."""


@dataclass(frozen=True, slots=True)
class Rejected:
    """Not forwardable by this route (invalid, refused signature, not a CloudEvent
    without ingress rules, a failed ingress template): dead-lettered as it came."""

    error: Exception


@dataclass(frozen=True, slots=True)
class Filtered:
    """The route's filter does not hold: acked, not forwarded."""

    event: CloudEvent


@dataclass(frozen=True, slots=True)
class Looped:
    """The mesh loop guard refuses it (docs/mesh.md): acked, not forwarded."""

    event: CloudEvent
    why: str


# Rendered and Forward are made per event, and a frozen dataclass's __init__ sets each
# field through object.__setattr__ (several times a plain one's cost): not frozen, but
# never changed once made.
@dataclass(slots=True)
class Rendered:
    """One target of a forwarded event: its rendered options and the event as that
    target publishes it, or the template/egress error that keeps it from publishing
    (``options`` is then None and ``event`` the event as the route forwards it)."""

    target: TargetSpec
    event: CloudEvent
    options: Any = None
    error: TemplateError | InvalidEvent | None = None


@dataclass(slots=True)
class Forward:
    """Publish to every target (``event`` carries this gateway in its mesh path)."""

    event: CloudEvent
    targets: list[Rendered]


RoutePlan = Rejected | Filtered | Looped | Forward


def source_values(delivery: Delivery, separator: str, event: CloudEvent | None) -> TemplateValues:
    """What target and ingress templates read: the source message (and the event)."""
    key = delivery.coordinates.get("key")
    return TemplateValues(
        address=delivery.address,
        separator=separator,
        headers=delivery.headers,
        key=None if key is None else str(key),
        event=event,
    )


def decode(
    connector: Connector[Any, Any, Any], delivery: Delivery
) -> tuple[CloudEvent | None, InvalidEvent | None]:
    """The delivery as a CloudEvent (None: not one), or why it is a broken one."""
    try:
        return connector.decode(delivery), None
    except InvalidEvent as exc:
        return None, exc


def source_verifier(source: Any) -> tuple[Verifier | None, bool]:
    """The signature verifier of a route source with ``verify:`` (None without), and
    whether a bad signature is refused (strict) rather than forwarded (passthrough)."""
    options: VerifyOptions | None = getattr(source, "verify", None)
    if options is None:
        return None, True
    # Keys were checked when the config was loaded; read again here.
    verifier = Verifier.from_files(options.public_key_files)
    return verifier, options.policy is VerifyPolicy.STRICT


def verify(verifier: Verifier, event: CloudEvent | None) -> CloudEvent:
    """The verified event (signed attributes, plus the mesh provenance); raises
    ``SignatureError`` for a bad or missing signature, or a message that is not a
    CloudEvent (nothing is signed)."""
    if event is None:
        raise SignatureError("missing: not a CloudEvent, so nothing is signed")
    verified = verifier.verify(event)
    # The mesh provenance is the gateways' own bookkeeping, changed at every hop and
    # never signed: keep it, or loop detection would go blind behind verify:.
    provenance = {
        name: event.extensions[name]
        for name in MESH_ATTRIBUTES
        if name in event.extensions and name not in verified.extensions
    }
    if provenance:
        verified = verified.replace(extensions={**verified.extensions, **provenance})
    return verified


def _ingress(
    route: Route, delivery: Delivery, source: TemplateValues
) -> tuple[CloudEvent | None, Exception | None]:
    """A message that is not a CloudEvent, wrapped by the route's ingress rules."""
    if route.ingress is None:
        return None, NotACloudEvent(
            f"message on {delivery.address!r} is not a CloudEvent and route "
            f"{route.name!r} has no ingress rules to wrap it"
        )
    try:
        event = route.ingress.wrap(
            delivery.payload,
            source,
            native_id=delivery.native_id,
            content_type=delivery.content_type,
        )
    except (TemplateError, InvalidEvent) as exc:
        return None, exc
    return event, None


def plan_route(
    route: Route,
    delivery: Delivery,
    decoded: CloudEvent | None,
    decode_error: Exception | None,
    separator: str,
    guard: LoopGuard,
    *,
    matched: bool = False,
) -> RoutePlan:
    """What ``route`` does with ``delivery``, given its decoded (and verified) event or
    the error that came of it. ``separator`` splits the source address ({topic[1]});
    ``matched``: the caller already knows the filter holds for ``decoded``
    (``SourceGroup.split``), so it is not evaluated again."""
    if decode_error is not None:
        return Rejected(decode_error)
    # Source values only when read: static targets without egress rules read nothing.
    source = (
        source_values(delivery, separator, None)
        if decoded is None or route.reads_values
        else _NO_VALUES
    )
    event = decoded
    if event is None:
        matched = False  # the ingress rules made this route's own event: filter it
        event, error = _ingress(route, delivery, source)
        if error is not None or event is None:
            return Rejected(error or NotACloudEvent("?"))
    return plan_event(route, event, guard, source, matched=matched)


def plan_event(
    route: Route,
    event: CloudEvent,
    guard: LoopGuard,
    source: TemplateValues,
    *,
    matched: bool = False,
) -> Filtered | Looped | Forward:
    """Filter (unless ``matched``), loop guard and targets of ``route`` for ``event``;
    ``source`` holds what templates read from the source message (empty for a bare
    event)."""
    if not matched and not route.matches(event):
        return Filtered(event)
    admitted = guard.judge(event, guard=route.loop_guard)
    if isinstance(admitted, str):
        return Looped(event, admitted)
    values = _NO_VALUES
    if route.reads_values:
        values = TemplateValues(
            source.address, source.separator, source.headers, source.key, admitted
        )
    return Forward(admitted, [_render(target, admitted, values) for target in route.targets])


def _render(target: TargetSpec, event: CloudEvent, values: TemplateValues) -> Rendered:
    try:
        options = target.render(values)
        return Rendered(target, target.prepare(event, values), options)
    except (TemplateError, InvalidEvent) as exc:
        return Rendered(target, event, error=exc)
