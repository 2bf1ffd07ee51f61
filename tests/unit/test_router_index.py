"""The route index of ``SourceGroup``: matching by lookups must equal scanning every filter."""

from __future__ import annotations

import itertools

import pytest

from routing.cesql import compile_expression
from routing.event import CloudEvent
from routing.router import Requirement, Route, SourceGroup, requirement

FILTERS = [
    None,
    "type = 'a.b'",
    "'a.b' = type",
    "type = 'a.b' AND subject <> 'x'",
    "subject = 'x' AND type LIKE 'a.%'",
    "type LIKE 'a.%'",
    "type LIKE 'a.b'",
    "type LIKE 'a._'",
    "type LIKE '%.b'",
    "type NOT LIKE 'a.%'",
    "type IN ('a.b', 'c.d')",
    "type NOT IN ('a.b', 'c.d')",
    "type IN ('a.b', 1)",
    "type = 'a.b' OR type LIKE 'c.%'",
    "type = 'a.b' OR subject = 'x'",
    "type = 'a.b' OR UPPER(subject) = 'X'",
    "(type = 'a.b' AND source = '/s') OR (source = '/t' AND subject LIKE 'x%')",
    "NOT (type = 'a.b')",
    "type <> 'a.b'",
    "subject = 'x'",
    "ext = 'a.b'",
    "source LIKE '/s%' AND type = 'c.d'",
    "type = 'TRUE'",
    "TYPE = 'a.b'",
    "time = '2024-01-01T00:00:00Z'",
    "type LIKE 'a\\%b%'",
]

EVENTS = [
    CloudEvent(id="1", source="/s", type="a.b"),
    CloudEvent(id="2", source="/s", type="a.c", subject="x"),
    CloudEvent(id="3", source="/t", type="c.d", subject="xy"),
    CloudEvent(id="4", source="/t", type="A.B", subject="X", extensions={"ext": "a.b"}),
    CloudEvent(id="5", source="/s2", type="a%b.c", time="2024-01-01T00:00:00Z"),
    CloudEvent(id="6", source="/u", type="TRUE", extensions={"ext": 3}),
    CloudEvent(id="7", source="/s", type="a."),
]


def _group(filters: list[str | None]) -> SourceGroup:
    routes = tuple(
        Route(
            name=f"r{i}",
            source_connector="c",
            source=None,
            targets=(),
            filter=None if text is None else compile_expression(text).matches,
            filter_text=text,
        )
        for i, text in enumerate(filters)
    )
    return SourceGroup("c", None, routes)


def test_index_matches_like_a_scan() -> None:
    group = _group(FILTERS * 3)
    for event in EVENTS:
        expected = [route for route in group.routes if route.matches(event)]
        assert group.match(event) == expected, event
        candidates = group.candidates(event)
        assert candidates == sorted(set(candidates))
        assert {route.name for route in expected} <= {group.routes[i].name for i in candidates}


@pytest.mark.parametrize("size", [1, 2, 5])
def test_every_small_table_agrees(size: int) -> None:
    for combination in itertools.islice(itertools.combinations(FILTERS, size), 300):
        group = _group(list(combination))
        for event in EVENTS:
            assert group.match(event) == [r for r in group.routes if r.matches(event)]


def test_requirements_found() -> None:
    assert requirement("type = 'a' AND subject <> 'x'") == (
        Requirement("type", exact=frozenset({"a"})),
    )
    assert requirement("type LIKE 'a.%'") == (Requirement("type", prefixes=frozenset({"a."})),)
    assert requirement("type IN ('a', 'b')") == (Requirement("type", exact=frozenset({"a", "b"})),)
    assert requirement("type = 'a' OR subject = 'b'") == (
        Requirement("type", exact=frozenset({"a"})),
        Requirement("subject", exact=frozenset({"b"})),
    )
    # The more selective conjunct wins: an exact value over a prefix.
    assert requirement("type LIKE 'a%' AND source = '/s'") == (
        Requirement("source", exact=frozenset({"/s"})),
    )


@pytest.mark.parametrize(
    "text",
    [
        "type <> 'a'",
        "NOT (type = 'a')",
        "type NOT LIKE 'a%'",
        "type LIKE '%a'",
        "type LIKE 'a_'",
        "ext = 'a'",  # extensions may be integers or booleans: casts decide
        "type = 'a' OR UPPER(subject) = 'B'",
        "type IN ('a', 1)",
        "true",
    ],
)
def test_nothing_to_index(text: str) -> None:
    assert requirement(text) is None
