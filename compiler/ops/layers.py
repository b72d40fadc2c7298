"""Layers with parameters. Parameter shapes and counts equal the matching torch.nn layer."""

from __future__ import annotations

from netc.dsl.diagnostics import NetcError

from .. import dims as D
from ..ir import TensorType
from .convolution import onnx_conv
from .registry import (
    Arg,
    ArgError,
    Init,
    NoGrad,
    OpDef,
    ShapeError,
    bool_arg,
    broadcast,
    choice_arg,
    constant,
    describe,
    float_arg,
    int_arg,
    ints_arg,
    is_int,
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


def _linear_torch(t, x, *, out, bias):
    if t.tied:  # its weight is another layer's (a classifier tied to an embedding)
        return t.call("F.linear", x, t.param("weight"), *([t.param("bias")] if bias else []))
    return t.layer("nn.Linear", x.shape[-1], out, bias=t.opt(bias, True))(x)


LINEAR = register(
    OpDef(
        "linear",
        (_x(), Arg("out", int_arg(1)), Arg("bias", bool_arg, True)),
        _linear_infer,
        "layer",
        params=lambda inputs, attrs: _bias_params((attrs["out"], inputs[0].shape[-1]), attrs),
        doc="[..., in] -> [..., out]",
        init=_fan_in_init,
        torch=_linear_torch,
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
    return onnx_conv(
        b,
        x,
        b.param("weight"),
        b.param("bias") if bias else None,
        channels=out,
        kernel=kernel,
        strides=stride,
        pads=pads,
        dilations=dilation,
        group=groups,
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


def _statistics(d, x, axes):
    """x - mean and the biased variance over axes, and the mean."""
    mean = d.apply("mean", x, axes=axes, keepdim=True)
    centred = x - mean
    return centred, mean, d.apply("mean", centred * centred, axes=axes, keepdim=True)


def _normalize(d, x, axes, eps):
    """(x - mean) / sqrt(var + eps) over axes, as a product with the reciprocal, computed on
    the small statistics tensor: a full-size division's gradient takes three passes more."""
    centred, _, var = _statistics(d, x, axes)
    return centred * (1.0 / d.apply("sqrt", var + eps))


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
    centred, mean, var = _statistics(d, x, axes)
    # weight / sqrt(var + eps) per channel first: one full-size product (and its gradient's
    # two) where normalizing and then scaling took two (and five)
    scale = d.apply("reshape", d.param("weight"), shape=shape) / d.apply("sqrt", var + eps)
    y = centred * scale + d.apply("reshape", d.param("bias"), shape=shape)
    count = d.count(x, axes)
    unbiased = d.apply("reshape", var, shape=(channels,)) * (count / (count - 1.0))
    batch_mean = d.apply("reshape", mean, shape=(channels,))
    d.output("running_mean.next", d.param("running_mean") * (1.0 - momentum) + batch_mean * momentum)
    d.output("running_var.next", d.param("running_var") * (1.0 - momentum) + unbiased * momentum)
    return y


def _layernorm_train(d, x, *, dims, eps):
    normalized = _normalize(d, x, tuple(range(x.rank - dims, x.rank)), eps)
    return normalized * d.param("weight") + d.param("bias")


def _groupnorm_train(d, x, *, groups, eps):
    grouped = d.apply("reshape", x, shape=(x.shape[0], groups, -1))
    normalized = d.apply("reshape_like", _normalize(d, grouped, (2,), eps), x)
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
        (
            _x(),
            Arg("eps", float_arg(minimum=0.0), 1e-5, keyword_only=True),
            Arg("momentum", float_arg(0.0), 0.1, keyword_only=True),
        ),
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
        too_many="batchnorm takes no positional argument besides its input: the channels come from the input "
        "(nn.BatchNorm2d(64) is plain `batchnorm` here)",
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
            notes=(
                "the argument counts axes, not their size: the sizes come from the input "
                "(`layernorm` alone normalizes the last axis, as nn.LayerNorm(size) does)",
            ),
        )
    for d in x.shape[x.rank - count :]:
        static("layernorm", d, "size of each normalized axis")
    return [x]


LAYERNORM = register(
    OpDef(
        "layernorm",
        (_x(), Arg("dims", int_arg(1), 1), Arg("eps", float_arg(minimum=0.0), 1e-5, keyword_only=True)),
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
        too_many="layernorm takes one positional argument besides its input, `dims`, the number of trailing "
        "axes it normalizes: their sizes come from the input",
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
        (_x(), Arg("groups", int_arg(1)), Arg("eps", float_arg(minimum=0.0), 1e-5, keyword_only=True)),
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
        too_many="groupnorm takes one positional argument besides its input, the number of groups: the channels "
        "come from the input (nn.GroupNorm(32, 64) is `groupnorm(32)` here)",
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
        torch=lambda t, ids, *, num, dim: (
            t.call("F.embedding", ids, t.param("weight")) if t.tied else t.layer("nn.Embedding", num, dim)(ids)
        ),
        onnx=lambda b, ids, *, num, dim: b.Gather(b.param("weight"), ids, axis=0),
        grad=_embedding_grad,
        grad_reads_output=False,
    )
)


# ---------------------------------------------------------------- attention / recurrent
# Optional tensor inputs (`mask=`, `h0=`, `c0=`): one given comes among the node's inputs,
# after the required ones, in signature order; one left out is the attribute None.


def _given(names, inputs, attrs) -> dict:
    """The optional tensor inputs by name (None where left out), from what follows the
    required inputs."""
    rest = iter(inputs)
    return {name: None if name in attrs and attrs[name] is None else next(rest, None) for name in names}


def _attention_infer(inputs, attrs):
    q, k, v = inputs[:3]
    mask = _given(("mask",), inputs[3:], attrs)["mask"]
    for name, t in (("q", q), ("k", k), ("v", v)):
        require_float("attention", t, f"`{name}`")
        if t.rank < 2:
            raise ShapeError(f"attention expects `{name}` with at least two axes [..., L, E], got {t}")
    if k.dtype != q.dtype or v.dtype != q.dtype:
        raise ShapeError(f"attention needs q, k and v of one dtype, got {q.dtype}, {k.dtype} and {v.dtype}")
    if D.provably_unequal(q.shape[-1], k.shape[-1]):
        raise ShapeError(
            f"attention needs q and k with one embedding size (the last axis), got {D.shape_text(q.shape)} "
            f"and {D.shape_text(k.shape)}"
        )
    if D.provably_unequal(k.shape[-2], v.shape[-2]):
        raise ShapeError(
            f"attention needs k and v with one sequence length (axis -2), got {D.shape_text(k.shape)} "
            f"and {D.shape_text(v.shape)}"
        )
    batch = broadcast(q.shape[:-2], k.shape[:-2])
    batch = broadcast(batch, v.shape[:-2]) if batch is not None else None
    if batch is None:
        raise ShapeError(
            f"attention cannot broadcast the batch axes of q {D.shape_text(q.shape)}, k {D.shape_text(k.shape)} "
            f"and v {D.shape_text(v.shape)}"
        )
    scores = batch + (q.shape[-2], k.shape[-2])
    if mask is not None:
        if attrs["causal"]:
            raise ShapeError("attention takes a `mask` or causal=true, not both", arg="causal")
        if mask.dtype != "bool" and mask.dtype != q.dtype:
            raise ShapeError(
                f"attention needs a bool mask (true attends) or a {q.dtype} one (added to the scores), "
                f"got {mask.dtype}",
                arg="mask",
            )
        if broadcast(mask.shape, scores) != scores:
            raise ShapeError(
                f"attention: the mask of shape {D.shape_text(mask.shape)} does not broadcast to the scores' "
                f"shape {D.shape_text(scores)} [..., T, S]",
                arg="mask",
            )
    return [TensorType(batch + (q.shape[-2], v.shape[-1]), q.dtype)]


def _attention_torch(t, q, k, v, mask=None, *, causal, scale):
    extra = {"attn_mask": mask} if mask is not None else {}
    return t.call(
        "F.scaled_dot_product_attention",
        q,
        k,
        v,
        **extra,
        is_causal=t.opt(causal, False),
        scale=t.opt(scale, None),
    )


def _attention_weights_onnx(b, q, k, mask, causal, scale):
    """softmax(q k^T * scale, masked) over the last axis, as F.scaled_dot_product_attention
    computes it: a bool mask (or the causal lower triangle) keeps the scores where true and
    sets the others to -inf; a float mask is added."""
    perm = list(range(k.rank))
    perm[-2:] = perm[-1], perm[-2]
    scores = b.MatMul(q, b.Transpose(k, perm=perm))
    if scale is None and isinstance(q.shape[-1], int):
        scale = 1 / q.shape[-1] ** 0.5
    if scale is None:  # 1/sqrt(E), from the run-time size where E is symbolic
        size = b.Cast(b.dim(q.shape[-1]), to=b.element_type(q.dtype))
        factor = b.Reciprocal(b.Sqrt(size))
    else:
        factor = b.const(scale, q.dtype)
    scores = b.Mul(scores, factor)
    minus_inf = b.const(float("-inf"), q.dtype)
    if causal:
        ones = b.ConstantOfShape(b.shape((q.shape[-2], k.shape[-2])), value=b.tensor([1.0], q.dtype))
        keep = b.Cast(b.Trilu(ones, upper=0), to=b.element_type("bool"))
        scores = b.Where(keep, scores, minus_inf)
    elif mask is not None and mask.dtype == "bool":
        scores = b.Where(mask, scores, minus_inf)
    elif mask is not None:
        scores = b.Add(scores, mask)
    return b.Softmax(scores, axis=-1)


def _attention_onnx(b, q, k, v, mask=None, *, causal, scale):
    return b.MatMul(_attention_weights_onnx(b, q, k, mask, causal, scale), v)


def _attention_grad(d, g, y, q, k, v, mask=None, *, causal, scale):
    """With p = softmax(s), s = q k^T * scale (+ mask): dv = p^T g; ds = p * (dp - sum(dp * p))
    along the keys, dp = g v^T; dq = ds k * scale, dk = ds^T q * scale; a float mask gets ds.
    p is recomputed (attention_weights), as the fused kernel's backward does."""
    given = [mask] if mask is not None else []
    p = d.apply("attention_weights", q, k, *given, causal=causal, scale=scale)
    dv = d.transpose(p) @ g
    dp = g @ d.transpose(v)
    ds = p * (dp - d.apply("sum", dp * p, axes=(p.rank - 1,), keepdim=True))
    if scale is None:
        factor = 1.0 / d.apply("sqrt", d.count(q, (q.rank - 1,))) if not isinstance(q.shape[-1], int) else None
        factor = factor if factor is not None else 1.0 / q.shape[-1] ** 0.5
    else:
        factor = scale
    dq, dk = (ds @ k) * factor, (d.transpose(ds) @ q) * factor
    dmask = ds if mask is not None and mask.dtype != "bool" else None
    return (dq, dk, dv, dmask) if mask is not None else (dq, dk, dv)


def _optional_tensor(name):
    return Arg(name, None, None, tensor=True)


def _scale_arg(value):
    """A positive number; None (the default, which no spec can write) is 1/sqrt(E)."""
    return None if value is None else _positive_scale(value)


_positive_scale = float_arg(below=float("inf"))


ATTENTION = register(
    OpDef(
        "attention",
        (
            Arg("q", None, tensor=True),
            Arg("k", None, tensor=True),
            Arg("v", None, tensor=True),
            _optional_tensor("mask"),
            Arg("causal", bool_arg, False),
            Arg("scale", _scale_arg, None),
        ),
        _attention_infer,
        "structure",
        doc="softmax(q k^T * scale + mask) v, as F.scaled_dot_product_attention",
        torch=_attention_torch,
        onnx=_attention_onnx,
        grad=_attention_grad,
    )
)


def _attention_weights_infer(inputs, attrs):
    q, k = inputs[:2]
    (out,) = _attention_infer([q, k, k, *inputs[2:]], attrs)
    return [TensorType(out.shape[:-1] + (k.shape[-2],), q.dtype)]


def _attention_weights_torch(t, q, k, mask=None, *, causal, scale):
    """The weights as F.scaled_dot_product_attention's reference computes them."""
    scores = f"{q} @ {k}.transpose(-2, -1)"
    factor = t.literal(scale) if scale is not None else f"{q}.shape[-1] ** -0.5"
    scores = f"({scores}) * {factor}"
    if causal:
        keep = f"torch.ones({q}.shape[-2], {k}.shape[-2], dtype=torch.bool, device={q}.device).tril()"
        scores = f"({scores}).masked_fill({keep}.logical_not(), float('-inf'))"
    elif mask is not None and mask.type.dtype == "bool":
        scores = f"({scores}).masked_fill({mask}.logical_not(), float('-inf'))"
    elif mask is not None:
        scores = f"{scores} + {mask}"
    return t.call("torch.softmax", t.code(scores), -1)


# softmax(q k^T * scale, masked): the attention weights, which attention's gradient reads
ATTENTION_WEIGHTS = register(
    OpDef(
        "attention_weights",
        (
            Arg("q", None, tensor=True),
            Arg("k", None, tensor=True),
            _optional_tensor("mask"),
            Arg("causal", bool_arg, False),
            Arg("scale", _scale_arg, None),
        ),
        _attention_weights_infer,
        "structure",
        torch=_attention_weights_torch,
        onnx=lambda b, q, k, mask=None, *, causal, scale: _attention_weights_onnx(b, q, k, mask, causal, scale),
        grad=NoGrad("used only in attention's gradient, which is not differentiated again"),
        hidden=True,
    )
)


# ---------------------------------------------------------------- language 1.1: param


def _param_shape(value):
    """A learned tensor's shape: compile-time ints of at least 1; an int alone is a 1-tuple."""
    items = value if isinstance(value, tuple) else (value,)
    for item in items:
        if isinstance(item, D.Dim):
            raise ArgError(
                f"holds compile-time ints, but {item.text()} is a symbolic dimension, known only at run time: "
                "a parameter's size is fixed when the network is built"
            )
        if not is_int(item) or item < 1:
            raise ArgError(f"needs a tuple of sizes of at least 1, got {describe(value)}")
    return tuple(items)


def _param_init(node):
    init, scale = node.attrs["init"], node.attrs["scale"]
    if init == "normal":
        return {"": Init("normal", std=scale)}
    return {"": constant(0.0 if init == "zeros" else scale)}


def _param_torch(t, *, shape, init, scale):
    function = {"zeros": "torch.zeros", "ones": "torch.ones", "normal": "torch.randn"}[init]
    # `torch.ones(...) * scale` stays float where the scale is spelled as a block's int argument
    return t.learned(function, *shape, times=scale if init != "zeros" and (scale != 1.0 or _spelled(scale)) else None)


def _spelled(value) -> bool:
    """A value the torch backend writes as the spec's expression (a block argument)."""
    return type(value) not in (int, float)


# A learned tensor no layer owns. Its one parameter has the empty local name: its full name
# is the instance path itself (`Node.param_name`), `encoder.pos_embedding`, no `.weight`.
# Its value is the parameter itself, so it keeps grad_reads_output (the default): nothing
# overwrites it in place.
PARAM = register(
    OpDef(
        "param",
        (
            Arg("shape", _param_shape),
            Arg("init", choice_arg("zeros", "ones", "normal"), "zeros"),
            Arg("scale", float_arg(), 1.0),
        ),
        lambda inputs, attrs: [TensorType(attrs["shape"], "float32")],
        "layer",
        params=lambda inputs, attrs: {"": attrs["shape"]},
        doc='a learned tensor; init "zeros", "ones" or "normal" (standard normal), times scale',
        init=_param_init,
        torch=_param_torch,
        onnx=lambda b, *, shape, init, scale: b.param(""),
        grad=lambda d, g, y, **attrs: d.param_grad("", g),
    )
)


# lstm and gru: nn.LSTM / nn.GRU, batch first. Their parameters, per layer and direction,
# in torch's order: weight_ih_l{k}[_reverse] [G * hidden, in], weight_hh_l{k} [G * hidden,
# hidden], bias_ih_l{k}, bias_hh_l{k} [G * hidden]; G gates (4 for lstm, 3 for gru).
_GATES = {"lstm": 4, "gru": 3}
# A mutated spec's `layers=1000000000000` listed a trillion weights and hung the compiler.
MAX_RNN_LAYERS = 10_000
_STATES = {"lstm": ("h0", "c0"), "gru": ("h0",)}


def _directions(attrs) -> int:
    return 2 if attrs["bidirectional"] else 1


def _rnn_names(attrs):
    """(layer, suffix, input is the layer below's) for each layer and direction, in torch's order."""
    suffixes = ("", "_reverse") if attrs["bidirectional"] else ("",)
    return [(k, suffix) for k in range(attrs["layers"]) for suffix in suffixes]


def _rnn_infer(name):
    def infer(inputs, attrs):
        x = inputs[0]
        states = _given(_STATES[name], inputs[1:], attrs)
        require_float(name, x)
        require_rank(name, x, (3,), "N, T, C: batch first")
        static(name, x.shape[2], "number of input features (axis 2)")
        hidden, d = attrs["hidden"], _directions(attrs)
        if attrs["layers"] > MAX_RNN_LAYERS:  # each layer is its own weights, listed one by one
            raise ShapeError(
                f"{name}: layers={attrs['layers']} is more than the {MAX_RNN_LAYERS:,} stacked layers netc builds",
                arg="layers",
            )
        state = TensorType((d * attrs["layers"], x.shape[0], hidden), x.dtype)
        for key, t in states.items():
            if t is None:
                continue
            if t.dtype != x.dtype:
                raise ShapeError(f"{name} needs `{key}` of the input's dtype {x.dtype}, got {t.dtype}", arg=key)
            if t.rank != 3 or any(D.provably_unequal(a, b) for a, b in zip(t.shape, state.shape)):
                raise ShapeError(
                    f"{name} needs `{key}` of shape {D.shape_text(state.shape)} [directions * layers, N, hidden], "
                    f"got {D.shape_text(t.shape)}",
                    arg=key,
                )
        out = TensorType((x.shape[0], x.shape[1], d * hidden), x.dtype)
        return [out] + [state] * len(_STATES[name])

    return infer


def _rnn_params(name):
    def params(inputs, attrs):
        hidden, gates = attrs["hidden"], _GATES[name]
        shapes = {}
        for k, suffix in _rnn_names(attrs):
            size = inputs[0].shape[2] if k == 0 else _directions(attrs) * hidden
            shapes[f"weight_ih_l{k}{suffix}"] = (gates * hidden, size)
            shapes[f"weight_hh_l{k}{suffix}"] = (gates * hidden, hidden)
            shapes[f"bias_ih_l{k}{suffix}"] = (gates * hidden,)
            shapes[f"bias_hh_l{k}{suffix}"] = (gates * hidden,)
        return shapes

    return params


def _rnn_init(node):
    """nn.LSTM and nn.GRU draw every weight and bias from uniform(+-1/sqrt(hidden))."""
    bound = 1 / node.attrs["hidden"] ** 0.5
    return {local: uniform(bound) for local in node.params}


def _rnn_torch(name):
    def lower(t, x, *given, hidden, layers, bidirectional, **absent):
        states = _given(_STATES[name], given, absent)
        cls = "nn.LSTM" if name == "lstm" else "nn.GRU"
        module = t.layer(
            cls,
            x.shape[2],
            hidden,
            num_layers=t.opt(layers, 1),
            bidirectional=t.opt(bidirectional, False),
            batch_first=True,
        )
        if name == "gru":
            return module(x, states["h0"]) if states["h0"] is not None else module(x)
        h0, c0 = states["h0"], states["c0"]
        if h0 is None and c0 is None:
            return t.unpack("{}, ({}, {})", module(x))
        h0 = h0 if h0 is not None else t.call("torch.zeros_like", c0)
        c0 = c0 if c0 is not None else t.call("torch.zeros_like", h0)
        return t.unpack("{}, ({}, {})", module(x, t.code(f"({h0}, {c0})")))

    return lower


# ONNX's gate order from torch's: LSTM i, f, g, o -> i, o, f, c; GRU r, z, n -> z, r, h
_ONNX_GATES = {"lstm": (0, 3, 1, 2), "gru": (1, 0, 2)}


def _rnn_onnx(name):
    def lower(b, x, *given, hidden, layers, bidirectional, **absent):
        """One ONNX LSTM (GRU) per layer on [T, N, C], its weights stacked per direction
        from torch's tensors (read by torch's names), the gates reordered."""
        states = _given(_STATES[name], given, absent)
        d, gates = (2 if bidirectional else 1), _GATES[name]
        suffixes = ("", "_reverse")[:d]

        def weight(local):
            parts = b.Split(b.param(local), b.ints([hidden] * gates), axis=0, outputs=gates)
            return b.Concat(*(parts[i] for i in _ONNX_GATES[name]), axis=0)

        def stacked(*locals_):
            """[d, ...]: each direction's tensor (the locals joined along axis 0) on a new axis 0."""
            per = []
            for suffix in suffixes:
                joined = [weight(f"{local}{suffix}") for local in locals_]
                per.append(b.Unsqueeze(joined[0] if len(joined) == 1 else b.Concat(*joined, axis=0), b.ints([0])))
            return per[0] if d == 1 else b.Concat(*per, axis=0)

        seq = b.Transpose(x, perm=[1, 0, 2])  # [T, N, C]
        finals = {key: [] for key in _STATES[name]}
        extra = {"linear_before_reset": 1} if name == "gru" else {}
        for k in range(layers):
            initial = []
            for key in _STATES[name]:
                state = states[key]
                initial.append(
                    None if state is None else b.Slice(state, b.ints([k * d]), b.ints([(k + 1) * d]), b.ints([0]))
                )
            results = b.op(
                "LSTM" if name == "lstm" else "GRU",
                seq,
                stacked(f"weight_ih_l{k}"),
                stacked(f"weight_hh_l{k}"),
                stacked(f"bias_ih_l{k}", f"bias_hh_l{k}"),
                None,
                *initial,
                outputs=1 + len(_STATES[name]),
                hidden_size=hidden,
                direction="bidirectional" if bidirectional else "forward",
                **extra,
            )
            y = results[0]  # [T, d, N, hidden]
            for key, value in zip(_STATES[name], results[1:]):
                finals[key].append(value)
            last = k == layers - 1
            joined = b.Transpose(y, perm=[2, 0, 1, 3] if last else [0, 2, 1, 3])  # the directions side by side
            seq = b.Reshape(joined, b.ints([0, 0, -1]))
        outs = [b.Concat(*v, axis=0) if len(v) > 1 else v[0] for v in finals.values()]
        return (seq, *outs)

    return lower


def _rnn_train(name):
    def train(d, x, *given, hidden, layers, bidirectional, **absent):
        """The layer unrolled over its T steps into matmuls, splits and gates, which have
        gradient rules: backpropagation through time is their gradient."""
        steps = x.shape[1]
        if not isinstance(steps, int):
            raise NetcError(
                f"cannot derive the gradient of {name} (`{d.node.name}`): its sequence length (axis 1 of the "
                f"input, {D.shape_text((steps,))[1:-1]}) is symbolic, and the backward graph unrolls the steps, "
                "so it needs a known length; torch.autograd differentiates the emitted nn module",
                d.node.span,
                code="grad",
            )
        states = _given(_STATES[name], given, absent)
        batch, directions = x.shape[0], 2 if bidirectional else 1
        initial = {key: _state_rows(d, v, batch, hidden) if v is not None else None for key, v in states.items()}
        finals = {key: [] for key in _STATES[name]}
        seq = x
        for k in range(layers):
            runs = []
            for j, suffix in enumerate(("", "_reverse")[:directions]):
                start = {key: rows[k * directions + j] if rows else None for key, rows in initial.items()}
                out, ends = _rnn_direction(d, name, seq, f"l{k}{suffix}", start, hidden, reverse=j == 1)
                runs.append(out)
                for key, end in zip(_STATES[name], ends):
                    finals[key].append(d.apply("reshape", end, shape=(1, batch, hidden)))
            seq = runs[0] if len(runs) == 1 else d.apply("concat", *runs, axis=2)
        return (seq, *(v[0] if len(v) == 1 else d.apply("concat", *v, axis=0) for v in finals.values()))

    return train


def _slices(d, x, axis):
    """x split into slices of size 1 along axis (no split for one: the torch backward
    binds a split's results as a tuple)."""
    return list(d.apply("split", x, sizes=1, axis=axis)) if x.shape[axis] > 1 else [x]


def _state_rows(d, state, batch, hidden):
    """A given initial state [D * layers, N, hidden] as one [N, hidden] per layer and direction."""
    return [d.apply("reshape", row, shape=(batch, hidden)) for row in _slices(d, state, 0)]


def _rnn_direction(d, name, seq, tag, start, hidden, reverse):
    """One layer in one direction over seq [N, T, C]: its output [N, T, hidden] and its
    final states. A state left out is zero, so its terms are left out rather than computed."""
    batch, steps = seq.shape[0], seq.shape[1]
    weight_hh = d.transpose(d.param(f"weight_hh_{tag}"))
    bias_hh = d.param(f"bias_hh_{tag}")
    # the input's part of every step at once: one matmul instead of T
    projected = seq @ d.transpose(d.param(f"weight_ih_{tag}")) + d.param(f"bias_ih_{tag}")
    if name == "lstm":  # both biases meet in every gate: add them once
        projected = projected + bias_hh
    parts = _slices(d, projected, 1)
    h, c = start["h0"], start.get("c0")
    if h is None and steps == 1:  # zeros, not left out: weight_hh gets its gradient (0), as in torch
        h = d.apply("zeros", shape=(batch, hidden), dtype=seq.dtype)
    outs = [None] * steps
    for t in reversed(range(steps)) if reverse else range(steps):
        gates = d.apply("reshape", parts[t], shape=(batch, _GATES[name] * hidden))
        if name == "lstm":
            if h is not None:
                gates = gates + h @ weight_hh
            i, f, g, o = d.apply("split", gates, sizes=hidden, axis=1)
            i, f, o = (d.apply("sigmoid", v) for v in (i, f, o))
            g = d.apply("tanh", g)
            c = i * g if c is None else f * c + i * g
            h = o * d.apply("tanh", c)
        else:
            recurrent = bias_hh if h is None else h @ weight_hh + bias_hh
            xr, xz, xn = d.apply("split", gates, sizes=hidden, axis=-1)
            hr, hz, hn = d.apply("split", recurrent, sizes=hidden, axis=-1)
            r = d.apply("sigmoid", xr + hr)
            z = d.apply("sigmoid", xz + hz)
            n = d.apply("tanh", xn + r * hn)
            h = (1.0 - z) * n if h is None else n + z * (h - n)
        outs[t] = d.apply("reshape", h, shape=(batch, 1, hidden))
    out = outs[0] if steps == 1 else d.apply("concat", *outs, axis=1)
    return out, (h, c) if name == "lstm" else (h,)


_RNN_GRAD = NoGrad(
    "the training forward unrolls it over the steps into primitives (its `train` rule), which are differentiated"
)


def _rnn(name):
    states = tuple(_optional_tensor(key) for key in _STATES[name])
    return register(
        OpDef(
            name,
            (
                _x(),
                Arg("hidden", int_arg(1)),
                Arg("layers", int_arg(1), 1),
                Arg("bidirectional", bool_arg, False),
                *states,
            ),
            _rnn_infer(name),
            "layer",
            params=_rnn_params(name),
            init=_rnn_init,
            n_outputs=1 + len(_STATES[name]),
            doc=f"[N, T, C] -> out [N, T, D * hidden], {', '.join(k[0] for k in _STATES[name])}: nn.{name.upper()}",
            torch=_rnn_torch(name),
            onnx=_rnn_onnx(name),
            train=_rnn_train(name),
            grad=_RNN_GRAD,
        )
    )


LSTM = _rnn("lstm")
GRU = _rnn("gru")
