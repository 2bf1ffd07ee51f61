"""CESQL semantics on plain values: types, casts (spec 3.7), integer arithmetic,
LIKE matching and the built-in functions (spec 3.5). The evaluator wires these
into closures; nothing here knows about syntax trees or events.

Casts take the error list and the source position of the expression being
cast, because a failed cast does not stop evaluation: it appends a CastError
and yields the zero value of the target type (spec 3.7), and the operator
carries on with that value.

Built-ins receive arguments already cast to their parameter types and return
a value; when they fail they raise ``FunctionFailure`` carrying the value to
return anyway (CESQL functions are total).
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from routing.cesql.ast import ErrorKind, ErrorRecord, Value, Wildcard

__all__ = [
    "BUILTINS",
    "CONVERT",
    "INT_MAX",
    "INT_MIN",
    "ZERO",
    "Builtin",
    "FunctionFailure",
    "Type",
    "arithmetic",
    "cast_error",
    "like_matcher",
    "lookup",
    "to_bool",
    "to_int",
    "to_str",
    "type_of",
]

INT_MIN = -(2**31)
INT_MAX = 2**31 - 1

Errors = list[ErrorRecord]


class Type(Enum):
    BOOLEAN = "Boolean"
    INTEGER = "Integer"
    STRING = "String"
    ANY = "Any"  # attributes: the type is only known per event; also "no cast" parameters


ZERO: dict[Type, Value] = {Type.BOOLEAN: False, Type.INTEGER: 0, Type.STRING: "", Type.ANY: False}


def type_of(value: Value) -> Type:
    # bool before int: bool is a subclass of int in Python but a distinct CESQL type.
    if type(value) is bool:
        return Type.BOOLEAN
    if type(value) is int:
        return Type.INTEGER
    return Type.STRING


def cast_error(value: Value, target: Type, position: int, why: str = "") -> ErrorRecord:
    source = type_of(value).value
    suffix = f": {why}" if why else ""
    return (ErrorKind.CAST, f"cannot cast {source} {value!r} to {target.value}{suffix}", position)


# -- casts ----------------------------------------------------------------------------


def _parse_int(text: str) -> int | None:
    """Strict base-10 "[+-]digits" in 32-bit range; None otherwise.

    ``int()`` alone is too lenient: it accepts spaces, "1_000" and non-ASCII digits.
    """
    if text.isdigit() and text.isascii() and len(text) < 10:
        return int(text)  # fast path: nine digits always fit
    digits = text[1:] if text[:1] in ("+", "-") else text
    if not (digits.isascii() and digits.isdigit()) or len(digits) > 10:
        return None
    number = int(text)
    return number if INT_MIN <= number <= INT_MAX else None


def to_str(value: Value) -> str:
    """Any value -> String; never fails."""
    if type(value) is bool:
        return "true" if value else "false"
    return value if type(value) is str else str(value)


def to_int(value: Value, errors: Errors, position: int) -> int:
    """Implicit or explicit cast to Integer: "[+-]digits" in 32-bit range, true=1, false=0."""
    if type(value) is int:
        return value
    if type(value) is bool:
        return 1 if value else 0
    number = _parse_int(value if type(value) is str else str(value))
    if number is None:
        errors.append(cast_error(value, Type.INTEGER, position, "not a 32-bit base-10 integer"))
        return 0
    return number


def to_bool(value: Value, errors: Errors, position: int) -> bool:
    """Implicit cast to Boolean: strings "true"/"false" in any case.

    Integer -> Boolean is refused for implicit casts (the TCK case ``NOT 10``
    expects a CastError); only the explicit ``BOOL()`` maps integers, 0 -> false.
    """
    if type(value) is bool:
        return value
    if type(value) is str:
        lowered = value.lower()
        if lowered == "true":
            return True
        if lowered == "false":
            return False
    why = "implicit casts do not map integers, BOOL() does" if type(value) is int else ""
    errors.append(cast_error(value, Type.BOOLEAN, position, why))
    return False


# -- integer operators --------------------------------------------------------------------


def _saturate(result: int, what: str, errors: Errors, pos: int) -> int:
    """Clamp a result outside 32 bits and report a MathError, as the spec does for ABS."""
    if INT_MIN <= result <= INT_MAX:
        return result
    bound = INT_MAX if result > INT_MAX else INT_MIN
    errors.append((ErrorKind.MATH, f"{what} overflows 32 bits, saturated to {bound}", pos))
    return bound


def arithmetic(op: str, pos: int) -> Callable[[int, int, Errors], int]:
    """The binary operator ``op`` (+ - * / %) on 32-bit integers, reporting at ``pos``."""
    plain: Callable[[int, int], int] | None = {
        "+": operator.add,
        "-": operator.sub,
        "*": operator.mul,
    }.get(op)
    if plain is not None:

        def compute(a: int, b: int, errors: Errors) -> int:
            result = plain(a, b)
            if INT_MIN <= result <= INT_MAX:
                return result
            return _saturate(result, f"{a} {op} {b}", errors, pos)

        return compute
    by_zero = (ErrorKind.MATH, f"division by zero in '{op}'", pos)

    def divide(a: int, b: int, errors: Errors) -> int:
        if b == 0:
            errors.append(by_zero)
            return 0
        # Truncated division (spec 3.4.2): the quotient rounds toward zero and the
        # remainder takes the dividend's sign; Python's // and % floor instead.
        quotient = abs(a) // abs(b)
        if (a < 0) != (b < 0):
            quotient = -quotient
        if op == "%":
            return a - b * quotient
        return _saturate(quotient, f"{a} / {b}", errors, pos)

    return divide


def _string_cast(value: Value, errors: Errors, pos: int) -> Value:
    return to_str(value)  # never fails


# The casts keyed by the Python type of the target, for ``=`` and ``IN``, whose
# target type is the type of another operand (exact keys: bool is not int here).
CONVERT: dict[type, Callable[[Value, Errors, int], Value]] = {
    str: _string_cast,
    int: to_int,
    bool: to_bool,
}


def like_matcher(parts: tuple[str | Wildcard, ...]) -> Callable[[str], bool]:
    """A predicate for a LIKE pattern already split into text and wildcards."""
    any_, one = Wildcard.ANY, Wildcard.ONE
    if one not in parts:  # fast paths for exact, prefix, suffix and contains
        texts = [str(p) for p in parts if p is not any_]
        shape = tuple(p is any_ for p in parts)
        if shape in ((), (False,)):
            return "".join(texts).__eq__
        if shape == (False, True):
            return lambda s: s.startswith(texts[0])
        if shape == (True, False):
            return lambda s: s.endswith(texts[0])
        if shape == (True, False, True):
            return lambda s: texts[0] in s
    regex = "".join(".*" if p is any_ else "." if p is one else re.escape(str(p)) for p in parts)
    match = re.compile(regex, re.DOTALL).fullmatch
    return lambda s: match(s) is not None


# -- built-in functions -----------------------------------------------------------------


class FunctionFailure(Exception):
    """Raised by a built-in to report an error together with the value it still returns."""

    def __init__(self, kind: ErrorKind, message: str, value: Value) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.value = value


@dataclass(frozen=True, slots=True)
class Builtin:
    name: str
    params: tuple[Type, ...]  # fixed leading parameters
    variadic: Type | None  # type of any further arguments, None if fixed arity
    returns: Type
    impl: Callable[..., Value]

    def accepts(self, arity: int) -> bool:
        fixed = len(self.params)
        return arity == fixed or (self.variadic is not None and arity > fixed)

    def param_type(self, index: int) -> Type:
        if index < len(self.params):
            return self.params[index]
        assert self.variadic is not None
        return self.variadic


# Unicode White_Space (not Python's str.isspace, which also strips the control
# characters U+001C..U+001F that the spec says TRIM must keep).
_UNICODE_WHITESPACE = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)


def _length(x: str) -> int:
    return len(x)  # code points, the spec's "character length"


def _concat(*parts: str) -> str:
    return "".join(parts)


def _concat_ws(delimiter: str, *parts: str) -> str:
    return delimiter.join(parts)


def _lower(x: str) -> str:
    return x.lower()


def _upper(x: str) -> str:
    return x.upper()


def _trim(x: str) -> str:
    return x.strip(_UNICODE_WHITESPACE)


def _left(x: str, y: int) -> str:
    if y < 0:
        raise FunctionFailure(ErrorKind.FUNCTION_EVALUATION, f"negative length {y}", x)
    return x[:y]


def _right(x: str, y: int) -> str:
    if y < 0:
        raise FunctionFailure(ErrorKind.FUNCTION_EVALUATION, f"negative length {y}", x)
    return x[len(x) - y :] if y < len(x) else x


def _substring_start(x: str, pos: int) -> int:
    """0-based start for a 1-based (or negative: from the end) ``pos``; callers handle 0."""
    n = len(x)
    if pos > n or pos < -n:
        raise FunctionFailure(
            ErrorKind.FUNCTION_EVALUATION,
            f"position {pos} is outside the string of length {n}",
            "",
        )
    return pos - 1 if pos > 0 else n + pos


def _substring(x: str, pos: int) -> str:
    start = _substring_start(x, pos)
    return "" if pos == 0 else x[start:]


def _substring_len(x: str, pos: int, length: int) -> str:
    start = _substring_start(x, pos)
    if length < 0:
        raise FunctionFailure(ErrorKind.FUNCTION_EVALUATION, f"negative length {length}", "")
    return "" if pos == 0 else x[start : start + length]


def _abs(x: int) -> int:
    if x == INT_MIN:
        raise FunctionFailure(
            ErrorKind.MATH, f"{INT_MIN} has no 32-bit absolute value, returning {INT_MAX}", INT_MAX
        )
    return abs(x)


# The casting functions take any type; unlike the implicit cast they map
# Integer -> Boolean (0 is false) as the spec's cast table defines.


def _explicit_int(x: Value) -> int:
    if type(x) is int:
        return x
    if type(x) is bool:
        return 1 if x else 0
    number = _parse_int(str(x))
    if number is None:
        raise FunctionFailure(ErrorKind.CAST, f"cannot cast String {x!r} to Integer", 0)
    return number


def _explicit_bool(x: Value) -> bool:
    if type(x) is int:
        return x != 0
    scratch: Errors = []
    flag = to_bool(x, scratch, 0)
    if scratch:
        raise FunctionFailure(ErrorKind.CAST, scratch[0][1], False)
    return flag


def _is_int(x: Value) -> bool:
    return type(x) is not str or _parse_int(x) is not None


def _is_bool(x: Value) -> bool:
    return type(x) is not str or x.lower() in ("true", "false")


_S, _I, _B, _A = Type.STRING, Type.INTEGER, Type.BOOLEAN, Type.ANY

BUILTINS: tuple[Builtin, ...] = (
    Builtin("LENGTH", (_S,), None, _I, _length),
    Builtin("CONCAT", (), _S, _S, _concat),
    Builtin("CONCAT_WS", (_S,), _S, _S, _concat_ws),
    Builtin("LOWER", (_S,), None, _S, _lower),
    Builtin("UPPER", (_S,), None, _S, _upper),
    Builtin("TRIM", (_S,), None, _S, _trim),
    Builtin("LEFT", (_S, _I), None, _S, _left),
    Builtin("RIGHT", (_S, _I), None, _S, _right),
    Builtin("SUBSTRING", (_S, _I), None, _S, _substring),
    Builtin("SUBSTRING", (_S, _I, _I), None, _S, _substring_len),
    Builtin("ABS", (_I,), None, _I, _abs),
    Builtin("INT", (_A,), None, _I, _explicit_int),
    Builtin("BOOL", (_A,), None, _B, _explicit_bool),
    Builtin("STRING", (_A,), None, _S, to_str),
    Builtin("IS_INT", (_A,), None, _B, _is_int),
    Builtin("IS_BOOL", (_A,), None, _B, _is_bool),
)


def lookup(name: str, arity: int) -> Builtin | None:
    """The built-in ``name`` (upper case) callable with ``arity`` arguments, if any."""
    for builtin in BUILTINS:
        if builtin.name == name and builtin.accepts(arity):
            return builtin
    return None
