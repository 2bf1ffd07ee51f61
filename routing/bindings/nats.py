"""NATS binding: CloudEvent <-> NATS message (pure, no client import).

What it implements
    The CloudEvents NATS Protocol Binding (1.0.3, the version with message headers,
    NATS 2.2+): ``to_message`` writes an event in binary or structured mode,
    ``from_message`` reads either mode back, or returns ``None`` for a message that
    is no CloudEvent.

Spec
    https://github.com/cloudevents/spec/blob/main/cloudevents/bindings/nats-protocol-binding.md
    (section numbers below refer to it); header values are percent-encoded as in
    https://github.com/cloudevents/spec/blob/main/cloudevents/bindings/http-protocol-binding.md
    section 3.1.3.2.

Binary mode (3.1)
    The payload is the event data as-is. Every attribute, ``datacontenttype``
    included, is a ``ce-<name>`` header (3.1.3.1) whose value is its canonical
    string, percent-encoded (3.1.3.2): space, ``"``, ``%`` and every character
    outside printable ASCII (U+0021-U+007E) become ``%XX`` escapes of their UTF-8
    bytes, upper-case hex. On reading, header names match in any case, a value in
    double quotes is unquoted first (RFC 7230 quoted-string, as 3.1.3.2 requires), and
    a malformed escape or bytes that are not UTF-8 (overlong forms included) are an
    ``InvalidEvent`` naming the header. NATS has no null payload: an empty payload
    reads back as an event without data, so an event whose data is empty bytes loses
    that distinction.

Structured mode (3.2)
    The payload is the event in an event format and the ``Content-Type`` header is
    the format's media type.

Reading (3)
    Structured mode when the ``Content-Type`` header starts with
    ``application/cloudevents`` (any case); otherwise binary mode when a
    ``ce-specversion`` header exists. A message with neither and no ``Content-Type``
    header at all (pre-2.2 servers, the older header-less binding) is structured JSON
    when its payload is a JSON object with a ``specversion`` member; any other
    message is no CloudEvent (``None``).

Deviations and notes
    - Section 3 says structured payloads are JSON; Avro is accepted and written too
      (when asked for), since the ``Content-Type`` header names the format.
    - A structured message in an event format meshgate does not know is rejected
      (``InvalidEvent``); in binary mode ``Content-Type`` is not an attribute (the
      spec maps ``datacontenttype`` to ``ce-datacontenttype`` only).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote, unquote_to_bytes

from routing.bindings._headers import (
    AttributeHeaders,
    Mode,
    binary_attributes,
    data_or_none,
    headerless_json_event,
    prefix_clash,
)
from routing.errors import InvalidEvent
from routing.event import (
    CONTEXT_ATTRIBUTES,
    REQUIRED_ATTRIBUTES,
    CloudEvent,
    is_valid_attribute_name,
)
from routing.formats import EventFormat, decode, encode, is_structured

__all__ = [
    "BLOCK_LINES_AT",
    "HEADER_PREFIX",
    "MSG_ID_HEADER",
    "NatsMessage",
    "binary_header_lines",
    "from_header_block",
    "from_message",
    "header_clash",
    "header_key",
    "percent_decode",
    "percent_encode",
    "to_message",
]

HEADER_PREFIX: Final = "ce-"
CONTENT_TYPE: Final = "Content-Type"
_CONTENT_TYPE_LOWER: Final = CONTENT_TYPE.lower()
MSG_ID_HEADER: Final = "Nats-Msg-Id"
"""JetStream's de-duplication id, which the NATS connector writes on every JetStream publish."""
# Printable ASCII except '"' and '%': the characters 3.1.3.2 leaves unencoded.
_UNENCODED: Final = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '"%')
_BAD_ESCAPE: Final = re.compile(r"%(?![0-9A-Fa-f]{2})")
_NEEDS_ENCODING: Final = re.compile("[^" + re.escape(_UNENCODED) + "]")
# A header value that percent-decoding leaves as it is (space only inside).
_PLAIN: Final = re.compile(r"[!#$&-~](?:[ !#$&-~]*[!#$&-~])?")


@dataclass(slots=True)  # not frozen: made per message (see routing.bindings)
class NatsMessage:
    """The parts of a NATS message the binding reads and writes."""

    data: bytes
    headers: Mapping[str, str] | None


def to_message(
    event: CloudEvent, mode: Mode = Mode.BINARY, *, fmt: EventFormat = EventFormat.JSON
) -> NatsMessage:
    """Write ``event`` as a NATS message in ``mode`` (``fmt`` is for structured mode)."""
    if Mode(mode) is Mode.STRUCTURED:
        content_type, payload = encode(event, EventFormat(fmt))
        return NatsMessage(payload, {CONTENT_TYPE: content_type})
    headers = {
        HEADER_PREFIX + name: percent_encode(value)
        for name, value in binary_attributes(event, with_datacontenttype=True)
    }
    return NatsMessage(event.data or b"", headers)


def binary_header_lines(event: CloudEvent) -> str:
    """The headers ``to_message`` writes in binary mode, as the lines of a NATS header
    block (``"ce-<name>: <value>\r\n"`` each, in the same order): for a connector
    that writes the block itself. Names are ``ce-`` and an attribute name, values
    percent-encoded (printable ASCII, no blanks), so nothing in them needs a check."""
    attributes = event.canonical_attributes()  # = binary_attributes, datacontenttype too
    if _NEEDS_ENCODING.search("".join(attributes.values())) is None:
        # The usual case: no value has anything to escape (one scan for all of them).
        return "".join([f"{HEADER_PREFIX}{n}: {v}\r\n" for n, v in attributes.items()])
    return "".join([f"{HEADER_PREFIX}{n}: {percent_encode(v)}\r\n" for n, v in attributes.items()])


def header_key(name: str) -> str:
    """NATS header names compare in any case (as in HTTP)."""
    return name.lower()


def from_message(message: NatsMessage) -> CloudEvent | None:
    """Read a NATS message: the CloudEvent it carries, or ``None`` if it carries none.

    Raises ``InvalidEvent`` when the message claims to be a CloudEvent but breaks the
    binding or the spec; the error names the header or attribute at fault.
    """
    if message.headers:
        event = _usual_binary(message.headers, message.data)
        if event is not None:
            return event
    return _read(message)


def _usual_binary(headers: Mapping[str, str], data: bytes) -> CloudEvent | None:
    """The usual binary-mode message read in one pass, or None for ``_read`` to read.

    Usual: every ``ce-`` header named in lower case, once, for a valid attribute name,
    with a value that reads as itself (no quotes, escapes or edge blanks), the required
    attributes present, no ``Content-Type`` header. Anything else (and every error) is
    left to ``_read``, so both give the same event and the same ``InvalidEvent``; the
    event's own constructor validates the values either way.
    """
    context: dict[str, str] = {}
    extensions: dict[str, str] = {}
    attributes = _attributes  # a local: this runs per header
    for name, value in headers.items():
        attribute = attributes.get(name)
        if attribute is None:
            attribute = _attribute_of(name)
        if attribute is _OTHER:  # a header the binding does not read
            continue
        if not attribute or attribute in context or attribute in extensions:
            return None  # Content-Type, an unusual name, a repeat: _read
        if attribute in CONTEXT_ATTRIBUTES:
            context[attribute] = value
        else:
            extensions[attribute] = value
    return _usual_event(context, extensions, data)


def from_header_block(block: bytes, data: bytes) -> CloudEvent | None:
    """``from_message`` of a message in the usual binary form (see ``_usual_binary``),
    read straight from its NATS header block as received (``NATS/1.0``, then
    ``Name: value`` lines), or None for any other message: then ``from_message`` of
    its parsed headers reads it, with the same result. The lines are split as nats-py
    splits them (CRLF, the first ``:``, blanks stripped, lines without ``:`` skipped);
    a block that is not ASCII and a name nats-py would change or skip (blanks, control
    characters) are left to ``from_message`` too.
    """
    try:
        text = block.decode("ascii")
    except UnicodeDecodeError:
        return None  # not plain: left to from_message
    context: dict[str, str] = {}
    extensions: dict[str, str] = {}
    names = _block_names  # a local: this runs per header
    for line in text[BLOCK_LINES_AT:].split("\r\n"):
        name, colon, value = line.partition(":")
        if not colon:  # the end of the block, or a line nats-py skips
            continue
        attribute = names.get(name)
        if attribute is None:
            attribute = _block_attribute_of(name)
        if attribute is _OTHER:
            continue
        if not attribute:
            return None
        # A repeated name needs no check: the parsed headers keep its last value in
        # its first place, as these dicts do.
        if attribute in CONTEXT_ATTRIBUTES:
            context[attribute] = value.strip(_BLANKS)
        else:
            extensions[attribute] = value.strip(_BLANKS)
    return _usual_event(context, extensions, data)


def _usual_event(
    context: dict[str, str], extensions: dict[str, str], data: bytes
) -> CloudEvent | None:
    """The event of a usual binary-mode message's ``ce-`` headers, or None (unusual)."""
    if len(context) < 4 or not _REQUIRED.issubset(context):
        return None  # not binary mode, or an attribute missing: _read tells which
    values = [*context.values(), *extensions.values()]
    # Every value plain (reads as itself): one scan when none holds a blank, which is
    # usual; else each value on its own (a blank inside a value is plain too).
    usual = all(values) and _NEEDS_ENCODING.search("".join(values)) is None
    if not usual and not all(_PLAIN.fullmatch(value) for value in values):
        return None  # quoted, escaped, padded, not ASCII, empty: _read
    # The names are checked (_attribute_of) and every value is plain, printable ASCII.
    return CloudEvent.from_plain_text(context, extensions, data_or_none(data))


BLOCK_LINES_AT: Final = len(b"NATS/1.0\r\n")
"""Where nats-py starts reading the header lines of a received header block (one without
an inline status)."""
_BLANKS: Final = " \t\n\r\x0b\x0c"
"""What ``bytes.strip()`` strips, as nats-py strips header values (``str.strip()``
would strip more)."""
_block_names: dict[str, str] = {}
"""Raw header name -> what ``_block_attribute_of`` says of it (names repeat)."""


def _block_attribute_of(name: str) -> str:
    """``_attribute_of`` a header name as it stands in a block (ASCII); "" (for
    ``from_message``) for a name with a blank or control character, which nats-py
    strips or skips."""
    verdict = _attribute_of(name) if name.isprintable() and " " not in name else ""
    if len(_block_names) >= _NAMES_KEPT:
        _block_names.clear()
    _block_names[name] = verdict
    return verdict


_OTHER: Final = "-"
"""What ``_attribute_of`` says of a header that is neither ``ce-`` nor Content-Type."""
_REQUIRED: Final = frozenset(REQUIRED_ATTRIBUTES)
_NAMES_KEPT: Final = 512
_attributes: dict[str, str] = {}
"""Header name -> attribute name, ``_OTHER``, or "" (for ``_read``): names repeat."""


def _attribute_of(name: str) -> str:
    """What header ``name`` is to ``_usual_binary`` (kept in ``_attributes``, bounded)."""
    lowered = name.lower()
    if lowered.startswith(HEADER_PREFIX):
        attribute = lowered[len(HEADER_PREFIX) :]
        usual = name.islower() and is_valid_attribute_name(attribute)
        verdict = attribute if usual else ""
    else:
        verdict = "" if lowered == _CONTENT_TYPE_LOWER else _OTHER
    if len(_attributes) >= _NAMES_KEPT:
        _attributes.clear()
    _attributes[name] = verdict
    return verdict


def _read(message: NatsMessage) -> CloudEvent | None:
    """``from_message`` for any message: every rule checked, errors named."""
    content_type: str | None = None
    found: list[tuple[str, str, str]] = []  # (attribute name, header name, raw value)
    has_specversion = False
    for name, value in (message.headers or {}).items():  # one pass: this runs per message
        lowered = name.lower()
        if lowered.startswith(HEADER_PREFIX):
            attribute = lowered[len(HEADER_PREFIX) :]
            has_specversion = has_specversion or attribute == "specversion"
            found.append((attribute, name, value))
        elif lowered == _CONTENT_TYPE_LOWER:
            if content_type is not None and content_type != value:
                raise InvalidEvent(
                    f"header {name}",
                    f"appears twice with different values ({content_type!r}, {value!r})",
                )
            content_type = value
    if content_type is not None and is_structured(content_type):
        return decode(message.data, content_type)
    if not has_specversion:
        return headerless_json_event(message.data) if content_type is None else None
    attributes = AttributeHeaders(f"header {HEADER_PREFIX}{{}}")
    for attribute, name, value in found:
        text = value if _plain(value) else percent_decode(value, f"header {name}")
        attributes.add(attribute, text, name)
    return attributes.event(data_or_none(message.data))


def percent_encode(text: str) -> str:
    """Percent-encode an attribute's canonical string for a header (HTTP 3.1.3.2)."""
    if _NEEDS_ENCODING.search(text) is None:  # the common case: nothing to escape
        return text
    return quote(text, safe=_UNENCODED, encoding="utf-8", errors="strict")


def percent_decode(value: str, where: str = "header") -> str:
    """Unquote (RFC 7230 quoted-string) and percent-decode one header value.

    Raises ``InvalidEvent`` naming ``where`` for a broken quoted string, a ``%`` not
    followed by two hex digits, or escapes that do not decode as UTF-8.
    """
    if _plain(value):
        return value
    text = value.strip(" \t")
    if text.startswith('"'):
        text = _unquote(text, where)
    bad = _BAD_ESCAPE.search(text)
    if bad is not None:
        raise InvalidEvent(
            where,
            f"'%' at offset {bad.start()} of {value!r} does not start a %XX escape "
            "(expected two hex digits)",
        )
    try:
        return unquote_to_bytes(text).decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError) as exc:
        raise InvalidEvent(
            where, f"{value!r} does not percent-decode to UTF-8 text ({exc.reason})"
        ) from None


def _plain(value: str) -> bool:
    """True when ``value`` reads as itself: no quotes, escapes, edge blanks, non-ASCII."""
    return _PLAIN.fullmatch(value) is not None


def _unquote(text: str, where: str) -> str:
    """Content of an RFC 7230 quoted-string, backslash escapes resolved."""
    if len(text) < 2 or not text.endswith('"'):
        raise InvalidEvent(where, f"{text!r} opens a double-quoted string but never closes it")
    out: list[str] = []
    i, end = 1, len(text) - 1
    while i < end:
        char = text[i]
        if char == "\\":
            if i + 1 == end:
                raise InvalidEvent(where, f"{text!r}: the closing double quote is escaped")
            out.append(text[i + 1])
            i += 2
            continue
        if char == '"':
            raise InvalidEvent(where, f"{text!r}: unescaped double quote inside a quoted string")
        out.append(char)
        i += 1
    return "".join(out)


def header_clash(name: str) -> str | None:
    """Why a target's own header ``name`` cannot travel beside this binding's, or None.

    Names compare in any case: ``ce-`` headers are attributes, ``Content-Type`` is
    the event format of structured mode, and ``Nats-Msg-Id`` is the JetStream
    de-duplication id the connector writes (stable across retries).
    """
    for own in (CONTENT_TYPE, MSG_ID_HEADER):
        if header_key(name) == header_key(own):
            return (
                f"the NATS binding writes the {own} header itself (names compare in any "
                "case); expected another name"
            )
    return prefix_clash(name, (HEADER_PREFIX,), "NATS")
