"""`netc gradflow`: gradient norms at initialization through the derived backward graph.

The numbers are checked against torch.autograd on the netc PyTorch module (train mode, the
same numpy weights loaded by name, the same inputs and loss), and the plain/residual pair
of He et al. (2016) at depth 50 is measured: with batchnorm in training mode the plain
network's gradient *explodes* toward the input (Yang et al., "A Mean Field Theory of Batch
Normalization", 2019), so its first layer gets over 100 times the residual one's norm.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, run_netc
from netc.compiler import compile_file, compile_string
from netc.compiler import gradflow as gf

torch = pytest.importorskip("torch")

EXAMPLES = ROOT / "examples"


def depth_50(tmp_path, name):
    """examples/<name>.net with 8 conv pairs per stage: 6 * 8 + 2 = 50 weighted layers."""
    text = (EXAMPLES / f"{name}.net").read_text()
    assert "pairs = 3 " in text
    path = tmp_path / f"{name}_50.net"
    path.write_text(text.replace("pairs = 3 ", "pairs = 8 ", 1))
    return path


def autograd_norms(compiled, dtype, batch=gf.DEFAULT_BATCH, seed=0, masks=None, training=True) -> dict[str, float]:
    """Per parameterized layer, the norm of torch.autograd's gradient of the same loss on
    the netc module (train mode, or eval; weights and inputs as `gf.measure` draws them), in dtype."""
    graph = compiled.graph
    module = compiled.torch().train(training)
    module.load_state_dict({k: torch.from_numpy(v) for k, v in compiled.weights(None, seed).items()})
    module = copy.deepcopy(module).to(dtype)
    inputs = gf.random_inputs(graph, gf.dim_sizes(graph, batch), seed)
    tensors = [torch.from_numpy(inputs[n]) for n in graph.inputs]
    tensors = [t.to(dtype) if t.is_floating_point() else t for t in tensors]
    forward = module
    if masks is not None:
        from grad_checks import with_masks

        forward = with_masks(compiled, module, masks)
    outputs = forward(*tensors)
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    floats = [o for o in outputs if o.is_floating_point()]
    scalars = [o for o in floats if o.dim() == 0]
    loss = sum(o.sum() for o in (scalars or floats))  # the losses, else every element of every output
    params = dict(module.named_parameters())
    names = [f"{n.name}.{local}" for n in gf.parameterized_layers(graph) for local in n.params]
    grads = torch.autograd.grad(loss, [params[k] for k in names], allow_unused=True)
    squares: dict[str, float] = {}
    for name, g in zip(names, grads):
        layer = name.rsplit(".", 1)[0]
        squares[layer] = squares.get(layer, 0.0) + (0.0 if g is None else float((g.double() ** 2).sum()))
    return {k: float(np.sqrt(v)) for k, v in squares.items()}


def relative_errors(got: dict, want: dict) -> dict[str, float]:
    return {k: abs(got[k] - want[k]) / max(abs(want[k]), 1e-30) for k in want}


def assert_equals_autograd(compiled, report):
    """Each layer's norm equals torch float32 autograd's within rtol 1e-3; where float32
    cannot tell (tests/test_backward.py: deep batchnorm networks at small batches are
    ill-conditioned, and torch's own float32 result there is percents off its float64
    one), the norm is within 3x torch float32's largest error of the float64 truth."""
    got = report.norms()
    want32 = autograd_norms(compiled, torch.float32)
    assert list(got) == list(want32)
    far = {k: e for k, e in relative_errors(got, want32).items() if e > 1e-3}
    if far:
        truth = autograd_norms(compiled, torch.float64)
        torch_error = max(relative_errors(want32, truth).values())
        ours = relative_errors(got, truth)
        assert max(ours.values()) <= max(1e-3, 3 * torch_error), (ours, torch_error)
    return far


# ---------------------------------------------------------------- the measurement


def test_plain_against_residual_at_depth_50(tmp_path):
    plain = gf.measure(compile_file(depth_50(tmp_path, "plain_deep")))
    residual = gf.measure(compile_file(depth_50(tmp_path, "residual_deep")))
    assert [layer.op for layer in plain.layers] == [layer.op for layer in residual.layers]
    assert len(plain.layers) == 50 + 49  # 50 weighted layers and the batchnorm after each conv
    first_plain, first_residual = plain.layers[0].grad_norm, residual.layers[0].grad_norm
    print(f"first layer at depth 50: plain {first_plain:.4g}, residual {first_residual:.4g}")
    # The plain network's gradient explodes toward the input; the residual one's stays
    # within a decade of its largest from end to end.
    assert first_plain >= 10 * first_residual
    convs = [layer.grad_norm for layer in residual.layers if layer.op == "conv2d"]
    assert max(convs) / min(convs) < 20
    plain_convs = [layer.grad_norm for layer in plain.layers if layer.op == "conv2d"]
    assert plain_convs[0] / plain_convs[-1] > 100


def test_vanishing_gradient_of_the_plain_network_in_eval_mode(tmp_path):
    """With batchnorm as it is evaluated (running statistics: the identity at init), the
    plain network at depth 50 shows the vanishing gradient and the residual one its cure:
    the first layer's gradient norm is far (at least 10x) smaller without the skip edges;
    both equal torch.autograd's on the netc module in eval mode."""
    norms = {}
    for name in ("plain_deep", "residual_deep"):
        compiled = compile_file(depth_50(tmp_path, name))
        report = gf.measure(compiled, training=False)
        want = autograd_norms(compiled, torch.float64, training=False)
        first = report.layers[0]
        assert first.grad_norm == pytest.approx(want[first.name], rel=1e-3)
        norms[name] = first.grad_norm
    assert norms["plain_deep"] * 10 <= norms["residual_deep"], norms


@pytest.mark.parametrize("name", ["plain_deep", "residual_deep"])
def test_depth_50_norms_equal_autograd(tmp_path, name):
    compiled = compile_file(depth_50(tmp_path, name))
    assert_equals_autograd(compiled, gf.measure(compiled))


@pytest.mark.parametrize("name", ["plain_deep", "residual_deep", "residual_mlp"])
def test_norms_equal_autograd_within_rtol(name):
    """At depth 20 float32 tells: every norm within rtol 1e-3 of torch's."""
    compiled = compile_file(EXAMPLES / f"{name}.net")
    assert assert_equals_autograd(compiled, gf.measure(compiled)) == {}


def test_losses_dropout_ids_and_labels():
    """A network returning its loss beside its logits: the loss is that scalar alone
    (the logits' seed is zeros); dropout keeps every element; ids and labels in range."""
    compiled = compile_string(
        """
network tagger(tokens: int64[N, T], labels: int64[N]) {
    h = tokens -> embedding(50, 16) -> mean(1) -> linear(32) -> relu -> dropout(0.25)
    logits = h -> linear(7)
    loss = cross_entropy(logits, labels)
    return logits, loss
}
"""
    )
    with pytest.raises(gf.DimError, match="T"):
        gf.dim_sizes(compiled.graph)
    sizes = gf.dim_sizes(compiled.graph, 6, {"T": 5})
    assert sizes == {"N": 6, "T": 5}
    inputs = gf.random_inputs(compiled.graph, sizes, seed=3)
    rng = np.random.default_rng(3)  # the documented procedure, by hand
    np.testing.assert_array_equal(inputs["tokens"], rng.integers(0, 50, (6, 5)))
    np.testing.assert_array_equal(inputs["labels"], rng.integers(0, 7, (6,)))
    seeds = gf.loss_seeds(compiled.graph, sizes)
    assert list(seeds) == ["seed.logits"] and not seeds["seed.logits"].any()
    report = gf.measure(compiled, batch=6, dims={"T": 5}, seed=3)
    assert all(layer.grad_norm > 0 for layer in report.layers)
    masks = {"dropout_0.mask": torch.ones(6, 32)}

    def reference(dtype):
        graph = compiled.graph
        module = compiled.torch().train()
        module.load_state_dict({k: torch.from_numpy(v) for k, v in compiled.weights(None, 3).items()})
        from grad_checks import with_masks

        _, loss = with_masks(compiled, module, masks)(*(torch.from_numpy(inputs[n]) for n in graph.inputs))
        grads = torch.autograd.grad(loss, list(module.parameters()))
        names = [k for k, _ in module.named_parameters()]
        out = {}
        for name, g in zip(names, grads):
            layer = name.rsplit(".", 1)[0]
            out[layer] = out.get(layer, 0.0) + float((g.double() ** 2).sum())
        return {k: np.sqrt(v) for k, v in out.items()}

    want = reference(torch.float32)
    for name, norm in report.norms().items():
        assert norm == pytest.approx(want[name], rel=1e-4)


def test_float_inputs_follow_the_documented_draws():
    compiled = compile_string("network two(a: [N, 3], b: [N, M, 2]) {\n    return a -> linear(2), b -> linear(2)\n}\n")
    sizes = gf.dim_sizes(compiled.graph, 4, {"M": 5})
    inputs = gf.random_inputs(compiled.graph, sizes, seed=11)
    rng = np.random.default_rng(11)
    np.testing.assert_array_equal(inputs["a"], rng.standard_normal((4, 3)).astype("float32"))
    np.testing.assert_array_equal(inputs["b"], rng.standard_normal((4, 5, 2)).astype("float32"))
    assert [layer.depth for layer in gf.measure(compiled, batch=4, dims={"M": 5}).layers] == [0, 1]


# ---------------------------------------------------------------- the command


def test_json(tmp_path):
    proc = run_netc("gradflow", EXAMPLES / "residual_mlp.net", "--json", "--batch", "4", "--seed", "2")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert set(report) == {"network", "layers"} and report["network"] == "residual_mlp"
    compiled = compile_file(EXAMPLES / "residual_mlp.net")
    layers = gf.parameterized_layers(compiled.graph)
    assert [row["name"] for row in report["layers"]] == [n.name for n in layers]
    for depth, (row, node) in enumerate(zip(report["layers"], layers)):
        assert set(row) == {"name", "op", "depth", "grad_norm"}
        assert row["depth"] == depth and row["op"] == node.op
        assert isinstance(row["grad_norm"], float) and row["grad_norm"] > 0
    again = gf.measure(compiled, batch=4, seed=2).to_json()
    assert report == json.loads(json.dumps(again))


def test_table_and_plot(tmp_path):
    out = tmp_path / "plot.png"
    proc = run_netc("gradflow", EXAMPLES / "residual_deep.net", "-o", out)
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "stage_2.pair_2.conv2d_1" in proc.stdout and "Grad norm" in proc.stdout
    assert f"wrote {out}" in proc.stderr


def test_errors(tmp_path):
    transformer = EXAMPLES / "transformer.net"
    proc = run_netc("gradflow", transformer)
    assert proc.returncode == 2 and "dimension T" in proc.stderr and "--dim" in proc.stderr
    proc = run_netc("gradflow", transformer, "--dim", "T=6", "--dim", "Q=3")
    assert proc.returncode == 2 and "no dimension Q" in proc.stderr
    proc = run_netc("gradflow", transformer, "--dim", "T=zero")
    assert proc.returncode == 2 and "NAME=SIZE" in proc.stderr
    proc = run_netc("gradflow", transformer, "--dim", "T=6", "--json")
    assert proc.returncode == 0, proc.stderr
    assert all(row["grad_norm"] > 0 for row in json.loads(proc.stdout)["layers"])
    bad = tmp_path / "bad.net"
    bad.write_text("network b(x: [N, 4]) {\n    return x -> linear(4) + x -> linear(5)\n}\n")
    proc = run_netc("gradflow", bad)
    assert proc.returncode == 1 and "bad.net:2" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_netc("gradflow", bad, "--json")
    assert proc.returncode == 1 and json.loads(proc.stdout)["ok"] is False
    proc = run_netc("gradflow", EXAMPLES / "residual_mlp.net", "-o", tmp_path / "plot.jpg")
    assert proc.returncode == 2 and ".png" in proc.stderr
    proc = run_netc("gradflow", EXAMPLES / "residual_mlp.net", "--weights", tmp_path / "none.npz")
    assert proc.returncode == 1 and "no such file" in proc.stderr
    proc = run_netc("gradflow", EXAMPLES / "residual_mlp.net", "--batch", "0")
    assert proc.returncode == 2


def test_missing_matplotlib_is_exit_5(tmp_path):
    code = (
        "import sys; sys.modules['matplotlib'] = None\n"  # `import matplotlib` now raises ImportError
        "from netc.compiler.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    args = ["gradflow", str(EXAMPLES / "residual_mlp.net"), "-o", str(tmp_path / "p.png")]
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 5 and "pip install 'netc[viz]'" in proc.stderr
    assert not (tmp_path / "p.png").exists()
    proc = subprocess.run([sys.executable, "-c", code, *args[:2], "--json"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr  # the numbers need no matplotlib


def test_weights_file(tmp_path):
    """--weights replaces the drawn weights: scaling every weight changes the norms."""
    compiled = compile_file(EXAMPLES / "residual_mlp.net")
    weights = {k: v * 2 if v.dtype.kind == "f" else v for k, v in compiled.weights(None, 0).items()}
    np.savez(tmp_path / "w.npz", **weights)
    proc = run_netc("gradflow", EXAMPLES / "residual_mlp.net", "--json", "--weights", tmp_path / "w.npz")
    assert proc.returncode == 0, proc.stderr
    got = {row["name"]: row["grad_norm"] for row in json.loads(proc.stdout)["layers"]}
    want = gf.measure(compiled, weights=weights).norms()
    assert got == pytest.approx(want, rel=1e-6)
    assert got != pytest.approx(gf.measure(compiled).norms(), rel=1e-3)
