"""Layers with parameters. Parameter shapes and counts equal the matching torch.nn layer."""

from __future__ import annotations

from .. import dims as D
from ..ir import TensorType
from .registry import (
    Arg,
    Init,
    NoGrad,
    OpDef,
    ShapeError,
    bool_arg,
    constant,
    float_arg,
    int_arg,
    ints_arg,
    padding_arg,
    positive,
    register,
    require_float,
    require_rank,
    static,
    uniform,
)

_SPATIAL_NAMES = {1: ("length",), 2: ("height", "width")}


def _x():
    return Arg("x", None, tensor=True)


def _bias_params(weight, attrs):
    return {"weight": weight, "bias": (attrs["out"],)} if attrs["bias"] else {"weight": weight}


def _fan_in_init(node):
    """nn.Linear and nn.Conv*: kaiming_uniform(a=sqrt(5)) on the weight and the bias,
    which is uniform on +-1/sqrt(fan_in), fan_in = the weight's size over its first axis."""
    fan_in = 1
    for d in node.params["weight"].shape[1:]:
        fan_in *= d
    bound = 1 / fan_in**0.5 if fan_in else 0.0
    return {name: uniform(bound) for name in node.params}


def _norm_init(node):
    """Norm layers start as the identity: weight 1, bias 0 (running variance 1)."""
    init = {"weight": constant(1.0), "bias": constant(0.0)}
    if node.buffers:
        init.update(running_mean=constant(0.0), running_var=constant(1.0), num_batches_tracked=constant(0))
    return init


# ---------------------------------------------------------------- linear


def _linear_infer(inputs, attrs):
    (x,) = inputs
    require_float("linear", x)
    if x.rank < 1:
        raise ShapeError("linear expects an input with at least one axis, got a scalar")
    static("linear", x.shape[-1], "number of input features (the last axis)")
    return [TensorType(x.shape[:-1] + (attrs["out"],), x.dtype)]


def _linear_grad(d, g, y, x, *, out, bias):
    """dx = g W; dW = g^T x over every leading axis; db = g summed over them."""
    rows_g = g if g.rank == 2 else d.apply("reshape", g, shape=(-1, out))
    rows_x = x if x.rank == 2 else d.apply("reshape", x, shape=(-1, x.shape[-1]))
    d.param_grad("weight", d.transpose(rows_g) @ rows_x)
    if bias:
        d.param_grad("bias", d.apply("sum", rows_g, axes=(0,)))
    return g @ d.param("weight")


def _linear_onnx(b, x, *, out, bias):
    if x.rank == 2:
        return b.Gemm(x, b.param("weight"), b.param("bias") if bias else None, transB=1)
    y = b.MatMul(x, b.Transpose(b.param("weight"), perm=[1, 0]))  # [..., in] @ [in, out]
    return b.Add(y, b.param("bias")) if bias else y


LINEAR = register(
    OpDef(
        "linear",
        (_x(), Arg("out", int_arg(1)), Arg("bias", bool_arg, True)),
        _linear_infer,
        "layer",
        params=lambda inputs, attrs: _bias_params((attrs["out"], inputs[0].shape[-1]), attrs),
        doc="[..., in] -> [..., out]",
        init=_fan_in_init,
        torch=lambda t, x, *, out, bias: t.layer("nn.Linear", x.shape[-1], out, bias=t.opt(bias, True))(x),
        onnx=_linear_onnx,
        grad=_linear_grad,
        grad_reads_output=False,
    )
)


# ---------------------------------------------------------------- convolutions


def conv_length(length, kernel, stride, padding, dilation):
    """PyTorch's output length: (L + 2p - d(k - 1) - 1) // s + 1."""
    span = dilation * (kernel - 1) + 1
    return D.add(D.floordiv(D.sub(D.add(length, 2 * padding), span), stride), 1)


def _conv_infer(name, spatial):
    def infer(inputs, attrs):
        (x,) = inputs
        require_float(name, x)
        layout = "N, C, L" if spatial == 1 else "N, C, H, W"
        require_rank(name, x, (spatial + 2,), layout)
        channels = static(name, x.shape[1], "number of input channels (axis 1)")
        groups, out = attrs["groups"], attrs["out"]
        if channels % groups:
            raise ShapeError(
                f"{name}: groups={groups} does not divide the {channels} input channels",
                arg="groups",
            )
        if out % groups:
            raise ShapeError(f"{name}: groups={groups} does not divide the {out} output channels", arg="groups")
        padding = attrs["padding"]
        if padding == "same" and any(s != 1 for s in attrs["stride"]):
            raise ShapeError(f'{name}: padding="same" needs stride 1', arg="padding")
        dims = []
        for i, length in enumerate(x.shape[2:]):
            if padding == "same":
                dims.append(length)
                continue
            k, s, p, d = attrs["kernel"][i], attrs["stride"][i], padding[i], attrs["dilation"][i]
            note = f"input {_SPATIAL_NAMES[spatial][i]} {length}, kernel {k}, stride {s}, padding {p}, dilation {d}"
            dims.append(
                positive(
                    name,
                    conv_length(length, k, s, p, d),
                    f"output {_SPATIAL_NAMES[spatial][i]}",
                    [note],
                )
            )
        return [TensorType((x.shape[0], out, *dims), x.dtype)]

    return infer


def _conv_params(inputs, attrs):
    channels = inputs[0].shape[1]
    weight = (attrs["out"], channels // attrs["groups"], *attrs["kernel"])
    return _bias_params(weight, attrs)


def _conv_torch(cls):
    def lower(t, x, *, out, kernel, stride, padding, dilation, groups, bias):
        layer = t.layer(
            cls,
            x.shape[1],
            out,
            kernel_size=kernel,
            stride=t.opt(stride, 1),
            padding=t.opt(padding, 0),
            dilation=t.opt(dilation, 1),
            groups=t.opt(groups, 1),
            bias=t.opt(bias, True),
        )
        return layer(x)

    return lower


def same_pads(kernel, dilation) -> list[int]:
    """PyTorch's padding="same" as ONNX pads (all begins, then all ends): the odd one at the end."""
    total = [d * (k - 1) for k, d in zip(kernel, dilation)]
    return [p // 2 for p in total] + [p - p // 2 for p in total]


def _conv_onnx(b, x, *, out, kernel, stride, padding, dilation, groups, bias):
    pads = same_pads(kernel, dilation) if padding == "same" else list(padding) * 2
    weights = [b.param("weight")] + ([b.param("bias")] if bias else [])
    return b.Conv(
        x, *weights, kernel_shape=list(kernel), strides=list(stride), pads=pads, dilations=list(dilation), group=groups
    )


def _conv_grad(d, g, y, x, *, out, kernel, stride, padding, dilation, groups, bias):
    """dx = the transposed convolution of g with W; dW = x correlated with g; db = g summed
    over the batch and spatial axes."""
    conv = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    d.param_grad("weight", d.apply("conv_weight_grad", x, g, kernel=kernel, **conv))
    if bias:
        d.param_grad("bias", d.apply("sum", g, axes=(0, *range(2, g.rank))))
    return d.apply("conv_input_grad", g, d.param("weight"), x, **conv)


def _conv(name, spatial):
    args = (
        _x(),
        Arg("out", int_arg(1)),
        Arg("kernel", ints_arg(spatial, 1)),
        Arg("stride", ints_arg(spatial, 1), 1),
        Arg("padding", padding_arg(spatial), 0),
        Arg("dilation", ints_arg(spatial, 1), 1),
        Arg("groups", int_arg(1), 1),
        Arg("bias", bool_arg, True),
    )
    return register(
        OpDef(
            name,
            args,
            _conv_infer(name, spatial),
            "layer",
            params=_conv_params,
            init=_fan_in_init,
            torch=_conv_torch(f"nn.Conv{spatial}d"),
            onnx=_conv_onnx,
            grad=_conv_grad,
            grad_reads_output=False,
        )
    )


CONV1D = _conv("conv1d", 1)
CONV2D = _conv("conv2d", 2)


def _conv_transpose_infer(inputs, attrs):
    (x,) = inputs
    name = "conv_transpose2d"
    require_float(name, x)
    require_rank(name, x, (4,), "N, C, H, W")
    channels = static(name, x.shape[1], "number of input channels (axis 1)")
    groups, out = attrs["groups"], attrs["out"]
    if channels % groups or out % groups:
        raise ShapeError(
            f"{name}: groups={groups} must divide the {channels} input and {out} output channels",
            arg="groups",
        )
    dims = []
    for i, length in enumerate(x.shape[2:]):
        k, s, p, op = (
            attrs["kernel"][i],
            attrs["stride"][i],
            attrs["padding"][i],
            attrs["output_padding"][i],
        )
        if op >= s:
            raise ShapeError(
                f"{name}: output_padding must be smaller than stride, got {op} and {s}",
                arg="output_padding",
            )
        # (L - 1) * s - 2p + (k - 1) + output_padding + 1
        length = D.add(D.mul(D.sub(length, 1), s), k + op - 2 * p)
        dims.append(positive(name, length, f"output {_SPATIAL_NAMES[2][i]}"))
    return [TensorType((x.shape[0], out, *dims), x.dtype)]


def _conv_transpose_grad(d, g, y, x, *, out, kernel, stride, padding, output_padding, groups, bias):
    """y = conv_transpose2d(x, W) is the adjoint of c = conv2d(., W) (same stride, padding,
    groups; c maps y's space onto x's): dx = c(g); dW is c's weight gradient with g as its
    input and x as its output gradient; db = g summed."""
    conv = dict(stride=stride, padding=padding, dilation=(1, 1), groups=groups)
    d.param_grad("weight", d.apply("conv_weight_grad", g, x, kernel=kernel, **conv))
    if bias:
        d.param_grad("bias", d.apply("sum", g, axes=(0, 2, 3)))
    return d.apply("convolve", g, d.param("weight"), **conv)


CONV_TRANSPOSE2D = register(
    OpDef(
        "conv_transpose2d",
        (
            _x(),
            Arg("out", int_arg(1)),
            Arg("kernel", ints_arg(2, 1)),
            Arg("stride", ints_arg(2, 1), 1),
            Arg("padding", ints_arg(2, 0), 0),
            Arg("output_padding", ints_arg(2, 0), 0),
            Arg("groups", int_arg(1), 1),
            Arg("bias", bool_arg, True),
        ),
        _conv_transpose_infer,
        "layer",
        params=lambda inputs, attrs: _bias_params(
            (inputs[0].shape[1], attrs["out"] // attrs["groups"], *attrs["kernel"]), attrs
        ),
        init=_fan_in_init,
        torch=lambda t, x, *, out, kernel, stride, padding, output_padding, groups, bias: t.layer(
            "nn.ConvTranspose2d",
            x.shape[1],
            out,
            kernel_size=kernel,
            stride=t.opt(stride, 1),
            padding=t.opt(padding, 0),
            output_padding=t.opt(output_padding, 0),
            groups=t.opt(groups, 1),
            bias=t.opt(bias, True),
        )(x),
        onnx=lambda b, x, *, out, kernel, stride, padding, output_padding, groups, bias: b.ConvTranspose(
            x,
            b.param("weight"),
            *([b.param("bias")] if bias else []),
            kernel_shape=list(kernel),
            strides=list(stride),
            pads=list(padding) * 2,
            output_padding=list(output_padding),
            group=groups,
        ),
        grad=_conv_transpose_grad,
        grad_reads_output=False,
    )
)


# ---------------------------------------------------------------- normalization


def _channels(name, x, ranks, layout):
    require_float(name, x)
    require_rank(name, x, ranks, layout)
    return static(name, x.shape[1], "number of channels (axis 1)")


def _batchnorm_infer(inputs, attrs):
    _channels("batchnorm", inputs[0], (2, 3, 4, 5), "channels on axis 1")
    return [inputs[0]]


def _batchnorm_buffers(inputs, attrs):
    channels, dtype = inputs[0].shape[1], inputs[0].dtype
    return {
        "running_mean": TensorType((channels,), dtype),
        "running_var": TensorType((channels,), dtype),
        "num_batches_tracked": TensorType((), "int64"),
    }


def _channel_shape(x, channels):
    """[C, 1, 1, ...]: a per-channel vector laid out to broadcast along axis 1."""
    return (channels,) + (1,) * (x.rank - 2)


def _normalize(d, x, axes, eps):
    """(x - mean) / sqrt(var + eps) over axes, the biased variance; and the mean and variance."""
    mean = d.apply("mean", x, axes=axes, keepdim=True)
    centred = x - mean
    var = d.apply("mean", centred * centred, axes=axes, keepdim=True)
    return centred / d.apply("sqrt", var + eps), mean, var


def _batchnorm_train(d, x, *, eps, momentum):
    """Batch statistics over every axis but the channels; the running statistics' next
    values (PyTorch's: the variance unbiased) are outputs of the training graph."""
    channels = x.shape[1]
    axes = (0,) + tuple(range(2, x.rank))
    shape = _channel_shape(x, channels)
    if not d.training:  # the inference forward: the running statistics
        mean = d.apply("reshape", d.param("running_mean"), shape=shape)
        var = d.apply("reshape", d.param("running_var"), shape=shape)
        weight = d.apply("reshape", d.param("weight"), shape=shape)
        normalized = (x - mean) / d.apply("sqrt", var + eps)
        return normalized * weight + d.apply("reshape", d.param("bias"), shape=shape)
    normalized, mean, var = _normalize(d, x, axes, eps)
    weight = d.apply("reshape", d.param("weight"), shape=shape)
    y = normalized * weight + d.apply("reshape", d.param("bias"), shape=shape)
    count = d.count(x, axes)
    unbiased = d.apply("reshape", var, shape=(channels,)) * (count / (count - 1.0))
    batch_mean = d.apply("reshape", mean, shape=(channels,))
    d.output("running_mean.next", d.param("running_mean") * (1.0 - momentum) + batch_mean * momentum)
    d.output("running_var.next", d.param("running_var") * (1.0 - momentum) + unbiased * momentum)
    return y


def _layernorm_train(d, x, *, dims, eps):
    normalized, _, _ = _normalize(d, x, tuple(range(x.rank - dims, x.rank)), eps)
    return normalized * d.param("weight") + d.param("bias")


def _groupnorm_train(d, x, *, groups, eps):
    grouped = d.apply("reshape", x, shape=(x.shape[0], groups, -1))
    normalized = d.apply("reshape_like", _normalize(d, grouped, (2,), eps)[0], x)
    shape = _channel_shape(x, x.shape[1])
    weight = d.apply("reshape", d.param("weight"), shape=shape)
    return normalized * weight + d.apply("reshape", d.param("bias"), shape=shape)


NORM_GRAD = NoGrad("the training forward rewrites it into primitives (its `train` rule), which are differentiated")


def _batchnorm_torch(t, x, *, eps, momentum):
    cls = {2: "nn.BatchNorm1d", 3: "nn.BatchNorm1d", 4: "nn.BatchNorm2d", 5: "nn.BatchNorm3d"}[x.rank]
    return t.layer(cls, x.shape[1], eps=t.opt(eps, 1e-5), momentum=t.opt(momentum, 0.1))(x)


def _batchnorm_onnx(b, x, *, eps, momentum):
    weights = [b.param("weight"), b.param("bias"), b.buffer("running_mean"), b.buffer("running_var")]
    # ONNX's momentum weighs the running statistic, PyTorch's the batch statistic
    return b.BatchNormalization(x, *weights, epsilon=eps, momentum=1.0 - momentum)


def _groupnorm_onnx(b, x, *, groups, eps):
    """InstanceNormalization over [N, groups, -1] gives each group's statistics, then the
    per-channel affine (GroupNormalization before opset 21 had per-group scale)."""
    channels = x.shape[1]
    grouped = b.Reshape(x, b.ints([0, groups, -1]))
    ones, zeros = b.const([1.0] * groups, x.dtype), b.const([0.0] * groups, x.dtype)
    normalized = b.Reshape(b.InstanceNormalization(grouped, ones, zeros, epsilon=eps), b.Shape(x))
    axes = b.ints([channels] + [1] * (x.rank - 2))
    return b.Add(b.Mul(normalized, b.Reshape(b.param("weight"), axes)), b.Reshape(b.param("bias"), axes))


BATCHNORM = register(
    OpDef(
        "batchnorm",
        (_x(), Arg("eps", float_arg(minimum=0.0), 1e-5), Arg("momentum", float_arg(0.0), 0.1)),
        _batchnorm_infer,
        "layer",
        params=lambda inputs, attrs: {
            "weight": (inputs[0].shape[1],),
            "bias": (inputs[0].shape[1],),
        },
        buffers=_batchnorm_buffers,
        init=_norm_init,
        torch=_batchnorm_torch,
        onnx=_batchnorm_onnx,
        train=_batchnorm_train,
        grad=NORM_GRAD,
        grad_reads_output=False,
    )
)


def _layernorm_infer(inputs, attrs):
    (x,) = inputs
    require_float("layernorm", x)
    count = attrs["dims"]
    if count > x.rank:
        raise ShapeError(
            f"layernorm cannot normalize the last {count} axes of a tensor of rank {x.rank}",
            arg="dims",
        )
    for d in x.shape[x.rank - count :]:
        static("layernorm", d, "size of each normalized axis")
    return [x]


LAYERNORM = register(
    OpDef(
        "layernorm",
        (_x(), Arg("dims", int_arg(1), 1), Arg("eps", float_arg(minimum=0.0), 1e-5)),
        _layernorm_infer,
        "layer",
        params=lambda inputs, attrs: {
            "weight": tuple(inputs[0].shape[-attrs["dims"] :]),
            "bias": tuple(inputs[0].shape[-attrs["dims"] :]),
        },
        init=_norm_init,
        torch=lambda t, x, *, dims, eps: t.layer(
            "nn.LayerNorm", x.shape[-1] if dims == 1 else t.exact(x.shape[-dims:]), eps=t.opt(eps, 1e-5)
        )(x),
        onnx=lambda b, x, *, dims, eps: b.LayerNormalization(
            x, b.param("weight"), b.param("bias"), axis=-dims, epsilon=eps
        ),
        train=_layernorm_train,
        grad=NORM_GRAD,
        grad_reads_output=False,
    )
)


def _groupnorm_infer(inputs, attrs):
    x = inputs[0]
    channels = _channels("groupnorm", x, (2, 3, 4, 5), "channels on axis 1")
    if channels % attrs["groups"]:
        raise ShapeError(
            f"groupnorm: groups={attrs['groups']} does not divide the {channels} channels",
            arg="groups",
        )
    # torch refuses, in every mode, a batch whose groups hold one value each
    per_group = (x.shape[0], channels // attrs["groups"], *x.shape[2:])
    if all(isinstance(d, int) and d == 1 for d in per_group):
        raise ShapeError(
            f"groupnorm: groups={attrs['groups']} leaves one value per group in an input of shape "
            f"{D.shape_text(x.shape)}; it needs more than one",
            arg="groups",
        )
    return [x]


GROUPNORM = register(
    OpDef(
        "groupnorm",
        (_x(), Arg("groups", int_arg(1)), Arg("eps", float_arg(minimum=0.0), 1e-5)),
        _groupnorm_infer,
        "layer",
        params=lambda inputs, attrs: {
            "weight": (inputs[0].shape[1],),
            "bias": (inputs[0].shape[1],),
        },
        init=_norm_init,
        torch=lambda t, x, *, groups, eps: t.layer("nn.GroupNorm", groups, x.shape[1], eps=t.opt(eps, 1e-5))(x),
        onnx=_groupnorm_onnx,
        train=_groupnorm_train,
        grad=NORM_GRAD,
        grad_reads_output=False,
    )
)


def _embedding_infer(inputs, attrs):
    (ids,) = inputs
    if ids.dtype != "int64":
        raise ShapeError(f"embedding expects int64 ids, got {ids.dtype}")
    return [TensorType(ids.shape + (attrs["dim"],), "float32")]


def _embedding_grad(d, g, y, ids, *, num, dim):
    """dW: each row of g added to the row its id picked (repeated ids sum); ids get none."""
    d.param_grad("weight", d.apply("embedding_grad", g, ids, num=num))
    return None


EMBEDDING = register(
    OpDef(
        "embedding",
        (Arg("ids", None, tensor=True), Arg("num", int_arg(1)), Arg("dim", int_arg(1))),
        _embedding_infer,
        "layer",
        params=lambda inputs, attrs: {"weight": (attrs["num"], attrs["dim"])},
        init=lambda node: {"weight": Init("normal", std=1.0)},
        torch=lambda t, ids, *, num, dim: t.layer("nn.Embedding", num, dim)(ids),
        onnx=lambda b, ids, *, num, dim: b.Gather(b.param("weight"), ids, axis=0),
        grad=_embedding_grad,
        grad_reads_output=False,
    )
)
