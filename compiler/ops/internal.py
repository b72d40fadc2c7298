"""The compiler's internal ops: what the training forward and the backward graph are built
from besides the spec's ops. Specs cannot call them (`hidden`); each has its shape rule and
both lowerings like any op, and an op-table row (tests/test_ops.py, INTERNAL_ROWS).

None of them is differentiated again (the backward graph is not differentiated): their
`grad` says so.
"""

from __future__ import annotations

from .. import dims as D
from ..ir import FLOAT_DTYPES, TensorType
from .registry import (
    Arg,
    NoGrad,
    OpDef,
    ShapeError,
    axes_arg,
    float_arg,
    int_arg,
    normalize_axis,
    register,
)

BACKWARD_ONLY = NoGrad("it appears only in backward graphs, which are not differentiated again")


def _internal(name, args, infer, torch, onnx, kind="structure", grad=BACKWARD_ONLY, **rest) -> OpDef:
    return register(OpDef(name, args, infer, kind, torch=torch, onnx=onnx, grad=grad, hidden=True, **rest))


def _t(name):
    return Arg(name, None, tensor=True)


def _any(value):
    return value


# ---------------------------------------------------------------- parameters as values

# A parameter or buffer of a forward node, as a value the backward graph can read (dx of
# linear needs W) and a target for its gradient. `owner.local` is its state_dict name.
PARAM = register(
    OpDef(
        "param",
        (Arg("owner", _any), Arg("local", _any), Arg("type", _any), Arg("buffer", _any, False)),
        lambda inputs, attrs: [attrs["type"]],
        "source",
        torch=lambda t, *, owner, local, type, buffer: t.parameter(f"{owner}.{local}", buffer),
        onnx=lambda b, *, owner, local, type, buffer: b.parameter(f"{owner}.{local}"),
        hidden=True,
    )
)


# ---------------------------------------------------------------- shapes and broadcasting


def _like(inputs, attrs):
    g, like = inputs
    return [TensorType(like.shape, g.dtype)]


def summed_axes(g: TensorType, like: TensorType) -> tuple[int, ...]:
    """The axes of g that broadcasting made from like: the extra leading ones, and those
    where like has size 1 and g has not."""
    lead = g.rank - like.rank
    kept = [lead + i for i, d in enumerate(like.shape) if d == 1 and g.shape[lead + i] != 1]
    return tuple(range(lead)) + tuple(kept)


def _sum_to_torch(t, g, like):
    axes = summed_axes(g.type, like.type)
    summed = t.call(f"{g}.sum", dim=t.exact(axes), keepdim=True) if axes else g
    return summed if g.rank == like.rank else t.call(f"{summed}.reshape", t.code(f"{like}.shape"))


def _sum_to_onnx(b, g, like):
    axes = summed_axes(g.type, like.type)
    summed = b.reduce("ReduceSum", g, axes, keepdims=True) if axes else g
    return summed if g.rank == like.rank else b.Reshape(summed, b.Shape(like))


SUM_TO = _internal(
    "sum_to", (_t("g"), _t("like")), _like, _sum_to_torch, _sum_to_onnx, doc="sums g over the axes broadcasting made"
)
BROADCAST_LIKE = _internal(
    "broadcast_like",
    (_t("g"), _t("like")),
    _like,
    lambda t, g, like: t.call(f"{g}.expand_as", like),
    lambda b, g, like: b.Expand(g, b.Shape(like)),
)
RESHAPE_LIKE = _internal(
    "reshape_like",
    (_t("g"), _t("like")),
    _like,
    lambda t, g, like: t.call(f"{g}.reshape", t.code(f"{like}.shape")),
    lambda b, g, like: b.Reshape(g, b.Shape(like)),
    grad=lambda d, dy, y, g, like: (d.apply("reshape_like", dy, g), None),  # groupnorm's training forward uses it
)
ZEROS_LIKE = _internal(
    "zeros_like",
    (_t("like"),),
    lambda inputs, attrs: [inputs[0]],
    lambda t, like: t.call("torch.zeros_like", like),
    lambda b, like: b.ConstantOfShape(b.Shape(like), value=b.tensor([0], like.dtype)),
)


def _count_infer(inputs, attrs):
    (x,) = inputs
    for a in attrs["axes"]:
        normalize_axis(a, x.rank, arg="axes")
    return [TensorType((), attrs["dtype"])]


def _count_torch(t, x, *, axes, dtype):
    sizes = " * ".join(f"{x}.shape[{a}]" for a in axes) or "1"
    return t.call("torch.tensor", t.code(sizes), dtype=t.code(f"torch.{dtype}"))


def _count_onnx(b, x, *, axes, dtype):
    sizes = b.Gather(b.Shape(x), b.ints([a % x.rank for a in axes]), axis=0)
    return b.Cast(b.ReduceProd(sizes, keepdims=0), to=b.element_type(dtype))


# The number of elements over `axes` at run time (a mean's divisor where a size is symbolic).
COUNT = _internal(
    "count",
    (_t("x"), Arg("axes", axes_arg), Arg("dtype", _any, "float32")),
    _count_infer,
    _count_torch,
    _count_onnx,
    grad=lambda d, g, y, x, **attrs: None,  # a size: no gradient reaches x through it
)


# ---------------------------------------------------------------- element-wise helpers


def _same(inputs, attrs):
    (x,) = inputs
    if x.dtype not in FLOAT_DTYPES:
        raise ShapeError(f"expects a float tensor, got {x.dtype}")
    return [x]


def _mask_torch(t, x, *, low, high):
    parts = ([f"({x} > {low!r})"] if low is not None else []) + ([f"({x} < {high!r})"] if high is not None else [])
    test = parts[0] if len(parts) == 1 else f"({' & '.join(parts)})"
    return t.call(f"{test}.to", t.code(f"{x}.dtype"))


def _mask_onnx(b, x, *, low, high):
    tests = ([b.Greater(x, b.scalar(low, x.dtype))] if low is not None else []) + (
        [b.Less(x, b.scalar(high, x.dtype))] if high is not None else []
    )
    both = tests[0] if len(tests) == 1 else b.And(*tests)
    return b.Cast(both, to=b.element_type(x.dtype))


def _optional_float(value):
    return None if value is None else float_arg()(value)


# 1 where low < x < high (each bound optional), else 0: the factor of relu, relu6, clamp.
MASK = _internal(
    "mask",
    (_t("x"), Arg("low", _optional_float, None), Arg("high", _optional_float, None)),
    _same,
    _mask_torch,
    _mask_onnx,
    kind="elementwise",
)
SIGN = _internal("sign", (_t("x"),), _same, lambda t, x: t.call("torch.sign", x), lambda b, x: b.Sign(x), "elementwise")
ERF = _internal("erf", (_t("x"),), _same, lambda t, x: t.call("torch.erf", x), lambda b, x: b.Erf(x), "elementwise")


def _onehot_infer(inputs, attrs):
    (labels,) = inputs
    if labels.dtype != "int64":
        raise ShapeError(f"onehot expects int64 labels, got {labels.dtype}")
    return [TensorType(labels.shape + (attrs["classes"],), attrs["dtype"])]


ONEHOT = _internal(
    "onehot",
    (_t("labels"), Arg("classes", int_arg(1)), Arg("dtype", _any, "float32")),
    _onehot_infer,
    lambda t, labels, *, classes, dtype: t.call(f"F.one_hot({labels}, {classes}).to", t.code(f"torch.{dtype}")),
    lambda b, labels, *, classes, dtype: b.OneHot(labels, b.ints([classes]), b.const([0, 1], dtype), axis=-1),
)


# ---------------------------------------------------------------- sizes


def static_count(shape, axes) -> int | None:
    """The number of elements over axes where every size is known, else None."""
    n = 1
    for a in axes:
        d = shape[a]
        if not isinstance(d, int):
            return None
        n *= d
    return n


__all__ = ["D", "summed_axes", "static_count"]
