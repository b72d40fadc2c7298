"""Symbolic dimensions: `N`, and derived ones such as `(H - 1) // 2 + 1`.

A dimension is a Python int or a `Dim`. A `Dim` is a linear form `c1*a1 + c2*a2 + ... + k`
over atoms (a symbol, or a floor division, modulo or product that cannot be folded), so
that `H + 2 - 3` folds to `H - 1` and equal expressions compare equal. Its text is Python
syntax, the same text that ONNX gets as `dim_param` and `--json` prints.

We compare dimensions only as far as can be proven: `provably_unequal` is true for 3 vs 4
or for H vs H + 1, never for N vs M (they may be equal at run time). Every symbolic size is
taken to be at least 1 at run time, so `at_least` and `at_most` bound a dimension where its
form allows (N + 1 >= 2; -N <= -1).

A spec can make a derived dimension grow without bound (`a = a * a` in a loop), so the
arithmetic that makes one is capped: at most `Caps.terms` leaves (symbols and integers as
the expression is written) and polynomial degree `Caps.degree`, and every coefficient
within 64 bits. Beyond a cap the arithmetic raises `DimTooLarge`; the elaborator locates
it at the expression that made the dimension. The caps are per compilation (`caps`).
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import cached_property
from typing import Union

from netc.dsl.diagnostics import NetcError

DimLike = Union[int, "Dim"]

DEFAULT_MAX_TERMS = 256
DEFAULT_MAX_DEGREE = 64
_INT_LIMIT = 2**63


@dataclass(frozen=True)
class Caps:
    terms: int = DEFAULT_MAX_TERMS  # leaves of the written expression
    degree: int = DEFAULT_MAX_DEGREE  # symbols multiplied together


_CAPS: ContextVar[Caps] = ContextVar("netc_dim_caps", default=Caps())


@contextmanager
def caps(terms: int = DEFAULT_MAX_TERMS, degree: int = DEFAULT_MAX_DEGREE):
    """The caps for the arithmetic run inside the `with` block."""
    token = _CAPS.set(Caps(terms, degree))
    try:
        yield
    finally:
        _CAPS.reset(token)


class DimTooLarge(NetcError):
    """A derived dimension past a cap; raised without a position, located by the caller."""

    def __init__(self, message: str):
        super().__init__(message, code="limit")


@dataclass(frozen=True)
class Sym:
    name: str

    def text(self) -> str:
        return self.name

    leaves = 1
    degree = 1


@dataclass(frozen=True)
class OpAtom:
    """An operation that does not fold: `a // b`, `a % b` or `a * b`."""

    op: str  # "//", "%", "*"
    left: DimLike
    right: DimLike

    def text(self) -> str:
        return self._text

    @cached_property
    def _text(self) -> str:
        return (
            f"{_operand_text(self.left, self.op, left=True)} {self.op} {_operand_text(self.right, self.op, left=False)}"
        )

    @cached_property
    def leaves(self) -> int:
        return _leaves(self.left) + _leaves(self.right)

    @cached_property
    def degree(self) -> int:
        if self.op == "*":
            return _degree(self.left) + _degree(self.right)
        return max(_degree(self.left), _degree(self.right))

    @cached_property
    def key(self):
        return (1, self.op, _key_of(self.left), _key_of(self.right))


Atom = Union[Sym, OpAtom]


@dataclass(frozen=True)
class Dim:
    """sum(coeff * atom) + const, terms in the order they first appeared (for readability)."""

    terms: tuple[tuple[Atom, int], ...]
    const: int = 0

    @cached_property
    def _key(self):
        return (tuple(sorted(((_atom_key(a), c) for a, c in self.terms))), self.const)

    def key(self):
        """Canonical form: equal keys mean provably equal dimensions."""
        return self._key

    def __eq__(self, other):
        return isinstance(other, Dim) and self.key() == other.key()

    def __hash__(self):
        return hash(self.key())

    def __str__(self) -> str:
        return self.text()

    def __repr__(self) -> str:
        return f"Dim({self.text()!r})"

    def text(self) -> str:
        return self._text

    @cached_property
    def size(self) -> int:
        """The leaves of the written expression: symbols, coefficients and the constant."""
        return sum(atom.leaves + (abs(c) != 1) for atom, c in self.terms) + (self.const != 0)

    @cached_property
    def degree(self) -> int:
        return max(atom.degree for atom, _ in self.terms)

    @cached_property
    def _text(self) -> str:
        parts = []
        for atom, coeff in self.terms:
            magnitude = abs(coeff)
            body = atom.text()
            if magnitude != 1:
                if isinstance(atom, OpAtom) and atom.op != "*":
                    body = f"({body})"  # 2 * (H // 2), not 2 * H // 2
                body = f"{magnitude} * {body}"
            parts.append((coeff < 0, body))
        if self.const:
            parts.append((self.const < 0, str(abs(self.const))))
        out = ("-" if parts[0][0] else "") + parts[0][1]
        for negative, body in parts[1:]:
            out += (" - " if negative else " + ") + body
        return out


def _leaves(value: DimLike) -> int:
    return 1 if isinstance(value, int) else value.size


def _degree(value: DimLike) -> int:
    return 0 if isinstance(value, int) else value.degree


def _key_of(value: DimLike):
    return (0, value) if isinstance(value, int) else (1, value.key())


def _atom_key(atom: Atom):
    """Structural, so that equal atoms meet without writing out their text."""
    return (0, atom.name) if isinstance(atom, Sym) else atom.key


def _operand_text(value: DimLike, op: str, left: bool) -> str:
    """Parenthesizes as Python needs: `*`, `//` and `%` share a precedence and group left."""
    if isinstance(value, int):
        return str(value) if value >= 0 else f"({value})"
    text = value.text()
    single = len(value.terms) == 1 and value.const == 0 and value.terms[0][1] == 1
    if not single or (not left and isinstance(value.terms[0][0], OpAtom)):
        return f"({text})"
    return text


def symbol(name: str) -> Dim:
    return Dim(((Sym(name), 1),))


def _checked(value: DimLike, check: bool = True) -> DimLike:
    """`value`, once it is within the caps (arithmetic that makes a dimension calls this)."""
    if not check or isinstance(value, int):  # a known size: the elaborator checks it where it is used
        return value
    if any(not -_INT_LIMIT <= c < _INT_LIMIT for _, c in value.terms) or not -_INT_LIMIT <= value.const < _INT_LIMIT:
        raise DimTooLarge("integer overflow: a dimension's integers must fit in 64 bits")
    limits = _CAPS.get()
    if value.size > limits.terms:
        raise DimTooLarge(f"a derived dimension grows past {limits.terms} terms (the limit; see --max-dim-terms)")
    if value.degree > limits.degree:
        raise DimTooLarge(f"a derived dimension grows past degree {limits.degree} (the limit; see --max-dim-degree)")
    return value


def _of_atom(atom: Atom) -> Dim:
    return Dim(((atom, 1),))


def _linear(value: DimLike):
    if isinstance(value, int):
        return (), value
    return value.terms, value.const


def _add(a: DimLike, b: DimLike, sign: int, check: bool) -> DimLike:
    if isinstance(a, int) and isinstance(b, int):
        return _checked(a + sign * b, check)
    terms, order = {}, []
    for src, factor in ((a, 1), (b, sign)):
        for atom, coeff in _linear(src)[0]:
            key = _atom_key(atom)
            if key not in terms:
                terms[key] = 0
                order.append((key, atom))
            terms[key] += factor * coeff
    const = _linear(a)[1] + sign * _linear(b)[1]
    kept = tuple((atom, terms[key]) for key, atom in order if terms[key] != 0)
    return _checked(Dim(kept, const) if kept else const, check)


def add(a: DimLike, b: DimLike, sign: int = 1) -> DimLike:
    return _add(a, b, sign, True)


def sub(a: DimLike, b: DimLike) -> DimLike:
    return _add(a, b, -1, True)


def difference(a: DimLike, b: DimLike) -> DimLike:
    """a - b for comparing, not for use as a size: never past a cap, whatever its form."""
    return _add(a, b, -1, False)


def mul(a: DimLike, b: DimLike) -> DimLike:
    if isinstance(a, int) and isinstance(b, int):
        return _checked(a * b)
    if isinstance(a, int):
        a, b = b, a
    if isinstance(b, int):
        if b == 0:
            return 0
        return _checked(Dim(tuple((atom, coeff * b) for atom, coeff in a.terms), a.const * b))
    return _checked(_of_atom(OpAtom("*", a, b)))


def floordiv(a: DimLike, b: DimLike) -> DimLike:
    """a // b for b > 0 (callers check the divisor)."""
    if isinstance(a, int) and isinstance(b, int):
        return a // b
    if isinstance(b, int):
        if b == 1:
            return a
        if all(c % b == 0 for _, c in a.terms) and a.const % b == 0:
            return Dim(tuple((atom, c // b) for atom, c in a.terms), a.const // b)
        inner = _only_atom(a)
        if isinstance(inner, OpAtom) and inner.op == "//" and isinstance(inner.right, int):
            return floordiv(inner.left, _checked(inner.right * b))  # (x // p) // q == x // (p q)
    elif a == b:
        return 1
    return _checked(_of_atom(OpAtom("//", a, b)))


def mod(a: DimLike, b: DimLike) -> DimLike:
    if isinstance(a, int) and isinstance(b, int):
        return a % b
    if isinstance(b, int):
        if b == 1:
            return 0
        if all(c % b == 0 for _, c in a.terms) and a.const % b == 0:
            return 0
    elif a == b:
        return 0
    return _checked(_of_atom(OpAtom("%", a, b)))


def _only_atom(value: DimLike):
    """The atom of a dimension that is one atom alone (coefficient 1, no constant)."""
    if isinstance(value, Dim) and value.const == 0 and len(value.terms) == 1 and value.terms[0][1] == 1:
        return value.terms[0][0]
    return None


def product(dims) -> DimLike:
    """The product, its integer factors gathered into one coefficient: 3 * N * H * W."""
    out: DimLike = 1
    for d in sorted(dims, key=lambda d: not isinstance(d, Dim)):  # the dimensions, then the ints
        out = mul(out, d)
    return out


def compare(a: DimLike, b: DimLike) -> int | None:
    """1, 0 or -1 where a > b, a == b or a < b holds for every run-time size; else None."""
    gap = difference(a, b)
    if isinstance(gap, int):
        return (gap > 0) - (gap < 0)
    low, high = at_least(gap), at_most(gap)
    if low is not None and low > 0:
        return 1
    if high is not None and high < 0:
        return -1
    return None


def can_equal(d: DimLike, k: int) -> bool:
    """False where `d` is never `k` at run time: 2 * N is never 3 (its coefficients' gcd
    does not divide 3 - 0) nor 1 (it is at least 2); True where it may be."""
    if isinstance(d, int):
        return d == k
    if (k - d.const) % math.gcd(*(c for _, c in d.terms)):
        return False
    low, high = at_least(d), at_most(d)
    if not ((low is None or low <= k) and (high is None or k <= high)):
        return False
    if all(isinstance(atom, Sym) for atom, _ in d.terms):
        return True  # linear: the tests above are exact
    names, slope = _symbols(d), _slope(d)
    if len(names) == 1 and slope:
        # One size, and d only rises (or only falls) as it grows: walk N = 1, 2, ... until
        # d reaches k (N * N is never 2, nor is 2 - N * N ever 0). Too long a walk proves nothing.
        (name,) = names
        for n in range(1, _WALK + 1):
            value = _evaluate(d, {name: n})
            if value * slope >= k * slope:
                return value == k
    return True


_WALK = 4096


def _symbols(d: DimLike) -> set:
    if isinstance(d, int):
        return set()
    if isinstance(d, Sym):
        return {d.name}
    if isinstance(d, OpAtom):
        return _symbols(d.left) | _symbols(d.right)
    out: set = set()
    for atom, _ in d.terms:
        out |= _symbols(atom)
    return out


def _slope(d: Dim) -> int:
    """1 where `d` never falls as its symbols grow, -1 where it never rises, else 0."""
    for sign in (1, -1):
        if all(c * sign > 0 and _rising(atom) for atom, c in d.terms):
            return sign
    return 0


def _rising(d: DimLike) -> bool:
    """Non-decreasing in its symbols and never negative where every symbol is at least 1,
    up to its constant (which shifts but does not bend it)."""
    if isinstance(d, int):
        return True
    if isinstance(d, Sym):
        return True
    if isinstance(d, OpAtom):
        if d.op == "*":  # a product of rising factors rises where neither is negative
            return all(_rising(side) and _non_negative(side) for side in (d.left, d.right))
        if d.op == "//":
            return isinstance(d.right, int) and d.right > 0 and _rising(d.left)
        return False
    return all(c > 0 and _rising(atom) for atom, c in d.terms)


def _non_negative(d: DimLike) -> bool:
    low = at_least(d)
    return low is not None and low >= 0


def _evaluate(d: DimLike, env: dict) -> int:
    if isinstance(d, int):
        return d
    if isinstance(d, Sym):
        return env[d.name]
    if isinstance(d, OpAtom):
        left, right = _evaluate(d.left, env), _evaluate(d.right, env)
        if d.op == "*":
            return left * right
        if right == 0:
            return 0  # a size divided by zero is refused where it is made; nothing to prove here
        if d.op == "//":
            return left // right
        return left % right
    return d.const + sum(c * _evaluate(atom, env) for atom, c in d.terms)


def conflict(pairs) -> int | None:
    """The index of an equation `a == b` among `pairs` that cannot hold together with the
    others, though each alone may: [N, 1] against [2, N] needs N = 2 and N = 1. Equations
    that pin a size (c * N + k == 0) are solved, and the rest checked at those values;
    None where no conflict is proven."""
    fixed: dict[str, int] = {}
    for i, (a, b) in enumerate(pairs):
        d = difference(a, b)
        if isinstance(d, int) or len(d.terms) != 1 or not isinstance(d.terms[0][0], Sym):
            continue
        ((atom, coeff),) = d.terms
        if d.const % coeff or -d.const // coeff < 1:
            continue  # never holds: provably_unequal reports it alone
        value = -d.const // coeff
        if fixed.setdefault(atom.name, value) != value:
            return i
    if not fixed:
        return None
    for i, (a, b) in enumerate(pairs):
        d = difference(a, b)
        if not isinstance(d, int) and _symbols(d) <= fixed.keys() and _evaluate(d, fixed) != 0:
            return i
    return None


def provably_unequal(a: DimLike, b: DimLike) -> bool:
    """3 vs 4, H vs H + 1, 2 * N vs N and 2 * N vs 3 (sizes are at least 1); never N vs M."""
    return not can_equal(difference(a, b), 0)


def equal(a: DimLike, b: DimLike) -> bool:
    """Provably equal."""
    return difference(a, b) == 0


def at_least(d: DimLike) -> int | None:
    """A lower bound of `d` at run time, every symbol being at least 1; None if unknown."""
    if isinstance(d, int):
        return d
    total = d.const
    for atom, coeff in d.terms:
        low = _atom_at_least(atom)
        if coeff < 0 or low is None:
            return None
        total += coeff * low
    return total


def at_most(d: DimLike) -> int | None:
    """An upper bound of `d` at run time (every symbol at least 1); None if unknown."""
    if isinstance(d, int):
        return d
    total = d.const
    for atom, coeff in d.terms:
        low = _atom_at_least(atom)
        if coeff > 0 or low is None:
            return None
        total += coeff * low
    return total


def _atom_at_least(atom: Atom) -> int | None:
    if isinstance(atom, Sym):
        return 1
    left, right = at_least(atom.left), at_least(atom.right)
    if left is None or right is None or left < 0 or right < 1:
        return None
    if atom.op == "*":
        return left * right
    if atom.op == "//":
        return left // atom.right if isinstance(atom.right, int) else 0
    return 0  # a % b, b positive


def is_dim(value) -> bool:
    return isinstance(value, Dim) or (isinstance(value, int) and not isinstance(value, bool))


def to_json(d: DimLike):
    return d if isinstance(d, int) else d.text()


def shape_text(shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"
