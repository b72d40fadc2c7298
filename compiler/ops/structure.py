"""Structure ops (concat, split, reshape, pooling, ...) and losses."""

from __future__ import annotations

from .. import dims as D
from ..dims import shape_text
from ..ir import TensorType
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
    keywords,
    normalize_axis,
    positive,
    py,
    py_size,
    register,
    require_float,
    require_rank,
    same_dtype,
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


CONCAT = register(
    OpDef(
        "concat",
        (Arg("tensors", None, tensor=True, variadic=True), Arg("axis", int_arg(), 1)),
        _concat_infer,
        "structure",
        doc="join along axis (a dense skip connection)",
        torch=lambda node, args, emit: f"torch.cat([{', '.join(args)}], dim={node.attrs['axis']})",
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
    if isinstance(length, int) and sum(sizes) != length:
        raise ShapeError(
            f"split: the parts {shape_text(sizes)[1:-1]} add up to {sum(sizes)}, but axis {axis} has size {length}",
            arg="sizes",
        )
    return sizes


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
        torch=lambda node, args, emit: f"torch.split({args[0]}, {py(node.attrs['sizes'])}, dim={node.attrs['axis']})",
    )
)

# ---------------------------------------------------------------- reshaping


def _flatten_infer(inputs, attrs):
    (x,) = inputs
    if x.rank == 0:
        return [TensorType((1,), x.dtype)]
    start = normalize_axis(attrs["start"], x.rank, arg="start")
    return [TensorType(x.shape[:start] + (D.product(x.shape[start:]),), x.dtype)]


FLATTEN = register(
    OpDef(
        "flatten",
        (Arg("x", None, tensor=True), Arg("start", int_arg(), 1)),
        _flatten_infer,
        "structure",
        torch=lambda node, args, emit: f"torch.flatten({args[0]}, {node.attrs['start']})",
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
    for d in target:
        if isinstance(d, int) and d != -1 and d < 1:
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
        torch=lambda node, args, emit: f"{args[0]}.reshape({', '.join(emit.dim(d) for d in node.attrs['shape'])})",
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


PERMUTE = register(
    OpDef(
        "permute",
        (Arg("x", None, tensor=True), Arg("dims", axes_arg)),
        _permute_infer,
        "structure",
        torch=lambda node, args, emit: f"{args[0]}.permute({', '.join(map(str, node.attrs['dims']))})",
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
        stride = attrs["stride"] or attrs["kernel"]
        dims = []
        for i, length in enumerate(x.shape[2:]):
            k, s, p = attrs["kernel"][i], stride[i], attrs["padding"][i]
            if p > k // 2:
                raise ShapeError(f"{name}: padding {p} is more than half the kernel {k}", arg="padding")
            dims.append(positive(name, conv_length(length, k, s, p, 1), ("output height", "output width")[i]))
        return [TensorType(x.shape[:2] + tuple(dims), x.dtype)]

    return infer


def _pool_torch(func):
    def lower(node, args, emit):
        a = node.attrs
        pairs = [("stride", a["stride"] or a["kernel"], a["kernel"]), ("padding", a["padding"], 0)]
        return f"F.{func}({args[0]}, {py_size(a['kernel'])}{keywords(pairs)})"

    return lower


def _pool(name, doc):
    args = (
        Arg("x", None, tensor=True),
        Arg("kernel", ints_arg(2, 1)),
        Arg("stride", _stride_or_kernel, None),
        Arg("padding", ints_arg(2, 0), 0),
    )
    lower = _pool_torch("max_pool2d" if name == "maxpool2d" else "avg_pool2d")
    return register(OpDef(name, args, _pool_infer(name), "structure", doc=doc, torch=lower))


MAXPOOL2D = _pool("maxpool2d", "max pooling; stride defaults to the kernel")
AVGPOOL2D = _pool("avgpool2d", "average pooling, counting padding; stride defaults to the kernel")


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


ADAPTIVE_AVGPOOL2D = register(
    OpDef(
        "adaptive_avgpool2d",
        (Arg("x", None, tensor=True), Arg("size", ints_arg(2, 1))),
        _adaptive_infer,
        "structure",
        torch=lambda node, args, emit: f"F.adaptive_avg_pool2d({args[0]}, {py_size(node.attrs['size'])})",
    )
)


def _upsample_infer(inputs, attrs):
    (x,) = inputs
    require_float("upsample", x)
    require_rank("upsample", x, (4,), "N, C, H, W")
    scale = attrs["scale"]
    return [TensorType(x.shape[:2] + tuple(D.mul(d, scale) for d in x.shape[2:]), x.dtype)]


def _upsample_torch(node, args, emit):
    mode = node.attrs["mode"]
    corners = ", align_corners=False" if mode == "bilinear" else ""
    return f"F.interpolate({args[0]}, scale_factor={node.attrs['scale']}, mode={py(mode)}{corners})"


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
        torch=lambda node, args, emit: f"F.softmax({args[0]}, dim={node.attrs['axis']})",
    )
)
LOG_SOFTMAX = register(
    OpDef(
        "log_softmax",
        (Arg("x", None, tensor=True), Arg("axis", int_arg(), -1)),
        _softmax_infer("log_softmax"),
        "structure",
        torch=lambda node, args, emit: f"F.log_softmax({args[0]}, dim={node.attrs['axis']})",
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


def _reduction(name, floats_only):
    args = (Arg("x", None, tensor=True), Arg("axes", axes_arg), Arg("keepdim", bool_arg, False))

    def lower(node, args, emit):
        axes = node.attrs["axes"]
        keep = ", keepdim=True" if node.attrs["keepdim"] else ""
        return f"{args[0]}.{name}(dim={py_size(axes) if len(axes) == 1 else py(axes)}{keep})"

    return register(OpDef(name, args, _reduce_infer(name, floats_only), "structure", torch=lower))


MEAN = _reduction("mean", True)
SUM = _reduction("sum", False)

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


MSE_LOSS = register(
    OpDef(
        "mse_loss",
        (Arg("pred", None, tensor=True), Arg("target", None, tensor=True)),
        _mse_infer,
        "loss",
        doc="mean of squared differences",
        torch=lambda node, args, emit: f"F.mse_loss({args[0]}, {args[1]})",
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
        torch=lambda node, args, emit: f"F.cross_entropy({args[0]}, {args[1]})",
    )
)
