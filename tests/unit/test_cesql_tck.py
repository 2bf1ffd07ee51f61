"""Run every case of the CESQL v1 TCK (tests/vectors/cesql_tck) against routing.cesql.

One pytest case per TCK test, id "file::test name". A case asserts the exact
value and type of the result, and the error kind: exactly the one named by
``error``, or none at all when ``error`` is absent. A ``parse`` error means
``compile_expression`` must refuse the expression; there is no result to check.
"""

from __future__ import annotations

import filecmp
from pathlib import Path
from typing import Any

import pytest
import yaml

from routing.cesql import CesqlParseError, ErrorKind, compile_expression
from routing.event import CloudEvent

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "cesql_tck"
# The shared vectors the copy above was taken from; absent on a clean clone.
SHARED_VECTORS = Path(__file__).resolve().parents[3] / "shared" / "vectors" / "cesql_tck"

# Any valid event without optional attributes, for tests that give no ``event``.
DEFAULT_EVENT: dict[str, Any] = {
    "specversion": "1.0",
    "id": "tck-default-id",
    "source": "https://tck.example/source",
    "type": "io.cloudevents.tck",
}
# JSON-format members that are the payload, not attributes.
PAYLOAD_MEMBERS = frozenset({"data", "data_base64"})


class _TckLoader(yaml.SafeLoader):
    """YAML loader that keeps the TCK's text as written where YAML 1.1 would not.

    - ``expression`` scalars stay raw text: ``TRUE``, ``0`` or ``-10`` are
      expressions, not a YAML bool or int;
    - timestamps stay strings: CloudEvents carries ``time`` as RFC 3339 text.
    """


_TckLoader.yaml_implicit_resolvers = {
    first: [(tag, regex) for tag, regex in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    mapping: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key == "expression" and isinstance(value_node, yaml.ScalarNode):
            mapping[key] = value_node.value
        else:
            mapping[key] = loader.construct_object(value_node, deep=True)
    return mapping


_TckLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _load_cases() -> list[Any]:
    params = []
    for path in sorted(VECTORS.glob("*.yaml")):
        suite = yaml.load(path.read_text(encoding="utf-8"), Loader=_TckLoader)
        for case in suite["tests"]:
            case_id = f"{path.stem}::{case['name']}"
            params.append(pytest.param(case, id=case_id))
    return params


CASES = _load_cases()


def _event(case: dict[str, Any]) -> CloudEvent:
    attributes = dict(case["event"]) if "event" in case else dict(DEFAULT_EVENT)
    attributes.update(case.get("eventOverrides") or {})
    for member in PAYLOAD_MEMBERS:
        attributes.pop(member, None)
    return CloudEvent.from_attributes(attributes)


def test_tck_is_present() -> None:
    assert len(CASES) > 200, f"expected the full TCK in {VECTORS}"


@pytest.mark.skipif(not SHARED_VECTORS.is_dir(), reason="no ../shared vectors (clean clone)")
def test_vendored_copy_matches_shared_vectors() -> None:
    shared = sorted(p.name for p in SHARED_VECTORS.glob("*.yaml"))
    assert sorted(p.name for p in VECTORS.glob("*.yaml")) == shared
    _, mismatch, errors = filecmp.cmpfiles(SHARED_VECTORS, VECTORS, shared, shallow=False)
    assert not mismatch and not errors, f"tests/vectors/cesql_tck is stale: {mismatch + errors}"


@pytest.mark.parametrize("case", CASES)
def test_tck(case: dict[str, Any]) -> None:
    expected_error = case.get("error")
    if expected_error == ErrorKind.PARSE:
        with pytest.raises(CesqlParseError) as raised:
            compile_expression(case["expression"])
        assert raised.value.kind is ErrorKind.PARSE
        assert raised.value.position is not None
        return

    result = compile_expression(case["expression"]).evaluate(_event(case))

    kinds = {error.kind for error in result.errors}
    if expected_error is None:
        assert not result.errors, f"unexpected errors: {result.errors}"
    else:
        assert kinds == {ErrorKind(expected_error)}, f"errors: {result.errors}"
    if "result" in case:
        expected = case["result"]
        assert type(result.value) is type(expected), f"{result.value!r} vs {expected!r}"
        assert result.value == expected
