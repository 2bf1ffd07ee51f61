"""Event filters of the CloudEvents Subscriptions API, and native wildcard matching.

Subscriptions API dialects (``filters:`` in a route, a list meaning ``all``)::

    {exact: {type: com.acme.created}}        every named attribute equals the value
    {prefix: {type: com.acme.}}              every named attribute starts with the value
    {suffix: {source: /eu}}                  every named attribute ends with the value
    {all: [<filter>, ...]}                   all nested filters match
    {any: [<filter>, ...]}                   at least one nested filter matches
    {not: <filter>}                          the nested filter does not match
    {sql: "CESQL expression"}                a CloudEvents SQL expression

Attribute values are compared as canonical strings; an unset attribute never
matches ``exact``/``prefix``/``suffix`` (as the spec says). Native wildcard
syntax (MQTT topic filters, NATS subjects, AMQP binding keys) belongs to each
protocol's connector (``connectors/<type>/topology.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from routing.errors import FilterError
from routing.event import CloudEvent, canonical_string, is_valid_attribute_name

__all__ = ["EventFilter", "compile_filter"]

EventFilter = Callable[[CloudEvent], bool]


def _attribute_test(dialect: str, spec: object, test: Callable[[str, str], bool]) -> EventFilter:
    if not isinstance(spec, Mapping) or not spec:
        raise FilterError(f"{dialect}: expected a mapping of attribute name to string value")
    pairs: list[tuple[str, str]] = []
    for name, expected in spec.items():
        if not isinstance(name, str) or not is_valid_attribute_name(name):
            raise FilterError(f"{dialect}: {name!r} is not a CloudEvents attribute name")
        if not isinstance(expected, str | int | bool):
            raise FilterError(f"{dialect}.{name}: expected a string value")
        pairs.append((name, canonical_string(expected)))
    if dialect != "exact" and any(value == "" for _, value in pairs):
        raise FilterError(f"{dialect}: the value may not be empty")

    def matches(event: CloudEvent) -> bool:
        for name, expected in pairs:
            value = event.get(name)
            if value is None or not test(canonical_string(value), expected):
                return False
        return True

    return matches


def compile_filter(spec: Any) -> EventFilter:
    """Compile one Subscriptions API filter expression; ``FilterError`` when invalid."""
    if isinstance(spec, Sequence) and not isinstance(spec, str):
        return _all([compile_filter(item) for item in spec])
    if not isinstance(spec, Mapping) or len(spec) != 1:
        raise FilterError(
            "a filter is a mapping with exactly one dialect: "
            "exact, prefix, suffix, all, any, not or sql"
        )
    ((dialect, body),) = spec.items()
    if dialect == "exact":
        return _attribute_test(dialect, body, lambda value, expected: value == expected)
    if dialect == "prefix":
        return _attribute_test(dialect, body, lambda value, expected: value.startswith(expected))
    if dialect == "suffix":
        return _attribute_test(dialect, body, lambda value, expected: value.endswith(expected))
    if dialect in ("all", "any"):
        if not isinstance(body, Sequence) or isinstance(body, str) or not body:
            raise FilterError(f"{dialect}: expected a non-empty list of filters")
        nested = [compile_filter(item) for item in body]
        return _all(nested) if dialect == "all" else _any(nested)
    if dialect == "not":
        inner = compile_filter(body)
        return lambda event: not inner(event)
    if dialect == "sql":
        if not isinstance(body, str):
            raise FilterError("sql: expected a CESQL expression string")
        from routing.cesql import compile_expression  # local: CESQL is optional per route

        return compile_expression(body).matches
    raise FilterError(
        f"unknown filter dialect {dialect!r} (expected exact, prefix, suffix, all, any, not or sql)"
    )


def _all(filters: list[EventFilter]) -> EventFilter:
    return lambda event: all(f(event) for f in filters)


def _any(filters: list[EventFilter]) -> EventFilter:
    return lambda event: any(f(event) for f in filters)
