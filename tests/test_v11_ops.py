"""Language 1.1's learned tensors, constants and new operators beyond their op-table rows:
how `param` is named in every backend, where constants are made, stochastic_depth's
training forward, and where the new operators' errors point."""

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from netc.compiler import compile_file, compile_string  # noqa: E402
from netc.compiler.autodiff import backward_graph  # noqa: E402
from netc.dsl.diagnostics import NetcError  # noqa: E402
from onnx_checks import run  # noqa: E402

CONFORMANCE = Path(__file__).parent / "conformance" / "ok"


def _case(name):
    path = CONFORMANCE / f"{name}.net"
    if not path.exists():  # the shared copy, where tests/conformance lags behind
        path = Path(__file__).parents[2] / "shared" / "conformance" / "ok" / f"{name}.net"
    return path


def test_param_is_named_by_its_instance_path_everywhere():
    net = compile_file(_case("v11_class_token"))
    module = net.torch()
    keys = set(module.state_dict())
    assert {"class_token", "pos_embedding"} <= keys
    assert not any(k.startswith(("class_token.", "pos_embedding.")) for k in keys)
    assert sum(p.numel() for p in module.parameters()) == net.parameters == 7146
    assert set(net.weights()) == keys
    initializers = {t.name for t in net.onnx(weights=module.state_dict(), optimize=False).graph.initializer}
    assert {"class_token", "pos_embedding"} <= initializers
    grads = {name for name, _ in backward_graph(net.graph).outputs}
    assert {"grad.class_token", "grad.pos_embedding"} <= grads


def test_param_initial_values_follow_init_and_scale():
    net = compile_string(
        "network t(x: [4]) {\n"
        '    return x + param((4,)), x * param((4,), init="ones", scale=0.5), '
        'x + param((2000,), init="normal", scale=0.02)[:4]\n'
        "}\n"
    )
    for state in (net.torch().state_dict(), {k: torch.from_numpy(v) for k, v in net.weights(seed=1).items()}):
        assert torch.equal(state["param_0"], torch.zeros(4))
        assert torch.equal(state["param_1"], torch.full((4,), 0.5))
        assert 0.015 < float(state["param_2"].std()) < 0.025


def test_param_size_must_be_known_at_compile_time():
    with pytest.raises(NetcError) as caught:
        compile_string("network t(x: [N, T, 4]) {\n    return x + param((1, T, 4))\n}\n")
    d = caught.value.diagnostics[0]
    assert (d.span.line, d.span.column) == (2, 22) and "T" in d.message


def test_constants_with_symbolic_sizes_are_made_in_forward_static_ones_are_buffers():
    net = compile_file(_case("v11_masks_where"))
    module = net.torch().eval()
    source = net.torch_source()
    assert "torch.zeros(N, 8, device=x.device)" in source
    assert "persistent=False" in source
    assert not any(k.startswith("full") for k in module.state_dict())  # no weight
    assert any(name.startswith("full") for name, _ in module.named_buffers())
    model = net.onnx(weights=module.state_dict())
    for n in (1, 5):  # one module and one ONNX model for every batch size
        x, valid, scores = torch.randn(n, 8), torch.rand(n, 8) > 0.5, torch.randn(n, 4, 4)
        with torch.no_grad():
            want = module(x, valid, scores)
        got = run(model, {"x": x.numpy(), "valid": valid.numpy(), "scores": scores.numpy()})
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w.numpy(), rtol=1e-5, atol=1e-6)


def test_arange_and_ones_follow_a_symbolic_length():
    net = compile_string(
        "network t(x: [N, T]) {\n"
        '    causal = ones((T, T)) -> tril\n    return x + cast(arange(T), "float32"), causal\n'
        "}\n"
    )
    module = net.torch()
    model = net.onnx(weights=module.state_dict())
    for t in (2, 6):
        x = torch.randn(3, t)
        want = module(x)
        got = run(model, {"x": x.numpy()})
        assert torch.equal(want[1], torch.ones(t, t).tril())
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w.numpy(), rtol=1e-6)


def test_stochastic_depth_keeps_or_drops_whole_samples_in_training_only():
    net = compile_string("network t(x: [N, 3, 4]) {\n    return stochastic_depth(x, 0.5)\n}\n")
    module = net.torch()
    x = torch.rand(64, 3, 4) + 0.5
    assert torch.equal(module.eval()(x), x)
    y = module.train()(x)
    kept = (y != 0).flatten(1).all(1)
    dropped = (y == 0).flatten(1).all(1)
    assert bool((kept | dropped).all()) and 0 < int(kept.sum()) < 64
    torch.testing.assert_close(y[kept], x[kept] * 2.0)
    batch = compile_string('network t(x: [N, 3]) {\n    return stochastic_depth(x, 0.5, mode="batch")\n}\n')
    y = batch.torch().train()(x[:, :, 0])
    assert bool((y == 0).all()) or torch.equal(y, x[:, :, 0] * 2.0)


@pytest.mark.parametrize(
    "body, where, words",
    [
        ("clamp(x)", (2, 12), "bound"),
        ("where(x, x, x)", (2, 12), "bool"),
        ("masked_fill(x, x, 0.0)", (2, 12), "bool"),
        ("logical_not(x)", (2, 12), "bool"),
        ('gelu(x, approximate="fast")', (2, 20), "fast"),
        ('cast(x, "int32")', (2, 20), "int32"),
        ("index_select(x, x)", (2, 12), "int64"),
        ("roll(x, (1, 2), 1)", (2, 20), "shift"),
        ("expand(x, (-1, -1, 5))", (2, 22), "-1"),
        ('x + full((5,), 1.5, dtype="int64")', (2, 27), "1.5"),
        ('arange(3, dtype="bool")', (2, 22), "bool"),
        ("maxpool2d(image, 3, stride=5, ceil_mode=true)", (2, 42), "ceil_mode"),
        ("stochastic_depth(x, 1.0)", (2, 32), "1.0"),
        ("tril(mean(x, (0, 1)))", (2, 12), "two axes"),
    ],
)
def test_errors_point_at_the_argument_or_the_call(body, where, words):
    text = f"network t(x: [N, 5], image: [N, 3, H, W]) {{\n    return {body}\n}}\n"
    with pytest.raises(NetcError) as caught:
        compile_string(text)
    d = caught.value.diagnostics[0]
    assert (d.span.line, d.span.column) == where and words in d.message, (d.span, d.message)
