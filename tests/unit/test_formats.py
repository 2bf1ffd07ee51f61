"""routing/formats: the JSON and Avro event formats and the dispatch between them."""

from __future__ import annotations

import base64
import io
import re
from typing import Any

import fastavro
import orjson
import pytest

from routing.errors import InvalidEvent
from routing.event import CloudEvent
from routing.formats import EventFormat, decode, encode, is_structured
from routing.formats import avro as avro_format
from routing.formats import json as json_format

BASE = {"specversion": "1.0", "id": "1", "source": "/s", "type": "t"}
EVENT = CloudEvent(
    id="evt-1",
    source="/sensors/7",
    type="com.example.reading",
    datacontenttype="application/json",
    dataschema="https://example.com/reading.json",
    subject="temp €",
    time="2026-11-26T10:00:00.5+01:00",
    extensions={"count": -42, "flag": True, "blob": b"\x00\xff", "note": ""},
    data=b'{"celsius":21.5,"ok":true}',
)


def json_event(**members: Any) -> CloudEvent:
    return json_format.decode(orjson.dumps({**BASE, **members}))


def rejects(attribute: str, rule: str) -> pytest.RaisesExc[InvalidEvent]:
    return pytest.raises(
        InvalidEvent, match=rf"^invalid CloudEvent: {re.escape(attribute)}: {rule}"
    )


# -- JSON: writing ----------------------------------------------------------------------


def test_json_writes_attributes_with_their_json_types() -> None:
    obj = orjson.loads(json_format.encode(EVENT))
    assert obj == {
        "id": "evt-1",
        "source": "/sensors/7",
        "specversion": "1.0",
        "type": "com.example.reading",
        "datacontenttype": "application/json",
        "dataschema": "https://example.com/reading.json",
        "subject": "temp €",
        "time": "2026-11-26T10:00:00.5+01:00",
        "count": -42,
        "flag": True,
        "blob": "AP8=",
        "note": "",
        "data": {"celsius": 21.5, "ok": True},
    }


@pytest.mark.parametrize(
    "content_type", [None, "application/json", "text/json", "application/x+json"]
)
def test_json_data_is_inlined_as_a_json_value(content_type: str | None) -> None:
    e = EVENT.replace(datacontenttype=content_type, data=b"[1,2]")
    assert orjson.loads(json_format.encode(e))["data"] == [1, 2]


def test_text_data_is_a_json_string_and_other_data_is_base64() -> None:
    text = orjson.loads(
        json_format.encode(EVENT.replace(datacontenttype="text/plain", data=b"h\xc3\xa9"))
    )
    assert text["data"] == "hé" and "data_base64" not in text
    binary = orjson.loads(
        json_format.encode(EVENT.replace(datacontenttype="image/png", data=b"\x89P"))
    )
    assert binary["data_base64"] == "iVA=" and "data" not in binary
    not_utf8 = orjson.loads(
        json_format.encode(EVENT.replace(datacontenttype="text/plain", data=b"\xff"))
    )
    assert not_utf8["data_base64"] == "/w=="


@pytest.mark.parametrize("data", [b"not json", b"null", b""])
def test_json_typed_data_that_is_no_json_value_goes_base64(data: bytes) -> None:
    obj = orjson.loads(json_format.encode(EVENT.replace(data=data)))
    assert obj["data_base64"] == base64.b64encode(data).decode()
    assert json_format.decode(json_format.encode(EVENT.replace(data=data))).data == data


def test_event_without_data_has_neither_data_member() -> None:
    obj = orjson.loads(json_format.encode(EVENT.replace(data=None)))
    assert "data" not in obj and "data_base64" not in obj


# -- JSON: reading ----------------------------------------------------------------------


def test_json_roundtrip_keeps_everything_but_the_bytes_type() -> None:
    decoded = json_format.decode(json_format.encode(EVENT))
    assert decoded.canonical_attributes() == EVENT.canonical_attributes()
    assert decoded.data == EVENT.data
    assert decoded.extensions["count"] == -42 and decoded.extensions["flag"] is True
    assert decoded.extensions["blob"] == "AP8="  # JSON has no binary type


def test_json_data_comes_back_compact() -> None:
    e = json_event(data={"a": [1, 2]})
    assert e.data == b'{"a":[1,2]}'
    spaced = json_format.decode(
        b'{"specversion":"1.0","id":"1","source":"s","type":"t","data": { "a" : 1 } }'
    )
    assert spaced.data == b'{"a":1}'


def test_json_string_data_depends_on_the_media_type() -> None:
    assert json_event(data="x").data == b'"x"'  # no datacontenttype means application/json
    assert json_event(datacontenttype="text/plain", data="x").data == b"x"


def test_json_null_means_unset() -> None:
    e = json_event(subject=None, time=None, zone=None, data=None)
    assert e.subject is None and e.time is None and "zone" not in e.extensions and e.data is None
    assert json_event(data=None, data_base64="AA==").data == b"\x00"


def test_data_and_data_base64_together_are_rejected() -> None:
    with rejects("data", "an event may carry data or data_base64, not both"):
        json_event(data={"a": 1}, data_base64="AA==")


@pytest.mark.parametrize("value", ["!!", "AAA", 5])
def test_bad_data_base64_is_rejected(value: object) -> None:
    with rejects("data_base64", "(not valid base64|expected a base64 string)"):
        json_event(data_base64=value)


@pytest.mark.parametrize("value", [1.5, 1e3, -0.0])
def test_floats_are_rejected_naming_the_attribute(value: float) -> None:
    with rejects("reading", "-?[0-9.e+]+: CloudEvents has no floating point type"):
        json_event(reading=value)


@pytest.mark.parametrize("value", [[1], {"a": 1}])
def test_structured_values_are_rejected(value: object) -> None:
    with rejects("zone", "attribute values must be strings, integers or booleans"):
        json_event(zone=value)


@pytest.mark.parametrize("name", ["Zone", "zone-1", "zöne", ""])
def test_invalid_attribute_names_are_rejected(name: str) -> None:
    with rejects(repr(name), "attribute names must be lower-case letters and digits only"):
        json_event(**{name: "v"})


def test_integers_must_fit_in_32_bits() -> None:
    assert json_event(n=2**31 - 1).extensions["n"] == 2**31 - 1
    with rejects("n", "integer 2147483648 is outside the signed 32-bit range"):
        json_event(n=2**31)


@pytest.mark.parametrize("name", ["specversion", "id", "source", "type"])
def test_missing_required_attributes_are_rejected(name: str) -> None:
    members = {k: v for k, v in BASE.items() if k != name}
    with rejects(name, "required attribute is missing"):
        json_format.decode(orjson.dumps(members))


def test_strict_time_and_types_apply_to_json() -> None:
    with rejects("time", "'2020-01-01T18:31Z' is not an RFC 3339 timestamp"):
        json_event(time="2020-01-01T18:31Z")
    with rejects("time", r"'2020-01-01T18:31:00\+05' is not an RFC 3339 timestamp"):
        json_event(time="2020-01-01T18:31:00+05")
    with rejects("id", "expected a string, got int"):
        json_event(id=7)
    with rejects("specversion", "'0.3' is not supported"):
        json_event(specversion="0.3")
    with rejects("dataschema", "'relative/path' is not an absolute URI"):
        json_event(dataschema="relative/path")
    with rejects("subject", "contains the character U\\+0000"):
        json_event(subject="a\x00b")


@pytest.mark.parametrize(
    ("payload", "rule"),
    [
        (b"", "not valid JSON"),
        (b"{", "not valid JSON"),
        (b"\xff", "not valid JSON"),
        (b"[]", "a JSON object was expected, got list"),
        (b'"event"', "a JSON object was expected, got str"),
    ],
)
def test_payloads_that_are_no_json_object_are_rejected(payload: bytes, rule: str) -> None:
    with rejects("payload", rule):
        json_format.decode(payload)


def test_deeply_nested_json_data_is_an_invalid_event() -> None:
    deep = b"[" * 300 + b"]" * 300
    with pytest.raises(InvalidEvent):
        json_format.decode(
            b'{"specversion":"1.0","id":"1","source":"s","type":"t","data":' + deep + b"}"
        )


# -- Avro -------------------------------------------------------------------------------


def test_avro_roundtrip_keeps_the_event_exactly() -> None:
    assert avro_format.decode(avro_format.encode(EVENT)) == EVENT
    for e in (EVENT.replace(data=None), EVENT.replace(data=b""), EVENT.replace(extensions={})):
        decoded = avro_format.decode(avro_format.encode(e))
        assert decoded == e and type(decoded.data) is type(e.data)


def test_avro_keeps_extension_types() -> None:
    decoded = avro_format.decode(avro_format.encode(EVENT))
    assert decoded.extensions["blob"] == b"\x00\xff" and decoded.extensions["flag"] is True
    assert decoded.extensions["count"] == -42 and type(decoded.extensions["count"]) is int


def _avro(record: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, avro_format._PARSED, record)
    return out.getvalue()


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ("text", b"text"),
        (1.5, b"1.5"),
        (True, b"true"),
        ({"a": "b", "n": None}, b'{"a":"b","n":null}'),
        ([{"value": {"k": 2.0}}], b'[{"k":2.0}]'),
    ],
)
def test_avro_json_like_data_comes_back_as_compact_json(data: object, expected: bytes) -> None:
    decoded = avro_format.decode(_avro({"attribute": dict(BASE), "data": data}))
    assert decoded.data == expected


@pytest.mark.parametrize("payload", [b"", b"\x01", b"\xff" * 8, b"garbage that is not avro at all"])
def test_garbage_avro_is_rejected(payload: bytes) -> None:
    with rejects("payload", "not a CloudEvents Avro record"):
        avro_format.decode(payload)


def test_avro_record_must_hold_a_valid_event() -> None:
    with rejects("specversion", "required attribute is missing"):
        avro_format.decode(_avro({"attribute": {"id": "1"}, "data": None}))
    with rejects("id", "expected a string, got bytes"):
        avro_format.decode(_avro({"attribute": {**BASE, "id": b"1"}, "data": None}))
    with rejects("time", "'2020-01-01T18:31Z' is not an RFC 3339"):
        avro_format.decode(
            _avro({"attribute": {**BASE, "time": "2020-01-01T18:31Z"}, "data": None})
        )


def test_deeply_nested_avro_data_is_an_invalid_event() -> None:
    # data = [{"a": [{"a": [ ... ]}]}] nested 200 deep, written by hand (schemaless Avro)
    depth = 200
    nested = b"\x02\x02\x02a\x06" * depth + b"\x02\x00\x00" + b"\x00\x00" * depth
    payload = _avro({"attribute": dict(BASE), "data": None})[:-1] + b"\x08" + nested
    with pytest.raises(InvalidEvent):
        avro_format.decode(payload)


# -- dispatch ---------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", list(EventFormat))
def test_encode_and_decode_pick_the_format(fmt: EventFormat) -> None:
    content_type, payload = encode(EVENT, fmt)
    assert content_type == fmt.content_type == f"application/cloudevents+{fmt.value}"
    assert decode(payload, content_type).canonical_attributes() == EVENT.canonical_attributes()
    assert decode(payload, content_type.upper() + "; charset=utf-8").id == "evt-1"


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        ("application/cloudevents+json", True),
        ("Application/CloudEvents+JSON; charset=UTF-8", True),
        ("application/cloudevents", True),
        ("application/cloudevents-batch+json", True),
        ("application/json", False),
        ("text/plain; x=application/cloudevents", False),
        (None, False),
    ],
)
def test_is_structured_is_a_case_insensitive_prefix_test(
    content_type: str | None, expected: bool
) -> None:
    assert is_structured(content_type) is expected


@pytest.mark.parametrize(
    ("content_type", "rule"),
    [
        ("application/cloudevents-batch+json", "batched CloudEvents are not supported"),
        ("application/cloudevents+xml", "names no supported event format"),
        ("application/cloudevents", "names no supported event format"),
    ],
)
def test_decode_rejects_formats_it_does_not_support(content_type: str, rule: str) -> None:
    with rejects("content-type", f".*{rule}"):
        decode(b"[]", content_type)
