"""Symbolic dimensions: `N`, and derived ones such as `(H - 1) // 2 + 1`.

A dimension is a Python int or a `Dim`. A `Dim` is a linear form `c1*a1 + c2*a2 + ... + k`
over atoms (a symbol, or a floor division, modulo or product that cannot be folded), so
that `H + 2 - 3` folds to `H - 1` and equal expressions compare equal. Its text is Python
syntax, the same text that ONNX gets as `dim_param` and `--json` prints.

We compare dimensions only as far as can be proven: `provably_unequal` is true for 3 vs 4
or for H vs H + 1, never for N vs M (they may be equal at run time).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Union

DimLike = Union[int, "Dim"]


@dataclass(frozen=True)
class Sym:
    name: str

    def text(self) -> str:
        return self.name


@dataclass(frozen=True)
class OpAtom:
    """An operation that does not fold: `a // b`, `a % b` or `a * b`."""

    op: str  # "//", "%", "*"
    left: DimLike
    right: DimLike

    def text(self) -> str:
        return (
            f"{_operand_text(self.left, self.op, left=True)} {self.op} {_operand_text(self.right, self.op, left=False)}"
        )


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


def _atom_key(atom: Atom) -> str:
    return atom.text()


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


def _of_atom(atom: Atom) -> Dim:
    return Dim(((atom, 1),))


def _normalize(terms: dict, order: list, const: int) -> DimLike:
    kept = tuple(
        (order_atom, terms[_atom_key(order_atom)]) for order_atom in order if terms[_atom_key(order_atom)] != 0
    )
    if not kept:
        return const
    return Dim(kept, const)


def _linear(value: DimLike):
    if isinstance(value, int):
        return (), value
    return value.terms, value.const


def add(a: DimLike, b: DimLike, sign: int = 1) -> DimLike:
    if isinstance(a, int) and isinstance(b, int):
        return a + sign * b
    terms, order = {}, []
    for src, factor in ((a, 1), (b, sign)):
        src_terms, _ = _linear(src)
        for atom, coeff in src_terms:
            key = _atom_key(atom)
            if key not in terms:
                terms[key] = 0
                order.append(atom)
            terms[key] += factor * coeff
    const = _linear(a)[1] + sign * _linear(b)[1]
    return _normalize(terms, order, const)


def sub(a: DimLike, b: DimLike) -> DimLike:
    return add(a, b, -1)


def mul(a: DimLike, b: DimLike) -> DimLike:
    if isinstance(a, int) and isinstance(b, int):
        return a * b
    if isinstance(a, int):
        a, b = b, a
    if isinstance(b, int):
        if b == 0:
            return 0
        return Dim(tuple((atom, coeff * b) for atom, coeff in a.terms), a.const * b)
    return _of_atom(OpAtom("*", a, b))


def floordiv(a: DimLike, b: DimLike) -> DimLike:
    """a // b for b > 0 (callers check the divisor)."""
    if isinstance(a, int) and isinstance(b, int):
        return a // b
    if isinstance(b, int):
        if b == 1:
            return a
        if all(c % b == 0 for _, c in a.terms) and a.const % b == 0:
            return Dim(tuple((atom, c // b) for atom, c in a.terms), a.const // b)
    elif a == b:
        return 1
    return _of_atom(OpAtom("//", a, b))


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
    return _of_atom(OpAtom("%", a, b))


def product(dims) -> DimLike:
    out: DimLike = 1
    for d in dims:
        out = mul(out, d)
    return out


def provably_unequal(a: DimLike, b: DimLike) -> bool:
    difference = sub(a, b)
    return isinstance(difference, int) and difference != 0


def equal(a: DimLike, b: DimLike) -> bool:
    """Provably equal."""
    return sub(a, b) == 0


def is_dim(value) -> bool:
    return isinstance(value, Dim) or (isinstance(value, int) and not isinstance(value, bool))


def to_json(d: DimLike):
    return d if isinstance(d, int) else d.text()


def shape_text(shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"
