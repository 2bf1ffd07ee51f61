"""Templates for target addresses, keys and ingress attributes.

Syntax: literal text with ``{...}`` placeholders; ``{{`` and ``}}`` are literal braces.

=====================  ============================================================
``{topic}``            the address the message arrived on (topic, subject, routing
                       key); ``{address}`` is the same
``{topic[1]}``         one level of it (split on ``/`` for MQTT, ``.`` otherwise);
                       negative indexes count from the end
``{key}``              the source message key (Kafka), when it has one
``{header.NAME}``      a native header / property of the source message
``{id}`` ``{type}`` …  any CloudEvent attribute (context or extension)
``{ext.NAME}``         an extension attribute, spelled explicitly
=====================  ============================================================

Ingress templates run before any CloudEvent exists, so they may not use event
attributes; that is checked when the template is compiled, not per message.
A placeholder whose value is missing at run time raises ``TemplateError``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from routing.errors import TemplateError
from routing.event import CONTEXT_ATTRIBUTES, CloudEvent, canonical_string, is_valid_attribute_name

__all__ = ["Template", "TemplateValues", "compile_template", "find_header"]

_PLACEHOLDER: Final = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
_REFERENCE: Final = re.compile(
    r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:\.(?P<sub>[A-Za-z0-9_\-:.]+))?(?:\[(?P<index>-?\d+)\])?"
)
_ADDRESS_NAMES: Final = frozenset({"topic", "address"})


def find_header(headers: Mapping[str, str], name: str) -> str | None:
    """The value of header ``name``, matched case-insensitively (first match), or None."""
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    for key, found in headers.items():  # a loop, not next(genexpr): this runs per message
        if key.lower() == lowered:
            return found
    return None


@dataclass(slots=True)  # not frozen: two are made per event of a templated route
class TemplateValues:
    """What a template can read: the source message and, after decoding, the event."""

    address: str = ""
    separator: str = "."
    headers: Mapping[str, str] = field(default_factory=dict)
    key: str | None = None
    event: CloudEvent | None = None

    def address_parts(self) -> Sequence[str]:
        return self.address.split(self.separator)


@dataclass(frozen=True, slots=True)
class _Placeholder:
    text: str
    name: str
    sub: str | None
    index: int | None

    def resolve(self, values: TemplateValues) -> str:
        value = self._lookup(values)
        if value is None:
            raise TemplateError(
                f"template placeholder {{{self.text}}} has no value for this message"
            )
        if self.index is None:
            return value
        parts = value.split(values.separator)
        try:
            return parts[self.index]
        except IndexError:
            raise TemplateError(
                f"template placeholder {{{self.text}}}: {value!r} has only {len(parts)} levels"
            ) from None

    def _lookup(self, values: TemplateValues) -> str | None:
        if self.name in _ADDRESS_NAMES:
            return values.address
        if self.name == "key":
            return values.key
        if self.name == "header":
            return find_header(values.headers, self.sub or "")
        event = values.event
        if event is None:
            return None
        attribute = self.sub if self.name == "ext" else self.name
        value = event.get(attribute or "")
        return None if value is None else canonical_string(value)


@dataclass(frozen=True, slots=True)
class Template:
    """A compiled template; ``render`` fills it for one message."""

    text: str
    parts: tuple[str | _Placeholder, ...]

    @property
    def is_static(self) -> bool:
        return all(isinstance(part, str) for part in self.parts)

    @property
    def references(self) -> tuple[str, ...]:
        """The placeholders used, as written (e.g. ``topic[1]``)."""
        return tuple(p.text for p in self.parts if isinstance(p, _Placeholder))

    def render(self, values: TemplateValues) -> str:
        if len(self.parts) == 1 and isinstance(self.parts[0], str):
            return self.parts[0]
        return "".join(p if isinstance(p, str) else p.resolve(values) for p in self.parts)


def compile_template(text: str, *, allow_event: bool = True) -> Template:
    """Parse ``text``; raise ``TemplateError`` naming the bad placeholder and its offset."""
    parts: list[str | _Placeholder] = []
    literal = ""
    position = 0
    for match in _PLACEHOLDER.finditer(text):
        literal += text[position : match.start()]
        position = match.end()
        token = match.group(0)
        if token in ("{{", "}}"):
            literal += token[0]
            continue
        if token in ("{", "}"):
            raise TemplateError(
                f"template {text!r}: unmatched {token!r} at offset {match.start()} "
                f"(write {token * 2} for a literal brace)"
            )
        placeholder = _parse_placeholder(text, match.group(1).strip(), match.start(), allow_event)
        if literal:
            parts.append(literal)
            literal = ""
        parts.append(placeholder)
    literal += text[position:]
    if literal or not parts:
        parts.append(literal)
    return Template(text, tuple(parts))


def _parse_placeholder(text: str, inner: str, offset: int, allow_event: bool) -> _Placeholder:
    ref = _REFERENCE.fullmatch(inner)
    if ref is None:
        raise TemplateError(
            f"template {text!r}: cannot read placeholder {{{inner}}} at offset {offset} "
            "(expected e.g. {topic}, {topic[1]}, {type}, {ext.name}, {header.name})"
        )
    name, sub = ref.group("name"), ref.group("sub")
    index = int(ref.group("index")) if ref.group("index") is not None else None
    if name == "header":
        if not sub:
            raise TemplateError(
                f"template {text!r}: {{header}} needs a name, e.g. {{header.content-type}}"
            )
    elif name == "ext":
        if not sub or not is_valid_attribute_name(sub):
            raise TemplateError(
                f"template {text!r}: {{ext.NAME}} needs an attribute name of [a-z0-9]"
            )
    elif sub is not None:
        raise TemplateError(
            f"template {text!r}: {{{inner}}}: only header. and ext. take a dotted name"
        )
    elif name not in _ADDRESS_NAMES and name != "key" and not is_valid_attribute_name(name):
        raise TemplateError(
            f"template {text!r}: {{{inner}}} is neither a source field (topic, address, key, "
            "header.NAME) nor a CloudEvent attribute name"
        )
    is_event_ref = name == "ext" or (name not in _ADDRESS_NAMES and name not in ("key", "header"))
    if is_event_ref and not allow_event:
        kind = "context attribute" if name in CONTEXT_ATTRIBUTES else "attribute"
        raise TemplateError(
            f"template {text!r}: {{{inner}}} refers to a CloudEvent {kind}, but ingress "
            "templates run before the event exists (use topic, key or header.NAME)"
        )
    return _Placeholder(inner, name, sub, index)
