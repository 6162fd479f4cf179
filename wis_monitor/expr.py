"""The safe expression language of rules (SPEC §6): tokenizer, parser, type checker, evaluator.

Nothing here uses ``eval``, ``exec`` or Python's own parser: a small recursive-descent parser
builds closures once, at load time. Values are numbers or booleans; a metric may be null, and
null propagates SQL-style (a comparison with null is unknown, ``unknown and false`` is false),
so a null metric never fires — nor clears — a rule.

Grammar (loosest first)::

    or      := and ("or" and)*
    and     := not ("and" not)*
    not     := "not" not | compare
    compare := sum (("<" | "<=" | ">" | ">=" | "==" | "!=") sum)?
    sum     := product (("+" | "-") product)*
    product := unary (("*" | "/") unary)*
    unary   := "-" unary | atom
    atom    := NUMBER | METRIC | FUNCTION "(" or ("," or)* ")" | "(" or ")"

Functions: ``abs(x)``, ``min(a, b, ...)``, ``max(a, b, ...)``, ``missing(x)`` (true when ``x``
is null: the one test that is never unknown); in group scope also the
aggregates ``count(cond)``, ``any(cond)``, ``all(cond)``, ``mean(x)``, ``max(x)``, ``min(x)``
over the group's members. A group's own metrics (``split_buy_impact_<label>``, one value for
the whole group) stand outside aggregates, in group scope only.
"""

from __future__ import annotations

import difflib
import math
import operator
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

MAX_LENGTH = 1000
MAX_DEPTH = 50
Value = float | bool | None
Kind = Literal["number", "bool"]
Values = Mapping[str, float | None]

_TOKEN = re.compile(
    r"\s*(?:(?P<num>(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<op><=|>=|==|!=|<|>|\+|-|\*|/|\(|\)|,))",
    re.ASCII,  # ASCII digits and spaces only: "١" or "１" or a no-break space is refused
)
_COMPARE = {"<", "<=", ">", ">=", "==", "!="}
_KEYWORDS = {"and", "or", "not"}
_AGGREGATES = {"count", "any", "all", "mean"}
_FUNCTIONS = {"abs", "min", "max", "missing"}
_GROUP_METRIC = re.compile(r"split_(buy|sell)_impact_\w+")


class Members(list[Values]):
    """A group's members' values, and the group's own (``group``)."""

    def __init__(self, members: Iterable[Values], group: Values | None = None) -> None:
        super().__init__(members)
        self.group: Values = group or {}


class ExprError(ValueError):
    """An expression that cannot be compiled; ``column`` is 1-based when known."""

    def __init__(self, message: str, column: int | None = None) -> None:
        self.message = message
        self.column = column
        super().__init__(message if column is None else f"{message} (column {column})")


@dataclass(frozen=True)
class _Tok:
    kind: str  # num | name | op | end
    text: str
    col: int


def _tokenize(text: str) -> list[_Tok]:
    out: list[_Tok] = []
    for col, ch in enumerate(text, 1):
        if not ch.isascii():
            raise ExprError(f'non-ASCII character "{ch}" (U+{ord(ch):04X}): expressions use '
                            "ASCII letters, digits, spaces and operators only", col)
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            col = pos + 1 + (len(text[pos:]) - len(text[pos:].lstrip()))
            ch = text[col - 1]
            if ch == ".":
                raise ExprError("attribute access is not allowed", col)
            if ch in "'\"":
                raise ExprError("strings are not allowed", col)
            if text.startswith("**", col - 1):
                raise ExprError('"**" is not allowed', col)
            raise ExprError(f'unexpected character "{ch}"', col)
        kind = m.lastgroup or "op"
        tok_text = m.group(kind)
        col = m.start(kind) + 1
        if kind == "num" and m.end() < len(text) and (text[m.end()].isalpha()
                                                      or text[m.end()] in "._"):
            raise ExprError(f'bad number "{tok_text}{text[m.end()]}"', col)
        if kind == "op" and tok_text == "*" and text.startswith("**", m.start(kind)):
            raise ExprError('"**" is not allowed', col)
        out.append(_Tok(kind, tok_text, col))
        pos = m.end()
    out.append(_Tok("end", "", len(text) + 1))
    return out


@dataclass
class _Node:
    kind: Kind
    fn: Callable[[Any], Value]
    const: bool = False
    metrics: set[str] = field(default_factory=set)


def _cmp(op: str) -> Callable[[float, float], bool]:
    return {
        "<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b,
        ">=": lambda a, b: a >= b, "==": lambda a, b: a == b, "!=": lambda a, b: a != b,
    }[op]


def _arith(op: str) -> Callable[[float, float], float | None]:
    if op == "+":
        return lambda a, b: a + b
    if op == "-":
        return lambda a, b: a - b
    if op == "*":
        return lambda a, b: a * b
    return lambda a, b: a / b if b != 0 else None


class _Parser:
    def __init__(self, text: str, metrics: Collection[str], group: bool) -> None:
        self.text = text
        self.toks = _tokenize(text)
        self.i = 0
        self.metrics = set(metrics)
        self.group = group
        self.depth = 0
        self.in_aggregate = False

    @property
    def tok(self) -> _Tok:
        return self.toks[self.i]

    def take(self) -> _Tok:
        t = self.toks[self.i]
        self.i += 1
        return t

    def expect(self, text: str) -> _Tok:
        t = self.tok
        if t.text != text or t.kind == "end":
            raise self.unexpected(f'expected "{text}"')
        return self.take()

    def unexpected(self, what: str = "") -> ExprError:
        t = self.tok
        if t.kind == "end":
            return ExprError("unexpected end of expression" + (f": {what}" if what else ""),
                             t.col)
        return ExprError(f'unexpected "{t.text}"' + (f": {what}" if what else ""), t.col)

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ExprError(f"expression is nested too deeply (more than {MAX_DEPTH} levels)",
                            self.tok.col)

    def parse(self) -> _Node:
        node = self.or_()
        if self.tok.kind != "end":
            raise self.unexpected()
        return node

    # -- boolean layers -----------------------------------------------------------------------

    def _need(self, node: _Node, kind: Kind, col: int, what: str) -> None:
        if node.kind != kind:
            got = "a condition" if node.kind == "bool" else "a number"
            want = "a condition" if kind == "bool" else "a number"
            raise ExprError(f"{what} needs {want}, got {got}", col)

    def or_(self) -> _Node:
        self.enter()
        node = self._chain("or", self.and_, True)
        self.depth -= 1
        return node

    def and_(self) -> _Node:
        return self._chain("and", self.not_, False)

    def _chain(self, word: str, sub: Callable[[], _Node], dominant: bool) -> _Node:
        col = self.tok.col
        left = sub()
        while self.tok.text == word and self.tok.kind == "name":
            op_col = self.take().col
            right = sub()
            self._need(left, "bool", col, f'"{word}"')
            self._need(right, "bool", op_col, f'"{word}"')
            left = _Node("bool", _logic(left.fn, right.fn, dominant),
                         metrics=left.metrics | right.metrics)
        return left

    def not_(self) -> _Node:
        if self.tok.text == "not" and self.tok.kind == "name":
            return self._prefix('"not"', "bool", self.not_, operator.not_)
        return self.compare()

    def _prefix(self, what: str, kind: Kind, sub: Callable[[], _Node],
                apply: Callable[[Any], Value]) -> _Node:
        """A prefix operator (``not``, unary minus): null stays null."""
        col = self.take().col
        self.enter()
        inner = sub()
        self.depth -= 1
        self._need(inner, kind, col, what)
        f = inner.fn
        return _Node(kind, lambda v: None if (x := f(v)) is None else apply(x),
                     metrics=inner.metrics)

    def compare(self) -> _Node:
        col = self.tok.col
        left = self.sum_()
        if self.tok.kind == "op" and self.tok.text in _COMPARE:
            op = self.take()
            right = self.sum_()
            self._need(left, "number", col, f'"{op.text}"')
            self._need(right, "number", op.col, f'"{op.text}"')
            if self.tok.kind == "op" and self.tok.text in _COMPARE:
                raise ExprError("chained comparisons are not supported: use \"and\"",
                                self.tok.col)
            cmp = _cmp(op.text)
            lf, rf = left.fn, right.fn

            def compare(v: Any) -> Value:
                a, b = lf(v), rf(v)
                if a is None or b is None:
                    return None
                return cmp(a, b)

            return _Node("bool", compare, metrics=left.metrics | right.metrics)
        return left

    # -- arithmetic ---------------------------------------------------------------------------

    def sum_(self) -> _Node:
        return self._binary(self.product, ("+", "-"))

    def product(self) -> _Node:
        return self._binary(self.unary, ("*", "/"))

    def _binary(self, sub: Callable[[], _Node], ops: tuple[str, ...]) -> _Node:
        col = self.tok.col
        left = sub()
        while self.tok.kind == "op" and self.tok.text in ops:
            op = self.take()
            right = sub()
            self._need(left, "number", col, f'"{op.text}"')
            self._need(right, "number", op.col, f'"{op.text}"')
            fn = _arith(op.text)
            lf, rf = left.fn, right.fn

            def arith(v: Any, lf: Any = lf, rf: Any = rf, fn: Any = fn) -> Value:
                a, b = lf(v), rf(v)
                if a is None or b is None:
                    return None
                r = fn(a, b)
                return r if r is None or math.isfinite(r) else None

            left = _Node("number", arith, metrics=left.metrics | right.metrics)
        return left

    def unary(self) -> _Node:
        if self.tok.kind == "op" and self.tok.text == "-":
            return self._prefix('unary "-"', "number", self.unary, operator.neg)
        return self.atom()

    def atom(self) -> _Node:
        t = self.tok
        if t.kind == "num":
            self.take()
            x = float(t.text)
            if not math.isfinite(x):
                raise ExprError(f'number "{t.text}" is too large', t.col)
            return _Node("number", lambda v: x, const=True)
        if t.kind == "op" and t.text == "(":
            self.take()
            node = self.or_()
            self.expect(")")
            return node
        if t.kind == "name" and t.text not in _KEYWORDS:
            self.take()
            if self.tok.kind == "op" and self.tok.text == "(":
                return self.call(t)
            return self.metric(t)
        raise self.unexpected()

    def metric(self, t: _Tok) -> _Node:
        name = t.text
        if name in _FUNCTIONS or name in _AGGREGATES:
            raise ExprError(f'"{name}" is a function: write {name}(...)', t.col)
        if name not in self.metrics:
            hint = difflib.get_close_matches(name, sorted(self.metrics), n=1)
            raise ExprError(f'unknown metric "{name}"'
                            + (f' (did you mean "{hint[0]}"?)' if hint else ""), t.col)
        if _GROUP_METRIC.fullmatch(name):
            if not self.group or self.in_aggregate:
                raise ExprError(f'"{name}" is a metric of a group, not of its members: use it '
                                "in a group rule, outside aggregates", t.col)
            return _Node("number", lambda ms: getattr(ms, "group", {}).get(name),
                         metrics={name})
        if self.group and not self.in_aggregate:
            raise ExprError(f'metric "{name}" must be inside an aggregate in group scope '
                            "(count, any, all, mean, max, min)", t.col)
        return _Node("number", lambda v: v.get(name), metrics={name})

    def call(self, t: _Tok) -> _Node:
        name = t.text
        if name not in _FUNCTIONS and name not in _AGGREGATES:
            raise ExprError(f'unknown function "{name}"', t.col)
        self.expect("(")
        aggregate = name in _AGGREGATES
        if aggregate and not self.group:
            raise ExprError(f"{name}() is only allowed in group scope", t.col)
        args: list[tuple[_Node, int]] = []
        one_arg_agg = self.group and not self.in_aggregate and name in ("min", "max")
        if aggregate or one_arg_agg:
            if self.in_aggregate:
                raise ExprError(f"{name}(): aggregates cannot be nested", t.col)
            self.in_aggregate = True
            try:
                col = self.tok.col
                args.append((self.or_(), col))
                while self.tok.text == "," and self.tok.kind == "op":
                    self.take()
                    col = self.tok.col
                    args.append((self.or_(), col))
            finally:
                self.in_aggregate = False
            self.expect(")")
            if len(args) != 1:
                raise ExprError(f"{name}() over a group takes one argument", t.col)
            return self._aggregate(name, args[0][0], args[0][1])
        col = self.tok.col
        args.append((self.or_(), col))
        while self.tok.text == "," and self.tok.kind == "op":
            self.take()
            col = self.tok.col
            args.append((self.or_(), col))
        self.expect(")")
        for node, c in args:
            self._need(node, "number", c, f"{name}()")
        fns = [n.fn for n, _ in args]
        metrics = set().union(*(n.metrics for n, _ in args))
        if name in ("abs", "missing"):
            if len(args) != 1:
                raise ExprError(f"{name}() takes one argument", t.col)
            f = fns[0]
            if name == "missing":
                return _Node("bool", lambda v: f(v) is None, metrics=metrics)
            return _Node("number", lambda v: None if (x := f(v)) is None else abs(x),
                         metrics=metrics)
        if len(args) < 2:
            raise ExprError(f"{name}() takes two or more arguments", t.col)
        pick = min if name == "min" else max

        def minmax(v: Any) -> Value:
            xs = [f(v) for f in fns]
            if any(x is None for x in xs):
                return None
            return pick(xs)  # type: ignore[type-var]

        return _Node("number", minmax, metrics=metrics)

    def _aggregate(self, name: str, arg: _Node, col: int) -> _Node:
        f = arg.fn
        if name in ("count", "any", "all"):
            self._need(arg, "bool", col, f"{name}()")
            if name == "count":
                return _Node("number", lambda ms: float(sum(1 for m in ms if f(m) is True)),
                             metrics=arg.metrics)
            if name == "any":
                return _Node("bool", lambda ms: any(f(m) is True for m in ms),
                             metrics=arg.metrics)
            return _Node("bool", lambda ms: bool(ms) and all(f(m) is True for m in ms),
                         metrics=arg.metrics)
        self._need(arg, "number", col, f"{name}()")

        def agg(ms: Sequence[Values]) -> Value:
            xs = [x for m in ms if (x := f(m)) is not None]
            if not xs:
                return None
            if name == "mean":
                return math.fsum(xs) / len(xs)
            return max(xs) if name == "max" else min(xs)

        return _Node("number", agg, metrics=arg.metrics)


def _logic(a: Callable[[Any], Value], b: Callable[[Any], Value], dominant: bool
           ) -> Callable[[Any], Value]:
    """Kleene ``and`` (dominant False) or ``or`` (dominant True): unknown unless decided."""
    def f(v: Any) -> Value:
        x = a(v)
        if x is dominant:
            return dominant
        y = b(v)
        if y is dominant:
            return dominant
        return None if x is None or y is None else not dominant

    return f


@dataclass(frozen=True)
class Expr:
    """A compiled expression."""

    text: str
    metrics: frozenset[str]
    group: bool
    kind: Kind = "bool"
    _fn: Callable[[Any], Value] = field(default=lambda v: None, repr=False, compare=False)

    def evaluate(self, values: Values) -> Value:
        if self.group:
            raise TypeError("a group expression needs evaluate_group()")
        return self._fn(values)

    def evaluate_group(self, members: Sequence[Values]) -> Value:
        if not self.group:
            raise TypeError("a venue expression needs evaluate()")
        return self._fn(members)

    def holds(self, values: Values) -> bool:
        return self.evaluate(values) is True

    def holds_group(self, members: Sequence[Values]) -> bool:
        return self.evaluate_group(members) is True


def compile_expr(text: str, metrics: Collection[str], *, group: bool = False,
                 want: Kind = "bool") -> Expr:
    """Parse and type-check ``text``; raise ExprError saying what is wrong and where."""
    if not isinstance(text, str):
        raise ExprError(f"expected an expression as text, got {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise ExprError(f"expression is too long ({len(text)} characters, at most {MAX_LENGTH})")
    if not text.strip():
        raise ExprError("empty expression")
    parser = _Parser(text, metrics, group)
    node = parser.parse()
    if node.kind != want:
        raise ExprError("expected a condition, got a number" if want == "bool"
                        else "expected a number, got a condition", 1)
    return Expr(text, frozenset(node.metrics), group, node.kind, node.fn)
