"""CloudEvents SQL (CESQL) v1: compile an expression once, evaluate it per event.

    expr = compile_expression("type LIKE 'com.acme.%' AND subject <> 'test'")
    expr.evaluate(event)   # EvaluationResult(value=True, errors=())
    expr.matches(event)    # filter use: True only for a Boolean true without errors

``compile_expression`` raises ``CesqlParseError`` (a ``routing.errors.FilterError``)
with the 0-based position of the offending token. Evaluation never raises:
CESQL is total, so every evaluation yields a value, and the errors met on the
way (``CesqlEvaluationError`` with an ``ErrorKind``) travel beside it.
"""

from __future__ import annotations

from dataclasses import dataclass

from routing.cesql.ast import (
    CesqlError,
    CesqlEvaluationError,
    CesqlParseError,
    ErrorKind,
    ErrorRecord,
    Node,
    Value,
    referenced_attributes,
)
from routing.cesql.evaluator import compile_node
from routing.cesql.parser import parse
from routing.event import CloudEvent

__all__ = [
    "CesqlError",
    "CesqlEvaluationError",
    "CesqlParseError",
    "ErrorKind",
    "EvaluationResult",
    "Expression",
    "Value",
    "compile_expression",
]


@dataclass(frozen=True, slots=True)
class EvaluationResult:
    """The value of an expression for one event, and the errors met computing it."""

    value: Value
    errors: tuple[CesqlEvaluationError, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.errors


class Expression:
    """A compiled CESQL expression; stateless, so one instance serves every task."""

    __slots__ = ("_fn", "attributes", "text", "tree")

    def __init__(self, text: str, tree: Node) -> None:
        self.text = text
        self.tree = tree
        #: every attribute name the expression reads or tests with EXISTS
        self.attributes: frozenset[str] = referenced_attributes(tree)
        self._fn = compile_node(tree).fn

    def evaluate(self, event: CloudEvent) -> EvaluationResult:
        """Evaluate against ``event``; never raises (CESQL is total)."""
        errors: list[ErrorRecord] = []
        value = self._fn(event, errors)
        if not errors:
            return EvaluationResult(value)
        # Fresh exception objects per result: raising one extends its traceback.
        return EvaluationResult(value, tuple(CesqlEvaluationError(*error) for error in errors))

    def matches(self, event: CloudEvent) -> bool:
        """Filter semantics (spec 1.2): pass only on Boolean true with no errors."""
        errors: list[ErrorRecord] = []
        return self._fn(event, errors) is True and not errors

    def __repr__(self) -> str:
        return f"Expression({self.text!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Expression) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)


def compile_expression(text: str) -> Expression:
    """Parse and compile CESQL ``text``; raise ``CesqlParseError`` if it is invalid."""
    return Expression(text, parse(text))
