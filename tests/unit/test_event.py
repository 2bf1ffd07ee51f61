"""routing/event.py: the CloudEvent value type and the validation rules of spec 1.0."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime, timedelta, timezone

import pytest

from routing.errors import InvalidEvent
from routing.event import (
    CloudEvent,
    canonical_string,
    is_valid_attribute_name,
    parse_time,
)

MINIMAL = {"id": "1", "source": "/s", "type": "t"}


def event(**changes: object) -> CloudEvent:
    return CloudEvent(**{**MINIMAL, **changes})  # type: ignore[arg-type]


def rejects(attribute: str, rule: str) -> pytest.RaisesExc[InvalidEvent]:
    """Expect InvalidEvent naming ``attribute`` with ``rule`` (a regex) in its message."""
    return pytest.raises(
        InvalidEvent, match=rf"^invalid CloudEvent: {re.escape(attribute)}: {rule}"
    )


# -- required attributes ----------------------------------------------------------------


def test_minimal_event_is_valid_and_defaults_specversion() -> None:
    e = event()
    assert e.specversion == "1.0"
    assert e.canonical_attributes() == {
        "id": "1",
        "source": "/s",
        "specversion": "1.0",
        "type": "t",
    }
    assert e.data is None and dict(e.extensions) == {}


@pytest.mark.parametrize("name", ["id", "source", "type"])
def test_required_attributes_must_be_non_empty_strings(name: str) -> None:
    with rejects(name, "must be a non-empty string"):
        event(**{name: ""})
    with rejects(name, "expected a string, got int"):
        event(**{name: 5})


@pytest.mark.parametrize("version", ["0.3", "1", "1.0.0", ""])
def test_only_specversion_1_0_is_supported(version: str) -> None:
    with rejects("specversion", "'.*' is not supported"):
        event(specversion=version)


@pytest.mark.parametrize("name", ["id", "source", "type", "specversion"])
def test_from_attributes_reports_a_missing_required_attribute(name: str) -> None:
    attributes = {**MINIMAL, "specversion": "1.0"}
    del attributes[name]
    with rejects(name, "required attribute is missing"):
        CloudEvent.from_attributes(attributes)


def test_from_attributes_treats_none_as_unset() -> None:
    e = CloudEvent.from_attributes({**MINIMAL, "specversion": "1.0", "subject": None, "x": None})
    assert e.subject is None and "x" not in e.extensions
    with rejects("id", "required attribute is missing"):
        CloudEvent.from_attributes({**MINIMAL, "specversion": "1.0", "id": None})


def test_from_attributes_splits_context_and_extensions() -> None:
    e = CloudEvent.from_attributes(
        {**MINIMAL, "specversion": "1.0", "subject": "s", "zone": "eu", "n": 3}, b"d"
    )
    assert e.subject == "s" and dict(e.extensions) == {"zone": "eu", "n": 3} and e.data == b"d"


# -- optional attributes ----------------------------------------------------------------


@pytest.mark.parametrize("name", ["datacontenttype", "subject", "dataschema", "time"])
def test_optional_attributes_may_not_be_empty(name: str) -> None:
    with rejects(name, "must be a non-empty string"):
        event(**{name: ""})


@pytest.mark.parametrize(
    "uri", ["https://example.com/schema.json", "urn:isbn:0451450523", "a+b.c-d:x", "x:"]
)
def test_dataschema_accepts_absolute_uris(uri: str) -> None:
    assert event(dataschema=uri).dataschema == uri


@pytest.mark.parametrize(
    "uri", ["/schema.json", "schema.json", "example.com/s", "1http://x", "https://a b", "://x"]
)
def test_dataschema_rejects_what_is_not_an_absolute_uri(uri: str) -> None:
    with rejects("dataschema", "'.*' is not an absolute URI"):
        event(dataschema=uri)


# -- time: strict RFC 3339 --------------------------------------------------------------


@pytest.mark.parametrize(
    "time",
    [
        "2020-01-01T18:31:00Z",
        "2020-01-01t18:31:00z",
        "2020-01-01T18:31:00.5+05:30",
        "2020-01-01T18:31:00.123456789-00:00",
        "1985-04-12T23:20:50.52Z",
        "2020-02-29T00:00:00+23:59",
        "0001-01-01T00:00:00Z",
    ],
)
def test_valid_rfc3339_times_are_accepted_and_kept_as_written(time: str) -> None:
    assert event(time=time).time == time


@pytest.mark.parametrize(
    "time",
    [
        "2020-01-01T18:31Z",  # no seconds
        "2020-01-01T18:31:00+05",  # offset without minutes
        "2020-01-01T18:31:00+0530",  # offset without colon
        "2020-01-01T18:31:00",  # no offset
        "2020-01-01 18:31:00Z",  # space separator
        "2020-01-01",
        "20200101T183100Z",
        "2020-1-01T18:31:00Z",
        "2020-01-01T18:31:00.Z",
        " 2020-01-01T18:31:00Z",
    ],
)
def test_times_that_are_not_rfc3339_are_rejected(time: str) -> None:
    with rejects("time", "'.*' is not an RFC 3339 timestamp"):
        event(time=time)


@pytest.mark.parametrize(
    "time",
    [
        "2020-13-01T00:00:00Z",
        "2021-02-29T00:00:00Z",
        "2020-01-01T24:00:00Z",
        "2020-01-01T00:60:00Z",
    ],
)
def test_impossible_dates_and_times_are_rejected(time: str) -> None:
    with rejects("time", "'.*' is not a valid date and time"):
        event(time=time)


def test_time_datetime_is_aware_and_keeps_microseconds() -> None:
    e = event(time="2020-01-01T18:31:00.123456789+05:30")
    assert e.time == "2020-01-01T18:31:00.123456789+05:30"  # full precision stays in the text
    assert e.time_datetime == datetime(
        2020, 1, 1, 18, 31, 0, 123456, tzinfo=timezone(timedelta(hours=5, minutes=30))
    )
    assert parse_time("2020-01-01T00:00:00z") == datetime(2020, 1, 1, tzinfo=UTC)
    assert event().time_datetime is None


def test_leap_second_is_a_valid_rfc3339_time() -> None:
    assert event(time="2016-12-31T23:59:60Z").time == "2016-12-31T23:59:60Z"


# -- strings: forbidden characters ------------------------------------------------------


@pytest.mark.parametrize(
    "char",
    [
        "\x00",
        "\n",
        "\x1f",
        "\x7f",
        "\x85",
        "\x9f",
        "\ud800",
        "\udfff",
        "\ufdd0",
        "\ufffe",
        "\uffff",
    ],
)
@pytest.mark.parametrize("name", ["id", "subject", "zone"])
def test_control_characters_surrogates_and_noncharacters_are_rejected(char: str, name: str) -> None:
    changes: dict[str, object] = (
        {"extensions": {name: f"a{char}"}} if name == "zone" else {name: f"a{char}"}
    )
    with rejects(name, f"contains the character U\\+{ord(char):04X} at offset 1"):
        event(**changes)


@pytest.mark.parametrize(
    "text", ["tab-free ascii", "Ünïcödé €", "emoji 😀", "\u00a0nbsp", "\U0010fffd"]
)
def test_other_unicode_is_allowed(text: str) -> None:
    assert event(subject=text).subject == text


@pytest.mark.parametrize("char", ["\U0001fffe", "\U0001ffff", "\U0010ffff"])
def test_noncharacters_outside_the_bmp_are_rejected(char: str) -> None:
    with pytest.raises(InvalidEvent):
        event(subject=f"a{char}")


# -- attribute names --------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a", "zone", "x1", "1x", "abcdefghijklmnopqrstuvwxyz0123456789"])
def test_valid_attribute_names(name: str) -> None:
    assert is_valid_attribute_name(name)
    assert event(extensions={name: "v"}).get(name) == "v"


@pytest.mark.parametrize(
    "name", ["", "Zone", "zone-1", "zone_1", "zöne", "data", "data_base64", " z"]
)
def test_invalid_attribute_names(name: str) -> None:
    assert not is_valid_attribute_name(name)
    with rejects(repr(name), "attribute names must be lower-case letters and digits only"):
        event(extensions={name: "v"})


@pytest.mark.parametrize("name", ["id", "time", "specversion", "datacontenttype"])
def test_context_attributes_cannot_be_extensions(name: str) -> None:
    with rejects(name, "is a context attribute, not an extension"):
        event(extensions={name: "v"})


# -- extension types --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "canonical"),
    [
        ("text", "text"),
        ("", ""),
        (0, "0"),
        (-(2**31), "-2147483648"),
        (2**31 - 1, "2147483647"),
        (True, "true"),
        (False, "false"),
        (b"", ""),
        (b"\x00\xff\x10", "AP8Q"),
    ],
)
def test_extension_values_and_their_canonical_strings(value: object, canonical: str) -> None:
    e = event(extensions={"x": value})
    assert e.extensions["x"] == value and type(e.extensions["x"]) is type(value)
    assert canonical_string(e.extensions["x"]) == canonical
    assert e.canonical_attributes()["x"] == canonical


@pytest.mark.parametrize("value", [2**31, -(2**31) - 1, 2**63])
def test_integers_outside_32_bits_are_rejected(value: int) -> None:
    with rejects("x", f"integer {value} is outside the signed 32-bit range"):
        event(extensions={"x": value})


@pytest.mark.parametrize("value", [1.5, 0.0, None, [1], {"a": 1}, bytearray(b"x")])
def test_other_extension_types_are_rejected(value: object) -> None:
    with rejects("x", "extension values must be string, integer, boolean or bytes"):
        event(extensions={"x": value})


def test_data_must_be_bytes() -> None:
    with rejects("data", "expected bytes, got str"):
        event(data="text")


# -- access, immutability, equality -----------------------------------------------------


def test_attributes_lists_context_then_extensions_and_get_reads_both() -> None:
    e = event(subject="s", time="2020-01-01T00:00:00Z", extensions={"zone": "eu"})
    assert [name for name, _ in e.attributes()] == [
        "id",
        "source",
        "specversion",
        "type",
        "subject",
        "time",
        "zone",
    ]
    assert e.get("subject") == "s" and e.get("zone") == "eu"
    assert e.get("dataschema") is None and e.get("missing") is None


def test_events_are_immutable() -> None:
    source = {"zone": "eu"}
    e = event(extensions=source)
    with pytest.raises(dataclasses.FrozenInstanceError):
        e.id = "2"  # type: ignore[misc]
    with pytest.raises(TypeError):
        e.extensions["zone"] = "us"  # type: ignore[index]
    source["zone"] = "us"
    assert e.extensions["zone"] == "eu"


def test_replace_revalidates() -> None:
    e = event(subject="s")
    assert e.replace(subject="t").subject == "t" and e.subject == "s"
    with rejects("time", "'nope' is not an RFC 3339 timestamp"):
        e.replace(time="nope")


def test_equal_events_hash_equal() -> None:
    a = event(extensions={"x": 1}, data=b"d")
    b = event(extensions={"x": 1}, data=b"d")
    assert a == b and hash(a) == hash(b)
    assert a != event(extensions={"x": 2}, data=b"d")


def test_events_with_differently_typed_extensions_differ() -> None:
    assert event(extensions={"x": 1}) != event(extensions={"x": True})
