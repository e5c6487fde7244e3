"""A small, safe condition language for ABAC grants — parsed once, never ``eval``'d.

Grammar (keywords are lower case)::

    expr    := or
    or      := and ("or" and)*
    and     := not ("and" not)*
    not     := "not" not | compare
    compare := operand [("==" | "!=" | "<" | "<=" | ">" | ">=" | "in" | "not in") operand]
    operand := path | STRING | NUMBER | "true" | "false" | "null" | "[" [operand ("," operand)*] "]"
             | "(" expr ")"
    path    := ("subject" | "resource" | "context") ("." NAME)*

Examples: ``resource.owner == subject.id``, ``resource.tenant == subject.tenant``,
``resource.status in ["draft", "review"] and not resource.locked``.

Fail closed: a path that names nothing (``resource.owner`` when the resource has
no owner) is *missing*, and any comparison involving a missing value is false —
so ``resource.tenant == subject.tenant`` never holds because both are absent.
Comparisons between values of different kinds are false rather than errors.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: Longest condition accepted, and deepest nesting: a grant is configuration, not a program.
MAX_LENGTH = 500
MAX_DEPTH = 32
ROOTS = frozenset({"subject", "resource", "context"})


class ConditionError(ValueError):
    """The condition text is not valid; the message says where and why."""


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


MISSING: Any = _Missing()

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<num>-?\d+(?:\.\d+)?)
      | (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
      | (?P<op>==|!=|<=|>=|<|>|\(|\)|\[|\]|,|\.)
      | (?P<name>[A-Za-z_][A-Za-z0-9_-]*)
    )""",
    re.VERBOSE,
)
_KEYWORDS = frozenset({"and", "or", "not", "in", "true", "false", "null"})
_COMPARE = frozenset({"==", "!=", "<", "<=", ">", ">=", "in", "not in"})


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: str  # num, str, op, name, kw, end
    value: Any
    pos: int


def _tokens(text: str) -> list[_Tok]:
    out: list[_Tok] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise ConditionError(f"unexpected character {text[pos:].lstrip()[:1]!r} at position {pos}")
        start = m.start(m.lastgroup) if m.lastgroup else pos
        if m.group("num") is not None:
            raw = m.group("num")
            out.append(_Tok("num", float(raw) if "." in raw else int(raw), start))
        elif m.group("str") is not None:
            raw = m.group("str")[1:-1]
            out.append(_Tok("str", re.sub(r"\\(.)", r"\1", raw), start))
        elif m.group("op") is not None:
            out.append(_Tok("op", m.group("op"), start))
        else:
            name = m.group("name")
            out.append(_Tok("kw" if name in _KEYWORDS else "name", name, start))
        pos = m.end()
    out.append(_Tok("end", None, len(text)))
    return out


# AST nodes are tuples: ("lit", v) ("path", (root, *names)) ("list", [nodes]) ("not", n)
# ("and", a, b) ("or", a, b) ("cmp", op, a, b)


class _Parser:
    def __init__(self, text: str) -> None:
        self.toks = _tokens(text)
        self.i = 0
        self.depth = 0

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def take(self) -> _Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def expect(self, kind: str, value: Any = None) -> _Tok:
        tok = self.take()
        if tok.kind != kind or (value is not None and tok.value != value):
            want = value if value is not None else kind
            raise ConditionError(f"expected {want!r} at position {tok.pos}, found {tok.value if tok.value is not None else 'the end'!r}")
        return tok

    def parse(self) -> tuple:
        node = self.expr()
        tok = self.peek()
        if tok.kind != "end":
            raise ConditionError(f"unexpected {tok.value!r} at position {tok.pos}")
        return node

    def expr(self) -> tuple:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ConditionError(f"condition nested deeper than {MAX_DEPTH} levels")
        node = self.and_()
        while self.peek().kind == "kw" and self.peek().value == "or":
            self.take()
            node = ("or", node, self.and_())
        self.depth -= 1
        return node

    def and_(self) -> tuple:
        node = self.not_()
        while self.peek().kind == "kw" and self.peek().value == "and":
            self.take()
            node = ("and", node, self.not_())
        return node

    def not_(self) -> tuple:
        tok = self.peek()
        if tok.kind == "kw" and tok.value == "not":
            self.take()
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise ConditionError(f"condition nested deeper than {MAX_DEPTH} levels")
            node = ("not", self.not_())
            self.depth -= 1
            return node
        return self.compare()

    def compare(self) -> tuple:
        left = self.operand()
        tok = self.peek()
        op = None
        if tok.kind == "op" and tok.value in _COMPARE:
            op = self.take().value
        elif tok.kind == "kw" and tok.value == "in":
            op = self.take().value
        elif tok.kind == "kw" and tok.value == "not" and self.toks[self.i + 1].value == "in":
            self.take(), self.take()
            op = "not in"
        if op is None:
            return left
        return ("cmp", op, left, self.operand())

    def operand(self) -> tuple:
        tok = self.take()
        if tok.kind in ("num", "str"):
            return ("lit", tok.value)
        if tok.kind == "kw" and tok.value in ("true", "false", "null"):
            return ("lit", {"true": True, "false": False, "null": None}[tok.value])
        if tok.kind == "op" and tok.value == "(":
            node = self.expr()
            self.expect("op", ")")
            return node
        if tok.kind == "op" and tok.value == "[":
            items: list[tuple] = []
            if not (self.peek().kind == "op" and self.peek().value == "]"):
                items.append(self.operand())
                while self.peek().kind == "op" and self.peek().value == ",":
                    self.take()
                    items.append(self.operand())
            self.expect("op", "]")
            return ("list", items)
        if tok.kind == "name":
            if tok.value not in ROOTS:
                raise ConditionError(
                    f"unknown name {tok.value!r} at position {tok.pos}: paths start with subject., resource. or context."
                )
            parts = [tok.value]
            while self.peek().kind == "op" and self.peek().value == ".":
                self.take()
                name = self.take()
                if name.kind not in ("name", "kw"):
                    raise ConditionError(f"expected an attribute name after '.' at position {name.pos}")
                parts.append(name.value)
            return ("path", tuple(parts))
        shown = "the end" if tok.kind == "end" else repr(tok.value)
        raise ConditionError(f"expected a value or a path at position {tok.pos}, found {shown}")


class Condition:
    """A parsed condition: ``Condition("resource.owner == subject.id").evaluate(scope)``."""

    __slots__ = ("_ast", "paths", "text")

    def __init__(self, text: str) -> None:
        if not isinstance(text, str) or not text.strip():
            raise ConditionError("a condition must be a non-empty string")
        if len(text) > MAX_LENGTH:
            raise ConditionError(f"a condition may be at most {MAX_LENGTH} characters")
        self.text = text.strip()
        self._ast = _Parser(self.text).parse()
        self.paths: tuple[tuple[str, ...], ...] = tuple(dict.fromkeys(_paths(self._ast)))

    def evaluate(self, scope: Mapping[str, Any]) -> bool:
        """Whether the condition holds for ``scope`` (``{"subject": ..., "resource": ..., "context": ...}``)."""
        return _truthy(_eval(self._ast, scope))

    def values(self, scope: Mapping[str, Any]) -> dict[str, Any]:
        """The value of every path the condition reads (for explaining a decision); missing ones are ``None``."""
        out = {}
        for p in self.paths:
            v = lookup(scope, p)
            out[".".join(p)] = None if v is MISSING else v
        return out

    def __repr__(self) -> str:
        return f"Condition({self.text!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Condition) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)


def lookup(scope: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    """The value at ``path`` in ``scope`` (mappings or attributes), or :data:`MISSING`."""
    value: Any = scope
    for name in path:
        if isinstance(value, Mapping):
            value = value.get(name, MISSING)
        elif value is not None and not name.startswith("_") and hasattr(value, name):
            value = getattr(value, name)
        else:
            return MISSING
        if value is MISSING:
            return MISSING
    return value


def _paths(node: tuple):
    kind = node[0]
    if kind == "path":
        yield node[1]
    elif kind == "list":
        for n in node[1]:
            yield from _paths(n)
    elif kind == "not":
        yield from _paths(node[1])
    elif kind in ("and", "or"):
        yield from _paths(node[1])
        yield from _paths(node[2])
    elif kind == "cmp":
        yield from _paths(node[2])
        yield from _paths(node[3])


def _eval(node: tuple, scope: Mapping[str, Any]) -> Any:
    kind = node[0]
    if kind == "lit":
        return node[1]
    if kind == "path":
        return lookup(scope, node[1])
    if kind == "list":
        return [_eval(n, scope) for n in node[1]]
    if kind == "not":
        value = _eval(node[1], scope)
        return False if value is MISSING else not _truthy(value)
    if kind == "and":
        return _truthy(_eval(node[1], scope)) and _truthy(_eval(node[2], scope))
    if kind == "or":
        return _truthy(_eval(node[1], scope)) or _truthy(_eval(node[2], scope))
    return _compare(node[1], _eval(node[2], scope), _eval(node[3], scope))


def _truthy(value: Any) -> bool:
    return value is not MISSING and bool(value)


def _compare(op: str, a: Any, b: Any) -> bool:
    if a is MISSING or b is MISSING:
        return False
    if op in ("in", "not in"):
        if isinstance(b, (list, tuple, set, frozenset)):
            found = any(_same(a, x) for x in b)
        elif isinstance(b, str) and isinstance(a, str):
            found = a in b
        else:
            return False
        return found if op == "in" else not found
    if op == "==":
        return _same(a, b)
    if op == "!=":
        return not _same(a, b)
    if isinstance(a, bool) or isinstance(b, bool):
        return False
    numbers = isinstance(a, (int, float)) and isinstance(b, (int, float))
    if not numbers and not (isinstance(a, str) and isinstance(b, str)):
        return False
    return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]


def _same(a: Any, b: Any) -> bool:
    # true == 1 is a type confusion an attacker could use: booleans equal booleans only.
    if isinstance(a, bool) != isinstance(b, bool):
        return False
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return (type(a) is type(b) and a == b) or (
        isinstance(a, (int, float)) and isinstance(b, (int, float)) and a == b
    )


__all__ = ["MISSING", "Condition", "ConditionError", "lookup"]
