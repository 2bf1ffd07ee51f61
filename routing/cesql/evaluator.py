"""Compile a CESQL syntax tree into nested Python closures, once per expression.

Every closure has the signature ``(event, errors) -> value``; it appends error
records (kind, message, position) to ``errors`` instead of raising, because
CESQL is total (spec 3.3).

Error semantics, as the spec and TCK require them:
- the node that meets an error still returns its defined value: ``ABS`` of
  the minimum returns 2147483647, ``LEFT('abc', -2)`` returns 'abc', and a
  failed cast yields the zero value of its target type so ``NOT 10`` is true;
- every node above it returns the zero value of its own return type:
  ``true AND (1 != 1 / 0)`` is false and ``1 / missing`` is 0 with no MathError.

A closure is always entered with an empty error list: a parent stops at the
first child that reports an error, casts only after evaluating its children,
and OR/XOR evaluate their right operand on a side list when the cast of the
left one failed. So "did that child fail?" is just ``if errors``.

Speed comes from static types (only casts that can be needed are emitted),
constant folding of attribute-free subtrees, and flattening AND/OR chains.
"""

from __future__ import annotations

import base64
import operator
from collections.abc import Callable
from dataclasses import dataclass
from operator import attrgetter
from typing import Final, cast

from routing.cesql import ast
from routing.cesql.ast import (
    CesqlParseError,
    ErrorKind,
    ErrorRecord,
    Node,
    Value,
)
from routing.cesql.functions import (
    CONVERT,
    INT_MAX,
    INT_MIN,
    ZERO,
    Builtin,
    FunctionFailure,
    Type,
    arithmetic,
    like_matcher,
    lookup,
    to_bool,
    to_int,
    to_str,
    type_of,
)
from routing.event import OPTIONAL_ATTRIBUTES, REQUIRED_ATTRIBUTES, CloudEvent

__all__ = ["MAX_DEPTH", "Compiled", "Errors", "Fn", "compile_node"]

# Compilation recurses once per tree level; a flattened AND/OR chain counts once.
MAX_DEPTH: Final = 100

Errors = list[ErrorRecord]
Fn = Callable[[CloudEvent, Errors], Value]
Convert = Callable[[Value, Errors, int], Value]


@dataclass(frozen=True, slots=True)
class Compiled:
    fn: Fn
    type: Type  # static type; ANY for extensions, whose type varies per event
    pos: int
    const: bool = False  # fn ignores the event and reports no errors
    value: Value = False  # the constant, when const


def _constant(value: Value, pos: int) -> Compiled:
    def constant(event: CloudEvent, errors: Errors) -> Value:
        return value

    return Compiled(constant, type_of(value), pos, const=True, value=value)


_PYTHON_TYPE: dict[Type, type] = {Type.STRING: str, Type.INTEGER: int, Type.BOOLEAN: bool}


# -- leaves -------------------------------------------------------------------------------

_CONTEXT = frozenset(REQUIRED_ATTRIBUTES + OPTIONAL_ATTRIBUTES)


def _attribute(node: ast.Attribute) -> Compiled:
    name = node.name
    missing = (ErrorKind.MISSING_ATTRIBUTE, f"attribute {name!r} is not set", node.pos)
    if name in _CONTEXT:
        getter = attrgetter(name)

        def context(event: CloudEvent, errors: Errors) -> Value:
            value: str | None = getter(event)  # context attributes are strings
            if value is None:
                errors.append(missing)
                return False  # the parent replaces it with its zero value
            return value

        return Compiled(context, Type.STRING, node.pos)

    def extension(event: CloudEvent, errors: Errors) -> Value:
        value = event.extensions.get(name)
        if value is None:
            errors.append(missing)
            return False
        if isinstance(value, bytes):
            # Binary is no CESQL type, so it is a String: its canonical base64 form.
            return base64.b64encode(value).decode("ascii")
        return value

    return Compiled(extension, Type.ANY, node.pos)


def _exists(node: ast.Exists) -> Compiled:
    name = node.name
    if name in REQUIRED_ATTRIBUTES:  # spec 3.4.4: always true, the input event is valid
        return _constant(True, node.pos)
    if name in _CONTEXT:
        getter = attrgetter(name)

        def exists(event: CloudEvent, errors: Errors) -> Value:
            return getter(event) is not None

    else:

        def exists(event: CloudEvent, errors: Errors) -> Value:
            return name in event.extensions

    return Compiled(exists, Type.BOOLEAN, node.pos)


# -- logic ----------------------------------------------------------------------------------


def _bool_chain(op: str, fns: tuple[Fn, ...], pos: int) -> Compiled:
    """AND/OR over Boolean-typed operands (no casts): any error makes the chain false."""
    if op == "AND":

        def and_(event: CloudEvent, errors: Errors) -> Value:
            for f in fns:  # noqa: SIM110 - faster than all() over a generator
                if f(event, errors) is not True or errors:
                    return False
            return True

        return Compiled(and_, Type.BOOLEAN, pos)

    def or_(event: CloudEvent, errors: Errors) -> Value:
        for f in fns:
            value = f(event, errors)
            if errors:
                return False
            if value is True:
                return True
        return False

    return Compiled(or_, Type.BOOLEAN, pos)


def _finish_bool(value: Value, errors: Errors, pos: int) -> Value:
    return value if type(value) is bool else to_bool(value, errors, pos)


def _logic(node: ast.Binary, left: Compiled, right: Compiled) -> Compiled:
    """AND, OR, XOR with operands that may need a cast to Boolean."""
    lf, rf, lpos, rpos, op = left.fn, right.fn, left.pos, right.pos, node.op

    def logic(event: CloudEvent, errors: Errors) -> Value:
        a = lf(event, errors)
        if errors:
            return False
        if type(a) is not bool:
            a = to_bool(a, errors, lpos)
            if errors:
                # The left cast failed (a is false). AND is decided; OR and XOR still
                # need b, evaluated on a side list so its own errors are visible.
                if op == "AND":
                    return False
                side: Errors = []
                b = rf(event, side)
                if side:
                    errors.extend(side)
                    return False
                return _finish_bool(b, errors, rpos)
        if op == "AND" and not a:
            return False
        if op == "OR" and a:
            return True
        b = rf(event, errors)
        if errors:
            return False
        b = _finish_bool(b, errors, rpos)
        return (a is not b) if op == "XOR" else b

    return Compiled(logic, Type.BOOLEAN, node.pos)


def _not(node: ast.Unary, operand: Compiled) -> Compiled:
    f, pos = operand.fn, operand.pos

    def not_(event: CloudEvent, errors: Errors) -> Value:
        value = f(event, errors)
        if errors:
            return False
        return not _finish_bool(value, errors, pos)

    return Compiled(not_, Type.BOOLEAN, node.pos)


# -- comparison and arithmetic --------------------------------------------------------------


def _equality(node: ast.Binary, left: Compiled, right: Compiled) -> Compiled:
    # "=" is overloaded for all three types: the right operand's type decides and
    # the left one is cast to it (spec 3.7), so 'TRUE' = true but true <> 'TRUE'.
    negate, lf, lpos = node.op != "=", left.fn, left.pos
    if right.const:  # the common `attribute = literal`
        constant = right.value
        target = type(constant)
        convert = CONVERT[target]

        def against_constant(event: CloudEvent, errors: Errors) -> Value:
            a = lf(event, errors)
            if errors:
                return False
            if type(a) is not target:
                a = convert(a, errors, lpos)
            return (a == constant) is not negate

        return Compiled(against_constant, Type.BOOLEAN, node.pos)
    rf = right.fn

    def equality(event: CloudEvent, errors: Errors) -> Value:
        a = lf(event, errors)
        if errors:
            return False
        b = rf(event, errors)
        if errors:
            return False
        if type(a) is not type(b):
            a = CONVERT[type(b)](a, errors, lpos)
        return (a == b) is not negate

    return Compiled(equality, Type.BOOLEAN, node.pos)


_ORDERING: dict[str, Callable[[int, int], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def _integer_binary(node: ast.Binary, left: Compiled, right: Compiled) -> Compiled:
    """< <= > >= + - * / %: both operands are cast to Integer (not overloaded)."""
    lf, rf, lpos, rpos = left.fn, right.fn, left.pos, right.pos
    ordering = _ORDERING.get(node.op)
    if ordering is not None:
        compare = ordering

        def comparison(event: CloudEvent, errors: Errors) -> Value:
            a = lf(event, errors)
            if errors:
                return False
            b = rf(event, errors)
            if errors:
                return False
            x = a if type(a) is int else to_int(a, errors, lpos)
            return compare(x, b if type(b) is int else to_int(b, errors, rpos))

        return Compiled(comparison, Type.BOOLEAN, node.pos)
    compute = arithmetic(node.op, node.pos)

    def math(event: CloudEvent, errors: Errors) -> Value:
        a = lf(event, errors)
        if errors:
            return 0
        b = rf(event, errors)
        if errors:
            return 0
        x = a if type(a) is int else to_int(a, errors, lpos)
        return compute(x, b if type(b) is int else to_int(b, errors, rpos), errors)

    return Compiled(math, Type.INTEGER, node.pos)


def _negate(node: ast.Unary, operand: Compiled) -> Compiled:
    f, pos = operand.fn, operand.pos
    overflow = (ErrorKind.MATH, f"-({INT_MIN}) overflows 32 bits, saturated to {INT_MAX}", node.pos)

    def negate(event: CloudEvent, errors: Errors) -> Value:
        value = f(event, errors)
        if errors:
            return 0
        number = value if type(value) is int else to_int(value, errors, pos)
        if number == INT_MIN:
            errors.append(overflow)
            return INT_MAX
        return -number

    return Compiled(negate, Type.INTEGER, node.pos)


# -- LIKE and IN ----------------------------------------------------------------------------


def _like(node: ast.Like, operand: Compiled) -> Compiled:
    f, matches, negated = operand.fn, like_matcher(node.parts), node.negated

    def like(event: CloudEvent, errors: Errors) -> Value:
        value = f(event, errors)
        if errors:
            return False
        text = value if type(value) is str else to_str(value)
        return matches(text) is not negated

    return Compiled(like, Type.BOOLEAN, node.pos)


def _in(node: ast.In, operand: Compiled, items: list[Compiled]) -> Compiled:
    # The left operand's type is the target type of every set element (spec 3.7).
    xf, negated = operand.fn, node.negated
    if all(item.const for item in items):
        # Cast the literal set once per possible operand type; failed casts are
        # reported on every evaluation that uses that type.
        tables: dict[type, tuple[frozenset[Value], tuple[ErrorRecord, ...]]] = {}
        for target, convert in CONVERT.items():
            scratch: Errors = []
            members = frozenset(convert(item.value, scratch, item.pos) for item in items)
            tables[target] = (members, tuple(scratch))

        def in_constants(event: CloudEvent, errors: Errors) -> Value:
            value = xf(event, errors)
            if errors:
                return False
            members, cast_errors = tables[type(value)]
            if cast_errors:
                errors.extend(cast_errors)
            return (value in members) is not negated

        return Compiled(in_constants, Type.BOOLEAN, node.pos)
    item_fns = tuple((item.fn, item.pos) for item in items)

    def in_set(event: CloudEvent, errors: Errors) -> Value:
        value = xf(event, errors)
        if errors:
            return False
        elements = []
        for f, pos in item_fns:
            elements.append((f(event, errors), pos))
            if errors:
                return False
        target = type(value)
        convert = CONVERT[target]
        found = False
        for element, pos in elements:
            cast_element = element if type(element) is target else convert(element, errors, pos)
            found = found or cast_element == value
        return found is not negated

    return Compiled(in_set, Type.BOOLEAN, node.pos)


# -- function calls -------------------------------------------------------------------------


def _missing_function(node: ast.Call, count: int) -> Compiled:
    # Spec 3.5: an invocation that cannot be dispatched is false + MissingFunctionError.
    error = (
        ErrorKind.MISSING_FUNCTION,
        f"no function {node.name} taking {count} argument(s)",
        node.pos,
    )

    def missing_function(event: CloudEvent, errors: Errors) -> Value:
        errors.append(error)
        return False

    return Compiled(missing_function, Type.BOOLEAN, node.pos)


def _argument_casts(builtin: Builtin, args: list[Compiled]) -> list[tuple[int, type, Convert, int]]:
    """(index, Python type, cast, position) for each argument whose type may differ
    from its parameter's; Any parameters take the value as it is."""
    casts: list[tuple[int, type, Convert, int]] = []
    for i, arg in enumerate(args):
        param = builtin.param_type(i)
        if param is not Type.ANY and arg.type is not param:
            target = _PYTHON_TYPE[param]
            casts.append((i, target, CONVERT[target], arg.pos))
    return casts


Failed = Callable[[FunctionFailure, Errors], Value]
"""Records a function's failure and gives its result value."""


def _call(node: ast.Call, args: list[Compiled]) -> Compiled:
    builtin = lookup(node.name, len(args))
    if builtin is None:
        return _missing_function(node, len(args))
    casts = _argument_casts(builtin, args)
    name, pos = node.name, node.pos

    def failed(failure: FunctionFailure, errors: Errors) -> Value:
        errors.append((failure.kind, f"{name}: {failure.message}", pos))
        return failure.value

    if len(args) == 1:  # LENGTH(x), INT(x)...: skip the argument list
        fn = _call_one(builtin, args[0].fn, casts, failed)
    else:
        fn = _call_many(builtin, tuple(arg.fn for arg in args), tuple(casts), failed)
    return Compiled(fn, builtin.returns, node.pos)


def _call_one(
    builtin: Builtin, only: Fn, casts: list[tuple[int, type, Convert, int]], failed: Failed
) -> Fn:
    impl, zero = builtin.impl, ZERO[builtin.returns]
    _, target, convert, arg_pos = casts[0] if casts else (0, object, None, 0)

    def call_one(event: CloudEvent, errors: Errors) -> Value:
        value = only(event, errors)
        if errors:
            return zero
        if convert is not None and type(value) is not target:
            value = convert(value, errors, arg_pos)
        try:
            return impl(value)
        except FunctionFailure as failure:
            return failed(failure, errors)

    return call_one


def _call_many(
    builtin: Builtin,
    fns: tuple[Fn, ...],
    arg_casts: tuple[tuple[int, type, Convert, int], ...],
    failed: Failed,
) -> Fn:
    impl, zero = builtin.impl, ZERO[builtin.returns]

    def call(event: CloudEvent, errors: Errors) -> Value:
        values: list[Value] = []
        for f in fns:
            values.append(f(event, errors))
            if errors:
                return zero
        for i, target, convert, arg_pos in arg_casts:
            if type(values[i]) is not target:
                values[i] = convert(values[i], errors, arg_pos)
        try:
            return impl(*values)
        except FunctionFailure as failure:
            return failed(failure, errors)

    return call


# -- tree walk ------------------------------------------------------------------------------


def _fold(compiled: Compiled, children: list[Compiled]) -> Compiled:
    """Evaluate an attribute-free subtree now; keep it dynamic if it reports errors."""
    if not all(child.const for child in children):
        return compiled
    errors: Errors = []
    value = compiled.fn(cast(CloudEvent, None), errors)  # such subtrees never read the event
    return compiled if errors else _constant(value, compiled.pos)


def compile_node(node: Node, depth: int = 0) -> Compiled:
    """Compile ``node`` and its subtree into a closure, with its static type."""
    if depth > MAX_DEPTH:
        raise CesqlParseError(f"expression nested more than {MAX_DEPTH} levels deep", node.pos)
    if isinstance(node, ast.Literal):
        return _constant(node.value, node.pos)
    if isinstance(node, ast.Attribute):
        return _attribute(node)
    if isinstance(node, ast.Exists):
        return _exists(node)
    nested = depth + 1
    if isinstance(node, ast.Unary):
        operand = compile_node(node.operand, nested)
        unary = _not(node, operand) if node.op == "NOT" else _negate(node, operand)
        return _fold(unary, [operand])
    if isinstance(node, ast.Like):
        operand = compile_node(node.operand, nested)
        return _fold(_like(node, operand), [operand])
    if isinstance(node, ast.In):
        operand = compile_node(node.operand, nested)
        items = [compile_node(item, nested) for item in node.items]
        return _fold(_in(node, operand, items), [operand, *items])
    if isinstance(node, ast.Call):
        args = [compile_node(arg, nested) for arg in node.args]
        return _fold(_call(node, args), args)
    if node.op in ("AND", "OR"):
        return _compile_logic(node, depth)
    left, right = compile_node(node.left, nested), compile_node(node.right, nested)
    if node.op == "XOR":
        compiled = _logic(node, left, right)
    elif node.op in ("=", "!=", "<>"):
        compiled = _equality(node, left, right)
    else:
        compiled = _integer_binary(node, left, right)
    return _fold(compiled, [left, right])


def _compile_logic(node: ast.Binary, depth: int) -> Compiled:
    """An AND or OR chain: one flat closure when every operand is Boolean."""
    operands = [compile_node(n, depth + 1) for n in ast.logic_operands(node)]
    if all(c.type is Type.BOOLEAN for c in operands):
        chain = _bool_chain(node.op, tuple(c.fn for c in operands), node.pos)
        return _fold(chain, operands)
    # Some operand needs a cast: keep the binary (left-nested) structure, whose
    # closures nest as deep as the chain is long.
    if depth + len(operands) > MAX_DEPTH:
        raise CesqlParseError(
            f"chain of more than {MAX_DEPTH} {node.op} operands needing casts", node.pos
        )
    compiled = operands[0]
    for operand in operands[1:]:
        compiled = _fold(_logic(node, compiled, operand), [compiled, operand])
    return compiled
