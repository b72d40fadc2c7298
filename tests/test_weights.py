"""netc.compiler.weights: initial weights drawn as torch.nn would, and weights loaded from files.

Loading reads files a person may have been handed by a stranger, so the hostile cases matter
as much as the round trips: each must end in a NetcError that names the problem, never a
traceback and never code run from the file.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from netc.compiler import compile_file, compile_string
from netc.compiler.api import MissingExtra
from netc.compiler.weights import (
    MAX_PROBLEMS,
    Drawing,
    Planned,
    _advance,
    _generator_at,
    drawn_in_order,
    expected_tensors,
    initial_weights,
    load_weights,
)
from netc.dsl.diagnostics import NetcError

ROOT = Path(__file__).resolve().parents[1]
SMALL = "network t(x: [N, 8]) { return x -> linear(4) -> batchnorm -> relu }"
SMALL_KEYS = [
    "linear_0.weight",
    "linear_0.bias",
    "batchnorm_0.weight",
    "batchnorm_0.bias",
    "batchnorm_0.running_mean",
    "batchnorm_0.running_var",
    "batchnorm_0.num_batches_tracked",
]


def small():
    return compile_string(SMALL).graph


def small_weights(seed=0):
    return initial_weights(small(), seed)


def assert_same(a: dict, b: dict):
    assert list(a) == list(b)
    for name in a:
        assert a[name].dtype == b[name].dtype, name
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


# ---------------------------------------------------------------- initial weights


def test_initial_keys_shapes_dtypes_follow_the_graph():
    graph = small()
    weights = initial_weights(graph)
    assert list(weights) == SMALL_KEYS == list(expected_tensors(graph))
    for name, t in expected_tensors(graph).items():
        assert weights[name].shape == t.shape
        assert weights[name].dtype == np.dtype(t.dtype)
        assert weights[name].flags.c_contiguous and weights[name].flags.writeable and weights[name].dtype.isnative


@pytest.mark.parametrize("example", ["resnet18", "transformer", "actor_critic", None])
def test_initial_weights_match_the_torch_state_dict(example):
    pytest.importorskip("torch")
    compiled = compile_file(ROOT / "examples" / f"{example}.net") if example else compile_string(SMALL)
    state = compiled.torch().state_dict()
    weights = initial_weights(compiled.graph)
    assert list(weights) == list(state)  # the same order too, not only the same names
    for name, tensor in state.items():
        assert weights[name].shape == tuple(tensor.shape), name
        assert weights[name].dtype.name == str(tensor.dtype).removeprefix("torch."), name


def test_linear_is_uniform_on_one_over_sqrt_fan_in():
    weights = initial_weights(compile_string("network t(x: [N, 1024]) { return x -> linear(512) }").graph)
    w, b = weights["linear_0.weight"], weights["linear_0.bias"]
    bound = 1 / 1024**0.5
    assert w.shape == (512, 1024) and w.dtype == np.float32
    assert np.abs(w).max() <= bound and np.abs(b).max() <= bound
    # 524288 draws: the extremes come within a hair of the bound, the moments are those of U(-b, b).
    assert w.min() < -0.999 * bound and w.max() > 0.999 * bound
    assert abs(w.mean()) < 0.005 * bound
    assert w.std() == pytest.approx(bound / 3**0.5, rel=0.01)
    assert b.std() > 0.3 * bound  # not constant


def test_conv_fan_in_counts_the_kernel():
    weights = initial_weights(compile_string("network t(x: [N, 3, 8, 8]) { return x -> conv2d(64, kernel=3) }").graph)
    bound = 1 / (3 * 3 * 3) ** 0.5
    w = weights["conv2d_0.weight"]
    assert w.shape == (64, 3, 3, 3)
    assert np.abs(w).max() <= bound and w.max() > 0.95 * bound
    assert np.abs(weights["conv2d_0.bias"]).max() <= bound


def test_norm_layers_start_as_the_identity():
    spec = """
    network t(x: [N, 6, 4, 4]) {
        return x -> batchnorm -> layernorm -> groupnorm(groups=3)
    }
    """
    weights = initial_weights(compile_string(spec).graph)
    for name, array in weights.items():
        local = name.rsplit(".", 1)[1]
        if local == "num_batches_tracked":
            assert array.dtype == np.int64 and array.shape == () and array == 0
        elif local in ("weight", "running_var"):
            assert array.dtype == np.float32 and (array == 1).all(), name
        else:
            assert local in ("bias", "running_mean") and (array == 0).all(), name
    assert weights["layernorm_0.weight"].shape == (4,)
    assert weights["groupnorm_0.weight"].shape == (6,)


def test_embedding_is_standard_normal():
    spec = "network t(ids: int64[N]) { return ids -> embedding(1000, 256) }"
    w = initial_weights(compile_string(spec).graph)["embedding_0.weight"]
    assert w.shape == (1000, 256) and w.dtype == np.float32
    assert abs(w.mean()) < 0.01
    assert w.std() == pytest.approx(1.0, rel=0.01)
    assert np.abs(w).max() > 3  # a normal, not a bounded uniform


def test_float64_networks_get_float64_weights():
    graph = compile_string("network t(x: float64[N, 3]) { return x -> linear(2) -> layernorm }").graph
    weights = initial_weights(graph)
    assert {a.dtype for a in weights.values()} == {np.dtype("float64")}
    assert np.abs(weights["linear_0.weight"]).max() <= 1 / 3**0.5


def test_a_seed_fixes_the_weights():
    assert_same(small_weights(), small_weights(0))
    assert_same(small_weights(7), small_weights(7))
    other = small_weights(1)
    assert not np.array_equal(small_weights()["linear_0.weight"], other["linear_0.weight"])
    assert (other["batchnorm_0.running_var"] == 1).all()


def sequential_weights(graph, seed):
    """The plain definition `initial_weights` must equal: one generator, tensor by tensor."""
    from netc.compiler.ops import REGISTRY

    rng, out = np.random.default_rng(seed), {}
    for node in graph.nodes():
        rules = REGISTRY[node.op].init(node) if node.params or node.buffers else {}
        for local, t in (*node.params.items(), *node.buffers.items()):
            if local in node.shared:
                continue
            rule, shape = rules[local], tuple(t.shape)
            if rule.kind == "constant":
                out[node.param_name(local)] = np.full(shape, rule.value, dtype=t.dtype)
            elif rule.kind == "uniform":
                a = rng.random(shape, dtype=t.dtype)
                a *= 2 * rule.bound
                a -= rule.bound
                out[node.param_name(local)] = a
            else:
                a = rng.standard_normal(shape, dtype=t.dtype)
                out[node.param_name(local)] = a * rule.std if rule.std != 1.0 else a
    return out


# Odd sizes (a float32 piece ending mid-output), float64 between float32 tensors, normal
# draws between uniform ones, shared weights.
DRAW_SPECS = [
    SMALL,
    "network t(x: [N, 3]) { return x -> linear(5) -> linear(7) -> linear(1) }",
    "network t(x: float64[N, 3], y: [N, 5]) { a = x -> linear(3) -> linear(5)\n b = y -> linear(3)\n"
    " c = x -> linear(7) -> layernorm\n return a, b, c }",
    "network t(ids: int64[N], x: [N, 9]) { e = ids -> embedding(11, 9)\n h = x -> linear(9) -> linear(9)\n"
    " f = ids -> embedding(5, 9)\n return e + h + f -> linear(3) }",
    "network t(x: [N, 3, 9, 9]) { return x -> conv2d(5, kernel=3) -> batchnorm -> conv2d(7, kernel=3, groups=1) }",
]


@pytest.mark.parametrize("spec", DRAW_SPECS)
@pytest.mark.parametrize("piece", [1, 2, 3, 7, 1 << 20])
def test_drawing_in_pieces_on_two_threads_is_drawing_in_order(spec, piece, monkeypatch):
    graph = compile_string(spec).graph
    monkeypatch.setattr(Drawing, "PIECE", piece)
    for seed in (0, 5):
        expected = sequential_weights(graph, seed)
        for threaded in (0, 1 << 40):
            monkeypatch.setattr(Drawing, "THREADED", threaded)
            assert_identical(Drawing(graph, seed).arrays(), expected)


@pytest.mark.parametrize("spec", DRAW_SPECS)
def test_planned_tensors_drawn_one_by_one_are_drawn_in_order(spec):
    """The writer's way (drawn_in_order), in the graph's order and reversed, and one at a time."""
    graph = compile_string(spec).graph
    expected = sequential_weights(graph, 2)
    planned = {k: v for k, v in Drawing(graph, 2).tensors.items() if isinstance(v, Planned)}
    for names in (list(planned), list(reversed(planned))):
        got = {}
        for name, values in zip(names, drawn_in_order([planned[n] for n in names])):
            got[name] = values.copy()  # the buffer is reused for the one after next
        assert_identical(got, {n: expected[n] for n in names})
    for name, p in planned.items():
        assert_identical({name: np.asarray(Drawing(graph, 2).tensors[name])}, {name: expected[name]})


def test_a_planned_tensor_as_an_array_copies_only_when_asked():
    drawing = Drawing(compile_string(SMALL).graph, 0)
    planned = drawing.tensors["linear_0.weight"]
    copied = np.array(planned)  # copy=True: the caller's own
    copied[...] = 42
    assert not (drawing.arrays()["linear_0.weight"] == 42).any()
    assert np.asarray(planned) is drawing.arrays()["linear_0.weight"]


def test_unseeded_drawings_are_one_stream():
    """seed=None draws fresh entropy once: every piece and writer continues the same stream."""
    graph = compile_string("network t(x: [N, 3]) { return x -> linear(5) -> linear(7) }").graph
    drawing = Drawing(graph, None)
    planned = [v for v in drawing.tensors.values() if isinstance(v, Planned)]
    streamed = [v.copy() for v in drawn_in_order(planned)]
    expected = sequential_weights(graph, drawing.seed)
    assert all(a.tobytes() == expected[p.name].tobytes() for p, a in zip(planned, streamed))
    assert_identical(drawing.arrays(), expected)


def assert_identical(got: dict, expected: dict) -> None:
    assert list(got) == list(expected)
    for name, array in got.items():
        assert array.dtype == expected[name].dtype and array.shape == expected[name].shape, name
        assert array.tobytes() == expected[name].tobytes(), name


@pytest.mark.parametrize("example", ["resnet18", "residual_mlp", "transformer", "lstm_classifier"])
def test_examples_draw_as_one_generator_in_order(example):
    """resnet18: one long uniform buffer in many pieces on two threads; transformer and
    lstm_classifier: embeddings (normal) among uniform layers."""
    graph = compile_file(ROOT / "examples" / f"{example}.net").graph
    expected, drawing = sequential_weights(graph, 3), Drawing(graph, 3)
    assert_identical(drawing.arrays(), expected)
    planned = [v for v in Drawing(graph, 3).tensors.values() if isinstance(v, Planned)]
    assert all(v.tobytes() == expected[p.name].tobytes() for p, v in zip(planned, drawn_in_order(planned)))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["float32", "float64"]), st.integers(0, 9)), max_size=12))
def test_a_stream_position_is_where_drawing_in_order_gets(draws):
    rng, position = np.random.default_rng(11), (0, None)
    for dtype, count in draws:
        expected = rng.random(count, dtype=dtype)
        assert _generator_at(11, position).random(count, dtype=dtype).tobytes() == expected.tobytes()
        position = _advance(position, dtype, count)
    assert (
        _generator_at(11, position).random(5, dtype=np.float32).tobytes() == rng.random(5, dtype=np.float32).tobytes()
    )


def test_networks_without_parameters_have_no_weights():
    assert initial_weights(compile_string("network t(x: [N, 8]) { return x -> relu }").graph) == {}


def test_weights_need_no_torch(tmp_path):
    script = textwrap.dedent(
        f"""
        import sys, numpy as np
        from netc.compiler import compile_string
        from netc.compiler.weights import initial_weights, load_weights
        graph = compile_string({SMALL!r}).graph
        weights = initial_weights(graph)
        np.savez(sys.argv[1], **weights)
        load_weights(sys.argv[1], graph)
        load_weights(weights, graph)
        assert "torch" not in sys.modules, "torch was imported"
        """
    )
    command = [sys.executable, "-c", script, str(tmp_path / "w.npz")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


# ---------------------------------------------------------------- round trips


def torch_state(spec=SMALL):
    """A real netc module's state_dict, trained a step so that nothing is at its initial value."""
    torch = pytest.importorskip("torch")
    compiled = compile_string(spec)
    module = compiled.torch()
    module.train()
    module(torch.randn(5, 8))  # batchnorm statistics and num_batches_tracked move
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p))
    return compiled.graph, module, module.state_dict()


def numpy_of(state):
    return {k: v.detach().cpu().numpy() for k, v in state.items()}


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".PT"])
def test_round_trip_through_torch_save(tmp_path, suffix):
    torch = pytest.importorskip("torch")
    graph, _, state = torch_state()
    assert state["batchnorm_0.num_batches_tracked"] == 1
    path = tmp_path / f"w{suffix}"
    torch.save(state, path)
    assert_same(load_weights(path, graph), numpy_of(state))
    assert_same(load_weights(str(path), graph), numpy_of(state))


def test_round_trip_through_safetensors_from_torch(tmp_path):
    pytest.importorskip("torch")
    from safetensors.torch import save_file

    graph, _, state = torch_state()
    save_file(state, tmp_path / "w.safetensors")
    assert_same(load_weights(tmp_path / "w.safetensors", graph), numpy_of(state))


def test_round_trip_through_safetensors_and_npz_from_numpy(tmp_path):
    from safetensors.numpy import save_file

    graph, weights = small(), small_weights(3)
    save_file(weights, str(tmp_path / "w.safetensors"))
    np.savez(tmp_path / "w.npz", **weights)
    np.savez_compressed(tmp_path / "c.npz", **weights)
    for name in ("w.safetensors", "w.npz", "c.npz"):
        assert_same(load_weights(tmp_path / name, graph), weights)


def test_round_trip_from_a_dict_of_tensors_into_a_module():
    torch = pytest.importorskip("torch")
    graph, module, state = torch_state()
    loaded = load_weights(state, graph)
    assert_same(loaded, numpy_of(state))
    fresh = compile_string(SMALL).torch()
    fresh.load_state_dict({k: torch.from_numpy(v) for k, v in initial_weights(graph, 5).items()}, strict=True)
    fresh.load_state_dict({k: torch.from_numpy(v) for k, v in loaded.items()}, strict=True)
    module.eval(), fresh.eval()
    x = torch.randn(3, 8)
    torch.testing.assert_close(fresh(x), module(x))


def test_result_follows_the_graph_order_not_the_source_order():
    weights = small_weights()
    shuffled = dict(reversed(list(weights.items())))
    assert list(load_weights(shuffled, small())) == SMALL_KEYS


def test_num_batches_tracked_is_optional(tmp_path):
    weights = small_weights()
    del weights["batchnorm_0.num_batches_tracked"]
    np.savez(tmp_path / "w.npz", **weights)
    for source in (weights, tmp_path / "w.npz"):
        loaded = load_weights(source, small())
        assert list(loaded) == SMALL_KEYS
        tracked = loaded["batchnorm_0.num_batches_tracked"]
        assert tracked.dtype == np.int64 and tracked.shape == () and tracked == 0


def test_big_endian_and_strided_arrays_are_normalized(tmp_path):
    weights = small_weights()
    odd = dict(weights)
    odd["linear_0.weight"] = np.asfortranarray(weights["linear_0.weight"])
    odd["linear_0.bias"] = np.repeat(weights["linear_0.bias"], 2)[::2]
    odd["batchnorm_0.running_mean"] = weights["batchnorm_0.running_mean"].astype(">f4")
    odd["batchnorm_0.num_batches_tracked"] = np.int64(0)  # a numpy scalar is a 0-d array
    assert not odd["linear_0.weight"].flags.c_contiguous and not odd["linear_0.bias"].flags.c_contiguous
    np.savez(tmp_path / "w.npz", **odd)
    for source in (odd, tmp_path / "w.npz"):
        loaded = load_weights(source, small())
        assert_same(loaded, weights)
        for array in loaded.values():
            assert array.flags.c_contiguous and array.flags.aligned and array.dtype.isnative


def test_strided_torch_tensors_are_made_contiguous():
    torch = pytest.importorskip("torch")
    weights = {k: torch.from_numpy(v) for k, v in small_weights().items()}
    weights["linear_0.weight"] = weights["linear_0.weight"].T.contiguous().T
    weights["linear_0.bias"] = torch.nn.Parameter(weights["linear_0.bias"])  # requires grad
    loaded = load_weights(weights, small())
    assert_same(loaded, small_weights())
    assert loaded["linear_0.weight"].flags.c_contiguous


# ---------------------------------------------------------------- mismatches


def mismatch(source, graph=None) -> str:
    with pytest.raises(NetcError) as info:
        load_weights(source, graph or small())
    assert info.value.diagnostic.code == "weights"
    return str(info.value)


def test_every_problem_is_reported_at_once():
    weights = small_weights()
    del weights["linear_0.bias"]
    weights["linear_0.wieght"] = weights.pop("linear_0.weight")
    weights["batchnorm_0.weight"] = np.ones(5, np.float32)
    weights["batchnorm_0.bias"] = np.zeros(4, np.float64)
    weights["batchnorm_0.running_var"] = np.ones((4, 1), np.float16)
    weights["batchnorm_0.num_batches_tracked"] = np.zeros((), np.int32)
    weights["extra"] = np.zeros(1, np.float32)
    message = mismatch(weights)
    lines = message.splitlines()
    assert lines[0].startswith("the weights do not match network `t`") and "9 problems" in lines[0]
    assert "missing `linear_0.weight` (float32, shape [4, 8])" in message
    assert "missing `linear_0.bias` (float32, shape [4])" in message
    assert "unexpected `linear_0.wieght`" in message and "did you mean `linear_0.weight`?" in message
    assert "unexpected `extra`" in message
    assert "`batchnorm_0.weight` has shape [5], expected [4]" in message
    assert "`batchnorm_0.bias` has dtype float64, expected float32" in message  # never cast silently
    assert "`batchnorm_0.running_var` has shape [4, 1], expected [4]" in message
    assert "`batchnorm_0.running_var` has dtype float16, expected float32" in message
    assert "`batchnorm_0.num_batches_tracked` has dtype int32, expected int64" in message
    assert len(lines) == 10


def test_long_reports_are_capped():
    graph = compile_file(ROOT / "examples" / "resnet18.net").graph
    lines = mismatch({}, graph).splitlines()
    total = len(expected_tensors(graph)) - sum(n.endswith("num_batches_tracked") for n in expected_tensors(graph))
    assert f"({total} problems)" in lines[0]
    assert len(lines) == 1 + MAX_PROBLEMS + 1
    assert lines[-1].strip() == f"and {total - MAX_PROBLEMS} more"


def test_odd_keys_and_values_in_a_dict():
    weights = small_weights()
    weights["linear_0.bias"] = [0.0, 0.0, 0.0, 0.0]
    weights["batchnorm_0.weight"] = np.array([1, "a", None, 2], dtype=object)
    weights[3] = np.zeros(1)
    weights["x" * 5000] = np.zeros(1)
    message = mismatch(weights)
    assert "`linear_0.bias` is a list, not an array or tensor" in message
    assert "`batchnorm_0.weight` has dtype object, expected float32" in message
    assert "unexpected 3:" in message
    assert "x" * 5000 not in message and "'xxxx" in message  # a hostile name is shown, shortened


def test_a_file_of_many_wrong_names_is_reported_quickly():
    weights = {f"layer_{i}.weight": np.zeros(1, np.float32) for i in range(100_000)}
    message = mismatch(weights)
    assert "(100006 problems)" in message and message.endswith(f"and {100006 - MAX_PROBLEMS} more")


def test_torch_tensors_of_the_wrong_kind():
    torch = pytest.importorskip("torch")
    weights = {k: torch.from_numpy(v) for k, v in small_weights().items()}
    weights["linear_0.weight"] = weights["linear_0.weight"].to(torch.bfloat16)
    weights["linear_0.bias"] = weights["linear_0.bias"].to_sparse()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nested tensors are a prototype
        weights["batchnorm_0.weight"] = torch.nested.nested_tensor([torch.zeros(2), torch.zeros(2)])
    message = mismatch(weights)
    assert "`linear_0.weight` has dtype bfloat16, expected float32" in message
    assert "`linear_0.bias` cannot be converted to a numpy array" in message
    assert "`batchnorm_0.weight` cannot be read" in message


def test_a_source_that_is_neither_path_nor_dict_is_a_type_error():
    with pytest.raises(TypeError, match="path or a dict"):
        load_weights(42, small())


def test_pt_without_torch_asks_for_the_extra(tmp_path, monkeypatch):
    path = tmp_path / "w.pt"
    path.write_bytes(b"PK\x03\x04")
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError
    with pytest.raises(MissingExtra, match=r"pip install 'netc\[torch\]'"):
        load_weights(path, small())


# ---------------------------------------------------------------- hostile files


class Evil:
    """Unpickling this runs a shell command that creates `marker`."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


def real_pt(path: Path):
    torch = pytest.importorskip("torch")
    torch.save({k: torch.from_numpy(v) for k, v in small_weights().items()}, path)


def real_safetensors(path: Path):
    from safetensors.numpy import save_file

    save_file(small_weights(), str(path))


def real_npz(path: Path):
    with open(path, "wb") as f:  # np.savez would add .npz to any other name
        np.savez(f, **small_weights())


def truncated(write):
    def make(path: Path):
        write(path)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])

    return make


def evil_in_torch_zip(path: Path):
    """A genuine torch.save archive whose data.pkl is swapped for a malicious pickle."""
    real_pt(path.with_suffix(".real"))
    with zipfile.ZipFile(path.with_suffix(".real")) as src, zipfile.ZipFile(path, "w") as out:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename.endswith("/data.pkl"):
                data = pickle.dumps(Evil(path.parent / "marker"), protocol=2)
            out.writestr(info, data)


def torch_save(value_of):
    def make(path: Path):
        torch = pytest.importorskip("torch")
        torch.save(value_of(torch), path)

    return make


def write(data: bytes):
    return lambda path: path.write_bytes(data)


def npz_with(**members):
    def make(path: Path):
        with zipfile.ZipFile(path, "w") as archive:
            for name, data in members.items():
                archive.writestr(name, data)

    return make


def safetensors_header(header: bytes):
    return write(len(header).to_bytes(8, "little") + header)


def object_npz(path: Path):
    weights = small_weights()
    weights["linear_0.bias"] = np.array([1, "a", None, 2], dtype=object)
    np.savez(path, **weights)


def float16_safetensors(path: Path):
    from safetensors.numpy import save_file

    weights = small_weights()
    weights["linear_0.weight"] = weights["linear_0.weight"].astype(np.float16)
    save_file(weights, str(path))


RANDOM = bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8))
PICKLE = pickle.dumps({"linear_0.weight": 1})

# (file name, how to make it, whether reading it needs torch, what the message must say)
HOSTILE = [
    ("absent.npz", None, False, "no such file"),
    ("absent.pt", None, False, "no such file"),
    ("folder.safetensors", lambda p: p.mkdir(), False, "is a directory"),
    ("fifo.npz", getattr(os, "mkfifo", None), False, "not a regular file"),
    ("nul\0.npz", None, False, "cannot read the file"),
    ("long" + "g" * 5000 + ".npz", None, False, "cannot read the file"),
    ("weights.bin", write(b"x"), False, "netc reads .pt, .pth, .safetensors, .npz"),
    ("weights.onnx", write(b"x"), False, "cannot read weights from a .onnx file"),
    ("weights", write(b"x"), False, "suffix-less"),
    ("empty.pt", write(b""), False, "the file is empty"),
    ("empty.safetensors", write(b""), False, "the file is empty"),
    ("empty.npz", write(b""), False, "the file is empty"),
    ("half.pt", truncated(real_pt), True, "damaged or truncated zip archive"),
    ("half.safetensors", truncated(real_safetensors), False, "not a valid safetensors file"),
    ("half.npz", truncated(real_npz), False, "damaged or truncated zip archive"),
    ("random.pt", write(RANDOM), True, "not a PyTorch file written by torch.save"),
    ("random.safetensors", write(RANDOM), False, "not a valid safetensors file"),
    ("random.npz", write(RANDOM), False, "not a .npz archive"),
    ("pickle.pt", write(PICKLE), True, "a bare pickle, which netc never unpickles"),
    ("pickle.npz", write(PICKLE), False, "a bare pickle, which netc never unpickles"),
    ("pickle.safetensors", write(PICKLE), False, "not a valid safetensors file"),
    ("evil.pt", lambda p: p.write_bytes(pickle.dumps(Evil(p.parent / "marker"))), True, "bare pickle"),
    ("evil.pth", lambda p: p.write_bytes(pickle.dumps(Evil(p.parent / "marker"), protocol=2)), True, "bare pickle"),
    ("evil.npz", lambda p: p.write_bytes(pickle.dumps(Evil(p.parent / "marker"))), False, "bare pickle"),
    ("evilzip.pt", evil_in_torch_zip, True, "posix.system"),
    ("npz-as.pt", real_npz, True, "cannot read it as a PyTorch state_dict: file in archive is not in a subdirectory"),
    ("array.npz", lambda p: np.save(open(p, "wb"), np.zeros(3)), False, "a single .npy array"),
    ("object.npz", object_npz, False, "`linear_0.bias` is an object array"),
    ("member.npz", npz_with(**{"linear_0.weight.npy": PICKLE}), False, "`linear_0.weight` is not a .npy array"),
    ("tensor.pt", torch_save(lambda torch: torch.zeros(3)), True, "holds a Tensor, not a state_dict"),
    ("ints.pt", torch_save(lambda torch: {"linear_0.weight": 1}), True, "`linear_0.weight` is an int, not"),
    ("nested.pt", torch_save(lambda torch: {"model": {}}), True, "not a checkpoint around it"),
    ("bf16.pt", torch_save(lambda torch: {"linear_0.bias": torch.zeros(4, dtype=torch.bfloat16)}), True, "bfloat16"),
    ("f16.safetensors", float16_safetensors, False, "has dtype float16, expected float32"),
    ("huge.safetensors", write((10**15).to_bytes(8, "little") + b"{}"), False, "not a valid safetensors file"),
    ("json.safetensors", safetensors_header(b'{"a": {"dtype": "F32", "shape": [9], "data_offsets": [0, 36]}}'), False,
     "not a valid safetensors file"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "make", "needs_torch", "says"), HOSTILE, ids=[case[0] for case in HOSTILE])
def test_hostile_files_are_clear_errors(tmp_path, name, make, needs_torch, says):
    if needs_torch:
        pytest.importorskip("torch")
    if name.startswith("fifo") and make is None:
        pytest.skip("no named pipes here")
    path = tmp_path / name
    if make is not None:
        make(path)
    message = mismatch(path)
    assert says in message
    assert message.startswith(str(path)[:50])
    assert "weights_only=False" not in message and "allow_pickle=" not in message  # no advice to drop safety
    assert not (tmp_path / "marker").exists(), "the file ran code"


def test_the_marker_would_be_created_by_plain_pickle(tmp_path):
    """Guards the hostile cases above: their pickles really do run code when unpickled."""
    pickle.loads(pickle.dumps(Evil(tmp_path / "marker")))
    assert (tmp_path / "marker").exists()
