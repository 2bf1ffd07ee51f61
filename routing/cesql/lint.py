"""Static checks of a CESQL expression, for ``meshgate validate``.

The CESQL spec makes an unknown function (or a known one with the wrong number of
arguments) an *evaluation* error: the expression still compiles and evaluates to
false with an error, which is what the TCK checks and what ``compile_expression``
does. In a route filter that means every event is filtered out (and acked) at run
time, so validation reports it as an error instead, with "did you mean" where a
known function is close. ``severity = high`` compares two attributes where a string
literal was probably meant: a warning that suggests the quotes.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

from routing.cesql.ast import Attribute, Binary, Call, Node, children
from routing.cesql.functions import BUILTINS, lookup
from routing.cesql.parser import parse

__all__ = ["Lint", "lint"]

_COMPARISONS = frozenset({"=", "!=", "<>"})
# Functions people reach for that CESQL v1 spells differently.
_INSTEAD = {
    "STARTSWITH": "use `x LIKE 'prefix%'`",
    "STARTS_WITH": "use `x LIKE 'prefix%'`",
    "ENDSWITH": "use `x LIKE '%suffix'`",
    "ENDS_WITH": "use `x LIKE '%suffix'`",
    "CONTAINS": "use `x LIKE '%text%'`",
    "LEN": "did you mean LENGTH?",
    "SUBSTR": "did you mean SUBSTRING?",
}


@dataclass
class Lint:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _arities(name: str) -> str:
    forms = [b for b in BUILTINS if b.name == name]
    counts = sorted({len(b.params) for b in forms})
    text = " or ".join(str(n) for n in counts)
    if any(b.variadic is not None for b in forms):
        text += " or more"
    return f"{text} argument{'s' * (text != '1')}"


def _call(node: Call) -> str | None:
    if lookup(node.name, len(node.args)) is not None:
        return None
    known = sorted({b.name for b in BUILTINS})
    where = f"at position {node.pos}"
    if node.name in known:
        return f"function {node.name} takes {_arities(node.name)}, not {len(node.args)} ({where})"
    hint = _INSTEAD.get(node.name)
    if hint is None:
        close = difflib.get_close_matches(node.name, known, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]}?" if close else f"CESQL v1 has {', '.join(known)}"
    return f"no function {node.name} in CESQL ({where}): {hint}"


def lint(text: str) -> Lint:
    """Errors and warnings of ``text``; a parse error is left to ``compile_expression``."""
    found = Lint()
    stack: list[Node] = [parse(text)]
    while stack:
        node = stack.pop()
        if isinstance(node, Call) and (problem := _call(node)) is not None:
            found.errors.append(problem)
        if (
            isinstance(node, Binary)
            and node.op in _COMPARISONS
            and isinstance(node.left, Attribute)
            and isinstance(node.right, Attribute)
        ):
            found.warnings.append(
                f"`{node.left.name} {node.op} {node.right.name}` compares two attributes; "
                f"if {node.right.name!r} is a value, quote it: {node.left.name} {node.op} "
                f"'{node.right.name}'"
            )
        stack.extend(children(node))
    return found
