"""Symbolic dimensions: folding, text in Python syntax, and what counts as provable."""

import pytest
from hypothesis import given
from hypothesis import strategies as st
from netc.compiler import compile_string
from netc.compiler import dims as D

H, W, N = D.symbol("H"), D.symbol("W"), D.symbol("N")


@pytest.mark.parametrize(
    "value,text",
    [
        (D.add(D.floordiv(D.sub(D.add(H, 2), 3), 2), 1), "(H - 1) // 2 + 1"),
        (D.add(D.floordiv(D.sub(D.add(H, 2), 3), 1), 1), "H"),
        (D.mul(H, 2), "2 * H"),
        (D.mul(D.floordiv(H, 2), 2), "2 * (H // 2)"),
        (D.mul(H, W), "H * W"),
        (D.sub(0, H), "-H"),
        (D.floordiv(D.mul(H, 4), 2), "2 * H"),
        (D.mod(D.mul(H, 4), 2), 0),
        (D.floordiv(D.mul(H, W), D.mul(H, W)), 1),
    ],
)
def test_text(value, text):
    assert (value.text() if isinstance(value, D.Dim) else value) == text


def test_provable_only():
    assert D.provably_unequal(H, D.add(H, 1))
    assert not D.provably_unequal(H, W)  # may be equal at run time
    assert D.equal(D.add(H, W), D.add(W, H))
    assert not D.provably_unequal(D.floordiv(H, 2), H)


@given(st.integers(-50, 50), st.integers(-50, 50), st.integers(1, 9), st.integers(1, 200))
def test_folding_agrees_with_integers(a, b, c, h):
    """Evaluating the folded expression at H = h gives Python's integer result."""
    expr = D.add(D.floordiv(D.add(D.mul(H, a), b), c), a)
    text = expr.text() if isinstance(expr, D.Dim) else str(expr)
    assert eval(text, {"H": h}) == (h * a + b) // c + a


def test_symbolic_shapes_through_layers():
    compiled = compile_string(
        "network n(x: [N, 3, H, W]) {\n"
        "  y = x -> conv2d(8, kernel=3, padding=1) -> maxpool2d(2) -> flatten\n"
        "  z: [N, _] = y\n"
        "  return y\n"
        "}\n"
    )
    batch, features = compiled.summary()["outputs"][0]["shape"]
    assert batch == "N"
    for h, w in [(10, 12), (7, 9), (2, 2)]:  # the derived size is what torch would give
        assert eval(features, {"H": h, "W": w}) == 8 * (h // 2) * (w // 2)


def test_same_padding_keeps_symbolic_size():
    compiled = compile_string('network n(x: [N, 3, H, W]) { return x -> conv2d(8, kernel=3, padding="same") }')
    assert compiled.summary()["outputs"][0]["shape"] == ["N", 8, "H", "W"]


def test_a_rising_expression_of_one_size_is_walked():
    # The differential test's find: `split((2,), axis=0)` of an axis N * N runs at no N.
    n, m = D.symbol("N"), D.symbol("M")
    square = D.mul(n, n)
    assert D.provably_unequal(square, 2) and D.provably_unequal(2, square)
    assert not D.provably_unequal(square, 9)  # N = 3
    assert not D.can_equal(D.add(square, n), 7) and D.can_equal(D.add(square, n), 6)  # N = 2
    assert not D.can_equal(D.floordiv(square, 2), 3)  # 0, 2, 4, 8, ...
    assert D.can_equal(D.mul(n, m), 2)  # two sizes: N = 1, M = 2
    assert D.can_equal(D.mod(square, 3), 2) is True  # % does not rise: nothing proven
    assert D.can_equal(D.mul(square, square), 2**62)  # beyond the walk: nothing proven


@given(st.integers(1, 40), st.integers(-5, 5), st.integers(0, 2000))
def test_walk_agrees_with_integers(coeff, const, k):
    n = D.symbol("N")
    d = D.add(D.mul(D.mul(n, n), coeff), const)
    assert D.can_equal(d, k) == any(coeff * v * v + const == k for v in range(1, 100))


def test_equations_that_cannot_hold_together():
    n, m = D.symbol("N"), D.symbol("M")
    assert D.conflict([(n, 2), (1, n)]) == 1  # concat of [N, 1] and [2, N]
    assert D.conflict([(n, 2), (D.mul(n, n), 4)]) is None  # N = 2 satisfies both
    assert D.conflict([(D.mul(n, 2), 4), (D.mul(n, n), 5)]) == 1
    assert D.conflict([(n, 2), (m, 3)]) is None  # two sizes, each pinned once
    assert D.conflict([(n, m)]) is None
