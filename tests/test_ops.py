"""The op table: one row per operator case, checked against PyTorch.

From each row: the shape rule's output shapes equal what torch computes on real tensors;
a layer's parameter and buffer shapes equal the matching torch.nn module's state_dict; the
emitted PyTorch module computes what the plain torch call computes; the ONNX model passes
the full checker and strict shape inference and, run in onnxruntime with the module's
weights, computes what the module computes (the row's tolerances; `onnx_xfail` says why
where it cannot). A completeness test asserts every callable op in the registry has a row.
"""

from dataclasses import dataclass, field

import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional
nn = torch.nn

from netc.compiler import compile_string  # noqa: E402
from netc.compiler.ops import CALLABLE  # noqa: E402
from onnx_checks import check_model, run  # noqa: E402

N4 = ("x", (2, 6, 9, 9))


class _LSTM(nn.LSTM):
    """nn.LSTM with its results flat, as netc's lstm returns them: out, h, c."""

    def forward(self, x, h0=None, c0=None):
        state = None if h0 is None else (h0, torch.zeros_like(h0) if c0 is None else c0)
        out, (h, c) = super().forward(x, state)
        return out, h, c


@dataclass
class Row:
    op: str
    inputs: list  # (name, shape) or (name, shape, dtype)
    body: str  # the network body; returns the op's result(s)
    torch_fn: object  # tensors -> tensor or tuple of tensors
    module: object = None  # () -> nn.Module whose state_dict the layer's params/buffers must match
    id: str = ""
    ids: dict = field(default_factory=dict)
    tol: tuple = (1e-5, 1e-6)  # rtol, atol of onnxruntime against torch
    onnx_xfail: str | None = None
    train_fn: object = None  # what torch computes in training where it differs (seeded: stochastic_depth)


def r(op, inputs, call, torch_fn, module=None, body=None, **options):
    return Row(
        op,
        inputs,
        body or f"return {call}",
        torch_fn,
        module,
        id=f"{op}:{call if body is None else body}",
        **options,
    )


ROWS = [
    r("linear", [("x", (4, 7))], "linear(x, 5)", None, lambda: nn.Linear(7, 5)),
    r(
        "linear",
        [("x", (2, 3, 7))],
        "linear(x, 5, bias=false)",
        None,
        lambda: nn.Linear(7, 5, bias=False),
    ),
    r(
        "conv1d",
        [("x", (2, 4, 17))],
        "conv1d(x, 8, kernel=3, stride=2, padding=1)",
        None,
        lambda: nn.Conv1d(4, 8, 3, 2, 1),
    ),
    r(
        "conv1d",
        [("x", (2, 4, 17))],
        'conv1d(x, 8, kernel=5, padding="same", dilation=2, groups=2)',
        None,
        lambda: nn.Conv1d(4, 8, 5, padding="same", dilation=2, groups=2),
    ),
    r(
        "conv2d",
        [N4],
        "conv2d(x, 12, kernel=3, stride=2, padding=1, bias=false)",
        None,
        lambda: nn.Conv2d(6, 12, 3, 2, 1, bias=False),
    ),
    r(
        "conv2d",
        [N4],
        "conv2d(x, 6, kernel=(3, 1), stride=(1, 2), padding=(1, 0), groups=6)",
        None,
        lambda: nn.Conv2d(6, 6, (3, 1), (1, 2), (1, 0), groups=6),
    ),
    r(
        "conv2d",
        [N4],
        "conv2d(x, 4, kernel=3, dilation=2)",
        None,
        lambda: nn.Conv2d(6, 4, 3, dilation=2),
    ),
    r(
        "conv2d",
        [N4],
        'conv2d(x, 4, kernel=4, padding="same")',
        None,
        lambda: nn.Conv2d(6, 4, 4, padding="same"),
    ),
    r(
        "conv_transpose2d",
        [N4],
        "conv_transpose2d(x, 4, kernel=2, stride=2)",
        None,
        lambda: nn.ConvTranspose2d(6, 4, 2, 2),
    ),
    r(
        "conv_transpose2d",
        [N4],
        "conv_transpose2d(x, 4, kernel=3, stride=2, padding=1, output_padding=1, groups=2)",
        None,
        lambda: nn.ConvTranspose2d(6, 4, 3, 2, 1, output_padding=1, groups=2),
    ),
    r("batchnorm", [N4], "batchnorm(x)", None, lambda: nn.BatchNorm2d(6)),
    r(
        "batchnorm",
        [("x", (4, 5))],
        "batchnorm(x, eps=0.001, momentum=0.2)",
        None,
        lambda: nn.BatchNorm1d(5, eps=0.001, momentum=0.2),
    ),
    r("batchnorm", [("x", (2, 3, 4, 4, 4))], "batchnorm(x)", None, lambda: nn.BatchNorm3d(3)),
    r("layernorm", [("x", (2, 5, 8))], "layernorm(x)", None, lambda: nn.LayerNorm(8)),
    r("layernorm", [("x", (2, 5, 8))], "layernorm(x, dims=2)", None, lambda: nn.LayerNorm((5, 8))),
    r(
        "groupnorm",
        [N4],
        "groupnorm(x, 3)",
        None,
        lambda: nn.GroupNorm(3, 6),
        # ORT's GroupNormalization sums in another order: 1.5e-6 seen on a 1e-5 scale output
        tol=(1e-5, 1e-5),
    ),
    r(
        "embedding",
        [("ids", (2, 5), "int64")],
        "embedding(ids, 11, 4)",
        None,
        lambda: nn.Embedding(11, 4),
    ),
    *[
        r(op, [N4], f"{op}(x)", getattr(F, op) if hasattr(F, op) else getattr(torch, op))
        for op in (
            "relu",
            "relu6",
            "sigmoid",
            "tanh",
            "softplus",
            "gelu",
            "silu",
            "exp",
            "abs",
            "sqrt",
            "log",
        )
    ],
    r("leaky_relu", [N4], "leaky_relu(x, slope=0.2)", lambda x: F.leaky_relu(x, 0.2)),
    r("elu", [N4], "elu(x, alpha=0.5)", lambda x: F.elu(x, 0.5)),
    r("identity", [N4], "identity(x)", lambda x: x),
    r("dropout", [N4], "dropout(x, p=0.1)", lambda x: F.dropout(x, 0.1, training=False)),
    r(
        "concat",
        [("a", (2, 3, 4)), ("b", (2, 5, 4))],
        "concat(a, b)",
        lambda a, b: torch.cat([a, b], 1),
    ),
    r(
        "concat",
        [("a", (2, 3, 4)), ("b", (2, 3, 1)), ("c", (2, 3, 2))],
        "concat(a, b, c, axis=-1)",
        lambda a, b, c: torch.cat([a, b, c], -1),
    ),
    r(
        "split",
        [("x", (2, 6, 4))],
        "",
        lambda x: torch.split(x, 2, 1),
        body="a, b, c = split(x, 2)\n return a, b, c",
    ),
    r(
        "split",
        [("x", (2, 6, 4))],
        "",
        lambda x: torch.split(x, (1, 3), -1),
        body="a, b = split(x, (1, 3), axis=-1)\n return a, b",
    ),
    r(  # one part unused: its gradient is zeros (the backward graph's zeros_like)
        "split",
        [("x", (2, 6, 4))],
        "",
        lambda x: torch.split(x, 3, 1)[1],
        body="a, b = split(x, 3)\n return b",
    ),
    r(  # one part: one value, though torch.split still returns a tuple
        "split",
        [("x", (2, 6, 4))],
        "",
        lambda x: torch.tanh(torch.split(x, 6, 1)[0]),
        body="a = split(x, 6)\n return tanh(a)",
    ),
    r("flatten", [N4], "flatten(x)", lambda x: torch.flatten(x, 1)),
    r("flatten", [N4], "flatten(x, start=2)", lambda x: torch.flatten(x, 2)),
    r("reshape", [N4], "reshape(x, (2, -1, 3))", lambda x: x.reshape(2, -1, 3)),
    r("permute", [N4], "permute(x, (0, 2, 3, 1))", lambda x: x.permute(0, 2, 3, 1)),
    r(
        "maxpool2d",
        [N4],
        "maxpool2d(x, 3, stride=2, padding=1)",
        lambda x: F.max_pool2d(x, 3, 2, 1),
    ),
    r("maxpool2d", [N4], "maxpool2d(x, 2)", lambda x: F.max_pool2d(x, 2)),
    r(
        "avgpool2d",
        [N4],
        "avgpool2d(x, 3, stride=2, padding=1)",
        lambda x: F.avg_pool2d(x, 3, 2, 1),
    ),
    r(
        "adaptive_avgpool2d",
        [N4],
        "adaptive_avgpool2d(x, 1)",
        lambda x: F.adaptive_avg_pool2d(x, 1),
    ),
    r(
        "adaptive_avgpool2d",
        [N4],
        "adaptive_avgpool2d(x, 3)",
        lambda x: F.adaptive_avg_pool2d(x, 3),
    ),
    r("upsample", [N4], "upsample(x)", lambda x: F.interpolate(x, scale_factor=2)),
    r(
        "upsample",
        [N4],
        'upsample(x, scale=3, mode="bilinear")',
        lambda x: F.interpolate(x, scale_factor=3, mode="bilinear", align_corners=False),
    ),
    r("softmax", [N4], "softmax(x, axis=1)", lambda x: F.softmax(x, 1)),
    r("log_softmax", [N4], "log_softmax(x)", lambda x: F.log_softmax(x, -1)),
    r("mean", [N4], "mean(x, (2, 3))", lambda x: x.mean((2, 3))),
    r("mean", [N4], "mean(x, -1, keepdim=true)", lambda x: x.mean(-1, keepdim=True)),
    r("sum", [N4], "sum(x, 1)", lambda x: x.sum(1)),
    r("mse_loss", [("a", (4, 3)), ("b", (4, 3))], "mse_loss(a, b)", F.mse_loss),
    r(
        "cross_entropy",
        [("a", (4, 3)), ("y", (4,), "int64")],
        "cross_entropy(a, y)",
        F.cross_entropy,
    ),
    # more argument combinations
    r("groupnorm", [("x", (2, 8, 5))], "groupnorm(x, 2, eps=0.01)", None, lambda: nn.GroupNorm(2, 8, eps=0.01)),
    r("embedding", [("ids", (7,), "int64")], "embedding(ids, 3, 9)", None, lambda: nn.Embedding(3, 9)),
    r("leaky_relu", [N4], "leaky_relu(x)", lambda x: F.leaky_relu(x)),
    r("elu", [N4], "elu(x)", lambda x: F.elu(x)),
    r("dropout", [N4], "dropout(x)", lambda x: F.dropout(x, training=False)),
    r("reshape", [("x", (2, 3, 4))], "reshape(x, (4, 6))", lambda x: x.reshape(4, 6)),
    r("reshape", [("x", (2, 3, 4))], "reshape(x, (-1,))", lambda x: x.reshape(-1)),
    r("permute", [("x", (2, 3, 4))], "permute(x, (2, 0, 1))", lambda x: x.permute(2, 0, 1)),
    r("avgpool2d", [N4], "avgpool2d(x, 2)", lambda x: F.avg_pool2d(x, 2)),
    r(
        "avgpool2d",
        [N4],
        "avgpool2d(x, (3, 2), stride=(2, 1), padding=(1, 0))",
        lambda x: F.avg_pool2d(x, (3, 2), (2, 1), (1, 0)),
    ),
    r("maxpool2d", [N4], "maxpool2d(x, (2, 3), stride=1)", lambda x: F.max_pool2d(x, (2, 3), 1)),
    r("adaptive_avgpool2d", [N4], "adaptive_avgpool2d(x, (1, 3))", lambda x: F.adaptive_avg_pool2d(x, (1, 3))),
    r("softmax", [N4], "softmax(x)", lambda x: F.softmax(x, -1)),
    r("log_softmax", [N4], "log_softmax(x, axis=1)", lambda x: F.log_softmax(x, 1)),
    r("sum", [N4], "sum(x, (0, -1), keepdim=true)", lambda x: x.sum((0, -1), keepdim=True)),
    r("concat", [("a", (2, 3)), ("b", (4, 3))], "concat(a, b, axis=0)", lambda a, b: torch.cat([a, b], 0)),
    r("flatten", [("x", (2, 3, 4))], "flatten(x, start=0)", lambda x: torch.flatten(x, 0)),
    r("mse_loss", [("a", (2, 3, 4)), ("b", (2, 3, 4))], "mse_loss(a, b)", F.mse_loss),
    r("cross_entropy", [("a", (6, 5)), ("y", (6,), "int64")], "cross_entropy(a, y)", F.cross_entropy),
    r("linear", [("x", (7,))], "linear(x, 3)", None, lambda: nn.Linear(7, 3)),
    r(
        "conv_transpose2d",
        [N4],
        "conv_transpose2d(x, 3, kernel=(2, 3), padding=(0, 1), bias=false)",
        None,
        lambda: nn.ConvTranspose2d(6, 3, (2, 3), padding=(0, 1), bias=False),
    ),
    # operators
    r("+", [("a", (2, 3, 4)), ("b", (3, 1))], "a + b", lambda a, b: a + b),
    r("-", [("a", (2, 3, 4))], "1 - a", lambda a: 1 - a),
    r("*", [("a", (2, 3, 4)), ("b", (4,))], "a * b * 0.5", lambda a, b: a * b * 0.5),
    r("/", [("a", (2, 3, 4)), ("b", (2, 1, 4))], "a / b", lambda a, b: a / b),
    r("@", [("a", (2, 3, 4)), ("b", (4, 5))], "a @ b", lambda a, b: a @ b),
    r("@", [("a", (5, 1, 3, 4)), ("b", (2, 4, 6))], "a @ b", lambda a, b: a @ b),
    r("@", [("a", (4,)), ("b", (2, 4, 6))], "a @ b", lambda a, b: a @ b),
    r("@", [("a", (3, 4)), ("b", (4,))], "a @ b", lambda a, b: a @ b),
    r("**", [("a", (2, 3))], "a ** 2", lambda a: a**2),
    r("neg", [("a", (2, 3))], "-a", lambda a: -a),
    # tensor indexing (language 1.1): the `getitem` op
    r("getitem", [N4], "x[:, 0]", lambda x: x[:, 0]),
    r("getitem", [N4], "x[:, -1]", lambda x: x[:, -1]),
    r("getitem", [N4], "x[..., 1:3]", lambda x: x[..., 1:3]),
    r("getitem", [N4], "x[:, ::2]", lambda x: x[:, ::2]),
    r("getitem", [N4], "x[1, 2:, -3, -7:-1:4]", lambda x: x[1, 2:, -3, -7:-1:4]),
    r("getitem", [("x", (3, 5))], "x[-2:100, ...]", lambda x: x[-2:100, ...]),
    r("getitem", [("x", (3, 5))], "x[1][2]", lambda x: x[1][2]),
    r("getitem", [("x", (3, 5))], "x[...]", lambda x: x[...]),
    r("getitem", [("x", (2, 3, 5), "int64")], "x[:, 1:, -2]", lambda x: x[:, 1:, -2]),
    # comparisons (language 1.1): element-wise, broadcasting, a bool tensor
    r("lt", [("a", (2, 3, 4)), ("b", (3, 1))], "a < b", lambda a, b: a < b),
    r("le", [("a", (2, 3))], "a <= 1.0", lambda a: a <= 1.0),
    r("gt", [("a", (2, 3))], "0.9 > a", lambda a: 0.9 > a),
    r("ge", [("a", (2, 3)), ("b", (2, 3))], "a >= b", lambda a, b: a >= b),
    r("eq", [("a", (4, 5), "int64"), ("b", (5,), "int64")], "a == b", lambda a, b: a == b),
    r("ne", [("m", (3, 4), "bool"), ("a", (3, 4))], "m != (a > 1.0)", lambda m, a: m != (a > 1.0)),
    r("eq", [("m", (3, 4), "bool")], "m == true", lambda m: m == True),  # noqa: E712
    # --- attention / recurrent (language 1.1)
    r(
        "attention",
        [("q", (2, 3, 5, 4)), ("k", (2, 3, 6, 4)), ("v", (2, 3, 6, 3))],
        "attention(q, k, v)",
        F.scaled_dot_product_attention,
    ),
    r(
        "attention",
        [("q", (2, 5, 4)), ("k", (2, 6, 4)), ("v", (2, 6, 3))],
        "attention(q, k, v, causal=true, scale=0.7)",
        lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=0.7),
    ),
    r(
        "attention",
        [("q", (2, 3, 5, 4)), ("k", (1, 3, 6, 4)), ("v", (2, 1, 6, 3)), ("m", (5, 6))],
        "attention(q, k, v, mask=m)",
        lambda q, k, v, m: F.scaled_dot_product_attention(q, k, v, attn_mask=m),
    ),
    r(
        "attention",
        [("q", (2, 5, 4)), ("k", (6, 4)), ("v", (6, 3)), ("m", (2, 1, 6))],
        "attention(q, k, v, mask=m > 0.7)",
        lambda q, k, v, m: F.scaled_dot_product_attention(q, k, v, attn_mask=m > 0.7),
    ),
    r(
        "lstm",
        [("x", (2, 5, 3))],
        "",
        None,
        lambda: _LSTM(3, 4, batch_first=True),
        body="out, h, c = lstm(x, 4)\n return out, h, c",
    ),
    r(
        "lstm",
        [("x", (2, 5, 3)), ("h", (4, 2, 4)), ("c", (4, 2, 4))],
        "",
        None,
        lambda: _LSTM(3, 4, num_layers=2, bidirectional=True, batch_first=True),
        body="out, hn, cn = lstm(x, 4, layers=2, bidirectional=true, h0=h, c0=c)\n return out, hn, cn",
    ),
    r(
        "lstm",
        [("x", (2, 5, 3)), ("h", (1, 2, 4))],
        "",
        None,
        lambda: _LSTM(3, 4, batch_first=True),
        body="out, hn, cn = lstm(x, 4, h0=h)\n return out, hn, cn",
    ),
    r(
        "gru",
        [("x", (2, 5, 3))],
        "",
        None,
        lambda: nn.GRU(3, 4, batch_first=True),
        body="out, h = gru(x, 4)\n return out, h",
    ),
    r(
        "gru",
        [("x", (2, 5, 3)), ("h", (6, 2, 4))],
        "",
        None,
        lambda: nn.GRU(3, 4, num_layers=3, bidirectional=True, batch_first=True),
        body="out, hn = gru(x, 4, layers=3, bidirectional=true, h0=h)\n return out, hn",
    ),
    r(
        "lstm",
        [("x", (2, 1, 3))],
        "",
        None,
        lambda: _LSTM(3, 4, num_layers=2, bidirectional=True, batch_first=True),
        body="out, h, c = lstm(x, 4, layers=2, bidirectional=true)\n return out, h, c",
    ),
    r(
        "gru",
        [("x", (3, 4, 2))],
        "",
        None,
        lambda: nn.GRU(2, 3, num_layers=2, bidirectional=True, batch_first=True),
        body="out, h = gru(x, 3, layers=2, bidirectional=true)\n return out, h",
    ),
    # --- end attention / recurrent
    # --- language 1.1 ops
    r("clamp", [N4], "clamp(x, min=0.8, max=1.2)", lambda x: torch.clamp(x, 0.8, 1.2)),
    r("clamp", [N4], "clamp(x, min=1.0)", lambda x: torch.clamp(x, min=1.0)),
    r("clamp", [N4], "clamp(x, max=0.9)", lambda x: torch.clamp(x, max=0.9)),
    r("hardswish", [N4], "hardswish(x * 8.0 - 8.0)", lambda x: F.hardswish(x * 8.0 - 8.0)),
    r("hardsigmoid", [N4], "hardsigmoid(x * 8.0 - 8.0)", lambda x: F.hardsigmoid(x * 8.0 - 8.0)),
    r("mish", [N4], "mish(x * 4.0 - 4.0)", lambda x: F.mish(x * 4.0 - 4.0)),
    r("gelu", [N4], 'gelu(x * 4.0 - 4.0, approximate="tanh")', lambda x: F.gelu(x * 4.0 - 4.0, approximate="tanh")),
    r("gelu", [N4], 'gelu(x, approximate="none")', F.gelu),
    r("logical_and", [("m", (3, 4), "bool"), ("n", (4,), "bool")], "logical_and(m, n)", torch.logical_and),
    r("logical_or", [("m", (3, 4), "bool"), ("a", (3, 4))], "logical_or(m, a > 1.0)", lambda m, a: m | (a > 1.0)),
    r("logical_not", [("m", (3, 4), "bool")], "logical_not(m)", torch.logical_not),
    r("cast", [("m", (3, 4), "bool")], 'cast(m, "float32")', lambda m: m.to(torch.float32)),
    r("cast", [("a", (3, 4))], 'cast(a * 3.0, "int64")', lambda a: (a * 3.0).to(torch.int64)),
    r("cast", [("a", (3, 4))], 'cast(a, "float64")', lambda a: a.double()),
    r("cast", [("i", (3, 4), "int64")], 'cast(i, "bool")', lambda i: i.to(torch.bool)),
    r("where", [("m", (3, 4), "bool"), ("a", (3, 4)), ("b", (4,))], "where(m, a, b)", torch.where),
    r("where", [("m", (3, 1), "bool"), ("a", (3, 4))], "where(m, a, 0.0)", lambda m, a: torch.where(m, a, 0.0)),
    r("where", [("a", (3, 4))], "where(a > 1.0, 2, a)", lambda a: torch.where(a > 1.0, 2.0, a)),
    r("where", [("m", (3, 4), "bool"), ("i", (4,), "int64")], "where(m, i, 7)", lambda m, i: torch.where(m, i, 7)),
    r(
        "masked_fill",
        [("a", (3, 4)), ("m", (4,), "bool")],
        "masked_fill(a, m, -1.5)",
        lambda a, m: a.masked_fill(m, -1.5),
    ),
    r(
        "masked_fill",
        [("s", (2, 4, 4))],
        "masked_fill(s, (ones((4, 4)) -> triu(diagonal=1)) != 0, -1e9) -> softmax",
        lambda s: F.softmax(s.masked_fill(torch.ones(4, 4).triu(1) != 0, -1e9), -1),
    ),
    r("tril", [("a", (2, 4, 5))], "tril(a)", torch.tril),
    r("triu", [("a", (4, 5))], "triu(a, diagonal=1)", lambda a: torch.triu(a, 1)),
    r("tril", [("m", (4, 4), "bool")], "tril(m, diagonal=-1)", lambda m: torch.tril(m, -1)),
    r(
        "stochastic_depth",
        [N4],
        "stochastic_depth(x, 0.4)",
        lambda x: x,
        train_fn=lambda x: x * torch.empty(2, 1, 1, 1).bernoulli_(0.6).div_(0.6),
    ),
    r(
        "stochastic_depth",
        [("x", (5, 3))],
        'stochastic_depth(x, 0.5, mode="batch")',
        lambda x: x,
        train_fn=lambda x: x * torch.empty(1, 1).bernoulli_(0.5).div_(0.5),
    ),
    r("param", [("x", (3, 4))], 'x * param((3, 4), init="ones", scale=0.5)', lambda x: x * 0.5),
    r("param", [("x", (2, 3, 4))], "x + param((1, 4))", lambda x: x),
    r("ones", [("x", (3, 4))], "x + ones((3, 4))", lambda x: x + 1),
    r("zeros", [("i", (2, 3), "int64")], 'i + zeros((3,), dtype="int64")', lambda i: i),
    r("full", [("x", (3, 4))], "full((3, 4), 2.5) * x", lambda x: 2.5 * x),
    r("full", [("x", (3, 4))], 'where(full((4,), 1, dtype="bool"), x, 0.0)', lambda x: x),
    r("arange", [("x", (3, 4))], 'x * arange(4, dtype="float32")', lambda x: x * torch.arange(4.0)),
    r("arange", [("i", (2, 5), "int64")], "i + arange(5)", lambda i: i + torch.arange(5)),
    r("expand", [("x", (2, 1))], "expand(x, (3, -1, 4))", lambda x: x.expand(3, -1, 4)),
    r("expand", [("x", (2, 3))], "expand(x, (2, 3))", lambda x: x.expand(2, 3)),
    r("roll", [N4], "roll(x, 2, 1)", lambda x: torch.roll(x, 2, 1)),
    r("roll", [N4], "roll(x, (-1, 12), (2, -1))", lambda x: torch.roll(x, (-1, 12), (2, -1))),
    r(
        "index_select",
        [N4, ("i", (4,), "int64")],
        "index_select(x, i, axis=2)",
        lambda x, i: torch.index_select(x, 2, i),
    ),
    r("index_select", [("t", (5, 3)), ("i", (7,), "int64")], "index_select(t, i)", lambda t, i: t[i]),
    r(
        "maxpool2d",
        [("x", (2, 3, 8, 8))],
        "maxpool2d(x, 3, stride=2, ceil_mode=true)",
        lambda x: F.max_pool2d(x, 3, 2, ceil_mode=True),
    ),
    r(  # the last window would start in the padding: PyTorch drops it
        "maxpool2d",
        [N4],
        "maxpool2d(x, 2, padding=1, ceil_mode=true)",
        lambda x: F.max_pool2d(x, 2, padding=1, ceil_mode=True),
    ),
    r(
        "avgpool2d",
        [("x", (2, 3, 8, 8))],
        "avgpool2d(x, 3, stride=2, ceil_mode=true)",
        lambda x: F.avg_pool2d(x, 3, 2, ceil_mode=True),
    ),
    r(
        "avgpool2d",
        [N4],
        "avgpool2d(x, 3, stride=2, padding=1, count_include_pad=false)",
        lambda x: F.avg_pool2d(x, 3, 2, 1, count_include_pad=False),
    ),
    r(
        "avgpool2d",
        [("x", (2, 3, 8, 8))],
        "avgpool2d(x, (3, 2), stride=2, padding=1, ceil_mode=true, count_include_pad=false)",
        lambda x: F.avg_pool2d(x, (3, 2), 2, 1, ceil_mode=True, count_include_pad=False),
    ),
    r("adaptive_avgpool2d", [N4], "adaptive_avgpool2d(x, (4, 5))", lambda x: F.adaptive_avg_pool2d(x, (4, 5))),
    r("adaptive_avgpool2d", [N4], "adaptive_avgpool2d(x, (2, 3))", lambda x: F.adaptive_avg_pool2d(x, (2, 3))),
    # --- end language 1.1 ops
]


def _spec(row):
    inputs = ", ".join(f"{i[0]}: {i[2] if len(i) > 2 else ''}[{', '.join(map(str, i[1]))}]" for i in row.inputs)
    return f"network t({inputs}) {{\n {row.body}\n}}\n"


def _tensors(row):
    out = []
    for spec in row.inputs:
        shape = spec[1]
        if len(spec) > 2 and spec[2] == "bool":
            out.append(torch.rand(shape) < 0.5)
        elif len(spec) > 2:
            out.append(torch.randint(0, 3, shape))
        else:
            out.append(torch.rand(shape) + 0.5)
    return out


def test_every_callable_op_has_a_row():
    covered = {row.op for row in ROWS}
    assert set(CALLABLE) <= covered, sorted(set(CALLABLE) - covered)


def _copy_weights(reference, compiled):
    """The layer's torch.nn keys (`weight`) are the netc keys without the instance name."""
    state = {key.split(".", 1)[1]: value for key, value in compiled.state_dict().items()}
    reference.load_state_dict(state, strict=True)


@pytest.mark.parametrize("row", ROWS, ids=lambda row: row.id)
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_op_values_match_torch(row, mode):
    """The emitted module computes what the plain torch call computes."""
    if mode == "train" and row.op == "dropout":
        pytest.skip("dropout draws a random mask in training; its eval row covers the lowering")
    compiled = compile_string(_spec(row))
    module = compiled.torch().train(mode == "train")
    tensors = _tensors(row)
    torch.manual_seed(0)  # a random training forward (stochastic_depth) draws the same numbers twice
    if row.module is not None:
        reference = row.module().train(mode == "train")
        _copy_weights(reference, module)
        expected = reference(*tensors)
    else:
        expected = (row.train_fn if mode == "train" and row.train_fn else row.torch_fn)(*tensors)
    torch.manual_seed(0)
    got = module(*tensors)
    expected = expected if isinstance(expected, (tuple, list)) else (expected,)
    got = got if isinstance(got, tuple) else (got,)
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("row", ROWS, ids=lambda row: row.id)
def test_op_row(row):
    compiled = compile_string(_spec(row))
    layer_nodes = [n for n in compiled.layers()]
    if row.module is not None:
        module = row.module()
        got = {}
        node = next(n for n in layer_nodes if n.op == row.op)
        got = {k: tuple(t.shape) for k, t in {**node.params, **node.buffers}.items()}
        want = {k: tuple(v.shape) for k, v in module.state_dict().items()}
        assert got == want
        assert node.parameter_count == sum(p.numel() for p in module.parameters())
        expected = module(*_tensors(row))
    else:
        expected = row.torch_fn(*_tensors(row))
    expected = expected if isinstance(expected, (tuple, list)) else (expected,)
    g = compiled.graph
    shapes = [tuple(g.type_of(v).shape) for _, v in g.outputs]
    assert shapes == [tuple(t.shape) for t in expected]
    dtypes = [g.type_of(v).dtype for _, v in g.outputs]
    assert dtypes == [str(t.dtype).removeprefix("torch.") for t in expected]


def _random_weights(module):
    """Weights away from torch's defaults (a batchnorm's running mean 0 and variance 1 would
    hide swapped statistics); all positive, which keeps sqrt and log rows defined."""
    with torch.no_grad():
        for value in module.state_dict().values():
            if value.is_floating_point():
                value.copy_(torch.rand_like(value) + 0.5)


@pytest.mark.parametrize("optimize", [False, True], ids=["plain", "optimized"])
@pytest.mark.parametrize("row", ROWS, ids=lambda row: row.id)
def test_op_onnx_matches_torch(row, optimize):
    if row.onnx_xfail:
        pytest.xfail(row.onnx_xfail)
    compiled = compile_string(_spec(row))
    module = compiled.torch().eval()
    _random_weights(module)
    tensors = _tensors(row)
    with torch.no_grad():
        expected = module(*tensors)
    expected = expected if isinstance(expected, tuple) else (expected,)
    model = compiled.onnx(weights=module.state_dict(), optimize=optimize)
    check_model(model, compiled.graph)
    got = run(model, {name: t.numpy() for name, t in zip(compiled.graph.inputs, tensors)})
    assert len(got) == len(expected)
    rtol, atol = row.tol
    for g, e in zip(got, expected):
        assert g.dtype == e.numpy().dtype
        torch.testing.assert_close(torch.from_numpy(g), e, rtol=rtol, atol=atol)
