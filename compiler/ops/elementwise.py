"""Element-wise functions and the arithmetic operators (`+ - * / ** @`, unary `-`)."""

from __future__ import annotations

import math

from .. import dims as D
from ..dims import shape_text
from ..ir import DTYPES, FLOAT_DTYPES, NUMERIC_DTYPES, TensorType
from .registry import (
    Arg,
    NoGrad,
    OpDef,
    ShapeError,
    binary,
    broadcast,
    choice_arg,
    fits,
    float_arg,
    int_arg,
    register,
    unary,
)

_SQRT_HALF, _INV_SQRT_2PI = 1 / math.sqrt(2), 1 / math.sqrt(2 * math.pi)

# Each rule's math lives in LANGUAGE.md's table; gradients are added by the autodiff stage.
RELU = unary(
    "relu",
    factor="1 where x > 0, else 0",
    doc="max(0, x)",
    torch=lambda t, x: t.call("F.relu", x, inplace=True) if t.inplace(0) else t.call("F.relu", x),
    onnx="Relu",
    grad=lambda d, g, y, x: g * d.apply("mask", x, low=0.0),  # 1 where x > 0
)
RELU6 = unary(
    "relu6",
    factor="1 where 0 < x < 6, else 0",
    doc="min(max(0, x), 6)",
    torch="F.relu6",
    onnx=lambda b, x: b.Clip(x, b.scalar(0.0, x.dtype), b.scalar(6.0, x.dtype)),
    grad=lambda d, g, y, x: g * d.apply("mask", x, low=0.0, high=6.0),  # 1 where 0 < x < 6
)
LEAKY_RELU = unary(
    "leaky_relu",
    Arg("slope", float_arg(), 0.01),
    factor="1 or slope",
    doc="x if x > 0 else slope * x",
    torch=lambda t, x, *, slope: t.call("F.leaky_relu", x, negative_slope=t.opt(slope, 0.01)),
    onnx=lambda b, x, *, slope: b.LeakyRelu(x, alpha=slope),
    grad=lambda d, g, y, x, *, slope: g * (d.apply("mask", x, low=0.0) * (1.0 - slope) + slope),  # 1 or slope
)
ELU = unary(
    "elu",
    Arg("alpha", float_arg(), 1.0),
    factor="1 or f(x) + alpha",
    doc="x if x > 0 else alpha * (exp(x) - 1)",
    torch=lambda t, x, *, alpha: t.call("F.elu", x, alpha=t.opt(alpha, 1.0)),
    onnx=lambda b, x, *, alpha: b.Elu(x, alpha=alpha),
    grad=lambda d, g, y, x, *, alpha: g * _either(d.apply("mask", x, low=0.0), 1.0, y + alpha),  # 1 or f(x) + alpha
)
SIGMOID = unary(
    "sigmoid",
    factor="σ(x)(1 − σ(x))",
    doc="1 / (1 + exp(-x))",
    torch="torch.sigmoid",
    onnx="Sigmoid",
    grad=lambda d, g, y, x: g * (y * (1 - y)),  # f(x)(1 - f(x))
)
TANH = unary(
    "tanh",
    factor="1 − tanh²(x)",
    doc="tanh(x)",
    torch="torch.tanh",
    onnx="Tanh",
    grad=lambda d, g, y, x: g * (1 - y * y),
)
SOFTPLUS = unary(
    "softplus",
    factor="σ(x)",
    doc="log(1 + exp(x))",
    torch="F.softplus",
    onnx="Softplus",
    grad=lambda d, g, y, x: g * d.apply("sigmoid", x),
)


def _gelu_onnx(b, x, *, approximate="none"):
    if approximate == "tanh":
        return _gelu_tanh_onnx(b, x)
    if b.opset >= 20:
        return b.Gelu(x)
    # x * Phi(x) = x * (1 + erf(x / sqrt 2)) / 2, the erf form torch computes
    half = b.Mul(x, b.scalar(0.5, x.dtype))
    return b.Mul(half, b.Add(b.Erf(b.Mul(x, b.scalar(1 / math.sqrt(2), x.dtype))), b.scalar(1.0, x.dtype)))


def _gelu_grad(d, g, y, x, *, approximate="none"):
    if approximate == "tanh":
        return _gelu_tanh_grad(d, g, y, x)
    cdf = (d.apply("erf", x * _SQRT_HALF) + 1.0) * 0.5  # Phi(x)
    pdf = d.apply("exp", x * x * -0.5) * _INV_SQRT_2PI  # phi(x)
    return g * (cdf + x * pdf)


def _silu_grad(d, g, y, x):
    s = d.apply("sigmoid", x)
    return g * (s + x * s * (1 - s))


def _either(mask, a, b):
    """a where mask is 1, b where it is 0."""
    return mask * (a - b) + b


GELU = unary(
    "gelu",
    Arg("approximate", choice_arg("none", "tanh"), "none"),
    factor="Φ(x) + x·φ(x)",
    doc='x * Phi(x), the erf form; approximate="tanh" as PyTorch',
    torch=lambda t, x, *, approximate: t.call("F.gelu", x, approximate=t.opt(approximate, "none")),
    onnx=_gelu_onnx,
    grad=_gelu_grad,
)
SILU = unary(
    "silu",
    factor="s + x·s(1 − s), s = σ(x)",
    doc="x * sigmoid(x)",
    torch="F.silu",
    onnx=lambda b, x: b.Mul(x, b.Sigmoid(x)),
    grad=_silu_grad,
)
EXP = unary("exp", factor="eˣ", doc="exp(x)", torch="torch.exp", onnx="Exp", grad=lambda d, g, y, x: g * y)
LOG = unary("log", factor="1/x", doc="log(x)", torch="torch.log", onnx="Log", grad=lambda d, g, y, x: g * (1 / x))
SQRT = unary(
    "sqrt", factor="1/(2√x)", doc="sqrt(x)", torch="torch.sqrt", onnx="Sqrt", grad=lambda d, g, y, x: g * (1 / (2 * y))
)
ABS = unary(
    "abs", factor="sign(x)", doc="|x|", torch="torch.abs", onnx="Abs", grad=lambda d, g, y, x: g * d.apply("sign", x)
)
IDENTITY = unary(
    "identity", factor="1", dtypes=DTYPES, doc="x", torch=lambda t, x: x, onnx="Identity", grad=lambda d, g, y, x: g
)
DROPOUT = unary(
    "dropout",
    Arg("p", float_arg(minimum=0.0, below=1.0), 0.5),
    doc="identity when not training",
    torch=lambda t, x, *, p: t.call("F.dropout", x, p=p, training=t.code("self.training")),
    # the ONNX model is the inference forward, where Dropout is the identity
    onnx=lambda b, x, *, p: b.Dropout(x, b.scalar(p, x.dtype)),
    # training: a mask (an input of the training graph, 0 or 1 per element) times 1 / (1 - p)
    train=lambda d, x, *, p: x * d.input("mask", x.type) * (1.0 / (1.0 - p)) if d.training else x,
    grad=NoGrad("the training forward replaces it with its mask and scale"),
)


# Operators: not callable by name from a spec, written as `a + b` etc.
def _add_torch(t, a, b):
    for i, (target, other) in enumerate(((a, b), (b, a))):  # `y += skip`, as people write it
        if t.inplace(i) and fits(other.type.shape, target.type.shape):
            return t.augment(target, "+=", other)
    return f"{a} + {b}"


# The backward of + - * / @ reads the inputs, never the output.
ADD = binary("add", "+", "add", "Add", torch=_add_torch, grad_reads_output=False, grad=lambda d, g, y, a, b: (g, g))
SUB = binary("sub", "-", "subtract", "Sub", grad_reads_output=False, grad=lambda d, g, y, a, b: (g, -g))


def _mul_grad(d, g, y, a, b):
    if a.value == b.value:  # x * x: one product, 2 g scaled first (g is often a broadcast row)
        return (g * 2.0) * a, None
    return g * b, g * a


MUL = binary("mul", "*", "multiply", "Mul", grad_reads_output=False, grad=_mul_grad, unit=1.0)


def _div_infer(inputs, attrs):
    """True division, as torch's `/`: integer tensors give float32."""
    a, b = inputs
    if a.dtype != b.dtype:
        raise ShapeError(f"cannot divide tensors of dtypes {a.dtype} and {b.dtype}")
    shape = broadcast(a.shape, b.shape)
    if shape is None:
        raise ShapeError(f"cannot divide tensors of shapes {shape_text(a.shape)} and {shape_text(b.shape)}")
    return [TensorType(shape, a.dtype if a.dtype in FLOAT_DTYPES else "float32")]


def _div_onnx(b, x, y):
    if x.dtype in FLOAT_DTYPES:
        return b.Div(x, y)
    to = b.element_type("float32")  # ONNX's Div of integers truncates; torch's `/` does not
    return b.Div(b.Cast(x, to=to), b.Cast(y, to=to))


DIV = register(
    OpDef(
        "div",
        (Arg("a", None, tensor=True), Arg("b", None, tensor=True)),
        _div_infer,
        "binary",
        doc="a / b",
        torch=lambda t, a, b: f"{a} / {b}",
        onnx=_div_onnx,
        grad_reads_output=False,
        grad=lambda d, g, y, a, b: (g / b, -(g * y) / b),  # d(a/b)/db = -a/b^2 = -y/b
        pointwise=True,
    )
)
NEG = unary(
    "neg",
    kind="operator",
    dtypes=NUMERIC_DTYPES,
    doc="-x",
    torch=lambda t, x: f"-{x}",
    onnx="Neg",
    grad=lambda d, g, y, x: -g,
)
POW = unary(
    "pow",
    Arg("exponent", float_arg()),
    kind="operator",
    dtypes=NUMERIC_DTYPES,  # an int64 tensor takes a non-negative int exponent (the elaborator checks), as in torch
    doc="x ** exponent",
    torch=lambda t, x, *, exponent: f"{x}**{exponent!r}",
    onnx=lambda b, x, *, exponent: b.Pow(x, b.scalar(exponent, x.dtype)),
    grad=lambda d, g, y, x, *, exponent: g * (exponent * x ** (exponent - 1)),
)


def _matmul_infer(inputs, attrs):
    a, b = inputs
    if a.dtype != b.dtype:
        raise ShapeError(f"cannot multiply matrices of dtypes {a.dtype} and {b.dtype}")
    if a.dtype == "bool":
        raise ShapeError('cannot multiply bool matrices: cast(x, "float32") first')
    if a.rank < 1 or b.rank < 1:
        raise ShapeError("`@` needs tensors with at least one axis")
    a_shape = a.shape if a.rank > 1 else (1,) + a.shape
    b_shape = b.shape if b.rank > 1 else b.shape + (1,)
    if D.provably_unequal(a_shape[-1], b_shape[-2]):
        raise ShapeError(
            f"cannot multiply matrices of shapes {shape_text(a.shape)} and {shape_text(b.shape)}: "
            f"{a_shape[-1]} columns against {b_shape[-2]} rows"
        )
    batch = broadcast(a_shape[:-2], b_shape[:-2])
    if batch is None:
        raise ShapeError(f"cannot broadcast the batch axes of {shape_text(a.shape)} and {shape_text(b.shape)}")
    shape = batch + (a_shape[-2],) * (a.rank > 1) + (b_shape[-1],) * (b.rank > 1)
    return [TensorType(shape, a.dtype)]


def _matmul_grad(d, g, y, a, b):
    """da = g @ b^T, db = a^T @ g, a 1-d operand taken as a row (a) or a column (b)."""
    a2 = a if a.rank > 1 else d.apply("reshape", a, shape=(1,) + tuple(a.shape))
    b2 = b if b.rank > 1 else d.apply("reshape", b, shape=tuple(b.shape) + (1,))
    shape = tuple(g.shape[: g.rank - (a.rank > 1) - (b.rank > 1)]) + (a2.shape[-2], b2.shape[-1])
    g2 = g if tuple(g.shape) == shape else d.apply("reshape", g, shape=shape)
    da, db = g2 @ d.transpose(b2), d.transpose(a2) @ g2
    if a.rank == 1:  # [..., 1, k] -> [..., k]
        da = d.apply("reshape", da, shape=tuple(da.shape[:-2]) + (da.shape[-1],))
    if b.rank == 1:  # [..., k, 1] -> [..., k]
        db = d.apply("reshape", db, shape=tuple(db.shape[:-1]))
    return da, db


MATMUL = register(
    OpDef(
        "matmul",
        (Arg("a", None, tensor=True), Arg("b", None, tensor=True)),
        _matmul_infer,
        "binary",
        doc="a @ b with batch broadcasting (torch.matmul)",
        torch=lambda t, a, b: f"{a} @ {b}",
        onnx=lambda b, x, y: b.MatMul(x, y),
        grad=_matmul_grad,
        grad_reads_output=False,
    )
)


def _comparison(name: str, symbol: str, onnx: str) -> OpDef:
    """`a < b` with a tensor on either side: element-wise, broadcasting, a bool tensor."""

    def infer(inputs, attrs):
        a, b = inputs
        if a.dtype != b.dtype:
            raise ShapeError(f"cannot compare tensors of dtypes {a.dtype} and {b.dtype} with `{symbol}`")
        if a.dtype == "bool" and symbol not in ("==", "!="):
            raise ShapeError(f"`{symbol}` needs numbers, got bool tensors")
        shape = broadcast(a.shape, b.shape)
        if shape is None:
            raise ShapeError(f"cannot compare tensors of shapes {shape_text(a.shape)} and {shape_text(b.shape)}")
        return [TensorType(shape, "bool")]

    def to_onnx(b, x, y):
        return b.Not(b.Equal(x, y)) if onnx == "NotEqual" else b.op(onnx, x, y)

    return register(
        OpDef(
            name,
            (Arg("a", None, tensor=True), Arg("b", None, tensor=True)),
            infer,
            "binary",
            doc=f"a {symbol} b, element-wise: a bool tensor",
            torch=lambda t, a, b: f"{a} {symbol} {b}",
            onnx=to_onnx,
            # piecewise constant: no gradient reaches either side (nor can it reach a bool result)
            grad=lambda d, g, y, a, b: (None, None),
            grad_reads_output=False,
        )
    )


LT = _comparison("lt", "<", "Less")
LE = _comparison("le", "<=", "LessOrEqual")
GT = _comparison("gt", ">", "Greater")
GE = _comparison("ge", ">=", "GreaterOrEqual")
EQ = _comparison("eq", "==", "Equal")
NE = _comparison("ne", "!=", "NotEqual")


def _constant_infer(inputs, attrs):
    return [TensorType((), attrs["dtype"])]


# A scalar operand of a tensor operator (`x * 0.5`): a 0-d tensor of the other side's dtype.
CONSTANT = register(
    OpDef(
        "constant",
        (Arg("value", None), Arg("dtype", None)),
        _constant_infer,
        "source",
        torch=lambda t, *, value, dtype: t.literal(value),
        onnx=lambda b, *, value, dtype: b.scalar(value, dtype),
        grad=NoGrad("a constant has no inputs"),
    )
)
INPUT = register(
    OpDef("input", (), lambda inputs, attrs: [attrs["type"]], "source", grad=NoGrad("an input has no inputs"))
)


# ---------------------------------------------------------------- language 1.1: element-wise ops, masks
# clamp, hardswish, hardsigmoid, mish and stochastic_depth are element-wise functions with a
# gradient factor; the bool ops, cast, where, masked_fill, tril and triu select or convert
# values rather than apply a function, so they are "structure" (no factor, no derivative bound
# in compiler/paths.py).

DTYPE_NAMES = ("bool", "int64", "float32", "float64")  # what `cast` and the constant makers take
dtype_arg = choice_arg(*DTYPE_NAMES)


def _bound_arg(value):
    return None if value is None else float_arg()(value)


def _clamp_infer(inputs, attrs):
    (x,) = inputs
    if x.dtype not in FLOAT_DTYPES:
        raise ShapeError(f"clamp expects a float tensor, got {x.dtype}")
    if attrs["min"] is None and attrs["max"] is None:
        raise ShapeError("clamp needs a bound: min=, max= or both")
    return [x]


def _clamp_onnx(b, x, *, min, max):
    low = b.scalar(min, x.dtype) if min is not None else None
    high = b.scalar(max, x.dtype) if max is not None else None
    return b.Clip(x, low, high)


CLAMP = register(
    OpDef(
        "clamp",
        (Arg("x", None, tensor=True), Arg("min", _bound_arg, None), Arg("max", _bound_arg, None)),
        _clamp_infer,
        "elementwise",
        doc="min(max(x, min), max); either bound may be left out",
        factor="1 where min < x < max, else 0",
        torch=lambda t, x, *, min, max: t.call(
            "torch.clamp", x, **({"min": min} if min is not None else {}), **({"max": max} if max is not None else {})
        ),
        onnx=_clamp_onnx,
        grad=lambda d, g, y, x, *, min, max: g * d.apply("mask", x, low=min, high=max),
        grad_reads_output=False,
    )
)


def _hardswish_grad(d, g, y, x):
    """x / 3 + 1/2 on (-3, 3), 1 above, 0 below (torch's: the middle closed at 3)."""
    return g * (d.apply("mask", x, low=-3.0, high=3.0) * (x * (1 / 3) + 0.5) + d.apply("mask", x, low=3.0))


def _mish_grad(d, g, y, x):
    t = d.apply("tanh", d.apply("softplus", x))
    return g * (t + x * d.apply("sigmoid", x) * (1 - t * t))


HARDSWISH = unary(
    "hardswish",
    factor="0 below −3, x/3 + 1/2 on (−3, 3), 1 above",
    doc="x * relu6(x + 3) / 6",
    torch="F.hardswish",
    onnx="HardSwish",
    grad=_hardswish_grad,
)
HARDSIGMOID = unary(
    "hardsigmoid",
    factor="1/6 where −3 < x < 3, else 0",
    doc="relu6(x + 3) / 6",
    torch="F.hardsigmoid",
    onnx=lambda b, x: b.HardSigmoid(x, alpha=1 / 6, beta=0.5),
    grad=lambda d, g, y, x: g * (d.apply("mask", x, low=-3.0, high=3.0) * (1 / 6)),
)
MISH = unary(
    "mish",
    factor="t + x·σ(x)(1 − t²), t = tanh(softplus(x))",
    doc="x * tanh(softplus(x))",
    torch="F.mish",
    # Mish exists from opset 18; spelled out it runs on every opset netc emits
    onnx=lambda b, x: b.Mul(x, b.Tanh(b.Softplus(x))),
    grad=_mish_grad,
)

_GELU_K, _GELU_C = math.sqrt(2 / math.pi), 0.044715


def _gelu_tanh_onnx(b, x):
    if b.opset >= 20:
        return b.Gelu(x, approximate="tanh")
    # x / 2 * (1 + tanh(k (x + c x^3)))
    cube = b.Mul(b.Mul(x, x), x)
    inner = b.Mul(b.Add(x, b.Mul(cube, b.scalar(_GELU_C, x.dtype))), b.scalar(_GELU_K, x.dtype))
    half = b.Mul(x, b.scalar(0.5, x.dtype))
    return b.Mul(half, b.Add(b.Tanh(inner), b.scalar(1.0, x.dtype)))


def _gelu_tanh_grad(d, g, y, x):
    """(1 + t) / 2 + x / 2 (1 - t^2) k (1 + 3 c x^2), t = tanh(k (x + c x^3))."""
    t = d.apply("tanh", (x + x * x * x * _GELU_C) * _GELU_K)
    return g * ((t + 1.0) * 0.5 + x * 0.5 * (1 - t * t) * ((x * x * (3 * _GELU_C) + 1.0) * _GELU_K))


def _logical_infer(name):
    def infer(inputs, attrs):
        for t in inputs:
            if t.dtype != "bool":
                raise ShapeError(f"{name} expects bool tensors, got {t.dtype} (a comparison such as `x > 0` makes one)")
        shape = inputs[0].shape
        for t in inputs[1:]:
            shape = broadcast(shape, t.shape)
            if shape is None:
                raise ShapeError(
                    f"{name}: cannot broadcast shapes {shape_text(inputs[0].shape)} and {shape_text(inputs[1].shape)}"
                )
        return [TensorType(shape, "bool")]

    return infer


BOOL_RESULT = NoGrad("its result is a bool tensor, through which no gradient flows")


def _logical(name, torch_function, onnx_op, arity):
    args = (Arg("a", None, tensor=True), Arg("b", None, tensor=True)) if arity == 2 else (Arg("x", None, tensor=True),)
    return register(
        OpDef(
            name,
            args,
            _logical_infer(name),
            "structure",
            doc=f"element-wise {name[8:]} of bool tensors",
            torch=lambda t, *xs: t.call(torch_function, *xs),
            onnx=lambda b, *xs: b.op(onnx_op, *xs),
            grad=BOOL_RESULT,
        )
    )


LOGICAL_AND = _logical("logical_and", "torch.logical_and", "And", 2)
LOGICAL_OR = _logical("logical_or", "torch.logical_or", "Or", 2)
LOGICAL_NOT = _logical("logical_not", "torch.logical_not", "Not", 1)


def _cast_grad(d, g, y, x, *, dtype):
    """The identity between float dtypes (g cast back); no gradient to or from bool or int64."""
    if x.dtype not in FLOAT_DTYPES or dtype not in FLOAT_DTYPES:
        return None
    return g if dtype == x.dtype else d.apply("cast", g, dtype=x.dtype)


CAST = register(
    OpDef(
        "cast",
        (Arg("x", None, tensor=True), Arg("dtype", dtype_arg)),
        lambda inputs, attrs: [TensorType(inputs[0].shape, attrs["dtype"])],
        "structure",
        doc="converts between bool, int64, float32 and float64 (as Tensor.to)",
        torch=lambda t, x, *, dtype: t.call(f"{x}.to", t.code(f"torch.{dtype}")),
        onnx=lambda b, x, *, dtype: b.Cast(x, to=b.element_type(dtype)),
        grad=_cast_grad,
    )
)


def _where_infer(inputs, attrs):
    cond, a, b = inputs
    if cond.dtype != "bool":
        raise ShapeError(f"where expects a bool condition, got {cond.dtype} (a comparison such as `x > 0` makes one)")
    if a.dtype != b.dtype:
        raise ShapeError(f"where needs choices of one dtype, got {a.dtype} and {b.dtype}")
    shape = broadcast(a.shape, b.shape)
    shape = broadcast(cond.shape, shape) if shape is not None else None
    if shape is None:
        raise ShapeError(
            f"where: cannot broadcast the condition {shape_text(cond.shape)} and the choices "
            f"{shape_text(a.shape)} and {shape_text(b.shape)}"
        )
    return [TensorType(shape, a.dtype)]


def _where_grad(d, g, y, cond, a, b):
    """g where the condition chose a side, 0 where it did not (summed to each side's shape)."""
    picked = g * d.apply("cast", cond, dtype=g.dtype)
    return None, picked, g - picked


WHERE = register(
    OpDef(
        "where",
        (
            Arg("cond", None, tensor=True),
            Arg("a", None, tensor=True, scalar=True),
            Arg("b", None, tensor=True, scalar=True),
        ),
        _where_infer,
        "structure",
        doc="a where cond, else b, broadcasting; a number takes the other side's dtype",
        torch=lambda t, cond, a, b: t.call("torch.where", cond, a, b),
        onnx=lambda b, cond, x, y: b.Where(cond, x, y),
        grad=_where_grad,
        grad_reads_output=False,
    )
)


def _masked_fill_infer(inputs, attrs):
    x, mask = inputs
    if mask.dtype != "bool":
        raise ShapeError(
            f'masked_fill expects a bool mask, got {mask.dtype}: compare to make one (`m != 0`) or `cast(m, "bool")`'
        )
    if x.dtype not in FLOAT_DTYPES and not float(attrs["value"]).is_integer():
        raise ShapeError(f"masked_fill: the value {attrs['value']!r} does not fit the dtype {x.dtype}", arg="value")
    shape = broadcast(x.shape, mask.shape)
    if shape is None or len(shape) != x.rank or any(D.provably_unequal(p, q) for p, q in zip(shape, x.shape)):
        raise ShapeError(
            f"masked_fill: the mask {shape_text(mask.shape)} does not broadcast to the input {shape_text(x.shape)}"
        )
    return [x]


def _fill_value(value, dtype):
    return float(value) if dtype in FLOAT_DTYPES else int(value)


def _masked_fill_grad(d, g, y, x, mask, *, value):
    return g - g * d.apply("cast", mask, dtype=g.dtype), None


MASKED_FILL = register(
    OpDef(
        "masked_fill",
        (Arg("x", None, tensor=True), Arg("mask", None, tensor=True), Arg("value", float_arg())),
        _masked_fill_infer,
        "structure",
        doc="value where mask is true, else x",
        torch=lambda t, x, mask, *, value: t.call(f"{x}.masked_fill", mask, _fill_value(value, x.type.dtype)),
        onnx=lambda b, x, mask, *, value: b.Where(mask, b.scalar(_fill_value(value, x.dtype), x.dtype), x),
        grad=_masked_fill_grad,
        grad_reads_output=False,
    )
)


def _triangle(name, upper):
    def infer(inputs, attrs):
        (x,) = inputs
        if x.rank < 2:
            raise ShapeError(f"{name} expects a tensor with at least two axes, got shape {shape_text(x.shape)}")
        return [x]

    def to_onnx(b, x, *, diagonal):
        return b.Trilu(x, b.scalar(diagonal, "int64"), upper=int(upper))

    return register(
        OpDef(
            name,
            (Arg("x", None, tensor=True), Arg("diagonal", int_arg(), 0)),
            infer,
            "structure",
            doc=f"the {'upper' if upper else 'lower'} triangle of the last two axes, the rest 0",
            torch=lambda t, x, *, diagonal: t.call(f"torch.{name}", x, diagonal=t.opt(diagonal, 0)),
            onnx=to_onnx,
            grad=lambda d, g, y, x, *, diagonal: d.apply(name, g, diagonal=diagonal),
            grad_reads_output=False,
        )
    )


TRIL = _triangle("tril", False)
TRIU = _triangle("triu", True)


def stochastic_depth_mask_shape(shape, mode) -> tuple:
    """One draw per sample (`row`, the mask [N, 1, ...]) or one for the batch."""
    return (shape[0],) + (1,) * (len(shape) - 1) if mode == "row" else (1,) * len(shape)


def _stochastic_depth_torch(t, x, *, p, mode):
    """torch's feature dropout on x with a new leading axis draws one Bernoulli(1 - p) per
    sample (two new axes: one for the batch) and scales by 1 / (1 - p), in the order and
    with the random numbers of torchvision.ops.stochastic_depth."""
    lead = "None" if mode == "row" else "None, None"
    back = "0" if mode == "row" else "0, 0"
    dropped = t.call("torch.feature_dropout", t.code(f"{x}[{lead}]"), p, t.code("self.training"))
    return t.code(f"{dropped}[{back}]")


def _stochastic_depth_train(d, x, *, p, mode):
    if not d.training:
        return x
    mask = d.input("mask", TensorType(stochastic_depth_mask_shape(x.shape, mode), x.dtype))
    return x * mask * (1.0 / (1.0 - p))


STOCHASTIC_DEPTH = unary(
    "stochastic_depth",
    Arg("p", float_arg(minimum=0.0, below=1.0)),
    Arg("mode", choice_arg("row", "batch"), "row"),
    doc="torchvision's: in training, zero whole samples (or the batch) with probability p, scale by 1 / (1 - p)",
    torch=_stochastic_depth_torch,
    onnx=lambda b, x, *, p, mode: b.Identity(x),  # the inference forward
    train=_stochastic_depth_train,
    grad=NoGrad("the training forward replaces it with its mask and scale"),
)
