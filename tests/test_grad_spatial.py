"""Gradient rules of the spatial ops (conv1d, conv2d, conv_transpose2d, maxpool2d, avgpool2d,
adaptive_avgpool2d, upsample) and embedding, one row per argument combination.

From each row: the ONNX training model passes the full checker and strict shape inference
(netc's types of the backward nodes agree with ONNX's); its gradients in onnxruntime, and
those of the emitted torch `backward` function, equal torch.autograd on the netc module
(float32, rtol 1e-4, atol 1e-5); and in float64 the derived gradient agrees with central
finite differences of the module along random directions (eps 1e-6, atol 1e-5, rtol 1e-3).
The cases the rules refuse raise a `grad` error at the forward call.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field

import pytest

torch = pytest.importorskip("torch")

from grad_checks import autograd, compare, feeds_for, onnx_gradients, torch_gradients  # noqa: E402
from netc.backends.onnx import emit_backward  # noqa: E402
from netc.compiler import compile_string  # noqa: E402
from netc.compiler.autodiff import backward_graph  # noqa: E402
from netc.compiler.verify import verify  # noqa: E402
from netc.dsl.diagnostics import NetcError  # noqa: E402
from onnx_checks import check_model  # noqa: E402

# torch warns that its own "same" with an even kernel pads a copy of the input
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same'")

X = "x: [2, 4, 9, 8]"


@dataclass
class Row:
    body: str  # what the network returns
    signature: str = X  # its inputs; symbolic sizes take `sizes` at run time
    sizes: dict = field(default_factory=dict)

    @property
    def id(self) -> str:
        symbolic = f" @{self.signature}" if self.sizes else ""
        return self.body + symbolic

    def spec(self, dtype: str = "float32") -> str:
        signature = self.signature
        if dtype != "float32":  # float inputs only: ids stay int64
            signature = re.sub(r"(\w+): \[", rf"\1: {dtype}[", signature)
        return f"network t({signature}) {{\n return {self.body}\n}}\n"


ROWS = [
    # conv2d: stride, padding (explicit, "same" with odd and even kernels), dilation, groups, bias
    Row("conv2d(x, 6, kernel=3)"),
    Row("conv2d(x, 6, kernel=3, stride=2, padding=1, bias=false)"),
    Row("conv2d(x, 6, kernel=(3, 2), stride=(2, 1), padding=(0, 1))"),
    Row('conv2d(x, 6, kernel=3, padding="same")'),
    Row('conv2d(x, 6, kernel=4, padding="same", bias=false)'),
    Row('conv2d(x, 6, kernel=(2, 3), padding="same", dilation=2)'),
    Row("conv2d(x, 6, kernel=3, stride=2, dilation=2, padding=2)"),
    Row("conv2d(x, 6, kernel=3, stride=2, padding=1, groups=2)"),
    Row('conv2d(x, 8, kernel=4, padding="same", groups=2)'),
    Row("conv2d(x, 4, kernel=3, padding=1, groups=4)"),  # depthwise
    Row("conv2d(x, 8, kernel=3, stride=2, groups=4, bias=false)"),  # depthwise, multiplier 2
    Row("conv2d(x, 6, kernel=3, stride=2, padding=1, groups=2)", "x: [N, 4, H, W]", {"N": 2, "H": 9, "W": 8}),
    Row('conv2d(x, 6, kernel=4, padding="same")', "x: [N, 4, H, W]", {"N": 2, "H": 7, "W": 6}),
    # stride 2 whose padded height (10) the stride divides: the batch-tiled Conv can take it;
    # a 1x1 kernel narrower than its stride cannot
    Row("conv2d(x, 6, kernel=3, stride=2, padding=1)", "x: [2, 4, 8, 8]"),
    Row("conv2d(x, 6, kernel=1, stride=2, bias=false)", "x: [2, 4, 8, 8]"),
    # conv1d
    Row("conv1d(x, 6, kernel=3, stride=2, padding=1)", "x: [2, 4, 11]"),
    Row('conv1d(x, 8, kernel=4, padding="same", dilation=2, groups=2, bias=false)', "x: [2, 4, 11]"),
    Row("conv1d(x, 4, kernel=3, stride=2, groups=4)", "x: [N, 4, L]", {"N": 2, "L": 10}),
    # conv_transpose2d: output_padding, groups, bias
    Row("conv_transpose2d(x, 6, kernel=2, stride=2)"),
    Row("conv_transpose2d(x, 6, kernel=3, stride=2, padding=1, output_padding=1, bias=false)"),
    Row("conv_transpose2d(x, 6, kernel=(3, 2), stride=(2, 3), padding=(1, 0), output_padding=(1, 2), groups=2)"),
    Row("conv_transpose2d(x, 4, kernel=3, padding=1, groups=4)", "x: [N, 4, H, W]", {"N": 2, "H": 5, "W": 6}),
    # maxpool2d: overlapping windows with padding, non-overlapping
    Row("maxpool2d(x, 3, stride=2, padding=1)"),
    Row("maxpool2d(x, 2)"),
    Row("maxpool2d(x, (2, 3), stride=1)"),
    Row("maxpool2d(x, 3, stride=2, padding=1)", "x: [N, 4, H, W]", {"N": 2, "H": 9, "W": 8}),
    # avgpool2d: padding counted
    Row("avgpool2d(x, 3, stride=2, padding=1)"),
    Row("avgpool2d(x, 2)"),
    Row("avgpool2d(x, (3, 2), stride=(2, 1), padding=(1, 0))"),
    Row("avgpool2d(x, 3, stride=2, padding=1)", "x: [N, 4, H, W]", {"N": 2, "H": 9, "W": 8}),
    # adaptive_avgpool2d: size 1 (symbolic too) and divisors of static sizes
    Row("adaptive_avgpool2d(x, 1)"),
    Row("adaptive_avgpool2d(x, 1)", "x: [N, 4, H, W]", {"N": 2, "H": 5, "W": 6}),
    Row("adaptive_avgpool2d(x, 2)", "x: [2, 4, 8, 6]"),
    Row("adaptive_avgpool2d(x, (3, 1))"),
    # a mean over size-1 axes after a symbolic-size pool: its factor 1 is no Mul, which
    # onnxruntime 1.32's NoopElimination removed, leaving the model unloadable
    Row("mean(adaptive_avgpool2d(x, 1), (2, 3))", "x: [N, 4, H, W]", {"N": 2, "H": 5, "W": 6}),
    # upsample
    Row("upsample(x)"),
    Row("upsample(x, scale=3)", "x: [N, 4, H, W]", {"N": 2, "H": 4, "W": 3}),
    Row('upsample(x, mode="bilinear")', "x: [2, 3, 5, 4]"),
    Row('upsample(x, scale=3, mode="bilinear")', "x: [2, 3, 4, 1]"),
    # embedding: ids repeat (7 ids over 3 rows), and a 2-d batch of ids
    Row("embedding(ids, 3, 5)", "ids: int64[7]"),
    Row("embedding(ids, 4, 5)", "ids: int64[N, T]", {"N": 3, "T": 5}),
    # in a network: a skip connection sums the gradients reaching x
    Row("avgpool2d(upsample(maxpool2d(relu(conv2d(x, 4, kernel=3, padding=1)), 2)) + x, 2)", "x: [2, 4, 8, 8]"),
]


def _setup(row: Row, dtype: str = "float32", seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    compiled = compile_string(row.spec(dtype))
    module = compiled.torch().train()
    with torch.no_grad():
        for value in module.state_dict().values():
            if value.is_floating_point():
                value.copy_(torch.rand(value.shape, generator=generator) - 0.5)
    tensors = []
    for name in compiled.graph.inputs:
        t = compiled.graph.node(name).outputs[0]
        shape = tuple(d if isinstance(d, int) else row.sizes[d.text()] for d in t.shape)
        if t.dtype == "int64":
            tensors.append(torch.randint(0, 3, shape, generator=generator))
        else:
            tensors.append(torch.rand(shape, generator=generator, dtype=getattr(torch, t.dtype)) - 0.5)
    with torch.no_grad():
        outputs = copy.deepcopy(module)(*tensors)
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    seeds = {
        name: torch.rand(o.shape, generator=generator, dtype=o.dtype) - 0.5
        for (name, _), o in zip(compiled.graph.outputs, outputs)
        if o.dim() > 0
    }
    return compiled, module, tensors, seeds


@pytest.mark.parametrize("row", ROWS, ids=lambda row: row.id)
def test_derived_gradients_match_autograd(row):
    compiled, module, tensors, seeds = _setup(row)
    graph = backward_graph(compiled.graph)
    verify(graph)
    check_model(emit_backward(compiled.graph).to_proto(), graph)
    feeds = feeds_for(compiled, tensors, seeds, {})
    want = autograd(compiled, copy.deepcopy(module), tensors, seeds)
    assert any(name.startswith("grad.") for name in want)
    compare(onnx_gradients(compiled.graph, module, feeds), want, 1e-4, 1e-5, "onnxruntime")
    compare(torch_gradients(compiled.graph, copy.deepcopy(module), feeds), want, 1e-4, 1e-5, "torch backward")


@pytest.mark.parametrize("row", ROWS, ids=lambda row: row.id)
def test_derived_gradients_match_finite_differences(row):
    """<grad, v> against (f(p + eps v) - f(p - eps v)) / (2 eps) along random directions v
    over every parameter and float input, f the seeded sum of the outputs, in float64. The
    derived gradient runs as the torch `backward` function (onnxruntime has no float64 Conv);
    an embedding's weight is float32 whatever its ids, so its module is made float64."""
    compiled, module, tensors, seeds = _setup(row, "float64")
    module = module.double()
    seeds = {name: seed.double() for name, seed in seeds.items()}
    derived = torch_gradients(compiled.graph, copy.deepcopy(module), feeds_for(compiled, tensors, seeds, {}))
    params = dict(module.named_parameters())
    floats = {
        f"grad.{name}": i for i, (name, t) in enumerate(zip(compiled.graph.inputs, tensors)) if t.is_floating_point()
    }
    names = [n for n in [f"grad.{k}" for k in params] + list(floats) if n in derived]
    assert names

    def f(step):
        probe, moved = copy.deepcopy(module), list(tensors)
        with torch.no_grad():
            for name, delta in step.items():
                if name in floats:
                    moved[floats[name]] = moved[floats[name]] + delta
                else:
                    probe.get_parameter(name[len("grad.") :]).add_(delta)
            outputs = probe(*moved)
        outputs = outputs if isinstance(outputs, tuple) else (outputs,)
        names_out = [name for name, _ in compiled.graph.outputs]
        return sum(float((o * seeds[n]).sum()) if n in seeds else float(o.sum()) for n, o in zip(names_out, outputs))

    generator = torch.Generator().manual_seed(1)
    eps = 1e-6
    for _ in range(3):
        direction = {n: torch.randn(derived[n].shape, generator=generator, dtype=torch.float64) for n in names}
        ahead, behind = f({n: eps * v for n, v in direction.items()}), f({n: -eps * v for n, v in direction.items()})
        numeric = (ahead - behind) / (2 * eps)
        analytic = sum(
            float((torch.as_tensor(derived[n], dtype=torch.float64) * v).sum()) for n, v in direction.items()
        )
        assert abs(numeric - analytic) <= 1e-5 + 1e-3 * abs(numeric), (numeric, analytic)


def test_rows_use_every_new_backward_op():
    used = {node.op for row in ROWS for node in backward_graph(compile_string(row.spec()).graph).nodes()}
    new = {"conv_input_grad", "conv_weight_grad", "convolve", "maxpool2d_grad", "avgpool2d_grad", "constant_tensor"}
    assert new | {"embedding_grad"} <= used


@pytest.mark.parametrize(
    "body, signature, words",
    [
        ("adaptive_avgpool2d(x, 2)", "x: [N, 4, H, W]", "size (2, 2) on an input of size [H, W]"),
        ("adaptive_avgpool2d(x, (1, 2))", "x: [N, 4, 6, W]", "size (1, 2)"),
        ('upsample(x, mode="bilinear")', "x: [N, 4, H, 8]", "bilinear upsample on an input of size [H, 8]"),
    ],
)
def test_refused_gradients_name_the_call(body, signature, words):
    spec = Row(body, signature).spec()
    compiled = compile_string(spec)  # the forward compiles; only its gradient is refused
    with pytest.raises(NetcError) as caught:
        backward_graph(compiled.graph)
    diagnostic = caught.value.diagnostic
    assert diagnostic.code == "grad" and words in diagnostic.message
    assert diagnostic.span is not None and diagnostic.span.line == 2


@pytest.mark.parametrize("lowering", ["gathered", "conv"])
@pytest.mark.parametrize(
    "row", [r for r in ROWS if r.body.startswith(("conv1d", "conv2d")) and "groups" not in r.body], ids=lambda r: r.id
)
def test_both_onnx_weight_gradient_lowerings_match_autograd(row, lowering, monkeypatch):
    """An ungrouped convolution's weight gradient has two ONNX lowerings, chosen by the
    input's channels and size (ops/internal.py `_conv_weight_grad_onnx`): the rows' 4
    channels pick the Conv, so each row runs here with each lowering forced."""
    from netc.compiler.ops import internal

    monkeypatch.setattr(internal, "_GATHER_MIN_CHANNELS", 1 if lowering == "gathered" else 10**9)
    compiled, module, tensors, seeds = _setup(row)
    model = emit_backward(compiled.graph).to_proto()
    gathered = any(n.op_type == "Gather" for n in model.graph.node)
    static = not row.sizes
    assert gathered == (lowering == "gathered" and static)
    want = autograd(compiled, copy.deepcopy(module), tensors, seeds)
    feeds = feeds_for(compiled, tensors, seeds, {})
    compare(onnx_gradients(compiled.graph, module, feeds), want, 1e-4, 1e-5, f"onnxruntime, {lowering}")


def _tiled_convs(model, op: str = "Conv") -> int:
    """`op` nodes reading a batch laid along one tall image (convolution.py)."""
    from onnx import numpy_helper

    made = {out: n for n in model.graph.node for out in n.output}

    def tall(value) -> bool:  # Reshape(., [1, C, -1, ...])
        node = made.get(value)
        if node is None or node.op_type != "Reshape" or made[node.input[1]].op_type != "Constant":
            return False
        shape = numpy_helper.to_array(made[node.input[1]].attribute[0].t).tolist()
        return shape[0] == 1 and shape[2] == -1

    return sum(1 for n in model.graph.node if n.op_type == op and tall(n.input[0]))


# The static ungrouped rows with a Conv the batch can be tiled for: stride 1, or a stride
# that divides the padded height, with a kernel at least as tall as the stride. The dx of a
# conv_transpose2d is a Conv of g (18 rows here) at the transpose's stride.
_TILEABLE = {
    "conv2d(x, 6, kernel=3)",
    'conv2d(x, 6, kernel=3, padding="same")',
    'conv2d(x, 6, kernel=4, padding="same", bias=false)',
    'conv2d(x, 6, kernel=(2, 3), padding="same", dilation=2)',
    "conv2d(x, 6, kernel=3, stride=2, padding=1)",
    "conv_transpose2d(x, 6, kernel=2, stride=2)",
    "conv_transpose2d(x, 6, kernel=3, stride=2, padding=1, output_padding=1, bias=false)",
}


@pytest.mark.parametrize("flip", [True, False], ids=["flipped-conv", "conv-transpose"])
@pytest.mark.parametrize("tile", [True, False], ids=["tiled", "plain"])
@pytest.mark.parametrize("row", [r for r in ROWS if r.body.startswith("conv")], ids=lambda r: r.id)
def test_every_onnx_convolution_lowering_matches_autograd(row, tile, flip, monkeypatch):
    """A training model's convolutions have more than one ONNX lowering, chosen by size
    (ops/convolution.py: the batch tiled into one image where images are small, for the
    Conv and for a stride-1 input gradient's ConvTranspose; ops/internal.py
    `_conv_input_grad_onnx`: a stride-1 input gradient as a Conv with the kernel flipped
    where the kernel is not too large to flip). The rows' small sizes pick the tiled Conv
    and the flipped kernel, so each row runs here with each choice forced, and the forced
    one is checked to be used where it applies."""
    from netc.compiler.ops import convolution, internal

    monkeypatch.setattr(convolution, "_TILE_MAX_POSITIONS", 10**9 if tile else 0)
    monkeypatch.setattr(internal, "_FLIP_MAX_WEIGHT", 10**12 if flip else 0)
    compiled, module, tensors, seeds = _setup(row)
    model = emit_backward(compiled.graph).to_proto()
    ops = [n.op_type for n in model.graph.node]
    plain_conv = row.body.startswith(("conv1d", "conv2d"))
    ungrouped_static = "groups" not in row.body and not row.sizes
    tiles = tile and ungrouped_static and row.body in _TILEABLE
    assert (_tiled_convs(model) > 0) == tiles
    stride_1 = plain_conv and "groups" not in row.body and "stride" not in row.body
    if stride_1 and flip:  # symbolic sizes too
        assert "ConvTranspose" not in ops
    elif plain_conv and not flip:
        assert "ConvTranspose" in ops
        assert (_tiled_convs(model, "ConvTranspose") > 0) == (stride_1 and not row.sizes and tile)
    want = autograd(compiled, copy.deepcopy(module), tensors, seeds)
    feeds = feeds_for(compiled, tensors, seeds, {})
    compare(onnx_gradients(compiled.graph, module, feeds), want, 1e-4, 1e-5, f"onnxruntime, tile={tile} flip={flip}")
