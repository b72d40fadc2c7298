"""The ONNX backend: every example agrees with its PyTorch module in onnxruntime, and the
model carries the spec's names, shapes and source lines.

Each example is compiled once; its netc PyTorch module gets random weights (batchnorm's
running statistics too, so folding them is tested), and the ONNX model built from that
module's state_dict, optimized and not, must compute the module's eval-mode outputs at
batch 1 and 7, and at two sizes of each other symbolic dimension (rtol 1e-4, atol 1e-5).
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import onnx
import pytest
from conftest import ROOT, run_netc
from netc.compiler import compile_file, compile_string
from onnx_checks import check_model, feeds, run

torch = pytest.importorskip("torch")

SPECS = sorted((ROOT / "examples").glob("*.net")) + sorted((ROOT / "tests" / "conformance" / "ok").glob("*.net"))
SPECS.append(ROOT / "tests" / "specs" / "symbolic_vision.net")
# Sizes for the symbolic dimensions other than the batch, two settings each.
SIZES = {"T": (5, 12), "K": (3, 5), "H": (16, 28), "W": (20, 12), "observations": (6, 6)}
HEAVY = {"vgg16.net", "wide_resnet50_2.net", "unet.net", "vit_b_16.net", "convnext_tiny.net"}  # batch 7: 5-16 s each


def _randomize(module, seed=0):
    """torch.nn's random weights, but the tensors it starts constant (norm layers' scale and
    shift, batchnorm's running statistics) made random too: otherwise batchnorm is the
    identity and folding it proves nothing."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, value in module.state_dict().items():
            if value.is_floating_point() and value.numel() and bool((value == value.flatten()[0]).all()):
                noise = torch.rand(value.shape, generator=generator, dtype=value.dtype)
                value.copy_(noise + 0.5 if key.endswith(("running_var", "weight")) else noise - 0.5)


def _symbols(graph):
    names = []
    for name in graph.inputs:
        for d in graph.node(name).outputs[0].shape:
            if not isinstance(d, int) and d.text() not in names:
                names.append(d.text())
    return names


def _cases():
    """(spec, batch, setting of the other symbolic sizes), as pytest params."""
    for path in SPECS:
        symbols = _symbols(compile_file(path).graph)
        for batch in (1, 7):
            for setting in range(2 if symbols[1:] else 1):
                slow = batch == 7 and path.name in HEAVY
                yield pytest.param(
                    path,
                    batch,
                    setting,
                    id=f"{path.parent.name}/{path.name}-batch{batch}-sizes{setting}",
                    marks=[pytest.mark.slow] if slow else [],
                )


@pytest.fixture(scope="module")
def example(request):
    compiled = compile_file(request.param)
    module = compiled.torch().eval()
    _randomize(module)
    models = {opt: compiled.onnx(weights=module.state_dict(), optimize=opt) for opt in (False, True)}
    return compiled, module, models


@pytest.mark.parametrize("example", SPECS, ids=lambda p: f"{p.parent.name}/{p.name}", indirect=True)
def test_models_pass_the_checker_and_shape_inference(example):
    compiled, _, models = example
    for model in models.values():
        check_model(model, compiled.graph)


@pytest.mark.parametrize("example,batch,setting", list(_cases()), indirect=["example"])
def test_onnxruntime_agrees_with_the_torch_module(example, batch, setting):
    compiled, module, models = example
    symbols = _symbols(compiled.graph)
    sizes = {symbols[0]: batch} if symbols else {}
    sizes.update({name: SIZES[name][setting] for name in symbols[1:]})
    inputs = feeds(compiled.graph, sizes)
    with torch.no_grad():
        expected = module(*(torch.from_numpy(a) for a in inputs.values()))
    expected = expected if isinstance(expected, tuple) else (expected,)
    for optimize, model in models.items():
        got = run(model, inputs)
        for g, e in zip(got, expected):
            np.testing.assert_allclose(g, e.numpy(), rtol=1e-4, atol=1e-5, err_msg=f"optimize={optimize}")


def test_optimization_folds_batchnorm_and_removes_dropout():
    compiled = compile_file(ROOT / "examples" / "resnet18.net")
    plain, optimized = compiled.onnx(optimize=False), compiled.onnx()
    ops = lambda m: [n.op_type for n in m.graph.node]  # noqa: E731
    assert "BatchNormalization" in ops(plain) and "BatchNormalization" not in ops(optimized)
    assert len(optimized.graph.node) < len(plain.graph.node)
    spec = "network t(x: [N, 8]) {\n return x -> linear(8) -> dropout(0.2) -> identity -> relu\n}\n"
    ops_of_spec = ops(compile_string(spec).onnx())
    assert "Dropout" not in ops_of_spec and "Identity" not in ops_of_spec


def test_folding_leaves_a_callers_weights_alone_and_overwrites_only_its_own(tmp_path):
    """Batchnorm folds into the weight array itself only where the weights are netc's own
    (drawn, or read from a file); a caller's dict of arrays is never written to."""
    compiled = compile_file(ROOT / "examples" / "resnet18.net")
    mine = compiled.weights(seed=3)
    before = {k: v.copy() for k, v in mine.items()}
    given = compiled.onnx_model(weights=mine).to_bytes()
    assert all(np.array_equal(before[k], mine[k]) for k in before)
    assert compiled.onnx_model(seed=3).to_bytes() == given  # folded in place: the same bytes
    np.savez(tmp_path / "w.npz", **before)
    assert compiled.onnx_model(weights=tmp_path / "w.npz").to_bytes() == given


@pytest.mark.parametrize(
    "source",
    [
        "examples/resnet18.net",  # convolutions without bias folded with batchnorm
        "examples/transformer.net",  # embeddings (normal) before and among uniform layers
        "network t(x: [N, 3, 8, 8]) { return x -> conv2d(4, kernel=3) -> batchnorm -> relu -> conv2d(2, kernel=1) }",
        "network t(x: [N, 5]) { return x -> linear(4) -> batchnorm -> batchnorm -> relu }",  # Gemm's bias, twice
        # a weight with no values ([64, 0]) among others: the stream yields it all the same
        "network t(x: [N, 64]) {\n h = x -> linear(64)\n a, b = h -> split((0, 64))\n"
        " z = a -> linear(64)\n y = b -> linear(64)\n return z + y\n}",
    ],
)
@pytest.mark.parametrize("streamed", [True, False])
def test_weights_drawn_while_writing_equal_weights_drawn_first(source, streamed, tmp_path, monkeypatch):
    """Fresh weights are planned, folded as transforms and drawn as the model is written
    (weights.Planned): the bytes equal those of the same weights drawn first and folded as
    arrays, in memory, in a file and with external data."""
    import netc.backends.onnx as backend
    from netc.compiler.weights import initial_weights

    if streamed:  # every planned tensor drawn one by one as written, however small
        monkeypatch.setattr(backend, "_STREAM_BYTES", 0)
        monkeypatch.setattr(backend, "_STREAM_TENSOR_BYTES", 0)
    compiled = compile_file(ROOT / source) if source.endswith(".net") else compile_string(source)
    drawn_first = backend.emit(compiled.graph, initial_weights(compiled.graph, 4), owned=True)
    expected = drawn_first.to_bytes()
    assert compiled.onnx_model(seed=4).to_bytes() == expected
    compiled.onnx_model(seed=4).save(tmp_path / "m.onnx")
    assert (tmp_path / "m.onnx").read_bytes() == expected
    for where, model in (("planned", compiled.onnx_model(seed=4)), ("drawn", drawn_first)):
        (tmp_path / where).mkdir()
        model.save(tmp_path / where / "e.onnx", external_data_bytes=0)
    for name in ("e.onnx", "e.onnx.data"):
        assert (tmp_path / "planned" / name).read_bytes() == (tmp_path / "drawn" / name).read_bytes()
    assert compiled.onnx_model(seed=4).to_proto() == onnx.load_from_string(expected)


def test_big_endian_weights_write_as_little_endian():
    from netc.backends.onnx import emit
    from netc.compiler.weights import initial_weights

    graph = compile_file(ROOT / "examples" / "residual_mlp.net").graph
    weights = initial_weights(graph, 1)
    swapped = {k: v.astype(v.dtype.newbyteorder(">")) for k, v in weights.items()}
    assert emit(graph, swapped).to_bytes() == emit(graph, weights).to_bytes()


def test_a_bad_seed_is_refused_when_asked_for():
    with pytest.raises(ValueError):
        compile_string("network t(x: [N, 4]) { return x -> linear(2) }").onnx_model(seed=-1)


def test_the_model_carries_the_specs_names_shapes_and_lines():
    path = ROOT / "examples" / "resnet50.net"
    compiled = compile_file(path)
    model = compiled.onnx(optimize=False)
    assert model.producer_name == "netc" and model.producer_version
    assert [o.version for o in model.opset_import] == [18]
    (image,) = model.graph.input
    dims = image.type.tensor_type.shape.dim
    assert image.name == "image" and [d.dim_param or d.dim_value for d in dims] == ["N", 3, 224, 224]
    (logits,) = model.graph.output
    assert logits.name == "logits"
    state = compiled.torch().state_dict()
    names = {t.name for t in model.graph.initializer}
    assert names == {k for k in state if not k.endswith("num_batches_tracked")}
    conv = next(n for n in model.graph.node if n.name == "stage_1.bottleneck_0.conv2d_2")
    assert conv.op_type == "Conv" and conv.doc_string == "resnet50.net:11"
    assert conv.output == ["stage_1.bottleneck_0.conv2d_2"]
    assert all(n.doc_string.startswith("resnet50.net:") for n in model.graph.node if n.op_type != "Identity")


def test_derived_dimensions_are_dim_params():
    spec = "network sym(x: [N, 3, H, W]) {\n  return x -> conv2d(8, kernel=3, stride=2, padding=1)\n}\n"
    model = compile_string(spec).onnx()
    dims = model.graph.output[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["N", 8, "(H - 1) // 2 + 1", "(W - 1) // 2 + 1"]


def test_every_supported_opset_runs():
    from netc.backends.onnx import MIN_OPSET, max_opset

    compiled = compile_file(ROOT / "tests" / "specs" / "symbolic_vision.net")
    module = compiled.torch().eval()
    inputs = feeds(compiled.graph, {"N": 2, "H": 16, "W": 20})
    with torch.no_grad():
        expected = module(*(torch.from_numpy(a) for a in inputs.values()))
    assert max_opset() >= 21
    for opset in range(MIN_OPSET, max_opset() + 1):
        model = compiled.onnx(opset=opset, weights=module.state_dict())
        assert [o.version for o in model.opset_import] == [opset]
        check_model(model)
        for g, e in zip(run(model, inputs), expected):
            np.testing.assert_allclose(g, e.numpy(), rtol=1e-4, atol=1e-5, err_msg=f"opset {opset}")


@pytest.mark.parametrize("opset", [16, 29, 30, 99])
def test_an_unsupported_opset_is_a_usage_error(opset, tmp_path):
    out = tmp_path / "m.onnx"
    proc = run_netc("compile", ROOT / "examples" / "dqn.net", "--target", "onnx", "--opset", opset, "-o", out)
    assert proc.returncode == 2 and f"opset {opset}" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists()


def test_same_spec_same_bytes_whatever_the_hash_seed(tmp_path):
    outputs = []
    for seed in ("0", "1", "random"):
        out = tmp_path / f"m{seed}.onnx"
        env = {**os.environ, "PYTHONHASHSEED": seed}
        spec = ROOT / "tests" / "specs" / "symbolic_vision.net"
        netc = os.path.join(os.path.dirname(sys.executable), "netc")
        subprocess.run([netc, "compile", str(spec), "--target", "onnx", "-o", str(out)], env=env, check=True)
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1] == outputs[2]
    assert compile_file(ROOT / "tests" / "specs" / "symbolic_vision.net").onnx_model().to_bytes() == outputs[0]


def test_seed_changes_the_initial_weights():
    compiled = compile_file(ROOT / "examples" / "dqn.net")
    a, b = compiled.onnx(seed=1), compiled.onnx(seed=2)
    assert a.graph.initializer[0].raw_data != b.graph.initializer[0].raw_data
    assert compiled.onnx(seed=1) == a


def test_external_data_beside_the_model(tmp_path):
    compiled = compile_file(ROOT / "examples" / "residual_mlp.net")
    model = compiled.onnx_model()
    written = model.save(tmp_path / "m.onnx", external_data_bytes=1000)
    assert written == [tmp_path / "m.onnx", tmp_path / "m.onnx.data"]
    loaded = onnx.load(tmp_path / "m.onnx", load_external_data=False)
    locations = {e.value for t in loaded.graph.initializer for e in t.external_data if e.key == "location"}
    assert locations == {"m.onnx.data"}  # a plain name beside the model, never a path
    onnx.checker.check_model(str(tmp_path / "m.onnx"), full_check=True)
    inputs = feeds(compiled.graph, {"N": 3})
    import onnxruntime as ort

    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(session.run(None, inputs)[0], run(model.to_proto(), inputs)[0])
    assert sorted(os.listdir(tmp_path)) == ["m.onnx", "m.onnx.data"]  # no scratch left behind


def test_compile_writes_the_model_and_reports(tmp_path):
    out = tmp_path / "dqn.onnx"
    proc = run_netc("compile", ROOT / "examples" / "dqn.net", "--target", "onnx", "-o", out)
    assert proc.returncode == 0, proc.stderr
    assert "1,693,362 parameters" in proc.stderr or "parameters" in proc.stderr
    model = onnx.load(out)
    onnx.checker.check_model(model, full_check=True)


def test_compile_to_standard_output_when_piped(tmp_path):
    proc = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "netc"), "compile", str(ROOT / "examples" / "dqn.net"),
         "--target", "onnx", "--no-optimize"],
        capture_output=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert onnx.load_from_string(proc.stdout).graph.name == "dqn"


@pytest.mark.parametrize("flag", [["--opset", "18"], ["--seed", "3"], ["--no-optimize"], ["--weights", "w.pt"]])
def test_onnx_flags_do_not_apply_to_torch(flag):
    proc = run_netc("compile", ROOT / "examples" / "dqn.net", "--target", "torch", *flag)
    assert proc.returncode == 2 and "does not apply" in proc.stderr


def test_spec_errors_keep_exit_1_and_write_nothing(tmp_path):
    bad = tmp_path / "bad.net"
    bad.write_text("network t(x: [N, 4]) {\n return x + (x -> linear(3))\n}\n")
    out = tmp_path / "m.onnx"
    proc = run_netc("compile", bad, "--target", "onnx", "-o", out)
    assert proc.returncode == 1 and "cannot add" in proc.stderr and not out.exists()


SMALL = "network t(x: [N, 8]) {\n return x -> linear(4) -> batchnorm -> relu\n}\n"


def _state(spec_path):
    return {k: v.clone() for k, v in compile_file(spec_path).torch().state_dict().items()}


def _hostile_weights(tmp_path, kind):
    """A weights file that must be refused; returns (path, words the message must hold)."""
    import pickle

    spec = tmp_path / "t.net"
    state = _state(spec)
    if kind == "wrong shape":
        state["linear_0.weight"] = torch.zeros(5, 8)
        words = ["linear_0.weight", "[5, 8]", "[4, 8]"]
    elif kind == "wrong dtype":
        state["linear_0.bias"] = state["linear_0.bias"].double()
        words = ["linear_0.bias", "float64", "float32"]
    elif kind == "extra key":
        state["linear_0.weigth"] = torch.zeros(4, 8)
        words = ["linear_0.weigth"]
    elif kind == "missing key":
        del state["batchnorm_0.running_var"]
        words = ["batchnorm_0.running_var"]
    if kind in ("wrong shape", "wrong dtype", "extra key", "missing key"):
        path = tmp_path / "w.pt"
        torch.save(state, path)
        return path, words
    path = tmp_path / "w.pt"
    if kind == "pickle as .pt":
        marker = tmp_path / "pwned"
        payload = f"import pathlib; pathlib.Path({str(marker)!r}).write_text('x')"

        class Exploit:
            def __reduce__(self):
                return (exec, (payload,))

        path.write_bytes(pickle.dumps(Exploit()))
        return path, ["pickle"]
    if kind == "truncated":
        torch.save(state, path)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        return path, [str(path.name)]
    if kind == "truncated safetensors":
        from safetensors.torch import save_file

        path = tmp_path / "w.safetensors"
        save_file(state, path)
        path.write_bytes(path.read_bytes()[:100])
        return path, ["safetensors"]
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind",
    ["wrong shape", "wrong dtype", "extra key", "missing key", "pickle as .pt", "truncated", "truncated safetensors"],
)
def test_hostile_weights_are_clear_errors(tmp_path, kind):
    (tmp_path / "t.net").write_text(SMALL)
    weights, words = _hostile_weights(tmp_path, kind)
    out = tmp_path / "m.onnx"
    proc = run_netc("compile", tmp_path / "t.net", "--target", "onnx", "--weights", weights, "-o", out)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    for word in words:
        assert word in proc.stderr
    assert not out.exists()
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("suffix", [".pt", ".safetensors", ".npz"])
def test_weights_files_round_trip(tmp_path, suffix):
    (tmp_path / "t.net").write_text(SMALL)
    module = compile_file(tmp_path / "t.net").torch().eval()
    _randomize(module)
    path = tmp_path / f"w{suffix}"
    state = module.state_dict()
    if suffix == ".pt":
        torch.save(state, path)
    elif suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(dict(state), path)
    else:
        np.savez(path, **{k: v.numpy() for k, v in state.items()})
    out = tmp_path / "m.onnx"
    proc = run_netc("compile", tmp_path / "t.net", "--target", "onnx", "--weights", path, "-o", out)
    assert proc.returncode == 0, proc.stderr
    x = np.random.default_rng(0).standard_normal((3, 8)).astype(np.float32)
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(run(onnx.load(out), {"x": x})[0], expected, rtol=1e-5, atol=1e-6)


def test_reading_pt_weights_without_torch_names_the_extra(tmp_path):
    (tmp_path / "t.net").write_text(SMALL)
    torch.save(_state(tmp_path / "t.net"), tmp_path / "w.pt")
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from netc.compiler.cli import main\n"
        f"sys.exit(main(['compile', {str(tmp_path / 't.net')!r}, '--target', 'onnx', "
        f"'--weights', {str(tmp_path / 'w.pt')!r}, '-o', {str(tmp_path / 'm.onnx')!r}]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 5 and "pip install 'netc[torch]'" in proc.stderr
    assert not (tmp_path / "m.onnx").exists()


def test_onnx_emission_does_not_import_torch():
    code = (
        "import sys\n"
        "from netc.compiler import compile_string\n"
        f"compile_string({SMALL!r}).onnx_model().to_bytes()\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
