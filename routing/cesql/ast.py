"""CESQL data model: values, error kinds and the syntax tree the parser builds.

The tree is a plain immutable description of the expression; ``evaluator``
turns it into closures once, so nothing here is on the per-event hot path.
Every node keeps ``pos``, the 0-based offset of its first character in the
source text, so errors can point at the part of the expression at fault.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum, StrEnum

from routing.errors import FilterError

__all__ = [
    "Attribute",
    "Binary",
    "Call",
    "CesqlError",
    "CesqlEvaluationError",
    "CesqlParseError",
    "ErrorKind",
    "ErrorRecord",
    "Exists",
    "In",
    "Like",
    "Literal",
    "Node",
    "Unary",
    "Value",
    "Wildcard",
    "children",
    "logic_operands",
    "referenced_attributes",
]

# The three CESQL primitive types map onto Python's bool, int (32-bit range) and str.
Value = bool | int | str


class ErrorKind(StrEnum):
    """The error types every CESQL engine must support (spec section 3.3).

    The values are the names the CESQL TCK uses in its ``error`` field.
    """

    PARSE = "parse"
    MATH = "math"
    CAST = "cast"
    MISSING_ATTRIBUTE = "missingAttribute"
    MISSING_FUNCTION = "missingFunction"
    FUNCTION_EVALUATION = "functionEvaluation"
    GENERIC = "generic"


class CesqlError(FilterError):
    """A CESQL error of a given ``kind``; ``position`` is a 0-based source offset."""

    def __init__(self, kind: ErrorKind, message: str, position: int | None = None) -> None:
        self.kind = kind
        self.detail = message
        super().__init__(message, position)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.kind.value}, {self.detail!r}, {self.position})"

    # Errors are values, so results holding them compare equal when they say the same.
    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, CesqlError)
        return (self.kind, self.detail, self.position) == (other.kind, other.detail, other.position)

    def __hash__(self) -> int:
        return hash((type(self), self.kind, self.detail, self.position))


class CesqlParseError(CesqlError):
    """The expression text is not valid CESQL; raised by ``compile_expression``."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(ErrorKind.PARSE, message, position)


class CesqlEvaluationError(CesqlError):
    """An error met while evaluating; collected in ``EvaluationResult.errors``, never raised.

    CESQL is total: every evaluation yields a value, and errors travel beside it.
    """


# What evaluation records per error: (kind, message, source position). Plain
# tuples are cheap enough for the per-event path, immutable and shareable; the
# public result turns them into CesqlEvaluationError objects only when asked.
ErrorRecord = tuple[ErrorKind, str, int]


@dataclass(frozen=True, slots=True)
class Literal:
    value: Value
    pos: int


@dataclass(frozen=True, slots=True)
class Attribute:
    """A value identifier: a context attribute or extension, by lower-case name."""

    name: str
    pos: int


@dataclass(frozen=True, slots=True)
class Exists:
    name: str
    pos: int


@dataclass(frozen=True, slots=True)
class Unary:
    op: str  # "NOT" or "-"
    operand: Node
    pos: int


@dataclass(frozen=True, slots=True)
class Binary:
    op: str  # AND OR XOR = != <> < <= > >= + - * / %   ("<>" is kept distinct from "!=")
    left: Node
    right: Node
    pos: int


class Wildcard(Enum):
    ANY = "%"  # zero or more characters
    ONE = "_"  # exactly one character


@dataclass(frozen=True, slots=True)
class Like:
    operand: Node
    pattern: str  # the string literal as written (after string escapes)
    parts: tuple[str | Wildcard, ...]  # the pattern split into literal text and wildcards
    negated: bool
    pos: int


@dataclass(frozen=True, slots=True)
class In:
    operand: Node
    items: tuple[Node, ...]
    negated: bool
    pos: int


@dataclass(frozen=True, slots=True)
class Call:
    name: str  # upper-cased: function names are case-insensitive
    args: tuple[Node, ...]
    pos: int


Node = Literal | Attribute | Exists | Unary | Binary | Like | In | Call


def children(node: Node) -> Iterator[Node]:
    """The direct sub-expressions of ``node``."""
    if isinstance(node, Unary):
        yield node.operand
    elif isinstance(node, Binary):
        yield node.left
        yield node.right
    elif isinstance(node, Like):
        yield node.operand
    elif isinstance(node, In):
        yield node.operand
        yield from node.items
    elif isinstance(node, Call):
        yield from node.args


def referenced_attributes(node: Node) -> frozenset[str]:
    """Every attribute name the expression reads or tests with EXISTS."""
    names: set[str] = set()
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, Attribute | Exists):
            names.add(current.name)
        stack.extend(children(current))
    return frozenset(names)


def logic_operands(node: Binary) -> list[Node]:
    """Operands of a left-nested chain of one operator: ((a OR b) OR c) -> [a, b, c]."""
    operands: list[Node] = []
    current: Node = node
    while isinstance(current, Binary) and current.op == node.op:
        operands.append(current.right)
        current = current.left
    operands.append(current)
    operands.reverse()
    return operands
