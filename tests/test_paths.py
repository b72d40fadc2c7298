"""`netc paths`: gradient-path counts, lengths, bounds and histograms.

Exact counts are checked against closed forms (C(n, k) for residual stacks, Veit et al.
2016) and against brute-force enumeration of every path on small graphs: a dense block,
the examples, and random specs with skips, repeated reads and element-wise functions.
"""

import json
import math
import random
import sys

import pytest
from conftest import ROOT, run_netc
from netc.compiler import compile_file, compile_string
from netc.compiler.ops import REGISTRY
from netc.compiler.paths import MAX_DERIVATIVE, analyze, bound_text, count_text, gradient_edges

sys.path.insert(0, str(ROOT / "bench"))


def residual_stack(n: int, act: str = "relu", head: bool = False) -> str:
    """n blocks `x + act(linear(x))`: one parameterized layer per block traversed."""
    tail = "h -> linear(4)" if head else "h"
    return f"""
block res(x) {{
    return x + (x -> linear(8) -> {act})
}}
network stack(x: [N, 8]) {{
    h = x
    repeat {n} {{
        h = res(h)
    }}
    return {tail}
}}
"""


DENSE = """
block dense_layer(x) {
    new = x -> batchnorm -> relu -> conv2d(4, kernel=3, padding=1, bias=false)
    return concat(x, new, axis=1)
}
network dense(image: [N, 4, 8, 8]) {
    x = image
    repeat 4 {
        x = dense_layer(x)
    }
    return x -> conv2d(2, kernel=1)
}
"""


# ---------------------------------------------------------------- brute force


def brute_force(graph, outputs=None):
    """Every path from every node to the outputs, enumerated: name -> list of
    (parameterized layers, element-wise functions, log10 bound) per path."""
    from netc.compiler.paths import default_outputs, max_derivative

    succ = gradient_edges(graph)
    nodes = {n.name: n for n in graph.nodes()}
    chosen = default_outputs(graph) if outputs is None else outputs
    known = dict(graph.outputs)
    roots = [known[o].node for o in chosen]

    def step(name):
        node = nodes[name]
        elementwise = REGISTRY[node.op].kind == "elementwise"
        d = max_derivative(node.op, node.attrs) if elementwise else 1.0
        return (1 if node.params else 0), (1 if elementwise else 0), (math.inf if d is None else math.log10(d))

    memo = {}

    def paths(name):
        if name not in memo:
            found = [(0, 0, 0.0)] * roots.count(name)
            for w in succ.get(name, ()):
                p, f, b = step(w)
                found += [(p + lp, f + lf, b + lb) for lp, lf, lb in paths(w)]
            memo[name] = found
        return memo[name]

    return {name: paths(name) for name in nodes}


def check_against_brute_force(graph):
    report = analyze(graph)
    every = brute_force(graph)
    layers = {layer.name: layer for layer in report.layers}
    for name, found in every.items():
        assert report.backward[name] == len(found), name
        layer = layers.get(name)
        if layer is None:
            continue
        if not found:
            assert layer.paths == 0 and layer.shortest is None
            continue
        assert (layer.shortest, layer.longest) == (min(p for p, _, _ in found), max(p for p, _, _ in found)), name
        assert (layer.factors_shortest, layer.factors_longest) == (
            min(f for _, f, _ in found),
            max(f for _, f, _ in found),
        )
        bound = max(b for _, _, b in found)
        if math.isinf(bound):
            assert layer.attenuation_log10 is None
        else:
            assert layer.attenuation_log10 == pytest.approx(bound, abs=1e-9)
    for x, p in report.inputs.items():
        found = every[x]
        histogram = {}
        bounds = {}
        for length, _, b in found:
            histogram[length] = histogram.get(length, 0) + 1
            bounds[length] = max(bounds.get(length, -math.inf), b)
        assert p.paths == len(found)
        assert p.histogram == histogram, x
        for length, b in bounds.items():
            if math.isinf(b):
                assert p.attenuation_log10[length] is None
            else:
                assert p.attenuation_log10[length] == pytest.approx(b, abs=1e-9)
    return report


# ---------------------------------------------------------------- residual stacks


@pytest.mark.parametrize("n", range(1, 61))
def test_residual_stack_histogram_is_binomial(n, tmp_path, capsys):
    """`netc paths --json` (in process): C(n, k) paths of length k, as exact integers."""
    from netc.compiler.cli import main

    spec = tmp_path / "stack.net"
    spec.write_text(residual_stack(n))
    assert main(["paths", str(spec), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    x = report["inputs"]["x"]
    assert x["histogram"] == {str(k): math.comb(n, k) for k in range(n + 1)}
    assert x["paths"] == 2**n
    first = next(layer for layer in report["layers"] if layer["name"] == "res_0.linear_0")
    assert (first["paths"], first["shortest"], first["longest"]) == (2 ** (n - 1), 0, n - 1)


def test_residual_stack_json_has_exact_big_integers(tmp_path):
    spec = tmp_path / "stack.net"
    spec.write_text(residual_stack(60))
    proc = run_netc("paths", spec, "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["network"] == "stack"
    histogram = report["inputs"]["x"]["histogram"]
    assert histogram == {str(k): math.comb(60, k) for k in range(61)}  # beyond 2**53: exact ints
    assert '"30": 118264581564861424' in proc.stdout
    assert report["inputs"]["x"]["paths"] == 2**60
    layer = report["layers"][0]
    assert set(layer) >= {"name", "op", "paths", "shortest", "longest"}
    assert layer["name"] == "res_0.linear_0" and layer["op"] == "linear" and layer["paths"] == 2**59


def test_deep_stack_with_two_layers_per_block():
    """The benchmark's block (linear, relu, linear, then relu(x + h)) and a linear head:
    k blocks traversed is 2k + 1 layers."""
    from check_speed import deep_spec

    report = analyze(compile_string(deep_spec(2000, "repeat")).graph)
    assert report.inputs["x"].histogram == {2 * k + 1: math.comb(2000, k) for k in range(2001)}


def test_count_beyond_the_int_to_str_limit(tmp_path):
    """2**15000 has 4,516 digits, past Python's default 4,300 for int -> str."""
    spec = tmp_path / "deep.net"
    spec.write_text(residual_stack(15000))
    proc = run_netc("paths", spec, "--json", timeout=120)
    assert proc.returncode == 0, proc.stderr
    start = proc.stdout.index('"paths": ') + len('"paths": ')
    digits = proc.stdout[start : proc.stdout.index(",", start)]
    assert len(digits) == 4516
    limit = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)
    try:
        assert int(digits) == 2**15000
    finally:
        sys.set_int_max_str_digits(limit)


# ---------------------------------------------------------------- brute force


def test_dense_block_against_enumeration():
    graph = compile_string(DENSE).graph
    report = check_against_brute_force(graph)
    # each dense layer doubles the paths: through its branch or along the concat
    assert report.inputs["image"].paths == 2**4
    # a branch passes batchnorm and conv2d; the head conv2d is on every path
    assert report.inputs["image"].histogram == {1 + 2 * k: math.comb(4, k) for k in range(5)}


# densenet121 has 2**58 paths: test_dense_block_against_enumeration covers its structure
@pytest.mark.parametrize("name", ["resnet18", "unet", "transformer", "actor_critic", "residual_mlp"])
def test_examples_against_enumeration(name):
    check_against_brute_force(compile_file(ROOT / "examples" / f"{name}.net").graph)


def random_spec(seed: int) -> str:
    rng = random.Random(seed)
    lines = ["network r(x: [N, 6], y: [N, 6]) {", "    v0 = x", "    v1 = y -> linear(6)"]
    made = 2
    acts = ["relu", "sigmoid", "tanh", "exp", "gelu", "leaky_relu(slope=2.0)", "identity"]
    for i in range(made, made + rng.randint(3, 14)):
        a, b = rng.randrange(i), rng.randrange(i)
        form = rng.choice(["lin", "act", "add", "mul", "self", "cat", "sub"])
        if form == "lin":
            expr = f"v{a} -> linear(6)"
        elif form == "act":
            expr = f"v{a} -> {rng.choice(acts)}"
        elif form == "add":
            expr = f"v{a} + v{b}"
        elif form == "mul":
            expr = f"v{a} * v{b}"
        elif form == "sub":
            expr = f"v{a} - v{b} * 0.5"
        elif form == "self":
            expr = f"v{a} + v{a}"  # one value read twice: two paths
        else:
            expr = f"concat(v{a}, v{b}, axis=1) -> linear(6)"
        lines.append(f"    v{i} = {expr}")
        made = i + 1
    last = made - 1
    outs = sorted({last, rng.randrange(made)})
    lines.append("    return " + ", ".join(f"v{o}" for o in outs))
    lines.append("}")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("seed", range(40))
def test_random_specs_against_enumeration(seed):
    compiled = compile_string(random_spec(seed))
    check_against_brute_force(compiled.graph)


def test_a_value_read_twice_is_two_paths():
    graph = compile_string("network t(x: [N, 4]) {\n    return x + x\n}\n").graph
    assert analyze(graph).inputs["x"].paths == 2


# ---------------------------------------------------------------- bounds and stops


def test_sigmoid_chain_shows_its_quarter_per_function():
    spec = "network s(x: [N, 4]) {\n    h = x\n    repeat 12 {\n        h = h -> linear(4) -> sigmoid\n    }\n    return h\n}\n"
    report = analyze(compile_string(spec).graph)
    x = report.inputs["x"]
    assert x.histogram == {12: 1}
    assert x.attenuation_log10[12] == pytest.approx(12 * math.log10(0.25))
    assert bound_text(x.attenuation_log10[12]) == "5.96e-8"
    first = report.layers[0]
    assert (first.factors_shortest, first.factors_longest) == (12, 12)


def test_residual_sigmoid_stack_bound_per_length():
    """Length k passes k sigmoids: the bound of length k is 0.25**k."""
    report = analyze(compile_string(residual_stack(30, "sigmoid")).graph)
    bounds = report.inputs["x"].attenuation_log10
    assert all(bounds[k] == pytest.approx(k * math.log10(0.25)) for k in range(31))


def test_unbounded_functions_give_no_bound():
    graph = compile_string("network e(x: [N, 4]) {\n    return x -> linear(4) -> exp\n}\n").graph
    report = analyze(graph)
    assert report.inputs["x"].attenuation_log10 == {1: None}
    assert report.layers[0].attenuation_log10 is None
    assert report.to_json()["layers"][0]["attenuation_log10"] is None


def test_every_elementwise_op_has_a_derivative_bound():
    for name, op in REGISTRY.items():
        if op.kind == "elementwise" and not getattr(op, "hidden", False):
            assert name in MAX_DERIVATIVE, f"paths.MAX_DERIVATIVE needs {name}"


def test_integer_inputs_stop_gradients():
    report = analyze(compile_file(ROOT / "examples" / "transformer.net").graph)
    assert report.inputs["tokens"].paths == 0
    assert report.inputs["tokens"].histogram == {}
    embedding = next(layer for layer in report.layers if layer.op == "embedding")
    assert embedding.paths > 0
    assert report.forward[embedding.name] == 1  # a leaf: its parameters end the paths


def test_losses_are_where_paths_start():
    spec = """
network l(x: [N, 4], labels: int64[N]) {
    logits = x -> linear(3)
    loss = cross_entropy(logits, labels)
    return logits, loss
}
"""
    report = analyze(compile_string(spec).graph)
    assert report.outputs == ["loss"]
    assert analyze(compile_string(spec).graph, ["logits"]).outputs == ["logits"]
    with pytest.raises(KeyError):
        analyze(compile_string(spec).graph, ["nope"])


def test_count_text():
    assert count_text(65536) == "65,536"
    assert count_text(2**100) == "1.27e30"
    assert count_text(10**40 - 1) == "1.00e40"


# ---------------------------------------------------------------- the command


def test_paths_text_table():
    proc = run_netc("paths", ROOT / "examples" / "resnet50.net")
    assert proc.returncode == 0, proc.stderr
    assert "input image: 65,536 gradient paths from logits" in proc.stdout
    assert "stage_3.bottleneck_2.conv2d_2" in proc.stdout
    assert "Length" in proc.stdout and "Bound" in proc.stdout


def test_paths_errors(tmp_path):
    proc = run_netc("paths", ROOT / "examples" / "resnet50.net", "--from", "nope")
    assert proc.returncode == 2 and "no output named 'nope'" in proc.stderr and "logits" in proc.stderr
    bad = tmp_path / "bad.net"
    bad.write_text("network b(x: [N, 4]) {\n    return x + y\n}\n")
    proc = run_netc("paths", bad)
    assert proc.returncode == 1 and "bad.net:2" in proc.stderr
    proc = run_netc("paths", bad, "--json")
    assert proc.returncode == 1 and json.loads(proc.stdout)["ok"] is False
    proc = run_netc("paths", tmp_path / "missing.net")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr


def branches_stack(n: int, lengths: tuple[int, ...]) -> str:
    """n blocks `x + branch + ...`, one branch of k linear layers per k in `lengths`."""
    terms = " + ".join(["x"] + ["(x" + " -> linear(4)" * k + ")" for k in lengths])
    return f"""
block b(x) {{
    return {terms}
}}
network s(x: [N, 4]) {{
    h = x
    repeat {n} {{
        h = b(h)
    }}
    return h
}}
"""


@pytest.mark.parametrize("lengths", [(2, 4), (1, 3), (1, 1, 2)])
def test_repeated_blocks_histogram_is_the_block_polynomial_to_the_power(lengths):
    """A block's polynomial 1 + sum z^k, to the n-th power, by plain multiplication: the
    analysis groups equal segments and takes powers with shortcuts for palindromic
    polynomials (1 + z^2 + z^4) and polynomials in z^g; (1, 3) has neither."""
    for n in range(1, 6):
        check_against_brute_force(compile_string(branches_stack(n, lengths)).graph)
    n = 120
    block = [0] * (max(lengths) + 1)
    block[0] = 1
    for k in lengths:
        block[k] += 1
    expected = [1]
    for _ in range(n):
        product = [0] * (len(expected) + len(block) - 1)
        for i, a in enumerate(expected):
            for j, b in enumerate(block):
                product[i + j] += a * b
        expected = product
    report = analyze(compile_string(branches_stack(n, lengths)).graph)
    assert report.inputs["x"].histogram == {k: c for k, c in enumerate(expected) if c}
