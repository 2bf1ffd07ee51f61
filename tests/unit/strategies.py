"""Hypothesis strategies for valid CloudEvents (and pieces of them).

``events()`` draws any event the spec allows, so that every binding and format
must carry it unchanged: arbitrary Unicode in string attributes (no control
characters, surrogates or noncharacters, which the spec forbids), typed extensions
(string, 32-bit integer, boolean, bytes), RFC 3339 times in their many spellings,
and data that is ``None`` or non-empty bytes.

Data under a JSON media type (or no ``datacontenttype``, which the JSON format
reads as ``application/json``) is compact JSON exactly as ``orjson.dumps`` writes
it: the JSON format inlines such data as a JSON value, and a JSON value has no
byte-exact form (see ``routing/formats/json.py``). Empty data is left out because
AMQP, MQTT and NATS have no null payload: there, empty means "no data".
"""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import strategies as st

from routing.event import CONTEXT_ATTRIBUTES, CloudEvent
from routing.formats.json import is_json_media_type

__all__ = [
    "attribute_names",
    "attribute_text",
    "events",
    "extension_values",
    "json_values",
    "rfc3339_times",
]

INT32 = (-(2**31), 2**31 - 1)


def _allowed(char: str) -> bool:
    """Characters the CloudEvents String type allows."""
    code = ord(char)
    if code <= 0x1F or 0x7F <= code <= 0x9F or 0xD800 <= code <= 0xDFFF:
        return False
    return not (0xFDD0 <= code <= 0xFDEF or (code & 0xFFFE) == 0xFFFE)  # noncharacters


_chars = st.characters(exclude_categories=("Cs", "Cc")).filter(_allowed)
attribute_text = st.text(_chars, min_size=1, max_size=30)
"""Non-empty CloudEvents String values (any Unicode the spec allows)."""

attribute_names = st.from_regex(r"[a-z0-9]{1,20}", fullmatch=True).filter(
    lambda name: name not in CONTEXT_ATTRIBUTES and name != "data"
)
"""Extension attribute names."""

extension_values = st.one_of(
    attribute_text,
    st.text(_chars, max_size=5),  # the empty string is a valid extension value
    st.integers(*INT32),
    st.booleans(),
    st.binary(max_size=12),
)


@st.composite
def rfc3339_times(draw: st.DrawFn) -> str:
    """Valid RFC 3339 date-times, in upper and lower case, with Z or numeric offsets."""
    moment = draw(st.datetimes(allow_imaginary=False))
    digits = draw(st.integers(0, 9))
    frac = "." + draw(st.from_regex(rf"[0-9]{{{digits}}}", fullmatch=True)) if digits else ""
    zone = draw(
        st.one_of(
            st.sampled_from(["Z", "z", "+00:00", "-00:00"]),
            st.builds(
                lambda sign, h, m: f"{sign}{h:02d}:{m:02d}",
                st.sampled_from("+-"),
                st.integers(0, 23),
                st.integers(0, 59),
            ),
        )
    )
    sep = draw(st.sampled_from("Tt"))
    date = f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"
    return f"{date}{sep}{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}{frac}{zone}"


json_values: st.SearchStrategy[Any] = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**63), 2**63 - 1),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(st.characters(exclude_categories=("Cs",)), max_size=10),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.text(st.characters(exclude_categories=("Cs",)), max_size=5), children, max_size=4
        ),
    ),
    max_leaves=10,
)
"""Any JSON value orjson can write."""

media_types = st.one_of(
    st.sampled_from(
        [
            "application/json",
            "application/json; charset=utf-8",
            "text/json",
            "application/vnd.acme.telemetry+json",
            "text/plain",
            "text/plain; charset=utf-8",
            "text/xml",
            "application/octet-stream",
            "application/avro",
            "application/cloudevents+json",  # an event carrying another event as data
            "APPLICATION/CloudEvents+JSON",
        ]
    ),
    attribute_text,
)


def _data(datacontenttype: str | None) -> st.SearchStrategy[bytes | None]:
    if is_json_media_type(datacontenttype):
        return st.none() | json_values.map(orjson.dumps)
    return st.none() | st.binary(min_size=1, max_size=40)


absolute_uris = st.builds(
    lambda scheme, rest: f"{scheme}:{rest}",
    st.from_regex(r"[a-zA-Z][a-zA-Z0-9+.\-]{0,8}", fullmatch=True),
    st.text(_chars, max_size=20).filter(lambda rest: " " not in rest),
)


@st.composite
def events(draw: st.DrawFn) -> CloudEvent:
    """Any valid CloudEvent."""
    datacontenttype = draw(st.none() | media_types)
    return CloudEvent(
        id=draw(attribute_text),
        source=draw(attribute_text),
        type=draw(attribute_text),
        datacontenttype=datacontenttype,
        dataschema=draw(st.none() | absolute_uris),
        subject=draw(st.none() | attribute_text),
        time=draw(st.none() | rfc3339_times()),
        extensions=draw(st.dictionaries(attribute_names, extension_values, max_size=4)),
        data=draw(_data(datacontenttype)),
    )
