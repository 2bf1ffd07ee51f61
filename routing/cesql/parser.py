"""CESQL parser: recursive descent over the tokens, one function per precedence level.

Precedence, loosest first (spec section 3.6, "evaluated left to right when the
precedence is equal"):

    AND OR XOR                      one level, left-associative
    = != <> < <= > >=               left-associative
    + -
    * / %
    [NOT] LIKE 'pattern', [NOT] IN (set)   postfix
    NOT x, -x                       prefix; bind tighter than everything above
    literal, identifier, f(args), EXISTS identifier, (expression)

The spec's ANTLR grammar marks the logic level right-associative, which only
matters when AND/OR/XOR are mixed without parentheses; the normative text
(left to right) wins here.
"""

from __future__ import annotations

import re

from routing.cesql.ast import (
    Attribute,
    Binary,
    Call,
    CesqlParseError,
    Exists,
    In,
    Like,
    Literal,
    Node,
    Unary,
    Wildcard,
)
from routing.cesql.lexer import Token, TokenKind, tokenize

__all__ = ["MAX_NESTING", "like_parts", "parse"]

# Parentheses, prefix operators and call arguments each recurse; bound them so a
# hostile expression fails with a parse error instead of a RecursionError.
MAX_NESTING = 50

_INT_MIN = -(2**31)
_INT_MAX = 2**31 - 1
_LOGIC = frozenset({"AND", "OR", "XOR"})
_COMPARISON = frozenset({"=", "!=", "<>", "<", "<=", ">", ">="})
_ADDITIVE = frozenset({"+", "-"})
_MULTIPLICATIVE = frozenset({"*", "/", "%"})
# Spec 2.2/2.4: identifiers follow the attribute naming rules (letters and digits;
# upper case is accepted and folded, as keywords are); function names are letters
# and underscores starting with a letter.
_IDENTIFIER = re.compile(r"[A-Za-z0-9]+")
_FUNCTION_NAME = re.compile(r"[A-Za-z][A-Za-z_]*")


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = tokenize(text)
        self.index = 0
        self.depth = 0

    # -- token helpers ------------------------------------------------------------------

    @property
    def current(self) -> Token:
        return self.tokens[self.index]

    def peek(self, offset: int = 1) -> Token:
        return self.tokens[min(self.index + offset, len(self.tokens) - 1)]

    def advance(self) -> Token:
        token = self.tokens[self.index]
        if token.kind is not TokenKind.EOF:
            self.index += 1
        return token

    def at_op(self, ops: frozenset[str]) -> bool:
        token = self.current
        return token.kind is TokenKind.OP and token.value in ops

    def at_keyword(self, *words: str) -> bool:
        token = self.current
        return token.kind is TokenKind.KEYWORD and token.value in words

    def expect(self, kind: TokenKind, what: str) -> Token:
        if self.current.kind is not kind:
            raise self.error(f"expected {what}")
        return self.advance()

    def error(self, message: str, token: Token | None = None) -> CesqlParseError:
        token = token or self.current
        return CesqlParseError(f"{message}, found {token.describe()}", token.pos)

    def nest(self, token: Token) -> None:
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise CesqlParseError(
                f"expression nested more than {MAX_NESTING} levels deep", token.pos
            )

    # -- grammar ------------------------------------------------------------------------

    def at_end(self) -> bool:
        return self.current.kind is TokenKind.EOF

    def parse(self) -> Node:
        if self.at_end():
            raise self.error("expected an expression")
        node = self.expression()
        if not self.at_end():
            raise self.error("expected an operator or the end of the expression")
        return node

    def expression(self) -> Node:
        node = self.comparison()
        while self.at_keyword(*_LOGIC):
            op = self.advance()
            node = Binary(str(op.value), node, self.comparison(), op.pos)
        return node

    def comparison(self) -> Node:
        node = self.additive()
        while self.at_op(_COMPARISON):
            op = self.advance()
            node = Binary(str(op.value), node, self.additive(), op.pos)
        return node

    def additive(self) -> Node:
        node = self.multiplicative()
        while self.at_op(_ADDITIVE):
            op = self.advance()
            node = Binary(str(op.value), node, self.multiplicative(), op.pos)
        return node

    def multiplicative(self) -> Node:
        node = self.postfix()
        while self.at_op(_MULTIPLICATIVE):
            op = self.advance()
            node = Binary(str(op.value), node, self.postfix(), op.pos)
        return node

    def postfix(self) -> Node:
        node = self.unary()
        while True:
            negated = False
            start = self.current
            if self.at_keyword("NOT") and self.peek().kind is TokenKind.KEYWORD:
                if self.peek().value not in ("LIKE", "IN"):
                    raise self.error("expected LIKE or IN after NOT", self.peek())
                self.advance()
                negated = True
            if self.at_keyword("LIKE"):
                self.advance()
                pattern = self.like_pattern()
                node = Like(node, pattern, like_parts(pattern), negated, start.pos)
            elif self.at_keyword("IN"):
                self.advance()
                node = In(node, self.set_items(), negated, start.pos)
            else:
                return node

    def like_pattern(self) -> str:
        # Spec 3.4.3: the pattern MUST be a string literal, otherwise a parse error.
        token = self.current
        if token.kind is not TokenKind.STRING:
            raise self.error("LIKE needs a string literal pattern")
        self.advance()
        return str(token.value)

    def set_items(self) -> tuple[Node, ...]:
        opening = self.expect(TokenKind.LPAREN, "'(' to open the IN set")
        self.nest(opening)
        if self.current.kind is TokenKind.RPAREN:
            raise self.error("an IN set needs at least one element")
        items = [self.expression()]
        while self.current.kind is TokenKind.COMMA:
            self.advance()
            items.append(self.expression())
        self.expect(TokenKind.RPAREN, "',' or ')' in the IN set")
        self.depth -= 1
        return tuple(items)

    def unary(self) -> Node:
        token = self.current
        if token.kind is TokenKind.OP and token.value in ("-", "+"):
            following = self.peek()
            # A sign glued to digits is part of the integer literal (spec 2.2), which
            # is what makes -2147483648 expressible.
            if following.kind is TokenKind.INT and following.pos == token.end:
                self.advance()
                self.advance()
                number = int(following.value)
                return self.integer(-number if token.value == "-" else number, token)
            if token.value == "+":
                raise self.error("unary '+' is only allowed as the sign of an integer literal")
        if (token.kind is TokenKind.OP and token.value == "-") or (
            token.kind is TokenKind.KEYWORD and token.value == "NOT"
        ):
            self.advance()
            self.nest(token)
            operand = self.unary()
            self.depth -= 1
            return Unary(str(token.value), operand, token.pos)
        return self.primary()

    def integer(self, number: int, token: Token) -> Literal:
        if not _INT_MIN <= number <= _INT_MAX:
            raise CesqlParseError(
                f"integer literal is outside the signed 32-bit range [{_INT_MIN}, {_INT_MAX}]",
                token.pos,
            )
        return Literal(number, token.pos)

    def primary(self) -> Node:
        token = self.current
        kind = token.kind
        if kind is TokenKind.INT:
            self.advance()
            return self.integer(int(token.value), token)
        if kind is TokenKind.STRING:
            self.advance()
            return Literal(str(token.value), token.pos)
        if kind is TokenKind.KEYWORD:
            if token.value in ("TRUE", "FALSE"):
                self.advance()
                return Literal(token.value == "TRUE", token.pos)
            if token.value == "EXISTS":
                self.advance()
                name = self.current
                if name.kind is not TokenKind.WORD or not _IDENTIFIER.fullmatch(name.text):
                    raise self.error("EXISTS needs an attribute name")
                self.advance()
                return Exists(name.text.lower(), token.pos)
            raise self.error("expected an operand")
        if kind is TokenKind.WORD:
            self.advance()
            if self.current.kind is TokenKind.LPAREN:
                return self.call(token)
            if not _IDENTIFIER.fullmatch(token.text):
                raise self.error("attribute names may contain only letters and digits", token)
            return Attribute(token.text.lower(), token.pos)
        if kind is TokenKind.LPAREN:
            self.advance()
            self.nest(token)
            node = self.expression()
            self.expect(TokenKind.RPAREN, f"')' to close the '(' at position {token.pos}")
            self.depth -= 1
            return node
        raise self.error("expected an operand")

    def call(self, name: Token) -> Call:
        if not _FUNCTION_NAME.fullmatch(name.text):
            raise self.error(
                "function names may contain only letters and '_' and start with a letter",
                name,
            )
        opening = self.advance()  # the "("
        self.nest(opening)
        args: list[Node] = []
        if self.current.kind is not TokenKind.RPAREN:
            args.append(self.expression())
            while self.current.kind is TokenKind.COMMA:
                self.advance()
                args.append(self.expression())
        self.expect(
            TokenKind.RPAREN, f"',' or ')' in the arguments of {name.text} at position {name.pos}"
        )
        self.depth -= 1
        return Call(name.text.upper(), tuple(args), name.pos)


def like_parts(pattern: str) -> tuple[str | Wildcard, ...]:
    """Split a LIKE pattern: % and _ are wildcards, \\% and \\_ the literal characters.

    Any other backslash is an ordinary character (spec 3.4.3 defines only these
    two escapes), so 'ab\\c' matches the text ab\\c.
    """
    parts: list[str | Wildcard] = []
    literal: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and pattern[i + 1 : i + 2] in ("%", "_"):
            literal.append(pattern[i + 1])
            i += 2
            continue
        if ch in "%_":
            if literal:
                parts.append("".join(literal))
                literal = []
            parts.append(Wildcard(ch))
        else:
            literal.append(ch)
        i += 1
    if literal:
        parts.append("".join(literal))
    return tuple(parts)


def parse(text: str) -> Node:
    """Parse CESQL ``text`` into a syntax tree; raise ``CesqlParseError`` if invalid."""
    return _Parser(text).parse()
