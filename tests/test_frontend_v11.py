"""Language 1.1's front end: tensor indexing on symbolic axes through both backends and the
backward graph, comparisons and bool tensors, compile-time functions, and blocks that take
the names of built-in operators (the op table, tests/test_ops.py, has the per-op rows)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from netc.compiler import compile_file, compile_string
from netc.dsl.diagnostics import NetcError

torch = pytest.importorskip("torch")

from grad_checks import autograd, compare, feeds_for, masks_for, onnx_gradients, torch_gradients  # noqa: E402
from onnx_checks import check_model, run  # noqa: E402

INDEXING = """
network idx(s: [N, T, 5]) {
    a = s[:, 1:] -> sum(1)
    b = s[:, :-1, ::2]
    c = s[:, -2:, 1]
    d = s[:, T - 1, 1::3]
    e = s[:, 1::2]
    f = s[..., -1]
    return a, b, c, d, e, f
}
"""


def _expected(x):
    return (x[:, 1:].sum(1), x[:, :-1, ::2], x[:, -2:, 1], x[:, x.shape[1] - 1, 1::3], x[:, 1::2], x[..., -1])


def test_indexing_symbolic_axes_shapes():
    graph = compile_string(INDEXING).graph
    shapes = [str(graph.type_of(v)) for _, v in graph.outputs]
    assert shapes == ["[N, 5]", "[N, T - 1, 3]", "[N, 2]", "[N, 2]", "[N, T // 2, 5]", "[N, T]"]


def test_indexing_reads_as_python():
    source = compile_string(INDEXING).torch_source()
    for text in ("s[:, 1:]", "s[:, :-1, ::2]", "s[:, -2:, 1]", "s[:, T - 1, 1::3]", "s[:, 1::2]", "s[..., -1]"):
        assert text in source, text


@pytest.mark.parametrize("length", [7, 4])
def test_indexing_symbolic_axes_torch_onnx_and_gradients(length):
    compiled = compile_string(INDEXING)
    module = compiled.torch()
    x = torch.rand(2, length, 5)
    got = module(x)
    for g, e in zip(got, _expected(x)):
        torch.testing.assert_close(g, e)
    model = compiled.onnx(weights=module.state_dict())
    check_model(model, compiled.graph)
    for g, e in zip(run(model, {"s": x.numpy()}), _expected(x)):
        torch.testing.assert_close(torch.from_numpy(g), e)
    seeds = {name: torch.rand(o.shape) - 0.5 for (name, _), o in zip(compiled.graph.outputs, got)}
    feeds = feeds_for(compiled, [x], seeds, masks_for(compiled, torch.Generator().manual_seed(0)))
    want = autograd(compiled, copy.deepcopy(module), [x], seeds)
    compare(onnx_gradients(compiled.graph, module, feeds), want, 1e-4, 1e-5, "onnxruntime")
    compare(torch_gradients(compiled.graph, copy.deepcopy(module), feeds), want, 1e-4, 1e-5, "torch backward")


def test_index_then_layer_counts_parameters():
    compiled = compile_string(
        """
        network t(tokens: [N, 17, 32]) {
            first: [N, 32] = tokens[:, 0]
            return first -> linear(10)
        }
        """
    )
    assert compiled.parameters == 32 * 10 + 10


MASKS = """
network m(x: [N, 8], valid: bool[N, 8], ids: int64[N]) {
    positive = x > 0.75
    both = valid == positive
    kept = ids != 1
    return positive, both, kept
}
"""


def test_bool_inputs_and_comparisons_run_in_both_backends():
    compiled = compile_string(MASKS)
    graph = compiled.graph
    assert [graph.type_of(v).dtype for _, v in graph.outputs] == ["bool"] * 3
    x, valid, ids = torch.rand(3, 8) + 0.5, torch.rand(3, 8) < 0.5, torch.tensor([0, 1, 2])
    want = (x > 0.75, valid == (x > 0.75), ids != 1)
    got = compiled.torch()(x, valid, ids)
    for g, w in zip(got, want):
        assert torch.equal(g, w)
    model = compiled.onnx()
    check_model(model, graph)
    for g, w in zip(run(model, {"x": x.numpy(), "valid": valid.numpy(), "ids": ids.numpy()}), want):
        assert g.dtype == np.bool_ and (g == w.numpy()).all()


def test_compile_time_functions():
    compiled = compile_string(
        """
        network c(x: [N, 16]) {
            assert round(0.5) == 0 and round(1.5) == 2 and round(-1.5) == -2 and round(7) == 7
            assert int(-0.5) == 0 and int(3) == 3 and int(-3.9) == -3
            assert min((4, 2, 9)) == 2 and max(1, 2.5) == 2.5 and min(1, 1.0) == 1
            assert len("abc") == 3 and len(()) == 0 and len(x.shape) == 2
            return x -> linear(max(round(x.shape[1] * 0.75), 4))
        }
        """
    )
    assert compiled.parameters == 16 * 12 + 12


def test_compile_time_functions_refuse_dimensions():
    with pytest.raises(NetcError, match="only known at run time"):
        compile_string("network c(x: [N, 16]) {\n y = x -> linear(min(x.shape[0], 4))\n return y\n}")


def test_blocks_take_the_names_of_builtin_operators(tmp_path):
    """A block named like an operator (old or new in 1.1) means the block, in its file and
    in the files importing it; elsewhere the name stays the operator."""
    (tmp_path / "lib.net").write_text(
        """
        block attention(x, heads=2) {
            scores = x @ (x -> permute((0, 2, 1)))
            return (scores -> softmax(axis=-1)) @ (x -> linear(8))
        }
        block relu(x) {
            return x -> sigmoid
        }
        """
    )
    (tmp_path / "main.net").write_text(
        """
        import "lib.net"
        block roll(x, shift) { return x * shift }
        block hardswish(x) { return x -> tanh }
        block max(a, b) { return a + b }
        network n(x: [N, 4, 8]) {
            y = attention(x) -> relu -> roll(2.0) -> hardswish
            z = max(y, x)
            return z
        }
        """
    )
    compiled = compile_file(tmp_path / "main.net")
    blocks = sorted(compiled.graph.instances.values())
    assert blocks == ["attention", "hardswish", "max", "relu", "roll"]
    assert compiled.parameters == 8 * 8 + 8
    ops = {node.op for node in compiled.graph.nodes()}
    assert "relu" not in ops and "sigmoid" in ops and "tanh" in ops
    module = compiled.torch()
    x = torch.rand(2, 4, 8)
    linear = dict(module.named_modules())["attention_0.linear_0"]
    scores = torch.softmax(x @ x.transpose(1, 2), dim=-1)
    y = torch.tanh(torch.sigmoid(scores @ linear(x)) * 2.0)
    torch.testing.assert_close(module(x), y + x)
    model = compiled.onnx(weights=module.state_dict())
    torch.testing.assert_close(torch.from_numpy(run(model, {"x": x.numpy()})[0]), (y + x).detach())
    # without the import, `relu` is the operator again
    (tmp_path / "plain.net").write_text("network p(x: [N, 4]) {\n return x -> relu\n}\n")
    assert [n.op for n in compile_file(tmp_path / "plain.net").graph.nodes()] == ["input", "relu"]


def test_compile_time_functions_in_emitted_blocks():
    """A block instantiated with different arguments: the emitted class computes its sizes
    with the same functions, so every instance gets the spec's sizes."""
    compiled = compile_string(
        """
        block head(x, ratio) {
            width = max(4, round(x.shape[1] * ratio))
            return x -> linear(width) -> linear(min(width, len((1, 2, 3))), bias=int(ratio) > 0)
        }
        network two(x: [N, 10]) {
            return head(x, 0.25), head(x, 1.5), head(x, 2.5)
        }
        """
    )
    module = compiled.torch()
    assert sum(p.numel() for p in module.parameters()) == compiled.parameters
    source = compiled.torch_source()
    assert "max(4, round(" in source
    x = torch.rand(3, 10)
    assert [tuple(y.shape) for y in module(x)] == [(3, 3), (3, 3), (3, 3)]
    assert [n.params["weight"].shape for n in compiled.graph.nodes() if n.op == "linear"][::2] == [
        (4, 10),
        (15, 10),
        (25, 10),
    ]
