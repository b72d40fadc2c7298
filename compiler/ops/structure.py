"""Structure ops (concat, split, reshape, pooling, ...) and losses."""

from __future__ import annotations

from netc.dsl.diagnostics import NetcError

from .. import dims as D
from ..dims import shape_text
from ..ir import TensorType
from ..limits import MAX_RANK
from .layers import conv_length
from .registry import (
    Arg,
    OpDef,
    ShapeError,
    axes_arg,
    bool_arg,
    choice_arg,
    dims_arg,
    int_arg,
    ints_arg,
    is_int,
    normalize_axis,
    positive,
    register,
    require_float,
    require_rank,
    same_dtype,
    short,
    sizes_arg,
)

# ---------------------------------------------------------------- joining and splitting


def _concat_infer(inputs, attrs):
    first = inputs[0]
    axis = normalize_axis(attrs["axis"], first.rank) if first.rank else None
    if axis is None:
        raise ShapeError("concat cannot join scalars")
    total = 0
    for t in inputs:
        same_dtype("concat", first, t)
        if t.rank != first.rank:
            raise ShapeError(
                f"concat needs tensors of one rank, got {shape_text(first.shape)} and {shape_text(t.shape)}"
            )
        for i, (x, y) in enumerate(zip(first.shape, t.shape)):
            if i != axis and D.provably_unequal(x, y):
                raise ShapeError(
                    f"concat along axis {axis} needs equal sizes on the other axes; "
                    f"{shape_text(first.shape)} and {shape_text(t.shape)} differ on axis {i} ({x} vs {y})"
                )
        total = D.add(total, t.shape[axis])
    return [TensorType(first.shape[:axis] + (total,) + first.shape[axis + 1 :], first.dtype)]


def _concat_grad(d, g, y, *xs, axis):
    sizes = tuple(x.shape[axis] for x in xs)
    if not all(isinstance(s, int) for s in sizes):
        raise NetcError("the gradient of concat along an axis of symbolic size is not supported", d.node.span)
    parts = d.apply("split", g, sizes=sizes, axis=axis)
    return parts if isinstance(parts, tuple) else (parts,)


CONCAT = register(
    OpDef(
        "concat",
        (Arg("tensors", None, tensor=True, variadic=True), Arg("axis", int_arg(), 1)),
        _concat_infer,
        "structure",
        doc="join along axis (a dense skip connection)",
        torch=lambda t, *xs, axis: f"torch.cat([{', '.join(xs)}], dim={axis})",
        grad=_concat_grad,
        onnx=lambda b, *xs, axis: b.Concat(*xs, axis=axis),
        grad_reads_output=False,
    )
)


def split_sizes(shape, attrs) -> tuple:
    axis = normalize_axis(attrs["axis"], len(shape))
    length, sizes = shape[axis], attrs["sizes"]
    if is_int(sizes):
        if not isinstance(length, int):
            raise ShapeError(f"split into parts of {sizes} needs a known size on axis {axis}, got {length}")
        if length % sizes:
            raise ShapeError(f"split: parts of {sizes} do not divide axis {axis} of size {length}", arg="sizes")
        return (sizes,) * (length // sizes)
    if D.provably_unequal(sum(sizes), length):  # N + 1 is never 1: sizes are at least 1
        raise ShapeError(
            f"split: the parts {shape_text(sizes)[1:-1]} add up to {sum(sizes)}, but axis {axis} has size {length}",
            arg="sizes",
        )
    return sizes


def split_count(inputs, attrs) -> int | None:
    """How many results split makes, without making them (the elaborator counts them
    against the node cap first); None where its shape rule will refuse the call."""
    (x,) = inputs
    if x.rank == 0 or not -x.rank <= attrs["axis"] < x.rank:
        return None
    length, sizes = x.shape[attrs["axis"]], attrs["sizes"]
    if is_int(sizes):
        return length // sizes if isinstance(length, int) else None
    return len(sizes)


def _split_infer(inputs, attrs):
    (x,) = inputs
    if x.rank == 0:
        raise ShapeError("split cannot split a scalar")
    axis = normalize_axis(attrs["axis"], x.rank)
    return [TensorType(x.shape[:axis] + (size,) + x.shape[axis + 1 :], x.dtype) for size in split_sizes(x.shape, attrs)]


SPLIT = register(
    OpDef(
        "split",
        (Arg("x", None, tensor=True), Arg("sizes", sizes_arg), Arg("axis", int_arg(), 1)),
        _split_infer,
        "structure",
        n_outputs=None,
        torch=lambda t, x, *, sizes, axis: t.call("torch.split", x, t.exact(sizes), dim=axis),
        grad=lambda d, gs, ys, x, *, sizes, axis: d.apply("concat", *gs, axis=axis) if len(gs) > 1 else gs[0],
        onnx=lambda b, x, *, sizes, axis: b.op(
            "Split", x, b.ints([t.shape[axis] for t in b.node.outputs]), axis=axis, outputs=len(b.node.outputs)
        ),
    )
)

# ---------------------------------------------------------------- reshaping


def _flatten_infer(inputs, attrs):
    (x,) = inputs
    if x.rank == 0:  # as torch.flatten: a scalar is a 1-d tensor of one element for start 0 or -1
        if attrs["start"] not in (0, -1):
            raise ShapeError(
                f"flatten: start {attrs['start']} is out of range for a scalar (only 0 or -1 flattens one)",
                arg="start",
            )
        return [TensorType((1,), x.dtype)]
    start = normalize_axis(attrs["start"], x.rank, arg="start")
    return [TensorType(x.shape[:start] + (D.product(x.shape[start:]),), x.dtype)]


def _reshape_grad(d, g, y, x, **attrs):
    return d.apply("reshape_like", g, x)


def _flatten_onnx(b, x, *, start):
    if x.rank == 0:
        return b.Reshape(x, b.ints([1]))
    start %= x.rank
    if start == 1:
        return b.Flatten(x, axis=1)
    return b.Reshape(x, b.ints([0] * start + [-1]))  # 0 keeps an axis; ONNX Flatten always makes 2-d


FLATTEN = register(
    OpDef(
        "flatten",
        (Arg("x", None, tensor=True), Arg("start", int_arg(), 1)),
        _flatten_infer,
        "structure",
        torch=lambda t, x, *, start: t.call("torch.flatten", x, start),
        onnx=_flatten_onnx,
        grad=_reshape_grad,
    )
)


def _cancel(numerator: list, denominator: list):
    """Removes provably equal factors from both sides; returns what remains."""
    numerator, denominator = list(numerator), list(denominator)
    for d in list(denominator):
        if isinstance(d, int):
            continue
        for i, n in enumerate(numerator):
            if D.equal(n, d):
                del numerator[i]
                denominator.remove(d)
                break
    return numerator, denominator


def _reshape_infer(inputs, attrs):
    (x,) = inputs
    target = attrs["shape"]
    holes = [i for i, d in enumerate(target) if d == -1]
    if len(holes) > 1:
        raise ShapeError("reshape allows one -1 in the shape", arg="shape")
    if len(target) > MAX_RANK:
        raise ShapeError(f"reshape to {len(target)} axes: a tensor has at most {MAX_RANK}", arg="shape")
    for d in target:
        most = D.at_most(d)
        if d != -1 and most is not None and most < 1:  # 0, -3, -N: never a size
            raise ShapeError(f"reshape needs positive sizes, got {d}", arg="shape")
    known = [d for d in target if d != -1]
    numerator, denominator = _cancel(x.shape, known)
    num, den = D.product(numerator), D.product(denominator)
    fits = f"cannot reshape {shape_text(x.shape)} to {shape_text(target)}"
    if holes:
        if isinstance(num, int) and isinstance(den, int) and num % den:
            raise ShapeError(f"{fits}: {den} does not divide the {num} remaining elements", arg="shape")
        inferred = D.floordiv(num, den)
        shape = tuple(inferred if d == -1 else d for d in target)
    else:
        if D.provably_unequal(num, den):
            raise ShapeError(f"{fits}: the element counts differ", arg="shape")
        shape = target
    return [TensorType(shape, x.dtype)]


RESHAPE = register(
    OpDef(
        "reshape",
        (Arg("x", None, tensor=True), Arg("shape", dims_arg)),
        _reshape_infer,
        "structure",
        # x.reshape(()) for a scalar: x.reshape() is a TypeError
        torch=lambda t, x, *, shape: f"{x}.reshape({', '.join(t.dim(d) for d in shape) if shape else '()'})",
        onnx=lambda b, x, *, shape: b.Reshape(x, b.shape(shape)),
        grad=_reshape_grad,
    )
)


def _permute_infer(inputs, attrs):
    (x,) = inputs
    order = attrs["dims"]
    if len(order) != x.rank or sorted(a % x.rank for a in order if -x.rank <= a < x.rank) != list(range(x.rank)):
        raise ShapeError(
            f"permute needs an order of the {x.rank} axes of {shape_text(x.shape)}, got {order}",
            arg="dims",
        )
    return [TensorType(tuple(x.shape[a] for a in order), x.dtype)]


def _inverse(order, rank) -> tuple[int, ...]:
    inverse = [0] * rank
    for i, a in enumerate(order):
        inverse[a % rank] = i
    return tuple(inverse)


PERMUTE = register(
    OpDef(
        "permute",
        (Arg("x", None, tensor=True), Arg("dims", axes_arg)),
        _permute_infer,
        "structure",
        torch=lambda t, x, *, dims: f"{x}.permute({', '.join(map(str, dims))})",
        onnx=lambda b, x, *, dims: b.Transpose(x, perm=[a % x.rank for a in dims]),
        grad=lambda d, g, y, x, *, dims: d.apply("permute", g, dims=_inverse(dims, x.rank)),
    )
)

# ---------------------------------------------------------------- pooling and resizing


def _stride_or_kernel(value):
    return None if value is None else ints_arg(2, 1)(value)


def _pool_infer(name):
    def infer(inputs, attrs):
        (x,) = inputs
        require_float(name, x)
        require_rank(name, x, (4,), "N, C, H, W")
        stride = attrs["stride"]
        dims = []
        for i, length in enumerate(x.shape[2:]):
            k, s, p = attrs["kernel"][i], stride[i], attrs["padding"][i]
            if p > k // 2:
                raise ShapeError(f"{name}: padding {p} is more than half the kernel {k}", arg="padding")
            dims.append(positive(name, conv_length(length, k, s, p, 1), ("output height", "output width")[i]))
        return [TensorType(x.shape[:2] + tuple(dims), x.dtype)]

    return infer


def _pool(name, doc, torch_function, onnx_op, grad, **onnx_attrs):
    args = (
        Arg("x", None, tensor=True),
        Arg("kernel", ints_arg(2, 1)),
        Arg("stride", _stride_or_kernel, None),
        Arg("padding", ints_arg(2, 0), 0),
    )

    def to_torch(t, x, *, kernel, stride, padding):
        return t.call(torch_function, x, kernel, stride=t.opt(stride, kernel), padding=t.opt(padding, 0))

    def to_onnx(b, x, *, kernel, stride, padding):
        pads = list(padding) * 2
        return b.op(onnx_op, x, kernel_shape=list(kernel), strides=list(stride), pads=pads, **onnx_attrs)

    return register(
        OpDef(
            name,
            args,
            _pool_infer(name),
            "structure",
            doc=doc,
            normalize=lambda attrs: {**attrs, "stride": attrs["stride"] or attrs["kernel"]},
            torch=to_torch,
            onnx=to_onnx,
            grad=grad,
        )
    )


def _pool_grad(internal):
    """dx of a pool: each window's gradient to its argmax (max) or spread evenly over its
    cells, padding counted (avg); overlapping windows sum."""

    def grad(d, g, y, x, *, kernel, stride, padding):
        return d.apply(internal, g, x, kernel=kernel, stride=stride, padding=padding)

    return grad


MAXPOOL2D = _pool(
    "maxpool2d", "max pooling; stride defaults to the kernel", "F.max_pool2d", "MaxPool", _pool_grad("maxpool2d_grad")
)
AVGPOOL2D = _pool(
    "avgpool2d",
    "average pooling, counting padding; stride defaults to the kernel",
    "F.avg_pool2d",
    "AveragePool",
    _pool_grad("avgpool2d_grad"),
    count_include_pad=1,
)


def _adaptive_infer(inputs, attrs):
    (x,) = inputs
    require_float("adaptive_avgpool2d", x)
    require_rank("adaptive_avgpool2d", x, (4,), "N, C, H, W")
    size = attrs["size"]
    for axis, (length, want) in enumerate(zip(x.shape[2:], size)):
        if want != 1 and isinstance(length, int) and length % want:
            what = ("height", "width")[axis]
            raise ShapeError(
                f"adaptive_avgpool2d: the output size {want} must be 1 or divide the input {what} {length}",
                arg="size",
            )
    return [TensorType(x.shape[:2] + tuple(size), x.dtype)]


def _adaptive_onnx(b, x, *, size):
    if size == (1, 1):
        return b.GlobalAveragePool(x)
    height, width = x.shape[2:]
    if isinstance(height, int) and isinstance(width, int):  # each size divides its axis
        kernel = [height // size[0], width // size[1]]
        return b.AveragePool(x, kernel_shape=kernel, strides=kernel)
    # [N, C, sh, H // sh, sw, W // sw], averaged over the two inner axes
    split = (0, 0, size[0], D.floordiv(height, size[0]), size[1], D.floordiv(width, size[1]))
    return b.reduce("ReduceMean", b.Reshape(x, b.shape(split)), (3, 5), keepdims=False)


def _adaptive_grad(d, g, y, x, *, size):
    """Size 1: every cell gets its channel's g / (H W). Else, on known sizes, the bins are
    the windows of avgpool2d with kernel = stride = size of the axis / output size."""
    if size == (1, 1):
        return d.apply("broadcast_like", g, x) * d.mean_factor(x, (2, 3))
    lengths = x.shape[2:]
    if not all(isinstance(n, int) and n % s == 0 for n, s in zip(lengths, size)):
        raise NetcError(
            f"cannot derive the gradient of adaptive_avgpool2d to size {short(size)} on an input of "
            f"size {shape_text(lengths)}: its bins are known only where the output size is 1 or "
            "divides a known input size",
            d.node.span,
            code="grad",
        )
    kernel = tuple(n // s for n, s in zip(lengths, size))
    return d.apply("avgpool2d_grad", g, x, kernel=kernel, stride=kernel, padding=(0, 0))


ADAPTIVE_AVGPOOL2D = register(
    OpDef(
        "adaptive_avgpool2d",
        (Arg("x", None, tensor=True), Arg("size", ints_arg(2, 1))),
        _adaptive_infer,
        "structure",
        torch=lambda t, x, *, size: t.call("F.adaptive_avg_pool2d", x, size),
        onnx=_adaptive_onnx,
        grad=_adaptive_grad,
    )
)


def _upsample_infer(inputs, attrs):
    (x,) = inputs
    require_float("upsample", x)
    require_rank("upsample", x, (4,), "N, C, H, W")
    scale = attrs["scale"]
    return [TensorType(x.shape[:2] + tuple(D.mul(d, scale) for d in x.shape[2:]), x.dtype)]


def _upsample_torch(t, x, *, scale, mode):
    if mode == "bilinear":
        return t.call("F.interpolate", x, scale_factor=scale, mode=mode, align_corners=False)
    return t.call("F.interpolate", x, scale_factor=scale, mode=mode)


def _upsample_onnx(b, x, *, scale, mode):
    scales = b.const([1.0, 1.0, float(scale), float(scale)], "float32")
    if mode == "bilinear":  # align_corners=False: half-pixel centres, clamped as PyTorch does
        return b.Resize(x, None, scales, mode="linear", coordinate_transformation_mode="pytorch_half_pixel")
    # PyTorch's nearest takes floor(out_index / scale)
    return b.Resize(x, None, scales, mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor")


def bilinear_weights(length: int, scale: int) -> tuple[tuple[float, ...], ...]:
    """A [length * scale, length] matrix: row i holds the weights PyTorch's bilinear
    upsampling (align_corners=False) gives the inputs of output i. Its source coordinate
    (i + 0.5) / scale - 0.5 is clamped at 0, and the upper neighbour at the last input."""
    rows = []
    for i in range(length * scale):
        source = max((i + 0.5) / scale - 0.5, 0.0)
        low = min(int(source), length - 1)
        high = min(low + 1, length - 1)
        fraction = source - low
        row = [0.0] * length
        row[low] += 1.0 - fraction
        row[high] += fraction
        rows.append(tuple(row))
    return tuple(rows)


def _upsample_grad(d, g, y, x, *, scale, mode):
    """Nearest: each input cell feeds a scale x scale block, so dx sums the block. Bilinear
    is y = A_h x A_w^T per channel, with constant matrices: dx = A_h^T g A_w."""
    if mode == "nearest":
        return d.apply("avgpool2d", g, kernel=scale) * float(scale * scale)
    height, width = x.shape[2:]
    if not (isinstance(height, int) and isinstance(width, int)):
        raise NetcError(
            f"cannot derive the gradient of bilinear upsample on an input of size {shape_text((height, width))}: "
            "its interpolation weights are built at compile time, which needs known height and width",
            d.node.span,
            code="grad",
        )
    columns = d.apply("constant_tensor", g, value=bilinear_weights(width, scale))  # [W s, W]
    transposed = d.apply("constant_tensor", g, value=tuple(zip(*bilinear_weights(height, scale))))  # [H, H s]
    return transposed @ (g @ columns)


UPSAMPLE = register(
    OpDef(
        "upsample",
        (
            Arg("x", None, tensor=True),
            Arg("scale", int_arg(1), 2),
            Arg("mode", choice_arg("nearest", "bilinear"), "nearest"),
        ),
        _upsample_infer,
        "structure",
        doc="align_corners false",
        torch=_upsample_torch,
        onnx=_upsample_onnx,
        grad=_upsample_grad,
    )
)

# ---------------------------------------------------------------- softmax and reductions


def _softmax_infer(name):
    def infer(inputs, attrs):
        (x,) = inputs
        require_float(name, x)
        if x.rank == 0:
            raise ShapeError(f"{name} needs a tensor with at least one axis")
        normalize_axis(attrs["axis"], x.rank)
        return [x]

    return infer


SOFTMAX = register(
    OpDef(
        "softmax",
        (Arg("x", None, tensor=True), Arg("axis", int_arg(), -1)),
        _softmax_infer("softmax"),
        "structure",
        torch=lambda t, x, *, axis: t.call("F.softmax", x, dim=axis),
        onnx=lambda b, x, *, axis: b.Softmax(x, axis=axis),
        # dx = y (g - sum(g y)) along the axis
        grad=lambda d, g, y, x, *, axis: y * (g - d.apply("sum", g * y, axes=(axis,), keepdim=True)),
    )
)
LOG_SOFTMAX = register(
    OpDef(
        "log_softmax",
        (Arg("x", None, tensor=True), Arg("axis", int_arg(), -1)),
        _softmax_infer("log_softmax"),
        "structure",
        torch=lambda t, x, *, axis: t.call("F.log_softmax", x, dim=axis),
        onnx=lambda b, x, *, axis: b.LogSoftmax(x, axis=axis),
        # dx = g - softmax(x) sum(g) along the axis
        grad=lambda d, g, y, x, *, axis: g - d.apply("exp", y) * d.apply("sum", g, axes=(axis,), keepdim=True),
    )
)


def _reduce_infer(name, floats_only):
    def infer(inputs, attrs):
        (x,) = inputs
        if floats_only:
            require_float(name, x)
        axes = sorted({normalize_axis(a, x.rank, arg="axes") for a in attrs["axes"]})
        if len(axes) != len(attrs["axes"]):
            raise ShapeError(f"{name}: an axis is listed twice in {shape_text(attrs['axes'])}", arg="axes")
        if attrs["keepdim"]:
            shape = tuple(1 if i in axes else d for i, d in enumerate(x.shape))
        else:
            shape = tuple(d for i, d in enumerate(x.shape) if i not in axes)
        return [TensorType(shape, x.dtype)]

    return infer


def _reduction_grad(mean):
    def grad(d, g, y, x, *, axes, keepdim):
        if not keepdim:  # put the reduced axes back, size 1, to broadcast
            reduced = {a % x.rank for a in axes}
            g = d.apply("reshape", g, shape=tuple(1 if i in reduced else n for i, n in enumerate(x.shape)))
        spread = d.apply("broadcast_like", g, x)
        return spread * d.mean_factor(x, axes) if mean else spread

    return grad


def _reduction(name, floats_only, onnx_op):
    args = (Arg("x", None, tensor=True), Arg("axes", axes_arg), Arg("keepdim", bool_arg, False))
    return register(
        OpDef(
            name,
            args,
            _reduce_infer(name, floats_only),
            "structure",
            torch=lambda t, x, *, axes, keepdim: t.call(f"{x}.{name}", dim=axes, keepdim=t.opt(keepdim, False)),
            onnx=lambda b, x, *, axes, keepdim: b.reduce(onnx_op, x, axes, keepdims=keepdim),
            grad=_reduction_grad(name == "mean"),
        )
    )


MEAN = _reduction("mean", True, "ReduceMean")
SUM = _reduction("sum", False, "ReduceSum")

# ---------------------------------------------------------------- losses


def _mse_infer(inputs, attrs):
    pred, target = inputs
    require_float("mse_loss", pred, "prediction")
    same_dtype("mse_loss", pred, target)
    if pred.rank != target.rank or any(D.provably_unequal(a, b) for a, b in zip(pred.shape, target.shape)):
        raise ShapeError(
            f"mse_loss needs prediction and target of one shape, got {shape_text(pred.shape)} and {shape_text(target.shape)}"
        )
    return [TensorType((), pred.dtype)]


def _mse_grad(d, g, y, pred, target):
    """d pred = 2 (pred - target) / n, d target its negative."""
    step = (pred - target) * (g * (2.0 * d.mean_factor(pred, tuple(range(pred.rank)))))
    return step, -step


def _cross_entropy_grad(d, g, y, logits, labels):
    """d logits = (softmax(logits) - onehot(labels)) / N."""
    if not isinstance(logits.shape[1], int):
        raise NetcError("the gradient of cross_entropy needs a known number of classes", d.node.span, code="grad")
    onehot = d.apply("onehot", labels, classes=logits.shape[1], dtype=logits.dtype)
    return (d.apply("softmax", logits, axis=1) - onehot) * (g * d.mean_factor(logits, (0,))), None


def _mse_onnx(b, pred, target):
    difference = b.Sub(pred, target)
    return b.reduce("ReduceMean", b.Mul(difference, difference), None, keepdims=False)


MSE_LOSS = register(
    OpDef(
        "mse_loss",
        (Arg("pred", None, tensor=True), Arg("target", None, tensor=True)),
        _mse_infer,
        "loss",
        doc="mean of squared differences",
        torch=lambda t, pred, target: t.call("F.mse_loss", pred, target),
        onnx=_mse_onnx,
        grad=_mse_grad,
    )
)


def _cross_entropy_infer(inputs, attrs):
    logits, labels = inputs
    require_float("cross_entropy", logits, "logits")
    if logits.rank != 2:
        raise ShapeError(f"cross_entropy expects logits [N, K], got {shape_text(logits.shape)}")
    if labels.dtype != "int64":
        raise ShapeError(f"cross_entropy expects int64 labels, got {labels.dtype}")
    if labels.rank != 1 or D.provably_unequal(labels.shape[0], logits.shape[0]):
        raise ShapeError(
            f"cross_entropy expects labels [N] for logits {shape_text(logits.shape)}, got {shape_text(labels.shape)}"
        )
    return [TensorType((), logits.dtype)]


CROSS_ENTROPY = register(
    OpDef(
        "cross_entropy",
        (Arg("logits", None, tensor=True), Arg("labels", None, tensor=True)),
        _cross_entropy_infer,
        "loss",
        doc="mean negative log-likelihood of int64 labels",
        torch=lambda t, logits, labels: t.call("F.cross_entropy", logits, labels),
        onnx=lambda b, logits, labels: b.SoftmaxCrossEntropyLoss(logits, labels, reduction="mean"),
        grad=_cross_entropy_grad,
    )
)
