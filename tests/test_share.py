"""`share="NAME"` (language 1.1): a call that uses the parameters of an earlier instance.

Shared parameters are stored once, under the first instance's names: the emitted module's
`state_dict` has no duplicate keys and equals a hand-written module's, `named_parameters()`
and `netc check` count them once, ONNX has one initializer, the backward graph sums the
gradients of every use (checked against torch.autograd), and every misuse is an error at
the `share` key.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn, F = torch.nn, torch.nn.functional

from grad_checks import autograd, compare, feeds_for, onnx_gradients, torch_gradients  # noqa: E402
from netc.compiler import compile_string  # noqa: E402
from netc.compiler.autodiff import backward_graph  # noqa: E402
from netc.compiler.verify import verify  # noqa: E402
from netc.dsl.diagnostics import InternalError, NetcError  # noqa: E402
from onnx_checks import check_model, run  # noqa: E402

SPEC = """
block encoder(x) {
    return x -> linear(16) -> relu -> linear(8)
}

network shared(a: [N, 12], b: [N, 12], ids: int64[N, T]) {
    ea = encoder(a, name="enc")
    eb = encoder(b, share="enc")
    distance = (ea - eb) ** 2 -> sum(1)
    logits = ids -> embedding(50, 8, name="wte") -> linear(50, bias=false, share="wte")
    h = ea -> linear(8, name="step") -> tanh
    repeat 3 {
        h = h -> linear(8, share="step") -> tanh
    }
    return distance, logits, h
}
"""


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear_0 = nn.Linear(12, 16)
        self.linear_1 = nn.Linear(16, 8)

    def forward(self, x):
        return self.linear_1(F.relu(self.linear_0(x)))


class Reference(nn.Module):
    """The spec written by hand: a Siamese encoder, a tied head, one recurrent step."""

    def __init__(self):
        super().__init__()
        self.enc = Encoder()
        self.wte = nn.Embedding(50, 8)
        self.step = nn.Linear(8, 8)

    def forward(self, a, b, ids):
        ea, eb = self.enc(a), self.enc(b)
        distance = ((ea - eb) ** 2).sum(1)
        logits = F.linear(self.wte(ids), self.wte.weight)
        h = torch.tanh(self.step(ea))
        for _ in range(3):
            h = torch.tanh(self.step(h))
        return distance, logits, h


def _inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(3, 12, generator=g), torch.rand(3, 12, generator=g), torch.randint(0, 50, (3, 5), generator=g)]


def test_parameters_are_stored_and_counted_once():
    net = compile_string(SPEC)
    verify(net.graph)
    reference = Reference()
    count = sum(p.numel() for p in reference.parameters())
    assert net.parameters == count == 816
    module = net.torch()
    assert list(module.state_dict()) == list(reference.state_dict())
    assert sum(p.numel() for p in module.parameters()) == count
    assert [k for k, _ in module.named_parameters()] == [k for k, _ in reference.named_parameters()]
    assert list(net.weights()) == list(reference.state_dict())


def test_module_equals_the_hand_written_one():
    net = compile_string(SPEC)
    module, reference = net.torch(), Reference()
    reference.load_state_dict(module.state_dict(), strict=True)
    with torch.no_grad():
        for got, want in zip(module(*_inputs()), reference(*_inputs())):
            torch.testing.assert_close(got, want)


def test_onnx_uses_one_initializer_per_shared_parameter():
    net = compile_string(SPEC)
    module = net.torch().eval()
    for optimize in (False, True):
        model = net.onnx(weights=module.state_dict(), optimize=optimize)
        check_model(model, net.graph)
        names = [i.name for i in model.graph.initializer]
        for key in module.state_dict():
            assert names.count(key) <= 1
        assert not any(n.startswith(("encoder_0.", "linear_")) and n.endswith((".weight", ".bias")) for n in names)
        inputs = _inputs()
        got = run(model, {n: t.numpy() for n, t in zip(net.graph.inputs, inputs)})
        with torch.no_grad():
            want = module(*inputs)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w.numpy(), rtol=1e-5, atol=1e-6)


def test_backward_graph_sums_the_gradients_of_every_use():
    net = compile_string(SPEC)
    graph = backward_graph(net.graph)
    verify(graph)
    grads = [name for name, _ in graph.outputs if name.startswith("grad.") and name not in ("grad.a", "grad.b")]
    assert grads == [f"grad.{k}" for k in Reference().state_dict()]
    module = net.torch().train()
    inputs = _inputs()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        outputs = module(*inputs)
    seeds = {name: torch.rand(o.shape, generator=g) - 0.5 for (name, _), o in zip(net.graph.outputs, outputs)}
    feeds = feeds_for(net, inputs, seeds, {})
    want = autograd(net, copy.deepcopy(module), inputs, seeds)
    assert "grad.wte.weight" in want and "grad.step.weight" in want
    compare(onnx_gradients(net.graph, module, feeds), want, 1e-4, 1e-5, "onnxruntime")
    compare(torch_gradients(net.graph, copy.deepcopy(module), feeds), want, 1e-4, 1e-5, "torch backward")


def test_sharing_inside_blocks_and_repeated_block_calls():
    """A block whose body shares one of its own layers, called twice (one class for both),
    and a block instance shared by every pass of a `repeat`."""
    spec = """
block pair(x) {
    a = x -> linear(6, name="first") -> relu
    return a -> linear(6, share="first")
}
block cell(x) {
    return x -> linear(6) -> tanh
}
network n(x: [N, 6]) {
    y = pair(x) -> pair
    c = cell(y, name="c0")
    repeat 2 {
        c = cell(c, share="c0")
    }
    return c
}
"""
    net = compile_string(spec)
    assert net.parameters == 3 * 42
    module = net.torch()
    assert list(module.state_dict()) == [
        "pair_0.first.weight",
        "pair_0.first.bias",
        "pair_1.first.weight",
        "pair_1.first.bias",
        "c0.linear_0.weight",
        "c0.linear_0.bias",
    ]
    x = torch.rand(2, 6)
    p = module.state_dict()

    def lin(prefix, v):
        return F.linear(v, p[prefix + ".weight"], p[prefix + ".bias"])

    y = x
    for k in range(2):
        y = lin(f"pair_{k}.first", torch.relu(lin(f"pair_{k}.first", y)))
    c = y
    for _ in range(3):
        c = torch.tanh(lin("c0.linear_0", c))
    with torch.no_grad():
        torch.testing.assert_close(module(x), c)


def test_an_unused_owner_hands_its_parameters_to_the_first_sharer():
    spec = """
network n(a: [N, 12], b: [N, 12]) {
    ea = a -> linear(16, name="enc")
    eb = b -> linear(16, share="enc")
    ec = b -> linear(16, share="enc")
    return eb + ec
}
"""
    net = compile_string(spec)
    verify(net.graph)
    assert net.parameters == 12 * 16 + 16
    module = net.torch()
    assert list(module.state_dict()) == ["linear_0.weight", "linear_0.bias"]
    b = torch.rand(2, 12)
    with torch.no_grad():
        torch.testing.assert_close(module(torch.rand(2, 12), b), 2 * module.linear_0(b))


def test_verifier_checks_shared_parameters():
    from dataclasses import replace

    net = compile_string(SPEC)
    node = net.graph.node("linear_0")
    net.graph.g.nodes["linear_0"]["node"] = replace(node, shared={"weight": "step.weight"})
    with pytest.raises(InternalError, match="shares 'weight'"):
        verify(net.graph)


ERRORS = [
    (  # the instance comes later
        'x = a -> linear(4, share="l")\n    y = a -> linear(4, name="l")\n    return x + y',
        (2, 24),
        "made later",
    ),
    ('x = a -> linear(4, share="nothing")\n    return x', (2, 24), "no earlier instance named `nothing`"),
    (  # the shared layer has no bias
        'e = ids -> embedding(6, 4, name="wte")\n    return e -> linear(6, share="wte")',
        (3, 27),
        "`bias`",
    ),
    ('x = a -> linear(5, name="l")\n    return x -> linear(5, share="l")', (3, 27), "weight"),
    ('x = a -> linear(4, name="l")\n    return relu(x, share="l")', (3, 20), "no parameters"),
    ('x = a -> linear(4, name="l")\n    return f(x, share="l")', (3, 17), "not an instance of block `f`"),
    ('x = f(a, name="b")\n    return x -> linear(4, share="b")', (3, 27), "an operator call shares a layer"),
    ('x = f(a, name="b")\n    return g(x, share="b")', (3, 17), "not of `g`"),
    ("x = a -> linear(4, share=3)\n    return x", (2, 24), "identifier"),
    ('x = a -> linear(4, name="l", share="l")\n    return x', (2, 34), "this call itself"),
]


@pytest.mark.parametrize("body, where, message", ERRORS, ids=[e[2] for e in ERRORS])
def test_share_errors_point_at_the_key(body, where, message):
    spec = (
        f"network n(a: [N, 4], ids: int64[N]) {{\n    {body}\n}}\n"
        "block f(x) {\n    return x -> linear(4)\n}\n"
        "block g(x) {\n    return x -> linear(4)\n}\n"
    )
    with pytest.raises(NetcError) as caught:
        compile_string(spec)
    d = caught.value.diagnostics[0]
    assert (d.span.line, d.span.column) == where, d
    assert message in d.message


def test_share_cannot_reach_another_scope():
    spec = """
block b(x) {
    return x -> linear(4, share="top")
}
network n(a: [N, 4]) {
    t = a -> linear(4, name="top")
    return b(t)
}
"""
    with pytest.raises(NetcError) as caught:
        compile_string(spec)
    d = caught.value.diagnostics[0]
    assert (d.span.line, d.span.column) == (3, 27)
    assert "no earlier instance named `top`" in d.message
    assert any("expanded from" in n for n in d.notes)


def test_torch_backend_refuses_a_shared_block_with_other_arguments():
    spec = """
block enc(x, p) {
    return x -> linear(4) -> dropout(p)
}
network n(a: [N, 4], b: [N, 4]) {
    x = enc(a, 0.1, name="e")
    y = enc(b, 0.2, share="e")
    return x + y
}
"""
    net = compile_string(spec)
    assert net.parameters == 20
    with pytest.raises(NetcError) as caught:
        net.torch_source()
    d = caught.value.diagnostics[0]
    assert d.span.line == 7 and "`p`" in d.message


def test_an_embedding_tied_to_a_linear_layer():
    spec = """
network n(x: [N, 8], ids: int64[N, T]) {
    y = x -> linear(50, bias=false, name="head")
    e = ids -> embedding(50, 8, share="head")
    return y, e
}
"""
    net = compile_string(spec)
    module = net.torch()
    assert list(module.state_dict()) == ["head.weight"] and net.parameters == 400
    ids = torch.randint(0, 50, (2, 3))
    with torch.no_grad():
        torch.testing.assert_close(module(torch.rand(2, 8), ids)[1], module.head.weight[ids])


def test_torch_backend_refuses_a_layer_it_cannot_call_with_shared_parameters():
    """A conv2d sharing the weight of a conv2d with another stride would need F.conv2d; the
    torch backend says so at the call (ONNX and the backward graph read the one weight)."""
    spec = """
network n(x: [N, 3, 8, 8]) {
    a = x -> conv2d(4, kernel=3, name="c")
    b = x -> conv2d(4, kernel=3, stride=2, share="c")
    return a, b
}
"""
    net = compile_string(spec)
    assert net.parameters == 4 * 3 * 9 + 4
    with pytest.raises(NetcError) as caught:
        net.torch_source()
    d = caught.value.diagnostics[0]
    assert (d.span.line, d.span.column) == (4, 14) and "`c`" in d.message
    check_model(net.onnx(), net.graph)


def test_a_block_parameter_named_share_keeps_working():
    spec = """
block f(x, share=1) {
    return x * share
}
network n(a: [N, 4]) {
    return f(a, share=2.0)
}
"""
    module = compile_string(spec).torch()
    a = torch.rand(2, 4)
    torch.testing.assert_close(module(a), a * 2)


def test_an_unused_block_instance_hands_its_parameters_to_the_first_sharer():
    spec = """
block enc(x) {
    return x -> linear(8) -> relu -> linear(4)
}
network n(a: [N, 6], b: [N, 6]) {
    ea = enc(a, name="e")
    eb = enc(b, share="e")
    ec = enc(a, share="e")
    return eb + ec
}
"""
    net = compile_string(spec)
    verify(net.graph)
    assert net.parameters == 6 * 8 + 8 + 8 * 4 + 4
    module = net.torch()
    assert list(module.state_dict()) == [
        "enc_0.linear_0.weight",
        "enc_0.linear_0.bias",
        "enc_0.linear_1.weight",
        "enc_0.linear_1.bias",
    ]
    a, b = torch.rand(2, 6), torch.rand(2, 6)
    with torch.no_grad():
        torch.testing.assert_close(module(a, b), module.enc_0(b) + module.enc_0(a))


def test_a_param_shared_by_another_call():
    spec = """
network n(x: [N, 4]) {
    a = x + param((1, 4), init="ones", name="p")
    return a * param((1, 4), share="p")
}
"""
    net = compile_string(spec)
    module = net.torch()
    assert list(module.state_dict()) == ["p"] and net.parameters == 4
    x = torch.rand(2, 4)
    with torch.no_grad():
        module.p.copy_(torch.rand(1, 4))
        torch.testing.assert_close(module(x), (x + module.p) * module.p)
