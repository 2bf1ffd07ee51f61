"""CESQL tokenizer: expression text -> list of tokens with 0-based positions.

Follows the lexical rules of the CESQL v1 grammar (cesql/CESQLLexer.g4):
keywords are case-insensitive, only space, tab, CR and LF separate tokens,
strings are '...' or "..." with a backslash escaping the next character.

Integer literals are lexed unsigned. A sign glued to the digits is folded
into the literal by the parser, which knows whether the ``-`` stands where an
operand starts (``-5``, ``4 * -1``) or between two operands (``4-1``); the
ANTLR lexer would make ``4-1`` two integers and fail to parse it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, auto

from routing.cesql.ast import CesqlParseError

__all__ = ["KEYWORDS", "Token", "TokenKind", "tokenize"]

KEYWORDS = frozenset({"AND", "OR", "XOR", "NOT", "LIKE", "EXISTS", "IN", "TRUE", "FALSE"})

_WHITESPACE = frozenset(" \t\r\n")
_WORD_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
_DIGITS = frozenset("0123456789")
# Longest operators first so "<=" is not read as "<" followed by "=".
_OPERATORS = ("<>", "<=", ">=", "!=", "=", "<", ">", "+", "-", "*", "/", "%")
_PUNCTUATION = {"(": "LPAREN", ")": "RPAREN", ",": "COMMA"}


class TokenKind(Enum):
    INT = auto()  # unsigned digits; value is the Python int
    STRING = auto()  # value is the decoded string
    WORD = auto()  # identifier or function name, decided by the parser
    KEYWORD = auto()  # value is the upper-cased keyword
    OP = auto()  # value is the operator text
    LPAREN = auto()
    RPAREN = auto()
    COMMA = auto()
    EOF = auto()


@dataclass(frozen=True, slots=True)
class Token:
    kind: TokenKind
    text: str  # the exact source text of the token
    value: str | int
    pos: int  # offset of the first character

    @property
    def end(self) -> int:
        return self.pos + len(self.text)

    def describe(self) -> str:
        """How the token is named in error messages."""
        if self.kind is TokenKind.EOF:
            return "end of expression"
        return repr(self.text)


def _read_string(text: str, start: int) -> tuple[str, int]:
    """Decode the string literal opening at ``start``; return (value, end offset).

    Inside a literal, a backslash before the delimiting quote yields that quote;
    a doubled quote also yields one quote (SQL style, allowed by the grammar);
    any other backslash pair is kept verbatim, so LIKE escapes such as ``\\%``
    survive into the pattern.
    """
    quote = text[start]
    out: list[str] = []
    i = start + 1
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "\\":
            if i + 1 >= n:
                break
            nxt = text[i + 1]
            out.append(nxt if nxt == quote else ch + nxt)
            i += 2
        elif ch == quote:
            if i + 1 < n and text[i + 1] == quote:
                out.append(quote)
                i += 2
            else:
                return "".join(out), i + 1
        else:
            out.append(ch)
            i += 1
    raise CesqlParseError(f"unterminated string literal (missing closing {quote})", start)


def tokenize(text: str) -> list[Token]:
    """Split ``text`` into tokens, ending with an EOF token.

    Raises ``CesqlParseError`` at the first character that starts no token.
    """
    tokens: list[Token] = []
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch in _WHITESPACE:
            i += 1
            continue
        if ch in _WORD_CHARS:
            j = i + 1
            while j < n and text[j] in _WORD_CHARS:
                j += 1
            word = text[i:j]
            if all(c in _DIGITS for c in word):
                # Cap huge literals: the parser rejects them as out of range anyway,
                # and int() refuses strings of thousands of digits.
                number = int(word) if len(word) <= 20 else 2**64
                tokens.append(Token(TokenKind.INT, word, number, i))
            elif word.upper() in KEYWORDS:
                tokens.append(Token(TokenKind.KEYWORD, word, word.upper(), i))
            else:
                tokens.append(Token(TokenKind.WORD, word, word, i))
            i = j
            continue
        if ch in "'\"":
            value, end = _read_string(text, i)
            tokens.append(Token(TokenKind.STRING, text[i:end], value, i))
            i = end
            continue
        if ch in _PUNCTUATION:
            tokens.append(Token(TokenKind[_PUNCTUATION[ch]], ch, ch, i))
            i += 1
            continue
        for op in _OPERATORS:
            if text.startswith(op, i):
                tokens.append(Token(TokenKind.OP, op, op, i))
                i += len(op)
                break
        else:
            raise CesqlParseError(f"unexpected character {ch!r}", i)
    tokens.append(Token(TokenKind.EOF, "", "", n))
    return tokens
