"""Egress rules: per-target changes to the attributes of the event being published.

``attributes: {set: {...}, remove: [...], rename: {...}}`` on a target is applied
in that order (rename, remove, set) to the CloudEvent before it is encoded for that
target only; other targets of the route see the event unchanged. ``set`` values are
templates (``{topic[1]}``, ``{type}``, ``{header.x}``...). The required attributes
(``id``, ``source``, ``specversion``, ``type``) cannot be removed or renamed away.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from routing.errors import TemplateError
from routing.event import REQUIRED_ATTRIBUTES, CloudEvent, is_valid_attribute_name
from routing.templates import Template, TemplateValues, compile_template

__all__ = ["EgressRules"]

_PROTECTED = frozenset(REQUIRED_ATTRIBUTES)


def _check_name(name: object, what: str) -> str:
    if not isinstance(name, str) or not is_valid_attribute_name(name):
        raise TemplateError(f"{what}: {name!r} is not a CloudEvents attribute name ([a-z0-9]+)")
    return name


@dataclass(frozen=True, slots=True)
class EgressRules:
    set: tuple[tuple[str, Template], ...] = ()
    remove: tuple[str, ...] = ()
    rename: tuple[tuple[str, str], ...] = ()

    @classmethod
    def compile(
        cls,
        *,
        set: Mapping[str, str] | None = None,
        remove: Sequence[str] | None = None,
        rename: Mapping[str, str] | None = None,
    ) -> EgressRules:
        """Validate names and compile templates; ``TemplateError`` when invalid."""
        sets = tuple(
            (_check_name(name, "set"), compile_template(str(text)))
            for name, text in (set or {}).items()
        )
        removes = tuple(_check_name(name, "remove") for name in remove or ())
        renames = tuple(
            (_check_name(old, "rename"), _check_name(new, "rename"))
            for old, new in (rename or {}).items()
        )
        for name in (*removes, *(old for old, _ in renames)):
            if name in _PROTECTED:
                raise TemplateError(
                    f"{name!r} is a required attribute: it cannot be removed or renamed"
                )
        if "specversion" in {name for name, _ in sets} | {new for _, new in renames}:
            raise TemplateError("'specversion' cannot be set: meshgate speaks CloudEvents 1.0 only")
        return cls(sets, removes, renames)

    def apply(self, event: CloudEvent, values: TemplateValues) -> CloudEvent:
        """The event as this target should see it (validated again)."""
        attributes: dict[str, Any] = dict(event.attributes())
        for old, new in self.rename:
            if old in attributes:
                attributes[new] = attributes.pop(old)
        for name in self.remove:
            attributes.pop(name, None)
        for name, template in self.set:
            attributes[name] = template.render(values)
        return CloudEvent.from_attributes(attributes, event.data)
