"""Element-wise functions and the arithmetic operators (`+ - * / ** @`, unary `-`)."""

from __future__ import annotations

import math

from .. import dims as D
from ..dims import shape_text
from ..ir import DTYPES, FLOAT_DTYPES, TensorType
from .registry import Arg, NoGrad, OpDef, ShapeError, binary, broadcast, float_arg, register, unary

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


def _gelu_onnx(b, x):
    if b.opset >= 20:
        return b.Gelu(x)
    # x * Phi(x) = x * (1 + erf(x / sqrt 2)) / 2, the erf form torch computes
    half = b.Mul(x, b.scalar(0.5, x.dtype))
    return b.Mul(half, b.Add(b.Erf(b.Mul(x, b.scalar(1 / math.sqrt(2), x.dtype))), b.scalar(1.0, x.dtype)))


def _gelu_grad(d, g, y, x):
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
    "gelu", factor="Φ(x) + x·φ(x)", doc="x * Phi(x), the erf form", torch="F.gelu", onnx=_gelu_onnx, grad=_gelu_grad
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
        if t.inplace(i) and _fits(other.type.shape, target.type.shape):
            return t.augment(target, "+=", other)
    return f"{a} + {b}"


def _fits(other, target) -> bool:
    """`target += other` never broadcasts its left side: every size of `other` is provably
    1 or the size of `target` it meets (N against M may differ at run time)."""
    if len(other) > len(target):
        return False
    return all((isinstance(o, int) and o == 1) or D.equal(o, s) for o, s in zip(reversed(other), reversed(target)))


# The backward of + - * / @ reads the inputs, never the output.
ADD = binary("add", "+", "add", "Add", torch=_add_torch, grad_reads_output=False, grad=lambda d, g, y, a, b: (g, g))
SUB = binary("sub", "-", "subtract", "Sub", grad_reads_output=False, grad=lambda d, g, y, a, b: (g, -g))
MUL = binary("mul", "*", "multiply", "Mul", grad_reads_output=False, grad=lambda d, g, y, a, b: (g * b, g * a))


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
    )
)
NEG = unary(
    "neg", kind="operator", dtypes=DTYPES, doc="-x", torch=lambda t, x: f"-{x}", onnx="Neg", grad=lambda d, g, y, x: -g
)
POW = unary(
    "pow",
    Arg("exponent", float_arg()),
    kind="operator",
    dtypes=DTYPES,  # an int64 tensor takes a non-negative int exponent (the elaborator checks), as in torch
    doc="x ** exponent",
    torch=lambda t, x, *, exponent: f"{x}**{exponent!r}",
    onnx=lambda b, x, *, exponent: b.Pow(x, b.scalar(exponent, x.dtype)),
    grad=lambda d, g, y, x, *, exponent: g * (exponent * x ** (exponent - 1)),
)


def _matmul_infer(inputs, attrs):
    a, b = inputs
    if a.dtype != b.dtype:
        raise ShapeError(f"cannot multiply matrices of dtypes {a.dtype} and {b.dtype}")
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
