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
    ArgError,
    NoGrad,
    OpDef,
    ShapeError,
    axes_arg,
    bool_arg,
    choice_arg,
    describe,
    dims_arg,
    float_arg,
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
    pairs = [(x, y) for t in inputs[1:] for i, (x, y) in enumerate(zip(first.shape, t.shape)) if i != axis]
    clash = D.conflict(pairs)
    if clash is not None:
        x, y = pairs[clash]
        raise ShapeError(
            f"concat along axis {axis} needs equal sizes on the other axes, and no size makes them all equal: "
            f"{', '.join(shape_text(t.shape) for t in inputs)} ({x} vs {y} cannot hold with the others)"
        )
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
        # a split into one part has one output, whose gradient comes alone, not in a tuple
        grad=lambda d, gs, ys, x, *, sizes, axis: d.apply("concat", *gs, axis=axis) if isinstance(gs, tuple) else gs,
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


def _shape_args(t, shape) -> str:
    """A shape as the arguments of `Tensor.reshape`/`expand`: `()` for a scalar, since
    `x.reshape()` is a TypeError."""
    return ", ".join(t.dim(d) for d in shape) if shape else "()"


RESHAPE = register(
    OpDef(
        "reshape",
        (Arg("x", None, tensor=True), Arg("shape", dims_arg)),
        _reshape_infer,
        "structure",
        torch=lambda t, x, *, shape: f"{x}.reshape({_shape_args(t, shape)})",
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


def pool_length(name, length, k, s, p, ceil_mode):
    """PyTorch's pooled length: floor((L + 2p - k) / s) + 1, or with ceil_mode the ceiling,
    less one where that last window would start in the end padding (PyTorch's rule)."""
    if not ceil_mode:
        return conv_length(length, k, s, p, 1)
    out = D.add(D.floordiv(D.add(length, 2 * p - k + s - 1), s), 1)
    if isinstance(length, int):
        return out - 1 if (out - 1) * s >= length + p else out
    if s > k - p:  # the last window may start in the padding, which depends on the size
        raise ShapeError(
            f"{name}: ceil_mode with stride {s} > kernel {k} - padding {p} needs a known input size, got {length}",
            arg="ceil_mode",
        )
    return out


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
            out = pool_length(name, length, k, s, p, attrs["ceil_mode"])
            dims.append(positive(name, out, ("output height", "output width")[i]))
        return [TensorType(x.shape[:2] + tuple(dims), x.dtype)]

    return infer


def _pool(name, doc, torch_function, onnx_op, grad, **onnx_attrs):
    args = (
        Arg("x", None, tensor=True),
        Arg("kernel", ints_arg(2, 1)),
        Arg("stride", _stride_or_kernel, None),
        Arg("padding", ints_arg(2, 0), 0),
        Arg("ceil_mode", bool_arg, False),
    )
    if onnx_op == "AveragePool":
        args += (Arg("count_include_pad", bool_arg, True),)

    def to_torch(t, x, *, kernel, stride, padding, ceil_mode, **counting):
        extra = {"ceil_mode": t.opt(ceil_mode, False)}
        if counting:
            extra["count_include_pad"] = t.opt(counting["count_include_pad"], True)
        return t.call(torch_function, x, kernel, stride=t.opt(stride, kernel), padding=t.opt(padding, 0), **extra)

    def to_onnx(b, x, *, kernel, stride, padding, ceil_mode, **counting):
        pads = list(padding) * 2
        extra = dict(onnx_attrs)
        if ceil_mode:
            extra["ceil_mode"] = 1
        if counting:
            extra["count_include_pad"] = int(counting["count_include_pad"])
        y = b.op(onnx_op, x, kernel_shape=list(kernel), strides=list(stride), pads=pads, **extra)
        if ceil_mode:  # ONNX keeps a last window that starts in the padding; PyTorch drops it
            sizes = b.node.outputs[0].shape[2:]
            onnx_sizes = [
                pool_length(name, n, k, s, p, True)
                if not isinstance(n, int)
                else D.floordiv(n + 2 * p - k + s - 1, s) + 1
                for n, k, s, p in zip(x.shape[2:], kernel, stride, padding)
            ]
            if list(sizes) != onnx_sizes:
                y = b.Slice(y, b.ints([0, 0]), b.ints(sizes), b.ints([2, 3]))
        return y

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

    def grad(d, g, y, x, *, kernel, stride, padding, **modes):
        return d.apply(internal, g, x, kernel=kernel, stride=stride, padding=padding, **modes)

    return grad


MAXPOOL2D = _pool(
    "maxpool2d", "max pooling; stride defaults to the kernel", "F.max_pool2d", "MaxPool", _pool_grad("maxpool2d_grad")
)
AVGPOOL2D = _pool(
    "avgpool2d",
    "average pooling, counting padding unless count_include_pad=false; stride defaults to the kernel",
    "F.avg_pool2d",
    "AveragePool",
    _pool_grad("avgpool2d_grad"),
)


def _adaptive_infer(inputs, attrs):
    (x,) = inputs
    require_float("adaptive_avgpool2d", x)
    require_rank("adaptive_avgpool2d", x, (4,), "N, C, H, W")
    return [TensorType(x.shape[:2] + tuple(attrs["size"]), x.dtype)]


def adaptive_bins(length: int, size: int) -> list[tuple[int, int]]:
    """PyTorch's bins: output i averages [floor(i L / size), ceil((i + 1) L / size))."""
    return [(i * length // size, -(-(i + 1) * length // size)) for i in range(size)]


def _adaptive_slices_onnx(b, x, size):
    """Each axis in turn (a rectangle's mean is the mean of its rows' means: every row has
    one length): a known length the output divides is an AveragePool; otherwise each bin is
    a Slice and a ReduceMean, its bounds computed at run time where the length is symbolic
    (PyTorch's bins for any length, not only multiples of the output size)."""
    for axis, (length, want) in enumerate(zip(x.shape[2:], size), start=2):
        if isinstance(length, int) and length % want == 0:
            kernel = [length // want if a == axis else 1 for a in (2, 3)]
            x = b.AveragePool(x, kernel_shape=kernel, strides=kernel)
            continue
        if want == 1:
            x = b.reduce("ReduceMean", x, (axis,), keepdims=True)
            continue
        if isinstance(length, int):
            bounds = [(b.ints([start]), b.ints([end])) for start, end in adaptive_bins(length, want)]
        else:
            n = b.dim(length)
            bounds = [
                (
                    b.Div(b.Mul(n, b.ints([i])), b.ints([want])),  # floor(i L / size)
                    b.Div(b.Add(b.Mul(n, b.ints([i + 1])), b.ints([want - 1])), b.ints([want])),  # ceil
                )
                for i in range(want)
            ]
        parts = [
            b.reduce("ReduceMean", b.Slice(x, start, end, b.ints([axis])), (axis,), keepdims=True)
            for start, end in bounds
        ]
        x = b.Concat(*parts, axis=axis)
    return x


def _adaptive_onnx(b, x, *, size):
    if size == (1, 1):
        return b.GlobalAveragePool(x)
    height, width = x.shape[2:]
    if isinstance(height, int) and isinstance(width, int) and not (height % size[0] or width % size[1]):
        kernel = [height // size[0], width // size[1]]
        return b.AveragePool(x, kernel_shape=kernel, strides=kernel)
    return _adaptive_slices_onnx(b, x, size)


def _adaptive_grad(d, g, y, x, *, size):
    """Size 1: every cell gets its channel's g / (H W). Else, on known sizes, the bins are
    the windows of avgpool2d with kernel = stride = size of the axis / output size."""
    if size == (1, 1):
        return d.apply("broadcast_like", g, x) * d.mean_factor(x, (2, 3))
    lengths = x.shape[2:]
    if all(isinstance(n, int) for n in lengths) and any(n % s for n, s in zip(lengths, size)):
        # y = A_h x A_w^T per channel, A the bins' averaging matrices: dx = A_h^T g A_w
        height, width = (_bin_matrix(n, s) for n, s in zip(lengths, size))
        columns = d.apply("constant_tensor", g, value=width)  # [w, W]
        rows = d.apply("constant_tensor", g, value=tuple(zip(*height)))  # [H, h]
        return rows @ (g @ columns)
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


def _bin_matrix(length: int, size: int) -> tuple:
    rows = []
    for start, end in adaptive_bins(length, size):
        rows.append(tuple(1.0 / (end - start) if start <= j < end else 0.0 for j in range(length)))
    return tuple(rows)


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

# ---------------------------------------------------------------- indexing

# `x[...]`: the elaborator normalizes the index to one entry per axis: an int (or dimension)
# picks one position and drops the axis; a (start, stop, step) triple slices it, None for an
# omitted part, as the spec wrote it (negative bounds count from the end). FULL_SLICE is `:`.
FULL_SLICE = (None, None, None)
INT64_MAX = 2**63 - 1


def is_slice(entry) -> bool:
    return isinstance(entry, tuple)


def _slice_bound(bound, length, default):
    """A slice bound as a position in 0..length, clamped as Python clamps it where that is
    provable; on a symbolic axis a bound is taken to lie within it."""
    if bound is None:
        return default
    if isinstance(bound, int) and bound < 0:
        bound = D.add(length, bound)
        low = D.at_most(bound)
        return 0 if low is not None and low < 0 else bound
    if D.compare(bound, length) in (0, 1):
        return length
    return bound


def resolve_index(index, shape) -> list:
    """Per axis: ("full",), ("int", position) or ("slice", start, length, step), positions
    counted from 0 (dimensions where the axis is symbolic). Raises ShapeError, naming the
    axis (`axis{k}`) whose entry is at fault."""
    out = []
    for axis, (entry, length) in enumerate(zip(index, shape)):
        where = f"axis{axis}"
        if not is_slice(entry):
            position = D.add(length, entry) if isinstance(entry, int) and entry < 0 else entry
            below, beyond = D.compare(position, 0), D.compare(position, length)
            if below == -1 or beyond in (0, 1):
                raise ShapeError(
                    f"index {short(entry)} is out of range for axis {axis} of size {length}"
                    + (f" (valid: {-length} to {length - 1})" if isinstance(length, int) else ""),
                    arg=where,
                )
            out.append(("int", position))
            continue
        if entry == FULL_SLICE:
            out.append(("full",))
            continue
        start, stop, step = entry
        step = step or 1
        if isinstance(length, int) and all(b is None or isinstance(b, int) for b in (start, stop)):
            first, last, _ = slice(start, stop, step).indices(length)
            size = len(range(first, last, step))
        else:
            first, last = _slice_bound(start, length, 0), _slice_bound(stop, length, length)
            size = D.floordiv(D.add(D.sub(last, first), step - 1), step) if step > 1 else D.sub(last, first)
        most = D.at_most(size)
        if most is not None and most < 1:
            raise ShapeError(f"the slice {_slice_text(entry)} of axis {axis} (size {length}) is empty", arg=where)
        out.append(("slice", first, size, step))
    return out


def _slice_text(entry, dim=short) -> str:
    start, stop, step = entry
    text = ("" if start is None else dim(start)) + ":" + ("" if stop is None else dim(stop))
    return text + (f":{dim(step)}" if step not in (None, 1) else "")


def _getitem_infer(inputs, attrs):
    (x,) = inputs
    index = attrs["index"]
    if len(index) != x.rank:
        raise ShapeError(f"an index of {len(index)} axes for a tensor of rank {x.rank}")
    shape = []
    for entry, length in zip(resolve_index(index, x.shape), x.shape):
        if entry[0] == "full":
            shape.append(length)
        elif entry[0] == "slice":
            shape.append(entry[2])
    return [TensorType(tuple(shape), x.dtype)]


def _index_text(t, index) -> str:
    """The index as Python writes it: trailing `:` dropped, `...` for two or more leading ones."""
    items = [_slice_text(e, t.dim) if is_slice(e) else t.dim(e) for e in index]
    while items and items[-1] == ":":
        items.pop()
    lead = next((i for i, item in enumerate(items) if item != ":"), len(items))
    if lead >= 2:
        items = ["..."] + items[lead:]
    return ", ".join(items) if items else "..."


def _getitem_onnx(b, x, *, index):
    starts, ends, axes, steps, dropped = [], [], [], [], []
    for axis, entry in enumerate(index):
        if is_slice(entry):
            if entry == FULL_SLICE:
                continue
            start, stop, step = entry
            starts.append(0 if start is None else start)
            ends.append(INT64_MAX if stop is None else stop)
            steps.append(step or 1)
        else:
            starts.append(entry)
            ends.append(INT64_MAX if isinstance(entry, int) and entry == -1 else D.add(entry, 1))
            steps.append(1)
            dropped.append(axis)
        axes.append(axis)
    if not axes:
        return b.Identity(x)
    y = b.Slice(x, b.shape(starts), b.shape(ends), b.ints(axes), b.ints(steps))
    return b.Squeeze(y, b.ints(dropped)) if dropped else y


GETITEM = register(
    OpDef(
        "getitem",
        (Arg("x", None, tensor=True), Arg("index", lambda value: value)),
        _getitem_infer,
        "operator",  # written `x[:, 0]`, not called by name
        doc="NumPy basic indexing: x[:, 0], x[..., 1:3], x[:, ::2]",
        torch=lambda t, x, *, index: f"{x}[{_index_text(t, index)}]",
        onnx=_getitem_onnx,
        grad=lambda d, g, y, x, *, index: d.apply("getitem_grad", g, x, index=index),
        grad_reads_output=False,
    )
)


def _getitem_grad_torch(t, g, like, *, index):
    """Scatters g into zeros of like's shape, one indexed axis at a time (outermost first):
    torch.select_scatter for an int, torch.slice_scatter for a slice."""
    steps = []  # (axis as counted after the earlier ints dropped theirs, entry)
    dropped = 0
    for axis, entry in enumerate(index):
        if entry != FULL_SLICE:
            steps.append((axis - dropped, entry))
            dropped += not is_slice(entry)

    def scatter(k, base):
        axis, entry = steps[k]
        sub = f"{base}[{_index_text(t, (FULL_SLICE,) * axis + (entry,))}]"
        if k < len(steps) - 1:
            inner = scatter(k + 1, sub)
        else:  # a scalar loss's seed is the literal 1.0, which the scatters do not take
            inner = g if g.atom is False or str(g).isidentifier() else f"torch.full_like({sub}, {g})"
        zeros = f"torch.zeros_like({base})"
        if not is_slice(entry):
            return f"torch.select_scatter({zeros}, {inner}, {axis}, {t.dim(entry)})"
        start, stop, step = (None if b is None else t.dim(b) for b in entry)
        return f"torch.slice_scatter({zeros}, {inner}, {axis}, {start}, {stop}, {step or 1})"

    return scatter(0, like) if steps else g


def _getitem_grad_onnx(b, g, like, *, index):
    """Scatters g into zeros, innermost indexed axis first: ScatterElements at the
    positions start + j * step, broadcast over the other axes."""
    shapes = [tuple(like.shape)]
    resolved = resolve_index(index, like.shape)
    axis_now = []
    for axis, entry in enumerate(resolved):  # the shape after each indexed axis
        if entry[0] == "full":
            continue
        shape = shapes[-1]
        at = axis - sum(1 for e in resolved[:axis] if e[0] == "int")
        axis_now.append((at, entry))
        shapes.append(shape[:at] + (() if entry[0] == "int" else (entry[2],)) + shape[at + 1 :])
    value = g
    for k in reversed(range(len(axis_now))):
        at, entry = axis_now[k]
        outer = shapes[k]
        if entry[0] == "int":
            value = b.Unsqueeze(value, b.ints([at]))
            first, size, step = entry[1], 1, 1
        else:
            _, first, size, step = entry
        scalar = b.ints([])
        positions = b.Range(
            b.Reshape(b.dim(first), scalar),
            b.Reshape(b.dim(D.add(first, D.mul(size, step))), scalar),
            b.Reshape(b.ints([step]), scalar),
        )
        broadcast_shape = [1] * len(outer)
        broadcast_shape[at] = -1
        positions = b.Expand(b.Reshape(positions, b.ints(broadcast_shape)), b.Shape(value))
        zeros = b.ConstantOfShape(b.shape(outer), value=b.tensor([0], g.dtype))
        value = b.ScatterElements(zeros, positions, value, axis=at)
    return value if axis_now else b.Identity(g)


def _getitem_grad_infer(inputs, attrs):
    g, like = inputs
    return [TensorType(like.shape, g.dtype)]


GETITEM_GRAD = register(
    OpDef(
        "getitem_grad",
        (Arg("g", None, tensor=True), Arg("like", None, tensor=True), Arg("index", lambda value: value)),
        _getitem_grad_infer,
        "structure",
        doc="the gradient of x[index]: g scattered into zeros shaped like x",
        torch=_getitem_grad_torch,
        onnx=_getitem_grad_onnx,
        grad=NoGrad("it appears only in backward graphs, which are not differentiated again"),
        hidden=True,
    )
)


# ---------------------------------------------------------------- language 1.1: constants, expand, roll, index_select

_DTYPE_NAMES = ("bool", "int64", "float32", "float64")


def _dtype(value):
    return choice_arg(*_DTYPE_NAMES)(value)


def _shape_arg(value):
    """A constant's shape: ints (at least 0) and dimensions; an int alone is a 1-tuple."""
    items = dims_arg(value)
    for item in items:
        if is_int(item) and item < 0:
            raise ArgError(f"needs sizes of at least 0, got {short(value)}")
    return items


def _constant_value(value, dtype):
    if dtype == "bool":
        return bool(value)
    return float(value) if dtype in ("float32", "float64") else int(value)


def _fill_infer(inputs, attrs):
    if attrs["dtype"] in ("int64", "bool") and not float(attrs["value"]).is_integer():
        raise ShapeError(f"full: the value {attrs['value']!r} does not fit the dtype {attrs['dtype']}", arg="value")
    if len(attrs["shape"]) > MAX_RANK:
        raise ShapeError(f"a tensor has at most {MAX_RANK} axes, got {len(attrs['shape'])}", arg="shape")
    return [TensorType(tuple(attrs["shape"]), attrs["dtype"])]


def _fill_torch(name):
    """`torch.ones(T, T, device=...)` in forward where a size is symbolic; else a buffer
    made once (persistent=False: it is no weight)."""

    def lower(t, *, shape, value, dtype):
        static = all(is_int(d) for d in shape)
        extra = {} if dtype == "float32" else {"dtype": t.code(f"torch.{dtype}")}
        sizes = [d if is_int(d) else t.code(t.dim(d)) for d in shape]
        if name != "full":
            return t.tensor(f"torch.{name}", *sizes, static=static, **extra)
        return t.tensor("torch.full", t.exact(tuple(sizes)), _constant_value(value, dtype), static=static, **extra)

    return lower


def _fill_onnx(b, *, shape, value, dtype):
    return b.ConstantOfShape(b.shape(shape), value=b.tensor([_constant_value(value, dtype)], dtype))


def _filled(name, value=None):
    args = (Arg("shape", _shape_arg),)
    if value is None:
        args += (Arg("value", float_arg()),)
    args += (Arg("dtype", _dtype, "float32"),)

    def normalize(attrs):
        return attrs if value is None else {**attrs, "value": value}

    return register(
        OpDef(
            name,
            args,
            _fill_infer,
            "structure",
            doc="a constant tensor (no parameter); sizes may be symbolic",
            normalize=normalize,
            torch=_fill_torch(name),
            onnx=_fill_onnx,
            grad=NoGrad("a constant has no inputs"),
        )
    )


ONES = _filled("ones", 1.0)
ZEROS = _filled("zeros", 0.0)
FULL = _filled("full")


def _arange_infer(inputs, attrs):
    n = attrs["n"]
    if not D.is_dim(n) or (is_int(n) and n < 0):
        raise ShapeError(f"arange needs a size of at least 0, got {short(n)}", arg="n")
    if attrs["dtype"] == "bool":
        raise ShapeError('arange makes numbers: dtype "int64", "float32" or "float64", not "bool"', arg="dtype")
    return [TensorType((n,), attrs["dtype"])]


def _arange_onnx(b, *, n, dtype):
    limit = b.scalar(n, "int64") if is_int(n) else b.Reshape(b.dim(n), b.ints([]))
    made = b.Range(b.scalar(0, "int64"), limit, b.scalar(1, "int64"))
    return made if dtype == "int64" else b.Cast(made, to=b.element_type(dtype))


ARANGE = register(
    OpDef(
        "arange",
        (Arg("n", lambda v: v), Arg("dtype", _dtype, "int64")),
        _arange_infer,
        "structure",
        doc="0, 1, ..., n - 1; n may be symbolic",
        torch=lambda t, *, n, dtype: t.tensor(
            "torch.arange",
            n if is_int(n) else t.code(t.dim(n)),
            static=is_int(n),
            **({} if dtype == "int64" else {"dtype": t.code(f"torch.{dtype}")}),
        ),
        onnx=_arange_onnx,
        grad=NoGrad("a constant has no inputs"),
    )
)


def _expand_infer(inputs, attrs):
    (x,) = inputs
    target = attrs["shape"]
    if len(target) < x.rank:
        raise ShapeError(f"expand to {short(target)} has fewer axes than the input {shape_text(x.shape)}", arg="shape")
    if len(target) > MAX_RANK:
        raise ShapeError(f"expand to {len(target)} axes: a tensor has at most {MAX_RANK}", arg="shape")
    lead = len(target) - x.rank
    shape = []
    for i, want in enumerate(target):
        have = x.shape[i - lead] if i >= lead else None
        if is_int(want) and want == -1:
            if have is None:
                raise ShapeError(f"expand: -1 keeps an axis, but axis {i} is new", arg="shape")
            shape.append(have)
        elif is_int(want) and want < 0:
            raise ShapeError(f"expand needs sizes of at least 0 or -1, got {want}", arg="shape")
        elif have is None or (is_int(have) and have == 1) or D.equal(have, want):
            shape.append(want)
        elif D.provably_unequal(have, want):
            raise ShapeError(
                f"cannot expand {shape_text(x.shape)} to {short(target)}: axis {i} has size {have}, "
                f"and only an axis of size 1 expands",
                arg="shape",
            )
        else:
            shape.append(want)
    return [TensorType(tuple(shape), x.dtype)]


EXPAND = register(
    OpDef(
        "expand",
        (Arg("x", None, tensor=True), Arg("shape", dims_arg)),
        _expand_infer,
        "structure",
        doc="broadcast x to shape (-1 keeps an axis), as Tensor.expand",
        torch=lambda t, x, *, shape: f"{x}.expand({_shape_args(t, shape)})",
        # ONNX's Expand broadcasts: a 1 keeps the input's size, as -1 does in torch
        onnx=lambda b, x, *, shape: b.Expand(x, b.shape([1 if is_int(d) and d == -1 else d for d in shape])),
        # the engine sums g over the expanded axes (sum_to); the result is a view whose
        # elements alias, so it keeps grad_reads_output: nothing writes into it in place
        grad=lambda d, g, y, x, *, shape: g,
    )
)


def _ints(value):
    items = value if isinstance(value, tuple) else (value,)
    if not items or not all(is_int(v) for v in items):
        raise ArgError(f"needs an int or a tuple of ints, got {describe(value)}")
    return tuple(items)


def _roll_infer(inputs, attrs):
    (x,) = inputs
    shifts, axes = attrs["shifts"], attrs["axes"]
    if len(shifts) != len(axes):
        raise ShapeError(f"roll needs one shift per axis, got {len(shifts)} shifts and {len(axes)} axes", arg="shifts")
    seen = [normalize_axis(a, x.rank, arg="axes") for a in axes]
    if len(set(seen)) != len(seen):
        raise ShapeError(f"roll: an axis is listed twice in {short(axes)}", arg="axes")
    return [x]


def _roll_onnx(b, x, *, shifts, axes):
    """A roll by s along an axis is its last s entries, then the rest: two Slices and a Concat."""
    shape = x.shape
    for shift, axis in zip(shifts, axes):
        axis %= len(shape)
        length = shape[axis]
        if is_int(length):
            shift %= length if length else 1
        if shift == 0:
            continue
        tail = b.Slice(x, b.ints([-shift]), b.ints([2**63 - 1]), b.ints([axis]))
        head = b.Slice(x, b.ints([0]), b.ints([-shift]), b.ints([axis]))
        x = b.Concat(tail, head, axis=axis)
    return x


ROLL = register(
    OpDef(
        "roll",
        (Arg("x", None, tensor=True), Arg("shifts", _ints), Arg("axes", _ints)),
        _roll_infer,
        "structure",
        doc="as torch.roll: each axis shifted, the entries moved past its end coming back at its start",
        torch=lambda t, x, *, shifts, axes: t.call(
            "torch.roll",
            x,
            t.exact(shifts) if len(shifts) > 1 else shifts[0],
            t.exact(axes) if len(axes) > 1 else axes[0],
        ),
        onnx=_roll_onnx,
        grad=lambda d, g, y, x, *, shifts, axes: d.apply("roll", g, shifts=tuple(-s for s in shifts), axes=axes),
        grad_reads_output=False,
    )
)


def _index_select_infer(inputs, attrs):
    x, ids = inputs
    if ids.dtype != "int64":
        raise ShapeError(f"index_select expects int64 ids, got {ids.dtype}")
    if ids.rank != 1:
        raise ShapeError(f"index_select expects 1-d ids, got shape {shape_text(ids.shape)}")
    if x.rank == 0:
        raise ShapeError("index_select cannot select from a scalar")
    axis = normalize_axis(attrs["axis"], x.rank)
    return [TensorType(x.shape[:axis] + ids.shape + x.shape[axis + 1 :], x.dtype)]


INDEX_SELECT = register(
    OpDef(
        "index_select",
        (Arg("x", None, tensor=True), Arg("ids", None, tensor=True), Arg("axis", int_arg(), 0)),
        _index_select_infer,
        "structure",
        doc="the entries of x at the int64 1-d ids along axis",
        torch=lambda t, x, ids, *, axis: t.call("torch.index_select", x, axis, ids),
        onnx=lambda b, x, ids, *, axis: b.Gather(x, ids, axis=axis),
        # each selected slice's gradient added back where it came from (repeated ids sum)
        grad=lambda d, g, y, x, ids, *, axis: (d.apply("index_add", g, ids, x, axis=axis % x.rank), None),
        grad_reads_output=False,
    )
)


def _index_add_onnx(b, g, ids, like, *, axis):
    zeros = b.ConstantOfShape(b.Shape(like), value=b.tensor([0], g.dtype))
    where = b.Reshape(ids, b.ints([-1 if a == axis else 1 for a in range(g.rank)]))
    return b.ScatterElements(zeros, b.Expand(where, b.Shape(g)), g, axis=axis, reduction="add")


# index_select's gradient: zeros like `like`, g's slices added at ids along axis.
INDEX_ADD = register(
    OpDef(
        "index_add",
        (Arg("g", None, tensor=True), Arg("ids", None, tensor=True), Arg("like", None, tensor=True), Arg("axis", None)),
        lambda inputs, attrs: [TensorType(inputs[2].shape, inputs[0].dtype)],
        "structure",
        torch=lambda t, g, ids, like, *, axis: t.call(f"torch.zeros_like({like}).index_add", axis, ids, g),
        onnx=_index_add_onnx,
        grad=NoGrad("it appears only in backward graphs, which are not differentiated again"),
        hidden=True,
    )
)
