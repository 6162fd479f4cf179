"""The rule expression language: semantics, null logic, type errors, hostile input."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wis_monitor.expr import ExprError, compile_expr

METRICS = {"wis", "wis_z", "depth", "spread_bps", "mid", "a", "b"}



@pytest.mark.parametrize(
    ("text", "values", "expected"),
    [
        ("1 + 2 * 3 == 7", {}, True),
        ("(1 + 2) * 3 == 9", {}, True),
        ("-a * 2 == -4", {"a": 2.0}, True),
        ("wis_z >= 3 and depth > 250000", {"wis_z": 3.0, "depth": 250001.0}, True),
        ("wis_z >= 3 and depth > 250000", {"wis_z": 2.9, "depth": 1e9}, False),
        ("not a > 1 and b < 2", {"a": 0.0, "b": 1.0}, True),  # not binds tighter than and
        ("a > 1 or b > 1 and a > 5", {"a": 2.0, "b": 2.0}, True),  # and before or
        ("abs(wis) >= 0.8", {"wis": -0.9}, True),
        ("max(a, b, 3) == 3", {"a": 1.0, "b": 2.0}, True),
        ("min(a, b) == 1", {"a": 1.0, "b": 2.0}, True),
        ("1e6 > 999999", {}, True),
        ("a / 0 > 1", {"a": 1.0}, None),  # division by zero is null, not an error
    ],
)
def test_semantics(text: str, values: dict[str, float | None], expected: object) -> None:
    assert compile_expr(text, METRICS).evaluate(values) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("wis_z > 3", None),
        ("not wis_z > 3", None),  # unknown stays unknown: a null never fires
        ("wis_z > 3 and depth > 1", None),
        ("wis_z > 3 and depth < 1", False),
        ("wis_z > 3 or depth > 1", True),
        ("wis_z > 3 or depth < 1", None),
        ("abs(wis_z) + 1 > 0", None),
        ("max(wis_z, depth) > 0", None),
    ],
)
def test_null_logic(text: str, expected: object) -> None:
    e = compile_expr(text, METRICS)
    assert e.evaluate({"wis_z": None, "depth": 10.0}) is expected
    assert e.holds({"wis_z": None, "depth": 10.0}) is (expected is True)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("wis_zz > 3", 'unknown metric "wis_zz" (did you mean "wis_z"?)'),
        ("wis_z", "expected a condition, got a number"),
        ("wis_z > 3 +", "unexpected end of expression"),
        ("(wis_z > 3", 'expected ")"'),
        ("wis_z > 3)", 'unexpected ")"'),
        ("wis_z and depth", '"and" needs a condition, got a number'),
        ("(a > 1) + 1 > 0", '"+" needs a number, got a condition'),
        ("1 < a < 2", "chained comparisons are not supported"),
        ("count(a > 1) > 1", "count() is only allowed in group scope"),
        ("abs(a, b) > 1", "abs() takes one argument"),
        ("max(a) > 1", "max() takes two or more arguments"),
        ("foo(a) > 1", 'unknown function "foo"'),
        ("", "empty expression"),
    ],
)
def test_errors(text: str, message: str) -> None:
    with pytest.raises(ExprError) as info:
        compile_expr(text, METRICS)
    assert message in str(info.value)


def test_error_column() -> None:
    with pytest.raises(ExprError) as info:
        compile_expr("wis_z > 3 and dpth > 1", METRICS)
    assert info.value.column == 15 and "(column 15)" in str(info.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("__import__('os').system('true')", "strings are not allowed"),
        ("__import__ > 1", 'unknown metric "__import__"'),
        ("wis.__class__ > 1", "attribute access is not allowed"),
        ("lambda: 1", "unexpected"),
        ("wis ** 99999999 > 1", '"**" is not allowed'),
        ("1e999999 > 1", "too large"),
        ("[1][0] > 1", 'unexpected character "["'),
        ("a; b", 'unexpected character ";"'),
        ("a if b else c", 'unexpected "if"'),
        ("(" * 60 + "a > 1" + ")" * 60, "nested too deeply"),
        ("not " * 60 + "a > 1", "nested too deeply"),
        ("a > 1 and " * 1100 + "a > 1", "expression is too long"),
    ],
)
def test_hostile_input_is_rejected(text: str, message: str) -> None:
    start = time.perf_counter()
    with pytest.raises(ExprError) as info:
        compile_expr(text, METRICS)
    assert message in str(info.value)
    assert time.perf_counter() - start < 0.5


def test_group_scope() -> None:
    members = [{"wis_z": 3.5, "wis": 0.5}, {"wis_z": 3.1, "wis": -0.2}, {"wis_z": None, "wis": 0.1}]
    e = compile_expr("count(wis_z >= 3) >= 2", METRICS, group=True)
    assert e.holds_group(members)
    assert not e.holds_group(members[:1])
    assert compile_expr("any(wis_z >= 3.4)", METRICS, group=True).holds_group(members)
    assert not compile_expr("all(wis_z >= 3)", METRICS, group=True).holds_group(members)
    assert not compile_expr("all(wis_z >= 3)", METRICS, group=True).holds_group([])
    spread = compile_expr("max(wis) - min(wis)", METRICS, group=True, want="number")
    assert spread.evaluate_group(members) == pytest.approx(0.7)
    assert compile_expr("mean(wis_z)", METRICS, group=True, want="number").evaluate_group(
        members) == pytest.approx(3.3)
    with pytest.raises(ExprError, match="must be inside an aggregate"):
        compile_expr("wis_z > 3", METRICS, group=True)
    with pytest.raises(ExprError, match="cannot be nested"):
        compile_expr("count(count(wis > 1) > 1) > 1", METRICS, group=True)
    with pytest.raises(TypeError):
        e.evaluate({"wis": 1.0})


ops = st.sampled_from(["+", "-", "*"])


@st.composite
def arith(draw: st.DrawFn, depth: int = 0) -> tuple[str, float]:
    if depth > 3 or draw(st.booleans()):
        if draw(st.booleans()):
            v = draw(st.floats(-100, 100, allow_nan=False).map(lambda x: round(x, 3)))
            return (f"({v})" if v < 0 else f"{v}"), v
        name = draw(st.sampled_from(["a", "b"]))
        return name, {"a": 1.5, "b": -2.25}[name]
    (lt, lv), (rt, rv) = draw(arith(depth + 1)), draw(arith(depth + 1))
    op = draw(ops)
    value = {"+": lv + rv, "-": lv - rv, "*": lv * rv}[op]
    return f"({lt} {op} {rt})", value


@settings(max_examples=300, deadline=None)
@given(arith(), arith(), st.sampled_from(["<", "<=", ">", ">=", "==", "!="]))
def test_evaluator_agrees_with_python(left: tuple[str, float], right: tuple[str, float],
                                      cmp: str) -> None:
    text = f"{left[0]} {cmp} {right[0]}"
    want = {"<": left[1] < right[1], "<=": left[1] <= right[1], ">": left[1] > right[1],
            ">=": left[1] >= right[1], "==": left[1] == right[1],
            "!=": left[1] != right[1]}[cmp]
    assert compile_expr(text, METRICS).evaluate({"a": 1.5, "b": -2.25}) is want
    num = compile_expr(left[0], METRICS, want="number").evaluate({"a": 1.5, "b": -2.25})
    assert num == pytest.approx(left[1])


def test_missing_is_the_one_test_of_a_null_and_is_never_unknown() -> None:
    e = compile_expr("missing(sell_impact_m) or sell_impact_m > 25", {"sell_impact_m"})
    assert e.evaluate({"sell_impact_m": None}) is True
    assert e.evaluate({"sell_impact_m": 30.0}) is True
    assert e.evaluate({"sell_impact_m": 3.0}) is False
    assert compile_expr("not missing(wis)", {"wis"}).evaluate({"wis": None}) is False
    g = compile_expr("count(missing(wis)) >= 2", {"wis"}, group=True)
    assert g.evaluate_group([{"wis": None}, {}, {"wis": 0.1}]) is True
    with pytest.raises(ExprError, match="missing\\(\\) takes one argument"):
        compile_expr("missing(wis, wis)", {"wis"})
    with pytest.raises(ExprError, match="needs a number, got a condition"):
        compile_expr("missing(wis > 1)", {"wis"})
