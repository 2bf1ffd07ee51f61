"""The CloudEvent value type (CloudEvents 1.0) and its validation rules.

A ``CloudEvent`` is immutable and always valid: the constructor checks every rule
of the core specification and raises ``InvalidEvent`` naming the attribute and the
rule it broke. Attribute values keep the exact text they arrived with (``time`` is
stored as its RFC 3339 string) so that forwarding never rewrites an event.

Extension values are typed as the spec's type system maps onto Python:
String -> ``str`` (also URI, URI-reference and Timestamp, which travel as text),
Integer -> ``int`` (signed 32 bit), Boolean -> ``bool``, Binary -> ``bytes``.
Protocol headers carry only the *canonical string* of a value, so a binary-mode
hop turns a typed extension into its canonical string; ``canonical_attributes``
is the representation every binding preserves exactly.
"""

from __future__ import annotations

import base64
import functools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, Final

from routing.errors import InvalidEvent

__all__ = [
    "FORBIDDEN_CHARS",
    "OPTIONAL_ATTRIBUTES",
    "REQUIRED_ATTRIBUTES",
    "SPEC_VERSION",
    "CheckedExtensions",
    "CloudEvent",
    "ExtensionValue",
    "canonical_string",
    "is_valid_attribute_name",
    "parse_time",
]

SPEC_VERSION: Final = "1.0"
REQUIRED_ATTRIBUTES: Final = ("id", "source", "specversion", "type")
OPTIONAL_ATTRIBUTES: Final = ("datacontenttype", "dataschema", "subject", "time")
CONTEXT_ATTRIBUTES: Final = frozenset(REQUIRED_ATTRIBUTES + OPTIONAL_ATTRIBUTES)
# Names that event formats use for the payload itself; no attribute may take them.
RESERVED_NAMES: Final = frozenset({"data", "data_base64"})

ExtensionValue = str | int | bool | bytes

_NAME = re.compile(r"[a-z0-9]+")
# RFC 3339 section 5.6 date-time; seconds are mandatory, offsets are +hh:mm or Z.
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})",
    re.ASCII,
)
_URI_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")
# CloudEvents String: no control characters, surrogates or noncharacters.
FORBIDDEN_CHARS = re.compile(
    "[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufdd0-\ufdef\ufffe\uffff"
    + "".join(chr(plane << 16 | 0xFFFE) + chr(plane << 16 | 0xFFFF) for plane in range(1, 17))
    + "]"
)
_INT_MIN: Final = -(2**31)
_INT_MAX: Final = 2**31 - 1


@functools.lru_cache(maxsize=1024)  # a stream carries few distinct names: checked once each
def is_valid_attribute_name(name: str) -> bool:
    """True when ``name`` is a legal CloudEvents attribute name (``[a-z0-9]+``)."""
    return _NAME.fullmatch(name) is not None and name not in RESERVED_NAMES


def parse_time(value: str) -> datetime:
    """Parse a strict RFC 3339 timestamp; raise ``InvalidEvent`` if it is not one."""
    match = _RFC3339.fullmatch(value)
    if match is None:
        raise InvalidEvent(
            "time",
            f"{value!r} is not an RFC 3339 timestamp "
            "(expected YYYY-MM-DDThh:mm:ss[.frac](Z|+hh:mm))",
        )
    text = value.upper().replace("Z", "+00:00")
    if match.group(6) == "60":  # RFC 3339 5.6 allows a leap second; datetime cannot hold it
        text = text[: match.start(6)] + "59" + text[match.end(6) :]
    frac = match.group(7)
    if frac and len(frac) > 7:  # datetime keeps microseconds only; precision stays in the text
        text = text.replace(frac, frac[:7], 1)
    try:
        return datetime.fromisoformat(text)
    except ValueError as exc:
        raise InvalidEvent("time", f"{value!r} is not a valid date and time: {exc}") from None


def canonical_string(value: ExtensionValue) -> str:
    """The spec's canonical string encoding of an attribute value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    return value


def _check_string(name: str, value: object, *, allow_empty: bool = True) -> str:
    if not isinstance(value, str):
        raise InvalidEvent(name, f"expected a string, got {type(value).__name__}")
    if not allow_empty and not value:
        raise InvalidEvent(name, "must be a non-empty string")
    if value.isascii() and value.isprintable():  # the common case, without the regex
        return value
    bad = FORBIDDEN_CHARS.search(value)
    if bad is not None:
        raise InvalidEvent(
            name,
            f"contains the character U+{ord(bad.group()):04X} at offset {bad.start()}, "
            "which CloudEvents strings may not hold",
        )
    return value


def _check_specversion(value: object) -> None:
    if value != SPEC_VERSION:
        raise InvalidEvent("specversion", f"{value!r} is not supported (expected '1.0')")


def _check_dataschema(value: str) -> None:
    if _URI_SCHEME.match(value) is None or " " in value:
        raise InvalidEvent("dataschema", f"{value!r} is not an absolute URI (expected scheme:...)")


def _check_extension(name: str, value: object) -> ExtensionValue:
    if type(value) is str:  # the usual case first (a plain str is none of the others)
        return _check_string(name, value)
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        if not _INT_MIN <= value <= _INT_MAX:
            raise InvalidEvent(name, f"integer {value} is outside the signed 32-bit range")
        return value
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return _check_string(name, value)
    raise InvalidEvent(
        name,
        f"extension values must be string, integer, boolean or bytes, not {type(value).__name__}",
    )


def _checked_extension(name: str, value: object) -> ExtensionValue:
    """``value`` of extension ``name``, checked: an extension name, a valid value."""
    if not is_valid_attribute_name(name) or name in CONTEXT_ATTRIBUTES:
        raise InvalidEvent(repr(name), "is not an extension attribute name")
    return _check_extension(name, value)


class CheckedExtensions:
    """Extension values to set on many events, checked once, here (``with_extensions``
    checks a plain mapping on every call): e.g. the mesh stamp of a first hop."""

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, ExtensionValue]) -> None:
        # A dict (never handed out): dict.update takes another dict's items directly.
        self._values = {name: _checked_extension(name, value) for name, value in values.items()}


@dataclass(frozen=True, slots=True, eq=False)
class CloudEvent:
    """One CloudEvents 1.0 event. Construct it with keywords; it validates itself."""

    id: str
    source: str
    type: str
    specversion: str = SPEC_VERSION
    datacontenttype: str | None = None
    dataschema: str | None = None
    subject: str | None = None
    time: str | None = None
    extensions: Mapping[str, ExtensionValue] = field(default_factory=dict)
    data: bytes | None = None

    def __post_init__(self) -> None:
        _check_specversion(self.specversion)
        _check_string("id", self.id, allow_empty=False)
        _check_string("source", self.source, allow_empty=False)
        _check_string("type", self.type, allow_empty=False)
        if self.datacontenttype is not None:
            _check_string("datacontenttype", self.datacontenttype, allow_empty=False)
        if self.subject is not None:
            _check_string("subject", self.subject, allow_empty=False)
        if self.dataschema is not None:
            _check_string("dataschema", self.dataschema, allow_empty=False)
            _check_dataschema(self.dataschema)
        if self.time is not None:
            _check_string("time", self.time, allow_empty=False)
            parse_time(self.time)
        if self.data is not None and not isinstance(self.data, bytes):
            raise InvalidEvent("data", f"expected bytes, got {type(self.data).__name__}")
        checked: dict[str, ExtensionValue] = {}
        for name, value in self.extensions.items():
            if not isinstance(name, str) or not is_valid_attribute_name(name):
                raise InvalidEvent(
                    repr(name), "attribute names must be lower-case letters and digits only"
                )
            if name in CONTEXT_ATTRIBUTES:
                raise InvalidEvent(name, "is a context attribute, not an extension")
            checked[name] = _check_extension(name, value)
        # Freeze the mapping so the event really is immutable.
        object.__setattr__(self, "extensions", MappingProxyType(checked))

    def __eq__(self, other: object) -> bool:
        # Compare value types too: in Python 1 == True, but the canonical strings differ.
        if not isinstance(other, CloudEvent):
            return NotImplemented
        return self._identity() == other._identity()

    def _identity(self) -> tuple[frozenset[tuple[str, object, object]], bytes | None]:
        return frozenset((n, type(v), v) for n, v in self.attributes()), self.data

    def __hash__(self) -> int:
        return hash((self.id, self.source))

    # -- attribute access ---------------------------------------------------------------

    def get(self, name: str) -> ExtensionValue | None:
        """Value of any attribute (context or extension) by name, or None when unset."""
        if name in CONTEXT_ATTRIBUTES:
            value: ExtensionValue | None = getattr(self, name)
            return value
        return self.extensions.get(name)

    def attributes(self) -> Iterator[tuple[str, ExtensionValue]]:
        """Every set attribute, context attributes first, as (name, typed value)."""
        for name in REQUIRED_ATTRIBUTES + OPTIONAL_ATTRIBUTES:
            value = getattr(self, name)
            if value is not None:
                yield name, value
        yield from self.extensions.items()

    def canonical_attributes(self) -> dict[str, str]:
        """Every set attribute as its canonical string: what binary mode carries.

        Same order as ``attributes()``; written out because every binary-mode publish
        calls it (context attributes are strings already).
        """
        out = {"id": self.id, "source": self.source, "specversion": self.specversion}
        out["type"] = self.type
        # OPTIONAL_ATTRIBUTES, unrolled: getattr by name costs more than the attributes.
        if self.datacontenttype is not None:
            out["datacontenttype"] = self.datacontenttype
        if self.dataschema is not None:
            out["dataschema"] = self.dataschema
        if self.subject is not None:
            out["subject"] = self.subject
        if self.time is not None:
            out["time"] = self.time
        for name, extension in self.extensions.items():
            out[name] = extension if type(extension) is str else canonical_string(extension)
        return out

    @property
    def time_datetime(self) -> datetime | None:
        """``time`` parsed into an aware datetime (microsecond precision)."""
        return None if self.time is None else parse_time(self.time)

    # -- building -----------------------------------------------------------------------

    @classmethod
    def from_attributes(
        cls, attributes: Mapping[str, Any], data: bytes | None = None
    ) -> CloudEvent:
        """Build an event from a flat name -> value mapping (context + extensions).

        Raises ``InvalidEvent`` when a required attribute is missing.
        """
        for name in REQUIRED_ATTRIBUTES:
            if attributes.get(name) is None:
                raise InvalidEvent(name, "required attribute is missing")
        context: dict[str, Any] = {name: attributes.get(name) for name in CONTEXT_ATTRIBUTES}
        extensions = {
            name: value
            for name, value in attributes.items()
            if name not in CONTEXT_ATTRIBUTES and value is not None
        }
        return cls(extensions=extensions, data=data, **context)

    @classmethod
    def from_plain_text(
        cls, context: Mapping[str, str], extensions: Mapping[str, str], data: bytes | None
    ) -> CloudEvent:
        """The event of attribute values a binding read as plain text, validated.

        For the per-event path of a binding, which knows of what it read that
        ``context`` holds ``id``, ``source``, ``type`` and ``specversion`` and no name
        but context attribute names, that every extension name is valid and no context
        attribute name, and that every value is non-empty printable ASCII (``isascii()
        and isprintable()``). Such values keep the string rules already, so only the
        rules they can still break are checked: ``specversion``, ``dataschema``,
        ``time``. The result, and the ``InvalidEvent`` raised, are the constructor's
        (a unit test compares them).
        """
        _check_specversion(context["specversion"])
        get = context.get
        dataschema, time = get("dataschema"), get("time")
        if dataschema is not None:
            _check_dataschema(dataschema)
        if time is not None:
            parse_time(time)
        if data is not None and not isinstance(data, bytes):
            raise InvalidEvent("data", f"expected bytes, got {type(data).__name__}")
        event = object.__new__(cls)
        _ID(event, context["id"])
        _SOURCE(event, context["source"])
        _TYPE(event, context["type"])
        _SPECVERSION(event, SPEC_VERSION)
        _DATACONTENTTYPE(event, get("datacontenttype"))
        _DATASCHEMA(event, dataschema)
        _SUBJECT(event, get("subject"))
        _TIME(event, time)
        _DATA(event, data)
        _EXTENSIONS(event, MappingProxyType(dict(extensions)))
        return event

    def replace(self, **changes: Any) -> CloudEvent:
        """A copy with some attributes (or ``data``/``extensions``) changed, re-validated."""
        values: dict[str, Any] = {
            "id": self.id,
            "source": self.source,
            "type": self.type,
            "specversion": self.specversion,
            "datacontenttype": self.datacontenttype,
            "dataschema": self.dataschema,
            "subject": self.subject,
            "time": self.time,
            "extensions": dict(self.extensions),
            "data": self.data,
        }
        values.update(changes)
        return CloudEvent(**values)

    def with_extensions(
        self, changes: Mapping[str, ExtensionValue | None] | CheckedExtensions
    ) -> CloudEvent:
        """A copy with some extension attributes set (``None`` removes one).

        Only the changed extensions are validated (``CheckedExtensions``: not even
        those, they were checked when made): the rest of the event is valid already.
        The runtime calls this per forwarded event (mesh provenance), where a full
        ``replace`` would cost several microseconds.
        """
        current = self.extensions  # a mappingproxy of a dict: its copy() is the fast one
        extensions = current.copy() if isinstance(current, MappingProxyType) else dict(current)
        if isinstance(changes, CheckedExtensions):
            extensions.update(changes._values)
            return self._copy_with(MappingProxyType(extensions))
        for name, value in changes.items():
            if value is None:
                extensions.pop(name, None)
                continue
            extensions[name] = _checked_extension(name, value)
        return self._copy_with(MappingProxyType(extensions))

    def _copy_with(self, extensions: Mapping[str, ExtensionValue]) -> CloudEvent:
        """This event with ``extensions`` (checked already), without validating again.

        Written out with the slots' own setters (the frozen ``__setattr__`` refuses):
        a loop over the field names costs twice as much, and this runs per event.
        """
        copy = object.__new__(CloudEvent)
        _ID(copy, self.id)
        _SOURCE(copy, self.source)
        _TYPE(copy, self.type)
        _SPECVERSION(copy, self.specversion)
        _DATACONTENTTYPE(copy, self.datacontenttype)
        _DATASCHEMA(copy, self.dataschema)
        _SUBJECT(copy, self.subject)
        _TIME(copy, self.time)
        _DATA(copy, self.data)
        _EXTENSIONS(copy, extensions)
        return copy


# The setters of CloudEvent's slots (bound once: a lookup of ``__set__`` per call costs
# half again as much), for from_plain_text and _copy_with (a test checks that it
# copies every field).
_ID, _SOURCE, _TYPE, _SPECVERSION, _DATACONTENTTYPE, _DATASCHEMA, _SUBJECT, _TIME = (
    CloudEvent.__dict__[name].__set__
    for name in ("id", "source", "type", "specversion", *OPTIONAL_ATTRIBUTES)
)
_EXTENSIONS = CloudEvent.__dict__["extensions"].__set__
_DATA = CloudEvent.__dict__["data"].__set__
