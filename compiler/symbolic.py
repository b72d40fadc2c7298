"""Compile-time values as the spec wrote them: expressions over block parameters.

The elaborator folds every compile-time value to a constant (`width * 4` is 256 in one
call and 512 in the next). Beside that, `Tracer` keeps how each value was written, so
that a backend can write code in the spec's terms: a layer's attribute `width * 4`, a
block call's arguments, the conditions of the `if` branches and the `repeat` loops
around a node. It records, and decides nothing: the elaborator's values are the truth,
and a backend that uses an expression checks it against them (`evaluate`).

Expressions are small frozen records: `Lit`, `Param` (a compile-time parameter of the
enclosing block), `Global` (a file-level constant), `Local` (a compile-time variable of
the block body, with its definition), `Size` (`x.shape[1]` of a tensor), `LoopVar` (a
repeat's iteration index) and `Op` (an operator, with the spec's operator names). Where
the tracer cannot say how a value was made it records None, and backends use the value.

Requires: called by the elaborator as it runs (see the `trace` calls in elaborate.py).
Ensures: `Graph.provenance[node name]` and `Graph.calls[instance path]` hold what it saw.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from netc.dsl import syntax as S
from netc.dsl.diagnostics import Span

from . import dims as D
from .ir import Value

# ---------------------------------------------------------------- expressions


@dataclass(frozen=True)
class Lit:
    value: object


@dataclass(frozen=True)
class Param:
    name: str


@dataclass(frozen=True)
class Global:
    name: str
    value: object


@dataclass(frozen=True)
class Local:
    name: str
    expr: object  # its definition, an expression


@dataclass(frozen=True)
class Size:
    value: Value
    axis: int


@dataclass(frozen=True)
class LoopVar:
    loop: int
    name: str | None


@dataclass(frozen=True)
class Op:
    op: str  # the spec's operator names (add, floordiv, eq, and, neg, not, ...) or "tuple"
    args: tuple


@dataclass(frozen=True)
class Loop:
    """One `repeat` around a node or call: which execution of which statement, and which pass."""

    id: int
    iteration: int
    count: object  # expression of the count, or None
    var: str | None
    span: Span
    outer_guards: int = 0  # how many of a node's guards are around the `repeat` (the rest are in its body)


@dataclass(frozen=True)
class Provenance:
    """How the spec made a node or a block call."""

    statement: Span | None = None  # the whole statement
    names: tuple[str, ...] = ()  # the names the statement binds
    guards: tuple = ()  # one condition per `if` branch around it, outermost first (None: unknown)
    loops: tuple[Loop, ...] = ()  # the `repeat`s around it, outermost first
    exprs: dict = field(default_factory=dict)  # attribute or parameter -> expression (None: unknown)


@dataclass(frozen=True)
class Call:
    """A block instance: its compile-time arguments and how the caller wrote them."""

    params: tuple[str, ...]  # every parameter of the block, tensors included, in order
    args: dict  # compile-time parameter -> value
    defaults: frozenset  # the parameters left to their defaults
    provenance: Provenance
    returns: tuple = ()  # the Values its `return` gives, in order (None for a compile-time value)


_TENSOR = object()  # marks a name bound to a tensor: only `.shape` of it is an expression
MAX_EXPRESSION = 1000  # nodes of a traced definition, written out; past it, backends use the value


@dataclass(frozen=True)
class _TensorRef:
    value: Value
    rank: int


@dataclass
class FrameTrace:
    """The tracer's state for one block instance (or the network body)."""

    names: dict = field(default_factory=dict)  # compile-time name -> expression (None: unknown)
    guards: list = field(default_factory=list)
    loops: list = field(default_factory=list)
    statement: S.Stmt | None = None


# ---------------------------------------------------------------- the tracer


class Tracer:
    def __init__(self, consts: dict, blocks=frozenset()):
        self.consts = consts  # file-level constant -> value, filled as the elaborator computes them
        self.blocks = blocks  # block names: a block named `max` is not the compile-time function
        self.loops_made = 0  # the next `repeat`'s id (block templates shift the ids they copy)
        self._sizes: dict[int, tuple] = {}  # id(expression) -> (it, its size written out)

    def _size(self, expr) -> int:
        """The nodes of `expr` written out as a tree (Locals' definitions included), counted
        once per shared part, so that each bind costs the size of its own expression."""
        known = self._sizes.get(id(expr))
        if known is not None and known[0] is expr:
            return known[1]
        parts = expr.args if isinstance(expr, Op) else (expr.expr,) if isinstance(expr, Local) else ()
        size = 1 + sum(self._size(part) for part in parts)
        self._sizes[id(expr)] = (expr, size)
        return size

    def statement(self, frame, stmt: S.Stmt):
        frame.trace.statement = stmt

    def expr(self, frame, expr):
        """The expression of compile-time `expr` in `frame`'s terms, or None."""
        try:
            result = self._expr(frame, expr)
        except (TypeError, ValueError, IndexError, KeyError):
            return None
        return None if isinstance(result, _TensorRef) else result

    def bind(self, frame, name: str, expr, value):
        """`name = expr` bound `value` in `frame`."""
        if _is_tensor(value):
            frame.trace.names[name] = _TENSOR
            return
        definition = self.expr(frame, expr)
        if definition is not None and self._size(definition) > MAX_EXPRESSION:
            definition = None  # `a = a + a` in a loop: written out, it doubles each pass (issue 12)
        if definition is None and not frame.expansions:
            definition = Lit(value)  # the network body: every compile-time value is a constant
        if definition is not None and not isinstance(definition, (Lit, Global)):
            definition = Local(name, definition)
        frame.trace.names[name] = definition

    def unbind(self, frame, names):
        for name in names:
            frame.trace.names.pop(name, None)

    def enter_branch(self, frame, stmt: S.If, taken: int):
        """Branch `taken` of `stmt` runs (len(branches) for the `else`)."""
        conds = [self.expr(frame, cond) for cond, _ in stmt.branches[: taken + 1]]
        guard = None
        if all(c is not None for c in conds):
            parts = [Op("not", (c,)) for c in conds[:taken]] + conds[taken:]
            guard = parts[0]
            for part in parts[1:]:
                guard = Op("and", (guard, part))
        frame.trace.guards.append(guard)

    def exit_branch(self, frame):
        frame.trace.guards.pop()

    def enter_repeat(self, frame, stmt: S.Repeat) -> Loop:
        count = self.expr(frame, stmt.count)
        loop = Loop(self.loops_made, -1, count, stmt.var, stmt.span, len(frame.trace.guards))
        self.loops_made += 1
        frame.trace.loops.append(loop)
        return loop

    def iteration(self, frame, loop: Loop, i: int):
        frame.trace.loops[-1] = Loop(loop.id, i, loop.count, loop.var, loop.span, loop.outer_guards)
        if loop.var:
            frame.trace.names[loop.var] = LoopVar(loop.id, loop.var)

    def exit_repeat(self, frame, loop: Loop):
        frame.trace.loops.pop()
        if loop.var:
            frame.trace.names[loop.var] = None  # its last value; a backend uses the number

    def op_exprs(self, frame, call: S.Call, args) -> dict:
        """Attribute -> expression for an op call; `args` is the op's signature."""
        exprs = {}
        if not (args and args[0].variadic):
            for arg, e in zip(args, call.args):
                if not arg.tensor:
                    exprs[arg.name] = Lit(e.value) if isinstance(e, S.Literal) else self.expr(frame, e)
        for kw in call.keywords:
            if kw.key != "name" and kw.key not in exprs:
                e = kw.value
                exprs[kw.key] = Lit(e.value) if isinstance(e, S.Literal) else self.expr(frame, e)
        return exprs  # a tensor passed by keyword has no expression: the backend ignores it

    def provenance(self, frame, exprs=None) -> Provenance:
        trace = frame.trace
        stmt = trace.statement
        return Provenance(
            stmt.span if stmt is not None else None,
            _names(stmt),
            tuple(trace.guards) if trace.guards else (),
            tuple(trace.loops) if trace.loops else (),
            exprs or {},
        )

    def block_call(self, frame, inner, block: S.Block, call: S.Call, bound: dict) -> Call:
        """Records the call of `block` from `frame`; sets up `inner`'s parameters."""
        written = dict(zip((p.name for p in block.params), call.args))
        written.update((kw.key, kw.value) for kw in call.keywords if kw.key != "name")
        exprs, args = {}, {}
        for p in block.params:
            value = bound[p.name]
            if _is_tensor(value):
                inner.trace.names[p.name] = _TENSOR
                continue
            args[p.name] = value
            exprs[p.name] = self.expr(frame, written[p.name]) if p.name in written else Lit(value)
            inner.trace.names[p.name] = Param(p.name)
        defaults = frozenset(p.name for p in block.params if p.name not in written)
        return Call(tuple(p.name for p in block.params), args, defaults, self.provenance(frame, exprs))

    def returned(self, graph, path: tuple, values):
        """The block instance at `path` returned `values`."""
        call = graph.calls.get(path)
        if call is not None:
            returns = tuple(v.value if _is_tensor(v) else None for v in values)
            graph.calls[path] = Call(call.params, call.args, call.defaults, call.provenance, returns)

    # -- the expression of a syntax tree
    def _expr(self, frame, expr):
        if isinstance(expr, S.Literal):
            return Lit(expr.value)
        if isinstance(expr, S.Name):
            return self._name(frame, expr.id)
        if isinstance(expr, S.Binary):
            left, right = self._expr(frame, expr.left), self._expr(frame, expr.right)
            if left is None or right is None or isinstance(left, _TensorRef) or isinstance(right, _TensorRef):
                return None
            return Op(expr.op, (left, right))
        if isinstance(expr, S.Unary):
            operand = self._expr(frame, expr.operand)
            return None if operand is None or isinstance(operand, _TensorRef) else Op(expr.op, (operand,))
        if isinstance(expr, S.TupleLit):
            items = tuple(self._expr(frame, item) for item in expr.items)
            if any(item is None or isinstance(item, _TensorRef) for item in items):
                return None
            return Op("tuple", items)
        if isinstance(expr, S.Attribute) and expr.attr == "shape":
            ref = self._expr(frame, expr.value)
            if not isinstance(ref, _TensorRef):
                return None
            return Op("tuple", tuple(Size(ref.value, axis) for axis in range(ref.rank)))
        if isinstance(expr, S.Call) and expr.func in FUNCTIONS and expr.func not in self.blocks and not expr.keywords:
            args = tuple(self._expr(frame, a) for a in expr.args)
            if any(a is None or isinstance(a, _TensorRef) for a in args):
                return None
            return Op(expr.func, args)
        if isinstance(expr, S.Index) and expr.index is not None:
            base, index = self._expr(frame, expr.value), self._expr(frame, expr.index)
            if isinstance(base, Op) and base.op == "tuple" and isinstance(index, Lit) and _is_int(index.value):
                return base.args[index.value]
            return None
        return None

    def _name(self, frame, name: str):
        value = frame.vars.get(name)
        if name in frame.vars:
            if _is_tensor(value):
                return _TensorRef(value.value, value.type.rank)
            known = frame.trace.names.get(name)
            if known is not None and known is not _TENSOR:
                return known
            return Lit(value) if not frame.expansions else None
        if name in self.consts:
            return Global(name, self.consts[name])
        return None


def _is_tensor(value) -> bool:
    return hasattr(value, "value") and hasattr(value, "type")  # values.Tensor, without the import cycle


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _names(stmt) -> tuple[str, ...]:
    if isinstance(stmt, S.Assign):
        return tuple(stmt.targets)
    if isinstance(stmt, S.Annotated):
        return (stmt.target,)
    return ()


# ---------------------------------------------------------------- using expressions


class Unknown(Exception):
    """An expression that cannot be evaluated in the environment given."""


def evaluate(expr, env) -> object:
    """The value of `expr` with Python's semantics (the spec's, for compile-time values).

    `env(leaf)` gives the value of a `Param`, `Size` or `LoopVar`, or raises Unknown."""
    if isinstance(expr, Lit):
        return expr.value
    if isinstance(expr, Global):
        return expr.value
    if isinstance(expr, Local):
        return evaluate(expr.expr, env)
    if isinstance(expr, (Param, Size, LoopVar)):
        return env(expr)
    if isinstance(expr, Op):
        if expr.op == "tuple":
            return tuple(evaluate(a, env) for a in expr.args)
        if expr.op == "and":
            return evaluate(expr.args[0], env) and evaluate(expr.args[1], env)
        if expr.op == "or":
            return evaluate(expr.args[0], env) or evaluate(expr.args[1], env)
        values = [evaluate(a, env) for a in expr.args]
        try:
            if expr.op in _DIM_OPERATORS and any(isinstance(v, D.Dim) for v in values):
                return _DIM_OPERATORS[expr.op](*values)  # `x.shape[1] - 1` on a symbolic axis
            return _OPERATORS[expr.op](*values)
        except (ArithmeticError, TypeError, ValueError) as exc:
            raise Unknown(str(exc)) from None
    raise Unknown(f"no value for {expr!r}")


_OPERATORS = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
    "floordiv": lambda a, b: a // b,
    "mod": lambda a, b: a % b,
    "pow": lambda a, b: a**b,
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b,
    "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b,
    "neg": lambda a: -a,
    "not": lambda a: not a,
}

# The compile-time functions (LANGUAGE.md 1.1): Python's, written as calls.
FUNCTIONS = {
    "min": lambda *a: min(a) if len(a) > 1 else min(a[0]),
    "max": lambda *a: max(a) if len(a) > 1 else max(a[0]),
    "round": round,
    "int": int,
    "len": len,
}
_OPERATORS.update(FUNCTIONS)

# Arithmetic on a dimension gives a dimension (the elaborator's rule, compiler/dims.py).
_DIM_OPERATORS = {
    "add": lambda a, b: D.add(a, b),
    "sub": lambda a, b: D.sub(a, b),
    "mul": lambda a, b: D.mul(a, b),
    "floordiv": lambda a, b: D.floordiv(a, b),
    "mod": lambda a, b: D.mod(a, b),
    "neg": lambda a: D.mul(a, -1),
}

# Python's precedence, loosest first; every spec operator has the same meaning in Python.
_PRECEDENCE = {
    "or": 1, "and": 2, "not": 3, "eq": 4, "ne": 4, "lt": 4, "le": 4, "gt": 4, "ge": 4,
    "add": 5, "sub": 5, "mul": 6, "div": 6, "floordiv": 6, "mod": 6, "neg": 7, "pow": 8,
}  # fmt: skip
_SYMBOLS = {
    "or": "or", "and": "and", "eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">=",
    "add": "+", "sub": "-", "mul": "*", "div": "/", "floordiv": "//", "mod": "%", "pow": "**",
}  # fmt: skip
_ATOM = 9


def render(expr, leaf, literal) -> str:
    """Python source for `expr`; `leaf(e)` writes a Param, Size, LoopVar, Local or Global,
    `literal(v)` a constant."""
    return _render(expr, leaf, literal)[0]


def _render(expr, leaf, literal) -> tuple[str, int]:
    if isinstance(expr, Lit):
        text = literal(expr.value)
        negative = isinstance(expr.value, (int, float)) and not isinstance(expr.value, bool) and expr.value < 0
        return text, (_PRECEDENCE["neg"] if negative else _ATOM)
    if not isinstance(expr, Op):
        text = leaf(expr)
        return text, (_ATOM if text.isidentifier() or _is_primary(text) else 0)
    if expr.op == "tuple":
        items = [_render(a, leaf, literal)[0] for a in expr.args]
        return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")", _ATOM
    if expr.op in FUNCTIONS:
        return f"{expr.op}({', '.join(_render(a, leaf, literal)[0] for a in expr.args)})", _ATOM
    level = _PRECEDENCE[expr.op]
    if expr.op in ("neg", "not"):
        text, inner = _render(expr.args[0], leaf, literal)
        text = f"({text})" if inner < level else text
        return ("-" if expr.op == "neg" else "not ") + text, level
    (left, lp), (right, rp) = (_render(a, leaf, literal) for a in expr.args)
    if expr.op == "pow":  # right-associative, and binds tighter than a unary minus on its left
        left = f"({left})" if lp <= level else left
        right = f"({right})" if rp < _PRECEDENCE["neg"] else right
        if _simple(left) and _simple(right):  # as black and ruff write it: `32**0.5`, `x ** (1 / 2)`
            return f"{left}**{right}", level
    else:
        comparison = level == 4
        left = f"({left})" if lp < level or (comparison and lp == level) else left
        right = f"({right})" if rp <= level else right
    return f"{left} {_SYMBOLS[expr.op]} {right}", level


def _simple(text: str) -> bool:
    """An operand `**` hugs in formatted Python: a name, a number (a unary minus allowed)
    or an attribute chain."""
    import re

    return re.fullmatch(r"-?(\d[\d.e+-]*|[A-Za-z_]\w*(\.[A-Za-z_]\w*)*)", text) is not None


def _is_primary(text: str) -> bool:
    """A name, attribute, call or subscript: needs no parentheses as an operand."""
    import ast

    try:
        node = ast.parse(text, mode="eval").body
    except SyntaxError:
        return False
    return isinstance(node, (ast.Name, ast.Attribute, ast.Call, ast.Subscript, ast.Constant))


def leaves(expr):
    """Every leaf of `expr` (Param, Size, LoopVar, Global, Lit), Locals' definitions included."""
    if isinstance(expr, Op):
        for a in expr.args:
            yield from leaves(a)
    elif isinstance(expr, Local):
        yield expr
        yield from leaves(expr.expr)
    elif expr is not None:
        yield expr


def constant(expr) -> bool:
    """True where `expr` depends on no parameter, size or loop index."""
    return not any(isinstance(e, (Param, Size, LoopVar)) for e in leaves(expr))


def same_value(a, b) -> bool:
    """Equal compile-time values, a float equal only to itself (and an int never to a bool)."""
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, float) or isinstance(b, float):
        try:
            return float(a) == float(b) or (math.isnan(a) and math.isnan(b))
        except (TypeError, ValueError):
            return False
    return type(a) is type(b) and a == b
