"""The syntax tree: frozen dataclasses, one per grammar alias, each with a source span."""

from __future__ import annotations

from dataclasses import dataclass

from .diagnostics import Span

# ---------------------------------------------------------------- expressions


@dataclass(frozen=True)
class Expr:
    span: Span


@dataclass(frozen=True)
class Name(Expr):
    id: str


@dataclass(frozen=True)
class Literal(Expr):
    value: object  # int, float, str or bool


@dataclass(frozen=True)
class TupleLit(Expr):
    items: tuple[Expr, ...]


@dataclass(frozen=True)
class Keyword:
    key: str
    key_span: Span
    value: Expr

    @property
    def span(self) -> Span:
        return self.key_span.to(self.value.span)


@dataclass(frozen=True)
class Call(Expr):
    """`f(args)`; for a pipe `a -> f(args)`, `piped` is `a` and is the first argument."""

    func: str
    func_span: Span
    args: tuple[Expr, ...]
    keywords: tuple[Keyword, ...]
    piped: Expr | None = None


@dataclass(frozen=True)
class Binary(Expr):
    op: str  # add sub mul div floordiv mod matmul pow eq ne lt le gt ge and or
    left: Expr
    right: Expr


@dataclass(frozen=True)
class Unary(Expr):
    op: str  # neg, not
    operand: Expr


@dataclass(frozen=True)
class Attribute(Expr):
    value: Expr
    attr: str
    attr_span: Span


@dataclass(frozen=True)
class Slice(Expr):
    """`start:stop:step` inside `[...]`; an omitted part is None."""

    start: Expr | None
    stop: Expr | None
    step: Expr | None


@dataclass(frozen=True)
class EllipsisLit(Expr):
    """`...` inside `[...]`: as many full slices as the axes left over."""


@dataclass(frozen=True)
class Index(Expr):
    """`value[items]`: each item an expression, a `Slice` or `...` (NumPy basic indexing)."""

    value: Expr
    items: tuple[Expr, ...]

    @property
    def index(self) -> Expr | None:
        """The one subscript of a plain `t[i]`; None for slices, `...` or several."""
        if len(self.items) == 1 and not isinstance(self.items[0], (Slice, EllipsisLit)):
            return self.items[0]
        return None


# ---------------------------------------------------------------- statements


@dataclass(frozen=True)
class Stmt:
    span: Span


@dataclass(frozen=True)
class Assign(Stmt):
    targets: tuple[str, ...]
    target_spans: tuple[Span, ...]
    value: Expr


@dataclass(frozen=True)
class Annotated(Stmt):
    target: str
    target_span: Span
    shape: tuple[Expr, ...]
    value: Expr


@dataclass(frozen=True)
class Repeat(Stmt):
    count: Expr
    var: str | None
    body: tuple[Stmt, ...]


@dataclass(frozen=True)
class If(Stmt):
    branches: tuple[tuple[Expr, tuple[Stmt, ...]], ...]  # (condition, body) in order
    orelse: tuple[Stmt, ...] | None


@dataclass(frozen=True)
class Assert(Stmt):
    cond: Expr
    message: Expr | None


@dataclass(frozen=True)
class Return(Stmt):
    values: tuple[Expr, ...]


# ---------------------------------------------------------------- file items


@dataclass(frozen=True)
class Import:
    path: str
    span: Span


@dataclass(frozen=True)
class Const:
    name: str
    value: Expr
    span: Span
    name_span: Span


@dataclass(frozen=True)
class Param:
    name: str
    default: Expr | None
    span: Span


@dataclass(frozen=True)
class Block:
    name: str
    params: tuple[Param, ...]
    body: tuple[Stmt, ...]
    span: Span
    name_span: Span
    end_span: Span  # the closing brace: where a missing `return` is reported


@dataclass(frozen=True)
class Input:
    name: str
    dtype: str | None
    dtype_span: Span | None
    shape: tuple[Expr, ...]
    span: Span


@dataclass(frozen=True)
class Network:
    name: str
    inputs: tuple[Input, ...]
    body: tuple[Stmt, ...]
    span: Span
    name_span: Span
    end_span: Span


@dataclass(frozen=True)
class Module:
    """One parsed `.net` file."""

    file: str
    imports: tuple[Import, ...]
    consts: tuple[Const, ...]
    blocks: tuple[Block, ...]
    networks: tuple[Network, ...]
