"""The emitted PyTorch source: safe, formatted, deterministic, and faithful to the spec."""

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, run_netc
from netc.compiler import compile_file, compile_string

torch = pytest.importorskip("torch")

EXAMPLES = sorted((ROOT / "examples").glob("*.net")) + sorted((ROOT / "tests" / "conformance" / "ok").glob("*.net"))
RUFF = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")

# Spec identifiers that are Python keywords or clash with what generated code uses.
HOSTILE = """
block nn(torch, self, F) {
    class = torch -> linear(4, name="forward") -> relu
    lambda = class + self * F
    return lambda -> linear(4, name="training")
}

block forward(None, super) {
    return (None -> linear(4, name="class")) + super
}

network f(def: [for, 4], print: [for, 4], input: [for, 4]) {
    torch = def -> nn(print, input, name="self")
    nn = torch -> forward(def, name="_modules")
    yield = nn -> linear(4, name="__init__") -> reshape((for, 2, 2)) -> flatten
    return yield, nn
}
"""


def test_hostile_identifiers_give_working_code():
    compiled = compile_string(HOSTILE)
    source = compiled.torch_source()
    ast.parse(source)
    module = compiled.torch()
    assert type(module).__name__ == compiled.class_name == "F_"  # `F` is torch.nn.functional
    keys = set(module.state_dict())
    for key in [
        "self.forward.weight",
        "self.training.bias",
        "_modules.class.weight",
        "__init__.weight",
    ]:
        assert key in keys, sorted(keys)
    x = [torch.randn(3, 4) for _ in range(3)]
    first, second = module(*x)
    assert first.shape == (3, 4) and second.shape == (3, 4)
    # renamed consistently: the same computation written by hand
    sd = module.state_dict()
    lin = lambda v, name: v @ sd[f"{name}.weight"].T + sd[f"{name}.bias"]  # noqa: E731
    cls = torch.relu(lin(x[0], "self.forward"))
    inner = lin(cls + x[1] * x[2], "self.training")
    nn_out = lin(inner, "_modules.class") + x[0]  # forward(None=torch, super=def)
    torch.testing.assert_close(second, nn_out)
    torch.testing.assert_close(first, lin(nn_out, "__init__"))


def test_nothing_from_a_file_name_reaches_code(tmp_path):
    spec = tmp_path / 'evil"""\nimport os.net'
    spec.write_text("network n(x: [N, 4]) {\n  return x -> relu\n}\n")
    source = compile_file(spec).torch_source()
    tree = ast.parse(source)
    imports = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert {a.name for n in imports for a in n.names} <= {"torch", "torch.nn.functional", "nn"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_emitted_source_is_formatted_deterministic_and_imports_only_torch(path, tmp_path):
    source = compile_file(path).torch_source()
    assert source == compile_file(path).torch_source()
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            assert all(a.name.split(".")[0] == "torch" for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.module.split(".")[0] == "torch"
    target = tmp_path / "model.py"
    target.write_text(source)
    proc = subprocess.run(
        [RUFF, "format", "--check", "--no-cache", "--isolated", str(target)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = subprocess.run(
        [RUFF, "check", "--no-cache", "--isolated", "--select", "F,E7,E9", str(target)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout  # no unused names or imports: no dead code


def test_torch_gives_a_fresh_module_each_time():
    compiled = compile_file(ROOT / "examples" / "actor_critic.net")
    a, b = compiled.torch(), compiled.torch()
    assert type(a).__name__ == "ActorCritic"
    assert a is not b and not torch.equal(a.state_dict()["linear_0.weight"], b.state_dict()["linear_0.weight"])


def test_dropout_only_in_training():
    module = compile_string("network n(x: [N, 64]) { return x -> dropout(p=0.5) }").torch()
    x = torch.ones(8, 64)
    assert torch.equal(module.eval()(x), x)
    out = module.train()(x)
    assert set(out.unique().tolist()) <= {0.0, 2.0} and (out == 0).any()


def test_float64_networks_have_float64_parameters():
    module = compile_string("network n(x: float64[N, 3]) { return x -> linear(2) -> layernorm }").torch()
    assert {p.dtype for p in module.parameters()} == {torch.float64}
    assert module(torch.randn(4, 3, dtype=torch.float64)).dtype == torch.float64


def test_symbolic_reshape_follows_the_input_at_run_time():
    module = compile_file(ROOT / "tests" / "conformance" / "ok" / "tiny_transformer.net").torch().eval()
    for batch, steps in [(1, 3), (2, 7)]:
        assert module(torch.randint(0, 1000, (batch, steps))).shape == (batch, steps, 64)


RUNTIME_SIZES = """
block to_rows(x, n) {
    return x -> reshape((n, -1))
}
block twice(x, n, c) {
    y = to_rows(x, n)
    return y -> reshape((n, c, -1))
}
network t(x: [N, 4, 6]) {
    a = to_rows(x, N)
    b = twice(x, N, 4)
    flat = to_rows(x -> flatten(start=0), N)
    fixed = to_rows(x, 2)
    h = x
    repeat 3 {
        h = to_rows(h, N) -> reshape((N, 4, 6))
    }
    return a, b, flat, fixed, h
}
"""


def test_symbolic_sizes_passed_into_blocks_reach_forward():
    # A block given a run-time size (`to_rows(x, N)`) takes it as a `forward` argument:
    # its constructor cannot know it, and its inputs' shapes need not show it ([24 * N]).
    torch = pytest.importorskip("torch")
    compiled = compile_string(RUNTIME_SIZES)
    module = compiled.torch()
    for n in (1, 2, 5):
        x = torch.randn(n, 4, 6)
        a, b, flat, fixed, h = module(x)
        assert a.shape == flat.shape == (n, 24)
        assert b.shape == (n, 4, 6) and h.shape == (n, 4, 6)
        assert fixed.shape == (2, 12 * n)
        assert torch.equal(h, x)
    assert "def forward(self, x, n):" in compiled.torch_source()


def test_compile_command_writes_an_importable_module(tmp_path):
    out = tmp_path / "model.py"
    proc = run_netc("compile", ROOT / "examples" / "dqn.net", "--target", "torch", "-o", out)
    assert proc.returncode == 0, proc.stderr
    assert "class DQN" in out.read_text() or "class Dqn" in out.read_text()
    code = f"import sys; sys.path.insert(0, {str(tmp_path)!r}); import torch, model; print(model.Dqn()(torch.zeros(2, 4, 84, 84)).shape)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.stdout.strip() == "torch.Size([2, 18])", proc.stderr
    proc = run_netc(
        "compile",
        ROOT / "tests" / "conformance" / "errors" / "undefined.net",
        "--target",
        "torch",
        "-o",
        tmp_path / "x.py",
    )
    assert proc.returncode == 1 and not (tmp_path / "x.py").exists()


INPLACE_CASES = """
block res(x) {
    h = x -> linear(6) -> relu -> linear(6)
    return relu(x + h)
}

network n(x: [N, 6], b: [6]) {
    s = x -> linear(6) -> sigmoid -> relu
    fan = x -> linear(6)
    a = fan -> relu
    c = fan + b
    d = (x -> linear(6)) + b
    e = d + d
    f = e -> res -> res
    g = relu(f) + s
    return g + a + c, f
}
"""


def test_inplace_lowering_changes_no_value_or_gradient(monkeypatch):
    """Overwriting in place (`relu(..., inplace=True)`, `+=`) gives the values and gradients
    of the plain out-of-place module; autograd would raise where it is unsafe."""
    from netc.backends import torch as backend

    compiled = compile_string(INPLACE_CASES)
    source = compiled.torch_source()
    assert "inplace=True" in source and " += " in source
    assert "F.relu(s, inplace=True)" not in source  # sigmoid's backward reads its output
    fast = compiled.torch()
    monkeypatch.setattr(backend._Lowering, "inplace", lambda self, index: False)
    plain = compiled.torch()
    plain.load_state_dict(fast.state_dict())
    x, b = torch.randn(5, 6), torch.randn(6)
    results = []
    for module in (fast, plain):
        inputs = [x.clone().requires_grad_(), b.clone().requires_grad_()]
        outs = module(*inputs)
        sum(o.square().sum() for o in outs).backward()
        grads = [i.grad for i in inputs] + [p.grad for p in module.parameters()]
        results.append((outs, grads))
    for got, want in zip(results[0][0] + tuple(results[0][1]), results[1][0] + tuple(results[1][1])):
        torch.testing.assert_close(got, want)


def _classes(source: str) -> list[str]:
    return [n.name for n in ast.parse(source).body if isinstance(n, ast.ClassDef)]


def test_one_class_per_block():
    """A block's calls share one class with constructor arguments, as torchvision writes it."""
    resnet = compile_file(ROOT / "examples" / "resnet50.net").torch_source()
    assert _classes(resnet) == ["Bottleneck", "Stage", "Resnet50"]
    assert len(resnet.splitlines()) <= 150
    assert "def __init__(self, in_channels, width, stride=1):" in resnet
    assert "if stride != 1 or in_channels != width * 4:" in resnet
    densenet = compile_file(ROOT / "examples" / "densenet121.net").torch_source()
    assert _classes(densenet) == ["DenseLayer", "DenseBlock", "Transition", "Densenet121"]
    assert len(densenet.splitlines()) <= 200
    assert 'self.add_module(f"dense_layer_{i}", DenseLayer(in_channels + i * growth))' in densenet
    unet = compile_file(ROOT / "examples" / "unet.net").torch_source()
    assert _classes(unet) == ["DoubleConv", "Down", "Up", "Unet"]
    transformer = compile_file(ROOT / "examples" / "transformer.net").torch_source()
    assert "(1.0 / (d // self.heads) ** 0.5)" in transformer  # the spec's expression, not 0.1767...


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_forward_names_are_the_specs(path):
    """A value the spec names has that name (renamed only where Python needs it); no name
    holds two values that are live at once."""
    from netc.backends.torch import TorchEmitter

    emitter = TorchEmitter(compile_file(path).graph, str(path))
    emitter.source()
    by_name: dict = {}
    for cls, name, _value, spec, start, end, group in emitter.bindings:
        if spec is not None:
            assert re.fullmatch(rf"{re.escape(spec)}_?\d*", name), f"{cls}: `{spec}` is written `{name}`"
        by_name.setdefault((cls, name), []).append((start, end, group))
    for (cls, name), spans in by_name.items():
        for i, (start, end, group) in enumerate(spans):
            for other_start, other_end, other_group in spans[i + 1 :]:
                overlap = start < other_end and other_start < end
                assert group == other_group or not overlap, f"{cls}: `{name}` holds two live values"


def test_class_names_keep_numbers_readable():
    from netc.backends.torch import camel

    assert camel("resnext50_32x4d") == "Resnext50_32x4d"
    assert camel("wide_resnet50_2") == "WideResnet50_2"
    assert camel("mobilenet_v2") == "MobilenetV2"
    assert camel("actor_critic") == "ActorCritic"
    assert camel("DQN") == "DQN" and camel("dqn") == "Dqn"


def test_expressions_render_as_python_with_their_value():
    """Written back, a recorded expression means in Python what it meant in the spec:
    every tree of the spec's operators renders to text that Python evaluates to its value."""
    from hypothesis import given, settings
    from hypothesis import strategies as st
    from netc.compiler import symbolic as S

    env = {"a": 7, "b": -3, "c": 2}
    leaves = st.sampled_from([S.Param("a"), S.Param("b"), S.Param("c"), S.Lit(2), S.Lit(-1), S.Lit(0.5)])
    binary = ["add", "sub", "mul", "div", "floordiv", "mod", "pow", "lt", "eq", "ne"]

    def extend(inner):
        return st.one_of(
            st.builds(lambda op, a, b: S.Op(op, (a, b)), st.sampled_from(binary), inner, inner),
            st.builds(lambda a: S.Op("neg", (a,)), inner),
        )

    @settings(max_examples=200, deadline=None, derandomize=True)
    @given(st.recursive(leaves, extend, max_leaves=6))
    def check(expr):
        try:
            want = S.evaluate(expr, lambda leaf: env[leaf.name])
        except (S.Unknown, OverflowError):
            return
        text = S.render(expr, lambda leaf: leaf.name, repr)
        got = eval(text, {}, dict(env))  # our own rendering of a tree of literals and three names
        assert type(got) is type(want) and (got == want or got != got and want != want), text

    check()
