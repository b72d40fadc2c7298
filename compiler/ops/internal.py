"""The compiler's internal ops: what the training forward and the backward graph are built
from besides the spec's ops. Specs cannot call them (`hidden`); each has its shape rule and
both lowerings like any op, and an op-table row (tests/test_ops.py, INTERNAL_ROWS).

None of them is differentiated again (the backward graph is not differentiated): their
`grad` says so.
"""

from __future__ import annotations

import math

from netc.dsl.diagnostics import InternalError

from .. import dims as D
from ..ir import FLOAT_DTYPES, TensorType
from .convolution import onnx_conv, onnx_conv_adjoint
from .layers import conv_length, same_pads
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
        "parameter",
        (Arg("owner", _any), Arg("local", _any), Arg("type", _any), Arg("buffer", _any, False)),
        lambda inputs, attrs: [attrs["type"]],
        "source",
        torch=lambda t, *, owner, local, type, buffer: t.parameter(f"{owner}.{local}", buffer),
        onnx=lambda b, *, owner, local, type, buffer: b.parameter(f"{owner}.{local}"),
        hidden=True,
        grad=NoGrad("a parameter is a leaf: the gradient reaching it is an output, grad.<name>"),
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


# ---------------------------------------------------------------- convolution and pooling gradients
# What the gradients of conv1d/conv2d, conv_transpose2d, the pools, upsample and embedding
# are built from. `padding` is a tuple per spatial axis or "same" (PyTorch's: the odd pad at
# the end, `same_pads`); spatial rank is the input's rank - 2.


def _pads(kernel, padding, dilation) -> list[int]:
    """ONNX pads (all begins, then all ends)."""
    return same_pads(kernel, dilation) if padding == "same" else list(padding) * 2


def _torch_padding(kernel, padding, dilation):
    """(symmetric padding, extra end padding per axis) as torch's conv gradients take them:
    padding="same" with an odd total pads one more at the end, which torch's own "same"
    does with F.pad before a symmetric convolution."""
    if padding != "same":
        return tuple(padding), (0,) * len(kernel)
    pads = same_pads(kernel, dilation)
    n = len(kernel)
    return tuple(pads[:n]), tuple(pads[n + i] - pads[i] for i in range(n))


def _transpose_conv_to(b, g, w, like, *, out_sizes, kernel, stride, pads, dilation, groups):
    """ConvTranspose(g, w), the adjoint of Conv(., w), sized to like's spatial axes. Where
    the sizes are known, output_padding adds the end rows the end pads would cut (stride
    leaves up to stride - 1 of them). Else: no end pads and output_padding stride - 1,
    which makes at least like's size, then a Slice to Shape(like) at run time."""
    n = len(kernel)
    sizes = like.shape[2:]
    common = dict(kernel_shape=list(kernel), strides=list(stride), pads=list(pads), dilations=list(dilation))
    if groups != 1:
        common["group"] = groups
    if all(isinstance(v, int) for v in (*sizes, *out_sizes)):
        extra = [
            length - ((o - 1) * s + (k - 1) * dd + 1 - pads[i] - pads[n + i])
            for i, (length, o, k, s, dd) in enumerate(zip(sizes, out_sizes, kernel, stride, dilation))
        ]
        if any(extra):
            common["output_padding"] = extra
        return b.ConvTranspose(g, w, **common)
    common["pads"] = list(pads[:n]) + [0] * n
    if any(s > 1 for s in stride):
        common["output_padding"] = [s - 1 for s in stride]
    y = b.ConvTranspose(g, w, **common)
    return b.Slice(y, b.ints([0] * n), b.Shape(like, start=2), b.ints(range(2, n + 2)))


def _conv_input_grad_infer(inputs, attrs):
    g, w, like = inputs
    return [TensorType(like.shape, g.dtype)]


def _conv_input_grad_torch(t, g, w, like, *, stride, padding, dilation, groups):
    n = like.rank - 2
    symmetric, extra = _torch_padding(w.shape[2:], padding, dilation)
    size = t.code(f"{like}.shape")
    if any(extra):  # the gradient of the end-padded input, cut back to like's size
        dims = [f"{like}.shape[{i}]" for i in range(2)]
        dims += [f"{like}.shape[{i + 2}] + {e}" if e else f"{like}.shape[{i + 2}]" for i, e in enumerate(extra)]
        size = t.code(f"({', '.join(dims)})")
    grad = t.call(
        f"torch.nn.grad.conv{n}d_input",
        size,
        w,
        g,
        stride=t.opt(stride, 1),
        padding=t.opt(symmetric, 0),
        dilation=t.opt(dilation, 1),
        groups=t.opt(groups, 1),
    )
    if not any(extra):
        return grad
    return t.code(f"{grad}[:, :, {', '.join(f':{like}.shape[{i + 2}]' for i in range(n))}]")


def _conv_input_grad_onnx(b, g, w, like, *, stride, padding, dilation, groups):
    """Stride 1, ungrouped: the convolution of g with w flipped and its two channel axes
    swapped, padded by the kernel's span less the forward's pads (the adjoint written as a
    Conv). onnxruntime's ConvTranspose runs a GEMM then a col2im scatter per image;
    the Conv's im2col reads instead: resnet18's 56x56 input gradients took 18 ms with the
    ConvTranspose, 14 as a Conv, its 28x28 ones 14 and 12, its 14x14 ones (tiled across the
    batch, convolution.py) 17.5 and 15.5. Flipping the weight is a pass over it, slow in
    onnxruntime (a Slice with step -1 and a Transpose of a 512x512x3x3 weight took 7 ms, as
    long as the gain), so a weight of more than `_FLIP_MAX_WEIGHT` elements keeps the
    ConvTranspose, tiled where the forward is. So do strides, groups and pads wider than
    the kernel's span, untiled."""
    kernel = w.shape[2:]
    pads = _pads(kernel, padding, dilation)
    if groups == 1 and all(s == 1 for s in stride):
        n = len(kernel)
        span = [d * (k - 1) for k, d in zip(kernel, dilation)]
        if all(p <= span[i % n] for i, p in enumerate(pads)) and math.prod(w.shape) <= _FLIP_MAX_WEIGHT:
            return onnx_conv(
                b,
                g,
                _flip_kernel(b, w),
                channels=w.shape[1],
                kernel=kernel,
                strides=stride,
                pads=[span[i % n] - p for i, p in enumerate(pads)],
                dilations=dilation,
            )
        tiled = onnx_conv_adjoint(b, g, w, channels=w.shape[1], sizes=like.shape[2:], pads=pads, dilations=dilation)
        if tiled is not None:
            return tiled
    return _transpose_conv_to(
        b, g, w, like, out_sizes=g.shape[2:], kernel=kernel, stride=stride, pads=pads, dilation=dilation, groups=groups
    )


_FLIP_MAX_WEIGHT = 1_000_000  # resnet18: 256x256x3x3 (590K) gained, 512x512x3x3 (2.4M) lost


def _flip_kernel(b, w):
    """w [O, C, *kernel] as [C, O, *kernel] with every spatial axis reversed: reversing the
    flattened kernel reverses each of its axes."""
    outputs, inputs, kernel = w.shape[0], w.shape[1], list(w.shape[2:])
    flat = b.Transpose(b.Reshape(w, b.ints([outputs, inputs, -1])), perm=[1, 0, 2])
    reversed_ = b.Slice(flat, b.ints([-1]), b.ints([-(2**62)]), b.ints([2]), b.ints([-1]))
    return b.Reshape(reversed_, b.ints([inputs, outputs, *kernel]))


_CONV_ATTRS = (Arg("stride", _any), Arg("padding", _any), Arg("dilation", _any), Arg("groups", _any, 1))

# dx of a convolution y = conv(x, w): the transposed convolution of g with w, sized like x.
CONV_INPUT_GRAD = _internal(
    "conv_input_grad",
    (_t("g"), _t("w"), _t("like"), *_CONV_ATTRS),
    _conv_input_grad_infer,
    _conv_input_grad_torch,
    _conv_input_grad_onnx,
)


def _conv_weight_grad_infer(inputs, attrs):
    x, g = inputs
    channels = x.shape[1]
    if not isinstance(channels, int) or not isinstance(g.shape[1], int):
        raise ShapeError(f"conv_weight_grad needs known channels, got {channels} and {g.shape[1]}")
    return [TensorType((g.shape[1], channels // attrs["groups"], *attrs["kernel"]), g.dtype)]


def _conv_weight_grad_torch(t, x, g, *, kernel, stride, padding, dilation, groups):
    n = x.rank - 2
    symmetric, extra = _torch_padding(kernel, padding, dilation)
    weight = (g.shape[1], x.shape[1] // groups, *kernel)
    if any(extra):  # F.pad's pads run from the last axis: (begin, end) each
        x = t.call("F.pad", x, t.exact(tuple(p for e in reversed(extra) for p in (0, e))))
    return t.call(
        f"torch.nn.grad.conv{n}d_weight",
        x,
        t.exact(weight),
        g,
        stride=t.opt(stride, 1),
        padding=t.opt(symmetric, 0),
        dilation=t.opt(dilation, 1),
        groups=t.opt(groups, 1),
    )


def _conv_weight_grad_onnx(b, x, g, *, kernel, stride, padding, dilation, groups):
    """dW[o, c, k] = sum over n, p of g[n, o, p] x[n, c, p s + k d].

    Ungrouped, with the input's size known: the input's patches as one matrix, cols [N*P, K*C],
    gathered from x laid out channels last (each gathered row is a position's C channels, a
    block copy), then one MatMul of g [O, N*P] by cols. Summing over the batch inside the
    GEMM matters for small feature maps: resnet18's last stage has P = 49, and a batched
    MatMul per sample then a sum over the batch wrote an [N, K*C, O] intermediate and ran
    twice as slow; strided Slices per tap and a Concat also copied the patches twice. The
    Conv below, with g as a kernel as large as the feature map and an output of K pixels,
    ran resnet18's weight gradients three times slower. The patches take K times the input's
    memory, so a layer whose patches pass `_PATCHES_PER_SAMPLE` elements a sample (a 3x3 conv
    of 64 channels at 256x256: 38M), or whose size is symbolic, takes the Conv. So does an
    input of fewer than `_GATHER_MIN_CHANNELS` channels, whose gathered rows are too short
    to copy well (resnet18's stem, 3 channels: 44 ms with the Gather, 39 with the Conv)."""
    out = g.shape[2:]
    if groups == 1 and x.shape[1] >= _GATHER_MIN_CHANNELS and all(isinstance(d, int) for d in x.shape[2:]):
        if x.shape[1] * math.prod(kernel) * math.prod(out) <= _PATCHES_PER_SAMPLE:
            return _conv_weight_grad_gathered(b, x, g, kernel=kernel, stride=stride, padding=padding, dilation=dilation)
    return _conv_weight_grad_conv(
        b, x, g, kernel=kernel, stride=stride, padding=padding, dilation=dilation, groups=groups
    )


_PATCHES_PER_SAMPLE = 4_000_000  # resnet18 at 224x224 needs 1.8M at most (stage 0: 64 channels x 9 taps x 56 x 56)
# Measured at 3 channels (the Conv is faster) and 64 (the Gather is); 16 floats fill a cache line.
_GATHER_MIN_CHANNELS = 16


def _conv_weight_grad_gathered(b, x, g, *, kernel, stride, padding, dilation):
    import numpy as np  # the ONNX backend's import; `netc check` does not pay for it

    n = len(kernel)
    channels, outputs, taps = x.shape[1], g.shape[1], math.prod(kernel)
    pads = _pads(kernel, padding, dilation)
    last = [0, *range(2, n + 2), 1]  # channels last: each gathered position is a row of C
    moved = b.Transpose(x, perm=last)
    if any(pads):
        moved = b.Pad(moved, b.ints([0, *pads[:n], 0, 0, *pads[n:], 0]))
    sizes = [length + pads[i] + pads[n + i] for i, length in enumerate(x.shape[2:])]
    strides = [math.prod(sizes[i + 1 :]) for i in range(n)]  # of the flattened padded positions
    starts = np.zeros((), np.int64)
    for o, s, m in zip(g.shape[2:], stride, strides):  # each output position's first tap
        starts = np.add.outer(starts, np.arange(o, dtype=np.int64) * s * m)
    offsets = np.zeros((), np.int64)
    for k, d, m in zip(kernel, dilation, strides):  # each tap's offset from it
        offsets = np.add.outer(offsets, np.arange(k, dtype=np.int64) * d * m)
    # [P, K], from two small constants (onnxruntime folds the sum when it loads the model)
    where = b.Add(b.const(starts.reshape(-1, 1), "int64"), b.const(offsets.reshape(1, -1), "int64"))
    flat = b.Reshape(moved, b.ints([0, -1, channels]))  # [N, positions, C]
    patches = b.Gather(flat, where, axis=1)  # [N, P, K, C]
    positions = math.prod(g.shape[2:])
    if positions >= taps * channels:
        # Per sample, then summed: the [N, O, K*C] products are no larger than g. One GEMM
        # with a reduction this long (resnet18's 56x56 layers: N*P = 25088 against an
        # output of 64 x 576) ran about 20% slower.
        per_sample = b.MatMul(
            b.Reshape(g, b.ints([0, outputs, -1])), b.Reshape(patches, b.ints([0, positions, taps * channels]))
        )
        total = b.reduce("ReduceSum", per_sample, [0], keepdims=False)
    else:
        cols = b.Reshape(patches, b.ints([-1, taps * channels]))  # [N*P, K*C]
        # [O, N*P] on the left: cols as a transposed left operand (Gemm's transA) ran 1.2-1.7x slower
        rows = b.Reshape(b.Transpose(g, perm=[1, 0, *range(2, n + 2)]), b.ints([outputs, -1]))
        total = b.MatMul(rows, cols)  # [O, K*C]
    shaped = b.Transpose(b.Reshape(total, b.ints([outputs, taps, channels])), perm=[0, 2, 1])
    return b.Reshape(shaped, b.ints([outputs, channels, *kernel]))


def _conv_weight_grad_conv(b, x, g, *, kernel, stride, padding, dilation, groups):
    """A Conv of x with g as its kernel, the batch as the channels (x [C, N, ...] against
    g [O, N, ...]), stride and dilation swapped, cut to the kernel size. With groups, x is
    laid out [C/G, G*N, ...] so that group i's rows of g read batch block i: one grouped
    Conv, no wasted products."""
    n = len(kernel)
    swap = [1, 0] + list(range(2, n + 2))
    if groups == 1:
        inputs = b.Transpose(x, perm=swap)
    else:
        per_group = x.shape[1] // groups
        spatial = b.Shape(x, start=2)
        split = b.Reshape(x, b.Concat(b.Shape(x, start=0, end=1), b.ints([groups, per_group]), spatial, axis=0))
        moved = b.Transpose(split, perm=[2, 1, 0] + list(range(3, n + 3)))  # [C/G, G, N, ...]
        inputs = b.Reshape(moved, b.Concat(b.ints([per_group, -1]), spatial, axis=0))
    full = b.Conv(
        inputs,
        b.Transpose(g, perm=swap),
        strides=list(dilation),
        dilations=list(stride),
        pads=_pads(kernel, padding, dilation),
        group=groups,
    )
    cut = b.Slice(full, b.ints([0] * n), b.ints(kernel), b.ints(range(2, n + 2)))
    return b.Transpose(cut, perm=swap)


# dW of a convolution y = conv(x, w): [out, in / groups, *kernel] from the input x and g.
CONV_WEIGHT_GRAD = _internal(
    "conv_weight_grad",
    (_t("x"), _t("g"), Arg("kernel", _any), *_CONV_ATTRS),
    _conv_weight_grad_infer,
    _conv_weight_grad_torch,
    _conv_weight_grad_onnx,
)


def _convolve_infer(inputs, attrs):
    x, w = inputs
    dims = []
    for i, length in enumerate(x.shape[2:]):
        k, s, d = w.shape[2 + i], attrs["stride"][i], attrs["dilation"][i]
        dims.append(length if attrs["padding"] == "same" else conv_length(length, k, s, attrs["padding"][i], d))
    return [TensorType((x.shape[0], w.shape[0], *dims), x.dtype)]


def _convolve_torch(t, x, w, *, stride, padding, dilation, groups):
    return t.call(
        f"F.conv{x.rank - 2}d",
        x,
        w,
        stride=t.opt(stride, 1),
        padding=t.opt(padding, 0),
        dilation=t.opt(dilation, 1),
        groups=t.opt(groups, 1),
    )


def _convolve_onnx(b, x, w, *, stride, padding, dilation, groups):
    kernel = w.shape[2:]
    pads = _pads(kernel, padding, dilation)
    return onnx_conv(
        b, x, w, channels=w.shape[0], kernel=kernel, strides=stride, pads=pads, dilations=dilation, group=groups
    )


# A convolution with a weight value (dx of conv_transpose2d: its adjoint, conv2d with W).
CONVOLVE = _internal("convolve", (_t("x"), _t("w"), *_CONV_ATTRS), _convolve_infer, _convolve_torch, _convolve_onnx)


_POOL_ATTRS = (Arg("kernel", _any), Arg("stride", _any), Arg("padding", _any))


def _maxpool2d_grad_torch(t, g, x, *, kernel, stride, padding, ceil_mode=False):
    """Each window's gradient goes to its argmax; overlapping windows sum (scatter_add)."""
    pooled = t.call(
        "F.max_pool2d",
        x,
        kernel,
        stride=stride,
        padding=t.opt(padding, 0),
        ceil_mode=t.opt(ceil_mode, False),
        return_indices=True,
    )
    indices, grads = t.code(f"{pooled}[1].flatten(2)"), t.code(f"{g}.flatten(2)")
    summed = t.call(f"torch.zeros_like({x}).flatten(2).scatter_add", 2, indices, grads)
    return t.call(f"{summed}.reshape_as", x)


def _maxpool2d_grad_onnx(b, g, x, *, kernel, stride, padding, ceil_mode=False):
    """MaxPool's indices count over the whole flattened NCHW input (padding not counted):
    ScatterElements(add) into a flat zero tensor, so overlapping windows sum."""
    pool = dict(kernel_shape=list(kernel), strides=list(stride), pads=list(padding) * 2)
    if ceil_mode:
        pool["ceil_mode"] = 1
    _, indices = b.op("MaxPool", x, outputs=2, **pool)
    if ceil_mode:  # ONNX keeps a last window that starts in the padding, PyTorch (and g) not
        indices = b.Slice(indices, b.ints([0, 0]), b.Shape(g, start=2), b.ints([2, 3]))
    flat = b.ints([-1])
    zeros = b.ConstantOfShape(b.Shape(b.Reshape(x, flat)), value=b.tensor([0], x.dtype))
    summed = b.ScatterElements(zeros, b.Reshape(indices, flat), b.Reshape(g, flat), axis=0, reduction="add")
    return b.Reshape(summed, b.Shape(x))


MAXPOOL2D_GRAD = _internal(
    "maxpool2d_grad",
    (_t("g"), _t("x"), *_POOL_ATTRS, Arg("ceil_mode", _any, False)),
    _like,
    _maxpool2d_grad_torch,
    _maxpool2d_grad_onnx,
)


def _avgpool2d_grad_torch(t, g, x, *, kernel, stride, padding, ceil_mode=False, count_include_pad=True):
    return t.call(
        "torch.ops.aten.avg_pool2d_backward",
        g,
        x,
        t.exact(tuple(kernel)),
        t.exact(tuple(stride)),
        t.exact(tuple(padding)),
        ceil_mode,
        count_include_pad,
        t.code("None"),  # divisor_override
    )


def _avg_divisors(length, out, k, s, p, count_include_pad) -> list[int]:
    """How many cells PyTorch's average divides by, per window along one axis: the window
    cut at the end of the padding, and at the input where padding is not counted."""
    counts = []
    for i in range(out):
        start, end = i * s - p, min(i * s - p + k, length + p)
        if count_include_pad:
            counts.append(end - start)
        else:
            counts.append(min(end, length) - max(start, 0))
    return counts


def _avgpool2d_grad_divided(b, g, x, *, kernel, stride, padding, count_include_pad):
    """ceil_mode or count_include_pad=false: each window's g over its own divisor (a
    constant [h, w] map: the sizes are known), then spread with a ConvTranspose of ones whose
    end pads cut what windows past the input would reach."""
    sizes, outs = x.shape[2:], g.shape[2:]
    rows, cols = (
        _avg_divisors(n, o, k, s, p, count_include_pad) for n, o, k, s, p in zip(sizes, outs, kernel, stride, padding)
    )
    divisors = b.const([[1.0 / (r * c) for c in cols] for r in rows], g.dtype)
    planes = b.Reshape(b.Mul(g, divisors), b.Concat(b.ints([-1, 1]), b.Shape(g, start=2), axis=0))
    ones = b.const([[[[1.0] * kernel[1]] * kernel[0]]], g.dtype)
    ends, extra = [], []
    for n, o, k, s, p in zip(sizes, outs, kernel, stride, padding):
        end = (o - 1) * s + k - p - n  # the transposed convolution's length less p at the start
        ends.append(max(end, 0))
        extra.append(max(-end, 0))
    spread = b.ConvTranspose(
        planes,
        ones,
        kernel_shape=list(kernel),
        strides=list(stride),
        pads=list(padding) + ends,
        **({"output_padding": extra} if any(extra) else {}),
    )
    return b.Reshape(spread, b.Shape(x))


def _avgpool2d_grad_onnx(b, g, x, *, kernel, stride, padding, ceil_mode=False, count_include_pad=True):
    """Every window spreads g / (kh kw) over its cells, padding counted: a ConvTranspose of
    each channel ([N*C, 1, h, w]) with a constant kernel, sized to x."""
    if ceil_mode or not count_include_pad:
        if not all(isinstance(n, int) for n in (*x.shape[2:], *g.shape[2:])):
            raise InternalError(
                "the ONNX gradient of avgpool2d with ceil_mode or count_include_pad=false needs known sizes"
            )
        return _avgpool2d_grad_divided(
            b, g, x, kernel=kernel, stride=stride, padding=padding, count_include_pad=count_include_pad
        )
    spatial = b.Shape(g, start=2)
    planes = b.Reshape(g, b.Concat(b.ints([-1, 1]), spatial, axis=0))
    area = kernel[0] * kernel[1]
    weight = b.const([[[[1.0 / area] * kernel[1]] * kernel[0]]], g.dtype)  # [1, 1, kh, kw]
    sizes = dict(out_sizes=g.shape[2:], kernel=kernel, stride=stride, pads=list(padding) * 2)
    spread = _transpose_conv_to(b, planes, weight, x, **sizes, dilation=(1, 1), groups=1)
    return b.Reshape(spread, b.Shape(x))


# dx of avgpool2d with count_include_pad (also adaptive_avgpool2d's on static sizes).
AVGPOOL2D_GRAD = _internal(
    "avgpool2d_grad",
    (_t("g"), _t("x"), *_POOL_ATTRS, Arg("ceil_mode", _any, False), Arg("count_include_pad", _any, True)),
    _like,
    _avgpool2d_grad_torch,
    _avgpool2d_grad_onnx,
)


def _nested_shape(value) -> tuple[int, ...]:
    shape = []
    while isinstance(value, tuple):
        shape.append(len(value))
        value = value[0] if value else None
    return tuple(shape)


def _constant_tensor_infer(inputs, attrs):
    (like,) = inputs
    return [TensorType(_nested_shape(attrs["value"]), like.dtype)]


# A constant known at compile time (bilinear upsample's interpolation matrices), as nested
# tuples; made with like's dtype and, in torch, on like's device.
CONSTANT_TENSOR = _internal(
    "constant_tensor",
    (_t("like"), Arg("value", _any)),
    _constant_tensor_infer,
    lambda t, like, *, value: t.call(
        "torch.tensor", t.literal(value), dtype=t.code(f"{like}.dtype"), device=t.code(f"{like}.device")
    ),
    lambda b, like, *, value: b.const(value, like.dtype),
)


def _embedding_grad_infer(inputs, attrs):
    g, ids = inputs
    return [TensorType((attrs["num"], g.shape[-1]), g.dtype)]


def _embedding_grad_torch(t, g, ids, *, num):
    dim = g.shape[-1]
    zeros = t.call("torch.zeros", num, dim, dtype=t.code(f"{g}.dtype"), device=t.code(f"{g}.device"))
    return t.call(f"{zeros}.index_add", 0, t.code(f"{ids}.flatten()"), t.call(f"{g}.reshape", -1, dim))


def _embedding_grad_onnx(b, g, ids, *, num):
    zeros = b.ConstantOfShape(b.ints([num, g.shape[-1]]), value=b.tensor([0], g.dtype))
    return b.ScatterND(zeros, b.Unsqueeze(ids, b.ints([-1])), g, reduction="add")


# dW of embedding: each row of g added to the row of W its id picked (repeated ids sum).
EMBEDDING_GRAD = _internal(
    "embedding_grad",
    (_t("g"), _t("ids"), Arg("num", int_arg(1))),
    _embedding_grad_infer,
    _embedding_grad_torch,
    _embedding_grad_onnx,
)
