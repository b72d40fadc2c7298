"""The op registry: every operator declared once, all its rules side by side.

An `OpDef` holds the signature (tensor inputs and attributes with their validators), the
attribute normalization, the shape/dtype rule, the parameter and buffer shapes with their
initialization, the lowerings to every backend and the facts backends need. Families
(`unary`, `binary`) come from factories so a concrete op is one line.

Lowerings are backend-neutral in form: `(ctx, *inputs, **attrs)`, where `ctx` is the
backend's lowering context (`backends/torch.py`, `backends/onnx.py` say what it offers),
each input is the backend's handle for a tensor value (carrying its `TensorType`), and
the attributes are the node's normalized ones as keywords:

    onnx=lambda b, x, *, slope: b.LeakyRelu(x, alpha=slope)

Shape rules are pure functions `(inputs: list[TensorType], attrs: dict) -> list[TensorType]`
that raise `ShapeError` naming the dimension at fault.
"""

from __future__ import annotations

import keyword
from collections.abc import Callable
from dataclasses import dataclass

from .. import dims as D
from ..dims import Dim, DimLike, shape_text
from ..ir import FLOAT_DTYPES, TensorType

REQUIRED = object()


class ShapeError(Exception):
    """A shape or dtype rule failed; `arg` names the argument to blame (else the call)."""

    def __init__(self, message: str, arg: str | None = None, notes=()):
        super().__init__(message)
        self.message = message
        self.arg = arg
        self.notes = tuple(notes)


class ArgError(Exception):
    """An attribute value is of the wrong kind; raised by validators."""


@dataclass(frozen=True)
class Arg:
    name: str
    check: Callable | None  # validator for attributes; None for tensor inputs
    default: object = REQUIRED
    tensor: bool = False
    variadic: bool = False  # collects every remaining positional tensor (concat)
    keyword_only: bool = False  # `eps=1e-3`, never positional (it and every argument after it)
    # a number given for this tensor becomes a 0-d constant of the dtype of the call's other
    # such argument (`where(m, x, 0.0)`)
    scalar: bool = False


@dataclass(frozen=True)
class OpDef:
    name: str
    args: tuple[Arg, ...]
    infer: Callable  # (inputs, attrs) -> list[TensorType]
    kind: str  # layer, elementwise, binary, structure, loss, source
    params: Callable | None = None  # (inputs, attrs) -> {local name: shape}
    buffers: Callable | None = None  # (inputs, attrs) -> {local name: TensorType}
    doc: str = ""
    n_outputs: int | None = 1  # None: decided by the shape rule (split)
    # Fills defaults that depend on other attributes (a pool's stride is its kernel), once,
    # when the node is made, so no backend re-derives them: (attrs) -> attrs.
    normalize: Callable | None = None
    # How torch.nn initializes each parameter and buffer: (node) -> {local name: Init}.
    init: Callable | None = None
    torch: Callable | None = None  # (t, *inputs, **attrs) -> a Python expression
    onnx: Callable | None = None  # (b, *inputs, **attrs) -> the ONNX value(s)
    # Does autograd's backward of this op read its output? Where it does not, the result
    # may be overwritten in place by its one consumer (`relu(..., inplace=True)`, `+=`).
    grad_reads_output: bool = True
    # The gradient rule `(d, g, y, *inputs, **attrs) -> one gradient (or None) per input`,
    # built with `d` (compiler/autodiff.py) from the output gradient g and output y; or a
    # `NoGrad` saying why the op has none.
    grad: Callable | NoGrad | None = None
    # The training forward of an op that computes differently in training (batchnorm's
    # batch statistics, dropout's mask), or whose gradient is that of its unrolled form
    # (lstm's steps), as primitives: `(d, *inputs, **attrs) -> output` (a tuple for several).
    train: Callable | None = None
    hidden: bool = False  # internal to the compiler (the backward graph's ops): specs cannot call it
    factor: str = ""  # an element-wise function's gradient factor, as LANGUAGE.md writes it
    # An element-wise binary op with NumPy broadcasting (+ - * /): the builder may give it an
    # operand before `broadcast_like` spread it, since the op broadcasts it the same way.
    pointwise: bool = False
    # The number that leaves the other operand unchanged (mul's 1): the builder makes no node
    # for it. A rule's factor is often exactly 1 (a mean over size-1 axes), and onnxruntime
    # 1.32's NoopElimination drops such a Mul in a chain of two, leaving an input dangling.
    unit: float | None = None
    # The error for more positional arguments than the op takes, where a PyTorch habit
    # explains them (`batchnorm(64)`: the channels come from the input); "" for the plain one.
    too_many: str = ""


@dataclass(frozen=True)
class Init:
    """A parameter's initial distribution, as torch.nn draws it: `uniform` on
    [-bound, bound], `normal` with standard deviation `std`, or the constant `value`."""

    kind: str  # "uniform", "normal" or "constant"
    bound: float = 0.0
    std: float = 1.0
    value: float = 0.0


def uniform(bound: float) -> Init:
    return Init("uniform", bound=bound)


def constant(value: float) -> Init:
    return Init("constant", value=value)


@dataclass(frozen=True)
class NoGrad:
    """An op without a gradient rule, and why."""

    reason: str


REGISTRY: dict[str, OpDef] = {}


def register(op: OpDef) -> OpDef:
    if not op.name.isidentifier() or keyword.iskeyword(op.name):
        raise ValueError(f"bad op name {op.name!r}")
    if op.name in REGISTRY:
        raise ValueError(f"op {op.name!r} registered twice")
    names = [a.name for a in op.args]
    keyword_only = [a.keyword_only for a in op.args]
    if keyword_only != sorted(keyword_only):
        raise ValueError(f"op {op.name!r}: a keyword-only argument comes before a positional one")
    if len(set(names)) != len(names) or "name" in names:
        raise ValueError(f"op {op.name!r}: bad argument names {names}")
    if (op.params or op.buffers) and op.init is None:
        raise ValueError(f"op {op.name!r} has parameters but no init rule")
    if op.kind != "source" and (op.torch is None or op.onnx is None):
        raise ValueError(f"op {op.name!r} needs a torch and an ONNX lowering")
    if op.grad is None:
        raise ValueError(f"op {op.name!r} needs a gradient rule, or NoGrad saying why it has none")
    REGISTRY[op.name] = op
    return op


# ---------------------------------------------------------------- value descriptions


def describe(value) -> str:
    """How a compile-time value reads in a message: `the int 3`, `the string "x"`."""
    from ..values import Multi, Tensor  # local: values imports this module's siblings

    if isinstance(value, Multi):
        return f"the {len(value.values)} values that one call returns"

    if isinstance(value, bool):
        return f"the bool {'true' if value else 'false'}"
    if isinstance(value, int):
        return f"the int {value}"
    if isinstance(value, float):
        return f"the float {value!r}"
    if isinstance(value, str):
        return f'the string "{value}"'
    if isinstance(value, Dim):
        return f"the symbolic dimension {value.text()}"
    if isinstance(value, tuple):
        return "the tuple " + short(value)
    if isinstance(value, Tensor):
        return f"a tensor of shape {value.type}"
    return str(value)


def short(value) -> str:
    """A value as the spec writes it: `true`, `"x"`, `H - 1`, `(1, 2)`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, Dim):
        return value.text()
    if isinstance(value, tuple):
        return "(" + ", ".join(short(v) for v in value) + ")"
    return str(value)


# ---------------------------------------------------------------- attribute validators


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def int_arg(minimum: int | None = None):
    def check(value):
        if isinstance(value, Dim):
            raise ArgError(f"needs an integer, got {describe(value)}, which is only known at run time")
        if not is_int(value):
            raise ArgError(f"needs an integer, got {describe(value)}")
        if minimum is not None and value < minimum:
            raise ArgError(f"must be at least {minimum}, got {value}")
        return value

    return check


def float_arg(minimum: float | None = None, below: float | None = None):
    def check(value):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ArgError(f"needs a number, got {describe(value)}")
        value = float(value)
        if minimum is not None and value < minimum:
            raise ArgError(f"must be at least {minimum}, got {value}")
        if below is not None and value >= below:
            raise ArgError(f"must be less than {below}, got {value}")
        return value

    return check


def bool_arg(value):
    if not isinstance(value, bool):
        raise ArgError(f"needs true or false, got {describe(value)}")
    return value


def choice_arg(*choices):
    def check(value):
        if value not in choices or not isinstance(value, str):
            options = " or ".join(f'"{c}"' for c in choices)
            raise ArgError(f"must be {options}, got {describe(value)}")
        return value

    return check


def ints_arg(count: int, minimum: int = 0):
    """An int, or a tuple of `count` ints (one per spatial axis); normalized to a tuple."""

    def check(value):
        items = (value,) if not isinstance(value, tuple) else value
        if len(items) != count and not (len(items) == 1 and not isinstance(value, tuple)):
            raise ArgError(f"needs an int or a tuple of {count} ints, got {describe(value)}")
        for item in items:
            if not is_int(item):
                raise ArgError(f"needs an int or a tuple of {count} ints, got {describe(value)}")
            if item < minimum:
                raise ArgError(f"must be at least {minimum}, got {describe(value)}")
        return items * count if len(items) == 1 else tuple(items)

    return check


def padding_arg(count: int):
    ints = ints_arg(count, 0)

    def check(value):
        if value == "same" and isinstance(value, str):
            return "same"
        if isinstance(value, str):
            raise ArgError(f'needs an int, a tuple of {count} ints or "same", got {describe(value)}')
        return ints(value)

    return check


def axes_arg(value):
    items = value if isinstance(value, tuple) else (value,)
    if not items or not all(is_int(a) for a in items):
        raise ArgError(f"needs an axis or a tuple of axes, got {describe(value)}")
    return tuple(items)


def dims_arg(value):
    """A shape: a tuple of ints and dimensions (an int alone is a 1-tuple)."""
    items = value if isinstance(value, tuple) else (value,)
    for item in items:
        if not D.is_dim(item):
            raise ArgError(f"needs a tuple of dimensions, got {describe(value)}")
    return tuple(items)


def sizes_arg(value):
    if is_int(value):
        if value < 1:
            raise ArgError(f"must be at least 1, got {value}")
        return value
    if isinstance(value, tuple) and value and all(is_int(v) and v >= 0 for v in value):
        return value
    raise ArgError(f"needs a part size or a tuple of part sizes, got {describe(value)}")


# ---------------------------------------------------------------- shape helpers


def normalize_axis(axis: int, rank: int, what: str = "axis", arg: str = "axis") -> int:
    if not -rank <= axis < rank:
        raise ShapeError(f"{what} {axis} is out of range for a tensor of rank {rank}", arg=arg)
    return axis % rank


def require_float(op: str, t: TensorType, what: str = "input"):
    if t.dtype not in FLOAT_DTYPES:
        raise ShapeError(f"{op} expects a float tensor as {what}, got {t.dtype}")


def require_rank(op: str, t: TensorType, ranks, layout: str = ""):
    if t.rank not in ranks:
        want = " or ".join(str(r) for r in ranks)
        hint = f" ({layout})" if layout else ""
        raise ShapeError(f"{op} expects an input of rank {want}{hint}, got shape {shape_text(t.shape)}")


def static(op: str, d: DimLike, what: str) -> int:
    """A dimension that parameters depend on must be known at compile time."""
    if not isinstance(d, int):
        raise ShapeError(f"{op} needs a known {what}, but it is {d} (symbolic)")
    return d


def positive(op: str, d: DimLike, what: str, notes=()) -> DimLike:
    if isinstance(d, int) and d <= 0:
        raise ShapeError(f"{op} would make the {what} {d}: the input is too small", notes=notes)
    return d


def fits(other: tuple, target: tuple) -> bool:
    """Broadcasting `other` against `target` gives target's shape (`target += other` never
    broadcasts its left side): every size of `other` is provably 1 or the size of `target`
    it meets (N against M may differ at run time)."""
    if len(other) > len(target):
        return False
    return all((isinstance(o, int) and o == 1) or D.equal(o, s) for o, s in zip(reversed(other), reversed(target)))


def broadcast(a: tuple, b: tuple) -> tuple | None:
    """NumPy broadcasting; None where a mismatch is provable (see `broadcast_dim`)."""
    out = []
    for i in range(1, max(len(a), len(b)) + 1):
        size = broadcast_dim(a[-i] if i <= len(a) else 1, b[-i] if i <= len(b) else 1)
        if size is None:
            return None
        out.append(size)
    return tuple(reversed(out))


def broadcast_dim(x: DimLike, y: DimLike) -> DimLike | None:
    """The broadcast of two sizes: the size the result has whenever the program runs at
    all (every size being at least 1), whatever the operand order; None where it never runs.
    Two sizes that may differ run only when one of them is 1, so: an int k against a
    symbolic size gives k (the size is 1 or k); of two sizes provably unequal (3 and 5,
    L and L - 1, 2 * N and N), the larger, or the one that cannot be 1; a size that cannot
    be 1 (N + 1, 2 * N) against one that may be gives the first; None where neither can
    be 1 and they cannot be equal (2 * N and 3). Two symbolic sizes with none of these
    relations (N and M) are taken to agree, and the result is written as the simpler of
    the two (fewer terms, then by text)."""
    if isinstance(x, int) and x == 1:
        return y
    if isinstance(y, int) and y == 1:
        return x
    order = D.compare(x, y)
    if order == 0:
        return x
    x_one, y_one = D.can_equal(x, 1), D.can_equal(y, 1)
    if D.provably_unequal(x, y):  # only a side of 1 lets it run
        if order is not None:  # the larger is at least 2: the smaller must be 1
            return (x if y_one else None) if order > 0 else (y if x_one else None)
        if not (x_one or y_one):
            return None
        if x_one != y_one:
            return y if x_one else x
    elif x_one != y_one:  # the one that cannot be 1 is the size, or both are
        return y if x_one else x
    for known in (x, y):
        if isinstance(known, int):  # the other is 1 or `known`
            return known
    return min(x, y, key=lambda d: (d.size, d.text()))


def same_dtype(op: str, a: TensorType, b: TensorType):
    if a.dtype != b.dtype:
        raise ShapeError(f"{op} needs operands of one dtype, got {a.dtype} and {b.dtype}")


# ---------------------------------------------------------------- families


def unary(
    name: str, *extra: Arg, kind: str = "elementwise", dtypes=FLOAT_DTYPES, doc: str = "", torch, onnx, **rules
) -> OpDef:
    """An element-wise function of one tensor: the output type is the input type.
    `torch` and `onnx` are lowerings, or the name of the one function or operator that
    computes it (`torch="torch.tanh"`, `onnx="Tanh"`)."""

    def infer(inputs, attrs):
        (x,) = inputs
        if x.dtype not in dtypes:
            raise ShapeError(f"{name} expects a float tensor, got {x.dtype}")
        return [x]

    to_torch = torch if callable(torch) else (lambda t, x: t.call(torch, x))
    to_onnx = onnx if callable(onnx) else (lambda b, x: b.op(onnx, x))
    args = (Arg("x", None, tensor=True), *extra)
    return register(OpDef(name, args, infer, kind, doc=doc, torch=to_torch, onnx=to_onnx, **rules))


def binary(name: str, symbol: str, verb: str, onnx: str, doc: str = "", **rules) -> OpDef:
    """An element-wise binary operator with NumPy broadcasting; `onnx` names its operator."""

    def infer(inputs, attrs):
        a, b = inputs
        if a.dtype != b.dtype:
            raise ShapeError(f"cannot {verb} tensors of dtypes {a.dtype} and {b.dtype}")
        if a.dtype == "bool":
            raise ShapeError(
                f'cannot {verb} bool tensors: use logical_and, logical_or or logical_not, or cast(x, "float32") first'
            )
        shape = broadcast(a.shape, b.shape)
        if shape is None:
            raise ShapeError(f"cannot {verb} tensors of shapes {shape_text(a.shape)} and {shape_text(b.shape)}")
        return [TensorType(shape, a.dtype)]

    args = (Arg("a", None, tensor=True), Arg("b", None, tensor=True))
    to_torch = rules.pop("torch", None) or (lambda t, a, b: f"{a} {symbol} {b}")
    return register(
        OpDef(
            name,
            args,
            infer,
            "binary",
            doc=doc or f"a {symbol} b",
            torch=to_torch,
            onnx=lambda b, x, y: b.op(onnx, x, y),
            pointwise=True,
            **rules,
        )
    )
