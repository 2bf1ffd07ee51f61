"""routing.cesql beyond the TCK: parse errors, precedence, edge cases and API shape."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from routing.cesql import (
    CesqlEvaluationError,
    CesqlParseError,
    ErrorKind,
    EvaluationResult,
    Expression,
    compile_expression,
)
from routing.cesql.ast import Attribute, Binary, Literal, Unary
from routing.cesql.parser import parse
from routing.errors import FilterError
from routing.event import CloudEvent


def make_event(**attributes: Any) -> CloudEvent:
    base: dict[str, Any] = {
        "specversion": "1.0",
        "id": "id-1",
        "source": "mqtt://plant/line1",
        "type": "com.acme.telemetry",
    }
    base.update(attributes)
    return CloudEvent.from_attributes(base)


EVENT = make_event(subject="line-1", hop="5", ttl="10", myint=7, mybool=True, mybin=b"\x00\xff")


def evaluate(text: str, event: CloudEvent = EVENT) -> EvaluationResult:
    return compile_expression(text).evaluate(event)


def kinds(result: EvaluationResult) -> list[ErrorKind]:
    return [error.kind for error in result.errors]


# -- parse errors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "position", "fragment"),
    [
        ("ABC(", 4, "expected an operand, found end of expression"),
        ("x LIKE 123", 7, "LIKE needs a string literal pattern, found '123'"),
        ("subject = ", 10, "expected an operand"),
        ("1 2", 2, "expected an operator or the end of the expression, found '2'"),
        ("(a = 1", 6, "expected ')' to close the '(' at position 0"),
        ("'abc", 0, "unterminated string literal"),
        ("a ! b", 2, "unexpected character '!'"),
        ("2147483648", 0, "outside the signed 32-bit range"),
        ("- 2147483648", 2, "outside the signed 32-bit range"),
        ("a_b = 1", 0, "attribute names may contain only letters and digits"),
        ("f1(x)", 0, "function names may contain only letters and '_'"),
        ("EXISTS 'x'", 7, "EXISTS needs an attribute name"),
        ("a NOT TRUE", 6, "expected LIKE or IN after NOT"),
        ("a IN ()", 6, "an IN set needs at least one element"),
        ("a IN 1", 5, "expected '(' to open the IN set"),
        ("+ 5", 0, "unary '+' is only allowed as the sign of an integer literal"),
        ("", 0, "expected an expression"),
        ("   ", 3, "expected an expression"),
        ("CONCAT('a',)", 11, "expected an operand"),
    ],
)
def test_parse_error_reports_the_offending_position(
    text: str, position: int, fragment: str
) -> None:
    with pytest.raises(CesqlParseError) as raised:
        compile_expression(text)
    error = raised.value
    assert isinstance(error, FilterError)
    assert error.kind is ErrorKind.PARSE
    assert error.position == position
    assert fragment in str(error)
    assert str(error).endswith(f"at position {position}")


def test_deep_nesting_is_a_parse_error_not_a_recursion_error() -> None:
    with pytest.raises(CesqlParseError, match="nested more than"):
        compile_expression("(" * 500 + "1" + ")" * 500)
    with pytest.raises(CesqlParseError, match="nested more than"):
        compile_expression("NOT " * 500 + "TRUE")
    with pytest.raises(CesqlParseError, match="nested more than"):
        compile_expression(" + ".join(["1"] * 500))


def test_long_or_chains_of_comparisons_compile_flat() -> None:
    text = " OR ".join(f"myint = {n}" for n in range(1000))
    assert compile_expression(text).evaluate(EVENT) == EvaluationResult(True, ())


# -- syntax: precedence, literals, case ---------------------------------------------------


def test_logic_operators_share_one_level_evaluated_left_to_right() -> None:
    # Spec 3.6: AND, OR, XOR have equal precedence, left to right. SQL would say TRUE.
    assert evaluate("TRUE OR FALSE AND FALSE").value is False
    assert evaluate("TRUE OR (FALSE AND FALSE)").value is True
    tree = parse("a AND b OR c")
    assert isinstance(tree, Binary) and tree.op == "OR"
    assert isinstance(tree.left, Binary) and tree.left.op == "AND"


def test_prefix_operators_bind_tighter_than_binary_ones() -> None:
    tree = parse("NOT a = b")
    assert isinstance(tree, Binary) and tree.op == "="
    assert tree.left == Unary("NOT", Attribute("a", 4), 0)
    assert evaluate("-2 * 3 + 1").value == -5
    assert evaluate("4 * 2 + 4 / 2").value == 10


def test_like_and_in_bind_tighter_than_arithmetic_and_comparison() -> None:
    tree = parse("1 + x IN (1)")
    assert isinstance(tree, Binary) and tree.op == "+"
    assert evaluate("TRUE = 'abc' LIKE 'a%'").value is True


def test_sign_glued_to_digits_is_part_of_the_literal() -> None:
    assert parse("-2147483648") == Literal(-2147483648, 0)
    assert parse("+5") == Literal(5, 0)
    assert evaluate("4-1").value == 3
    assert evaluate("4 - -1").value == 5
    assert evaluate("--10").value == 10
    assert evaluate("- 10").value == -10


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("'it''s'", "it's"),
        ('"say ""hi"""', 'say "hi"'),
        (r"'a\'b'", "a'b"),
        (r'"a\"b"', 'a"b'),
        (r"'a\nb'", r"a\nb"),  # only the delimiting quote is an escape
        ("''", ""),
    ],
)
def test_string_literals(text: str, value: str) -> None:
    assert evaluate(text).value == value


def test_keywords_function_names_and_identifiers_are_case_insensitive() -> None:
    assert evaluate("lower('AbC') = 'abc' aNd ExIsTs SUBJECT").value is True
    assert evaluate("Subject").value == "line-1"
    assert compile_expression("MyInt > 1").attributes == frozenset({"myint"})


# -- types and casts ----------------------------------------------------------------------


def test_extension_types_are_kept_and_binary_is_its_base64_string() -> None:
    assert evaluate("myint").value == 7
    assert evaluate("mybool").value is True
    assert evaluate("mybin").value == "AP8="
    assert evaluate("mybin = 'AP8='").value is True
    assert evaluate("myint + 1 = 8 AND mybool").value is True


def test_equality_casts_left_operand_to_the_right_operands_type() -> None:
    assert evaluate("hop = 5").value is True  # '5' -> 5
    assert evaluate("5 = hop").value is True  # 5 -> '5'
    assert evaluate("myint = '7'").value is True  # 7 -> '7'
    assert evaluate("mybool = 'true'").value is True
    assert evaluate("mybool = 'TRUE'").value is False  # true -> 'true', compared as strings


def test_implicit_integer_to_boolean_cast_is_a_cast_error_but_bool_maps_it() -> None:
    result = evaluate("myint = TRUE")
    assert (result.value, kinds(result)) == (False, [ErrorKind.CAST])
    assert evaluate("BOOL(myint)") == EvaluationResult(True, ())
    assert evaluate("BOOL(0)") == EvaluationResult(False, ())


@pytest.mark.parametrize(
    ("text", "value", "ok"),
    [
        ("INT('+12')", 12, True),
        ("INT(' 12')", 0, False),
        ("INT('1_000')", 0, False),
        ("INT('2147483648')", 0, False),
        ("INT('-2147483648')", -2147483648, True),
        ("INT('\u0661')", 0, False),  # ARABIC-INDIC DIGIT ONE: Python int() would take it
        ("IS_INT('-42')", True, True),
        ("IS_INT('4.2')", False, True),
        ("IS_INT(TRUE)", True, True),
        ("IS_BOOL('False')", True, True),
        ("IS_BOOL('yes')", False, True),
        ("IS_BOOL(3)", True, True),
        ("STRING(-7)", "-7", True),
    ],
)
def test_casting_functions(text: str, value: object, ok: bool) -> None:
    result = evaluate(text)
    assert result.value == value and type(result.value) is type(value)
    assert result.ok is ok
    assert all(kind is ErrorKind.CAST for kind in kinds(result))


# -- operators ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [("7 / 2", 3), ("-7 / 2", -3), ("7 / -2", -3), ("-7 % 3", -1), ("7 % -3", 1), ("0 % 5", 0)],
)
def test_division_truncates_toward_zero(text: str, value: int) -> None:
    assert evaluate(text) == EvaluationResult(value, ())


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("2147483647 + 1", 2147483647),
        ("-2147483648 - 1", -2147483648),
        ("65536 * 65536", 2147483647),
        ("-2147483648 / -1", 2147483647),
        ("-(-2147483648)", 2147483647),
    ],
)
def test_integer_overflow_saturates_with_a_math_error(text: str, value: int) -> None:
    result = evaluate(text)
    assert (result.value, kinds(result)) == (value, [ErrorKind.MATH])


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("'a.c' LIKE 'a.c'", True),
        ("'abc' LIKE 'a.c'", False),  # regex characters are literal
        ("'a\nb' LIKE 'a_b'", True),  # _ and % match newlines too
        ("'a\nb' LIKE 'a%'", True),
        ("'ab' LIKE '%'", True),
        ("'' LIKE '%'", True),
        ("'' LIKE '_'", False),
        ("'abc' LIKE '%b%'", True),
        ("'abc' LIKE 'ab'", False),
        ("'ABC' LIKE 'abc'", False),  # case sensitive
        (r"'100%' LIKE '100\%'", True),
        (r"'1000' LIKE '100\%'", False),
        (r"'a\b' LIKE 'a\b'", True),  # a backslash before other characters is literal
        ("subject LIKE 'line-_'", True),
        ("subject NOT LIKE 'line-%'", False),
    ],
)
def test_like(text: str, value: bool) -> None:
    assert evaluate(text) == EvaluationResult(value, ())


def test_in_casts_elements_to_the_left_operands_type() -> None:
    assert evaluate("myint IN ('7', 8)").value is True
    assert evaluate("hop IN (5, 6)").value is True  # the elements become strings
    assert evaluate("hop IN (ttl, '5')").value is True
    assert evaluate("subject NOT IN ('a', 'b')").value is True
    result = evaluate("myint IN ('x', 7)")
    assert (result.value, kinds(result)) == (True, [ErrorKind.CAST])


# -- errors -------------------------------------------------------------------------------


def test_missing_attribute_error_points_at_the_attribute() -> None:
    result = evaluate("subject = 'line-1' AND nothere = 'x'")
    assert result.value is False
    [error] = result.errors
    assert isinstance(error, CesqlEvaluationError)
    assert error.kind is ErrorKind.MISSING_ATTRIBUTE
    assert error.position == 23
    assert "'nothere'" in str(error)


@pytest.mark.parametrize(
    ("text", "value", "errors"),
    [
        # The node that fails returns its own value; every node above returns zero.
        ("NOT (1 / 0 = 0)", False, [ErrorKind.MATH]),
        ("(1 / 0 = 0) OR TRUE", False, [ErrorKind.MATH]),
        ("LENGTH(LEFT('abc', -1))", 0, [ErrorKind.FUNCTION_EVALUATION]),
        ("LEFT('abc', -1)", "abc", [ErrorKind.FUNCTION_EVALUATION]),
        ("nothere + (1 / 0)", 0, [ErrorKind.MISSING_ATTRIBUTE]),  # stops at the first error
        ("FALSE AND nothere", False, []),  # short-circuit: never evaluated
        ("TRUE OR nothere", True, []),
        ("nothere OR TRUE", False, [ErrorKind.MISSING_ATTRIBUTE]),
        # A failed cast of its own operand does not stop the operator (like NOT 10).
        ("10 OR TRUE", True, [ErrorKind.CAST]),
        ("10 OR nothere", False, [ErrorKind.CAST, ErrorKind.MISSING_ATTRIBUTE]),
        ("'x' AND TRUE", False, [ErrorKind.CAST]),
        ("'abc' + 1", 1, [ErrorKind.CAST]),
        ("LEFT('abc', 'x')", "", [ErrorKind.CAST]),
    ],
)
def test_error_propagation(text: str, value: object, errors: list[ErrorKind]) -> None:
    result = evaluate(text)
    assert result.value == value and type(result.value) is type(value)
    assert kinds(result) == errors


def test_unknown_function_or_arity_is_a_runtime_missing_function_error() -> None:
    expression = compile_expression("IS_STRING(subject)")  # not a CESQL v1 built-in
    result = expression.evaluate(EVENT)
    assert (result.value, kinds(result)) == (False, [ErrorKind.MISSING_FUNCTION])
    assert "no function IS_STRING taking 1 argument(s)" in str(result.errors[0])
    assert kinds(evaluate("LENGTH('a', 'b')")) == [ErrorKind.MISSING_FUNCTION]


@pytest.mark.parametrize(
    ("text", "value", "ok"),
    [
        ("SUBSTRING('abc', 3)", "c", True),
        ("SUBSTRING('abc', 4)", "", False),
        ("SUBSTRING('abc', -3)", "abc", True),
        ("SUBSTRING('abc', 2, 0)", "", True),
        ("SUBSTRING('abc', 2, -1)", "", False),
        ("SUBSTRING('abc', 0, -1)", "", False),
        ("RIGHT('abc', 0)", "", True),
        ("LEFT('abc', 0)", "", True),
        ("CONCAT('a', 1, TRUE)", "a1true", True),
        ("CONCAT_WS('-', 'a', 'b')", "a-b", True),
        ("TRIM('\u3000 a\u00a0')", "a", True),  # Unicode white space
        ("TRIM('\u001fa')", "\u001fa", True),  # control characters are not white space
        ("UPPER('straße')", "STRASSE", True),
        ("LENGTH('héllo')", 5, True),
        ("ABS(-5)", 5, True),
    ],
)
def test_string_and_math_functions(text: str, value: object, ok: bool) -> None:
    result = evaluate(text)
    assert result.value == value and type(result.value) is type(value)
    assert result.ok is ok


def test_constant_subexpressions_still_report_their_errors_every_time() -> None:
    expression = compile_expression("1 / 0")
    for _ in range(2):
        assert kinds(expression.evaluate(EVENT)) == [ErrorKind.MATH]


# -- API ----------------------------------------------------------------------------------


def test_matches_needs_boolean_true_and_no_errors() -> None:
    assert compile_expression("type LIKE 'com.acme.%' AND subject <> 'test'").matches(EVENT)
    assert not compile_expression("subject = 'test'").matches(EVENT)
    assert not compile_expression("'true'").matches(EVENT)  # a String, not a Boolean
    assert not compile_expression("1").matches(EVENT)
    # true, but with an error: the spec says such events MUST NOT pass (1.2)
    assert compile_expression("10 OR TRUE").evaluate(EVENT).value is True
    assert not compile_expression("10 OR TRUE").matches(EVENT)
    assert not compile_expression("NOT (nothere = 'x')").matches(EVENT)


def test_attributes_lists_every_referenced_name() -> None:
    expression = compile_expression("EXISTS time AND (INT(hop) < INT(ttl) OR source IN (id))")
    assert expression.attributes == frozenset({"time", "hop", "ttl", "source", "id"})
    assert compile_expression("1 + 1").attributes == frozenset()


def test_expression_is_a_value() -> None:
    a, b = compile_expression("subject = 'x'"), compile_expression("subject = 'x'")
    assert a == b and hash(a) == hash(b) and a.text == "subject = 'x'"
    assert repr(a) == "Expression(\"subject = 'x'\")"
    assert isinstance(a, Expression)


def test_optional_context_attribute_and_exists() -> None:
    bare = make_event()
    assert compile_expression("EXISTS subject").evaluate(bare).value is False
    assert compile_expression("EXISTS id").evaluate(bare).value is True
    assert compile_expression("EXISTS myint").evaluate(EVENT).value is True
    assert compile_expression("EXISTS nothere").evaluate(EVENT).value is False
    result = compile_expression("time").evaluate(bare)
    assert (result.value, kinds(result)) == (False, [ErrorKind.MISSING_ATTRIBUTE])


_ALPHABET = "abcAND OR NOT LIKE IN EXISTS TRUE()'\"\\%_,=<>!+-*/0129 subject myint hop"


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=_ALPHABET, max_size=40))
def test_arbitrary_text_either_fails_to_parse_or_evaluates_without_raising(text: str) -> None:
    try:
        expression = compile_expression(text)
    except CesqlParseError as error:
        assert error.position is not None and 0 <= error.position <= len(text)
        return
    result = expression.evaluate(EVENT)
    assert type(result.value) in (bool, int, str)
    assert isinstance(expression.matches(EVENT), bool)


def test_error_objects_are_not_shared_between_evaluations() -> None:
    # Raising an exception object extends its traceback, so results must not share them.
    expression = compile_expression("nothere = 1 OR 1 / 0 = 0 OR 1 IN ('x')")
    first, second = expression.evaluate(EVENT), expression.evaluate(EVENT)
    assert kinds(first) == kinds(second) == [ErrorKind.MISSING_ATTRIBUTE]
    assert first.errors[0] is not second.errors[0]
    for text in ("1 / 0", "FOO()", "-(-2147483648)", "1 IN ('x')"):
        compiled = compile_expression(text)
        assert compiled.evaluate(EVENT).errors[0] is not compiled.evaluate(EVENT).errors[0]


def test_results_with_errors_compare_by_value() -> None:
    expected = EvaluationResult(
        0, (CesqlEvaluationError(ErrorKind.MATH, "division by zero in '/'", 2),)
    )
    assert evaluate("1 / 0") == expected
    assert repr(expected.errors[0]) == (
        "CesqlEvaluationError(math, \"division by zero in '/'\", 2)"
    )
