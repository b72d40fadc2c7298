"""Element-wise functions and the arithmetic operators (`+ - * / ** @`, unary `-`)."""

from __future__ import annotations

from .. import dims as D
from ..dims import shape_text
from ..ir import DTYPES, TensorType
from .registry import Arg, OpDef, ShapeError, binary, broadcast, float_arg, keywords, register, unary

# Each rule's math lives in LANGUAGE.md's table; gradients are added by the autodiff stage.
RELU = unary(
    "relu",
    doc="max(0, x)",
    torch=lambda node, args, emit: f"F.relu({args[0]}{', inplace=True' if emit.inplace(0) else ''})",
)
RELU6 = unary("relu6", doc="min(max(0, x), 6)", torch="F.relu6({x})")
LEAKY_RELU = unary(
    "leaky_relu",
    Arg("slope", float_arg(), 0.01),
    doc="x if x > 0 else slope * x",
    torch=lambda node, args, emit: (
        f"F.leaky_relu({args[0]}{keywords([('negative_slope', node.attrs['slope'], 0.01)])})"
    ),
)
ELU = unary(
    "elu",
    Arg("alpha", float_arg(), 1.0),
    doc="x if x > 0 else alpha * (exp(x) - 1)",
    torch=lambda node, args, emit: f"F.elu({args[0]}{keywords([('alpha', node.attrs['alpha'], 1.0)])})",
)
SIGMOID = unary("sigmoid", doc="1 / (1 + exp(-x))", torch="torch.sigmoid({x})")
TANH = unary("tanh", doc="tanh(x)", torch="torch.tanh({x})")
SOFTPLUS = unary("softplus", doc="log(1 + exp(x))", torch="F.softplus({x})")
GELU = unary("gelu", doc="x * Phi(x), the erf form", torch="F.gelu({x})")
SILU = unary("silu", doc="x * sigmoid(x)", torch="F.silu({x})")
EXP = unary("exp", doc="exp(x)", torch="torch.exp({x})")
LOG = unary("log", doc="log(x)", torch="torch.log({x})")
SQRT = unary("sqrt", doc="sqrt(x)", torch="torch.sqrt({x})")
ABS = unary("abs", doc="|x|", torch="torch.abs({x})")
IDENTITY = unary("identity", dtypes=DTYPES, doc="x", torch="{x}")
DROPOUT = unary(
    "dropout",
    Arg("p", float_arg(minimum=0.0, below=1.0), 0.5),
    doc="identity when not training",
    torch=lambda node, args, emit: f"F.dropout({args[0]}, p={node.attrs['p']!r}, training=self.training)",
)


# Operators: not callable by name from a spec, written as `a + b` etc.
def _add_torch(node, args, emit):
    for i in (0, 1):  # `y += skip` where one side is free to overwrite, as people write it
        if emit.inplace(i):
            return f"{args[i]} += {args[1 - i]}"
    return f"{args[0]} + {args[1]}"


ADD = binary("add", "+", "add", torch=_add_torch)
SUB = binary("sub", "-", "subtract")
MUL = binary("mul", "*", "multiply")
DIV = binary("div", "/", "divide")
NEG = unary("neg", kind="operator", dtypes=DTYPES, doc="-x", torch="-{x}")
POW = unary(
    "pow",
    Arg("exponent", float_arg()),
    kind="operator",
    doc="x ** exponent",
    torch=lambda node, args, emit: f"{args[0]}**{node.attrs['exponent']!r}",
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


MATMUL = register(
    OpDef(
        "matmul",
        (Arg("a", None, tensor=True), Arg("b", None, tensor=True)),
        _matmul_infer,
        "binary",
        doc="a @ b with batch broadcasting (torch.matmul)",
        torch=lambda node, args, emit: f"{args[0]} @ {args[1]}",
    )
)


def _constant_infer(inputs, attrs):
    return [TensorType((), attrs["dtype"])]


# A scalar operand of a tensor operator (`x * 0.5`): a 0-d tensor of the other side's dtype.
CONSTANT = register(OpDef("constant", (Arg("value", None), Arg("dtype", None)), _constant_infer, "source"))
INPUT = register(OpDef("input", (), lambda inputs, attrs: [attrs["type"]], "source"))
