"""onnx_optimize: every pass keeps the function (onnxruntime agrees), removes what it promises, keeps node names,
doc_strings and the graph's interface, and gives the same bytes for the same model."""

import hashlib
import io
import os
import subprocess
import sys
import time

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from netc.backends import onnx_optimize
from netc.backends.onnx_optimize import (
    fold_batch_norms,
    fold_constants,
    optimize,
    remove_dead_nodes,
    remove_identity_nodes,
)
from onnx import TensorProto, helper, numpy_helper

PASSES = [remove_identity_nodes, fold_constants, fold_batch_norms, remove_dead_nodes, optimize]
F32 = TensorProto.FLOAT


# --- building models the way netc does: helper-made, scope-path names, file:line doc_strings, value_info ------


def node(op, inputs, outputs, name=None, **attrs):
    name = name or f"net.{op.lower()}_{outputs[0].replace('/', '_')}"
    return helper.make_node(op, inputs, outputs, name=name, doc_string=f"spec.net:{len(name)}", **attrs)


def tensor(name, shape, low=-1.0, high=1.0, dtype=np.float32, seed=None):
    rng = np.random.default_rng(seed if seed is not None else sum(map(ord, name)))
    return numpy_helper.from_array(rng.uniform(low, high, shape).astype(dtype), name)


def const(name, value):
    """A Constant node, named after its output."""
    return helper.make_node("Constant", [], [name], name=f"net.{name}", value=numpy_helper.from_array(value))


def vi(name, shape, elem=F32):
    return helper.make_tensor_value_info(name, elem, shape)


def model(nodes, inputs, outputs, inits=(), opset=17):
    graph = helper.make_graph(nodes, "net", inputs, outputs, initializer=list(inits))
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="netc")
    m.producer_version = "0.1.0"
    helper.set_model_props(m, {"netc.spec": "spec.net"})
    m = onnx.shape_inference.infer_shapes(m, strict_mode=True)  # netc emits value_info for intermediates
    onnx.checker.check_model(m, full_check=True)
    return m


def bn(x, y, channels, prefix, eps=1e-5):
    """A BatchNormalization node and its initializers, with statistics far from the identity."""
    names = [f"{prefix}.weight", f"{prefix}.bias", f"{prefix}.running_mean", f"{prefix}.running_var"]
    inits = [
        tensor(names[0], [channels], 0.5, 2.0),
        tensor(names[1], [channels]),
        tensor(names[2], [channels]),
        tensor(names[3], [channels], 0.2, 3.0),
    ]
    return node("BatchNormalization", [x, *names], [y], name=prefix, epsilon=eps), inits


# --- running and comparing ---------------------------------------------------------------------------------------


def feeds(m, seed=0):
    rng = np.random.default_rng(seed)
    out = {}
    for i in m.graph.input:
        t = i.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") else 3 for d in t.shape.dim]
        dtype = helper.tensor_dtype_to_np_dtype(t.elem_type)
        out[i.name] = rng.uniform(-1, 1, shape).astype(dtype) if dtype != np.bool_ else np.array(False)
    return out


def run(m, inputs):
    session = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, inputs)


def ops(m):
    return [n.op_type for n in m.graph.node]


def check(original, transform=optimize, gone=(), rtol=1e-5, atol=1e-6):
    """Applies `transform` and asserts everything every pass promises; returns the result."""
    before = original.SerializeToString()
    optimized = transform(original)
    assert original.SerializeToString() == before, "the argument was modified"
    onnx.checker.check_model(optimized, full_check=True)
    for field in ("input", "output"):
        assert [(v.name, v.type) for v in getattr(optimized.graph, field)] == [
            (v.name, v.type) for v in getattr(original.graph, field)
        ]
    for field in ("ir_version", "opset_import", "producer_name", "producer_version", "metadata_props"):
        assert getattr(optimized, field) == getattr(original, field), field
    assert not set(ops(optimized)) & set(gone), ops(optimized)
    if {v.name for v in original.graph.value_info} <= produced(original):
        assert {v.name for v in optimized.graph.value_info} <= produced(optimized), "stale value_info"
    docs = {n.name: n.doc_string for n in original.graph.node}
    for n in optimized.graph.node:
        assert docs.get(n.name) == n.doc_string, f"{n.name} lost its name or doc_string"
    for seed in range(2):
        inputs = feeds(original, seed)
        for a, b in zip(run(original, inputs), run(optimized, inputs), strict=True):
            np.testing.assert_allclose(b, a, rtol=rtol, atol=atol)
    assert transform(original).SerializeToString() == optimized.SerializeToString(), "not deterministic"
    assert transform(optimized).SerializeToString() == optimized.SerializeToString(), "not a fixpoint"
    return optimized


def produced(m):
    return {o for n in m.graph.node for o in n.output}


def initializer(m, name):
    return numpy_helper.to_array(next(t for t in m.graph.initializer if t.name == name))


# --- BatchNormalization folding -----------------------------------------------------------------------------------

# id, op, attributes, input shape, weight shape, bias?, output channels
FOLDABLE = [
    ("conv", "Conv", {"pads": [1, 1, 1, 1]}, ["N", 4, 6, 6], [8, 4, 3, 3], True, 8),
    ("conv-no-bias", "Conv", {}, ["N", 4, 6, 6], [8, 4, 3, 3], False, 8),
    ("conv-groups-2", "Conv", {"group": 2}, ["N", 4, 5, 5], [6, 2, 3, 3], True, 6),
    ("conv-depthwise-no-bias", "Conv", {"group": 4}, ["N", 4, 5, 5], [4, 1, 3, 3], False, 4),
    ("conv1d", "Conv", {"strides": [2]}, ["N", 3, 9], [5, 3, 3], True, 5),
    ("conv3d-no-bias", "Conv", {}, ["N", 2, 4, 4, 4], [3, 2, 2, 2, 2], False, 3),
    ("convtranspose", "ConvTranspose", {"strides": [2, 2]}, ["N", 4, 3, 3], [4, 6, 3, 3], True, 6),
    ("convtranspose-no-bias", "ConvTranspose", {}, ["N", 4, 3, 3], [4, 5, 2, 2], False, 5),
    ("convtranspose-groups-2", "ConvTranspose", {"group": 2}, ["N", 4, 3, 3], [4, 3, 3, 3], True, 6),
    ("convtranspose-groups-2-no-bias", "ConvTranspose", {"group": 2}, ["N", 6, 3, 3], [6, 2, 2, 2], False, 4),
    ("gemm-transB", "Gemm", {"transB": 1}, ["N", 5], [7, 5], True, 7),
    ("gemm-transB-no-bias", "Gemm", {"transB": 1}, ["N", 5], [7, 5], False, 7),
    ("gemm", "Gemm", {}, ["N", 5], [5, 7], True, 7),
]


def conv_bn_model(op, attrs, x_shape, w_shape, bias, channels, opset=17):
    prefix = "stage_1.conv2d_0"
    inputs = ["x", f"{prefix}.weight"] + ([f"{prefix}.bias"] if bias else [])
    inits = [tensor(f"{prefix}.weight", w_shape)] + ([tensor(f"{prefix}.bias", [channels])] if bias else [])
    norm, norm_inits = bn("c", "b", channels, "stage_1.batch_norm_0")
    nodes = [node(op, inputs, ["c"], name=prefix, **attrs), norm, node("Relu", ["b"], ["y"], name="stage_1.relu")]
    return model(nodes, [vi("x", x_shape)], [vi("y", None)], inits + norm_inits, opset)


@pytest.mark.parametrize(
    "op, attrs, x_shape, w_shape, bias, channels", [case[1:] for case in FOLDABLE], ids=[c[0] for c in FOLDABLE]
)
def test_batch_norm_folds_into_its_producer(op, attrs, x_shape, w_shape, bias, channels):
    original = conv_bn_model(op, attrs, x_shape, w_shape, bias, channels)
    for transform in (fold_batch_norms, optimize):
        folded = check(original, transform, gone=["BatchNormalization"])
        assert ops(folded) == [op, "Relu"]
        conv = folded.graph.node[0]
        assert conv.name == "stage_1.conv2d_0" and conv.output[0] == "b"
        assert conv.input[2] == "stage_1.conv2d_0.bias"
        assert [t.name for t in folded.graph.initializer] == ["stage_1.conv2d_0.weight", "stage_1.conv2d_0.bias"]
        assert initializer(folded, "stage_1.conv2d_0.bias").shape == (channels,)
        assert initializer(folded, "stage_1.conv2d_0.weight").dtype == np.float32
        assert "c" not in {v.name for v in folded.graph.value_info}


def test_folded_weights_match_the_formula():
    """The arithmetic itself, channel by channel, for a ConvTranspose with groups (the layout that is easy to get
    wrong): output channel o = g * (C_out / group) + j is weight[g * (C_in / group) : ..., j]."""
    original = conv_bn_model("ConvTranspose", {"group": 2}, ["N", 4, 3, 3], [4, 3, 3, 3], True, 6)
    folded = fold_batch_norms(original)
    w = initializer(original, "stage_1.conv2d_0.weight").astype(np.float64)
    b = initializer(original, "stage_1.conv2d_0.bias").astype(np.float64)
    gamma, beta, mean, var = (
        initializer(original, f"stage_1.batch_norm_0.{k}").astype(np.float64)
        for k in ("weight", "bias", "running_mean", "running_var")
    )
    s = gamma / np.sqrt(var + 1e-5)
    expected = w.copy()
    for o in range(6):
        g, j = divmod(o, 3)
        expected[2 * g : 2 * g + 2, j] *= s[o]
    np.testing.assert_array_equal(initializer(folded, "stage_1.conv2d_0.weight"), expected.astype(np.float32))
    np.testing.assert_array_equal(
        initializer(folded, "stage_1.conv2d_0.bias"), ((b - mean) * s + beta).astype(np.float32)
    )


def test_two_batch_norms_in_a_row_both_fold():
    first, inits1 = bn("c", "b1", 4, "bn1")
    second, inits2 = bn("b1", "b2", 4, "bn2")
    nodes = [node("Conv", ["x", "conv.weight", "conv.bias"], ["c"], name="conv"), first, second]
    inits = [tensor("conv.weight", [4, 2, 3, 3]), tensor("conv.bias", [4])] + inits1 + inits2
    original = model(nodes, [vi("x", ["N", 2, 5, 5])], [vi("b2", None)], inits)
    folded = check(original, gone=["BatchNormalization"])
    assert ops(folded) == ["Conv"] and [t.name for t in folded.graph.initializer] == ["conv.weight", "conv.bias"]


@pytest.mark.parametrize("c_shape", [[], [1], [7], [1, 1], [1, 7]])
def test_gemm_bias_of_any_broadcastable_shape_folds(c_shape):
    norm, inits = bn("c", "b", 7, "bn")
    nodes = [node("Gemm", ["x", "fc.weight", "fc.bias"], ["c"], name="fc", transB=1), norm]
    inits = [tensor("fc.weight", [7, 5]), tensor("fc.bias", c_shape)] + inits
    folded = check(model(nodes, [vi("x", ["N", 5])], [vi("b", None)], inits), gone=["BatchNormalization"])
    assert initializer(folded, "fc.bias").shape == np.broadcast_shapes(tuple(c_shape), (7,))


def test_new_bias_takes_a_fresh_name_when_the_natural_one_is_taken():
    original = conv_bn_model("Conv", {}, ["N", 4, 6, 6], [8, 4, 3, 3], False, 8)
    g = original.graph
    # A value already called stage_1.conv2d_0.bias elsewhere in the graph.
    g.node.append(node("Neg", ["y"], ["stage_1.conv2d_0.bias"], name="stage_1.neg"))
    g.output.append(vi("stage_1.conv2d_0.bias", None))
    original = model(list(g.node), list(g.input), list(g.output), list(g.initializer))
    folded = check(original, gone=["BatchNormalization"])
    assert folded.graph.node[0].input[2] == "stage_1.conv2d_0.bias_1"


def test_float16_weights_stay_float16():
    prefix = "block.conv"
    norm, norm_inits = bn("c", "b", 4, "block.bn")
    norm_inits = [numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float16), t.name) for t in norm_inits]
    original = model(
        [node("Conv", ["x", f"{prefix}.weight"], ["c"], name=prefix), norm],
        [vi("x", ["N", 2, 4, 4], TensorProto.FLOAT16)],
        [vi("b", None, TensorProto.FLOAT16)],
        [tensor(f"{prefix}.weight", [4, 2, 3, 3], dtype=np.float16)] + norm_inits,
    )
    folded = check(original, gone=["BatchNormalization"], rtol=2e-2, atol=2e-2)
    assert {t.data_type for t in folded.graph.initializer} == {TensorProto.FLOAT16}


def _two_consumers():
    conv_bn = conv_bn_model("Conv", {}, ["N", 4, 6, 6], [8, 4, 3, 3], True, 8)
    g = conv_bn.graph
    nodes = list(g.node) + [node("Sigmoid", ["c"], ["z"], name="stage_1.sigmoid")]
    return model(nodes, list(g.input), [*g.output, vi("z", None)], list(g.initializer))


def _conv_output_is_graph_output():
    conv_bn = conv_bn_model("Conv", {}, ["N", 4, 6, 6], [8, 4, 3, 3], True, 8)
    g = conv_bn.graph
    return model(list(g.node), list(g.input), [*g.output, vi("c", None)], list(g.initializer))


def _shared_weight():
    w = "shared.weight"
    bn1, inits1 = bn("c1", "b1", 4, "bn1")
    bn2, inits2 = bn("c2", "b2", 4, "bn2")
    nodes = [
        node("Conv", ["x", w], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        bn1,
        node("Conv", ["b1", w], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        bn2,
    ]
    return model(nodes, [vi("x", ["N", 4, 5, 5])], [vi("b2", None)], [tensor(w, [4, 4, 3, 3])] + inits1 + inits2)


def _gemm_alpha():
    norm, inits = bn("c", "b", 7, "bn")
    nodes = [node("Gemm", ["x", "fc.weight"], ["c"], name="fc", transB=1, alpha=2.0), norm]
    return model(nodes, [vi("x", ["N", 5])], [vi("b", None)], [tensor("fc.weight", [7, 5])] + inits)


def _weight_is_graph_input():
    norm, inits = bn("c", "b", 4, "bn")
    nodes = [node("Conv", ["x", "w"], ["c"], name="conv"), norm]
    return model(nodes, [vi("x", ["N", 2, 4, 4]), vi("w", [4, 2, 3, 3])], [vi("b", None)], inits)


@pytest.mark.parametrize(
    "build",
    [_two_consumers, _conv_output_is_graph_output, _shared_weight, _gemm_alpha, _weight_is_graph_input],
    ids=lambda f: f.__name__.strip("_"),
)
def test_batch_norm_that_cannot_fold_stays(build):
    original = build()
    optimized = check(original)
    assert ops(optimized).count("BatchNormalization") == ops(original).count("BatchNormalization")
    assert [t.name for t in optimized.graph.initializer] == [t.name for t in original.graph.initializer]


# --- Identity and Dropout --------------------------------------------------------------------------------------


def _ratio():
    return const("ratio", np.array(0.5, np.float32))


def _chain_inside():
    nodes = [
        _ratio(),
        node("Relu", ["x"], ["r"]),
        node("Identity", ["r"], ["i1"]),
        node("Dropout", ["i1", "ratio"], ["d"]),
        node("Identity", ["d"], ["i2"]),
        node("Neg", ["i2"], ["y"]),
    ]
    return model(nodes, [vi("x", ["N", 3])], [vi("y", ["N", 3])])


def _chain_to_output():
    nodes = [node("Relu", ["x"], ["r"]), node("Identity", ["r"], ["i"]), node("Dropout", ["i"], ["y"])]
    return model(nodes, [vi("x", ["N", 3])], [vi("y", ["N", 3])])


def _chain_from_input_to_output():
    nodes = [node("Identity", ["x"], ["i"]), node("Dropout", ["i"], ["d"]), node("Identity", ["d"], ["y"])]
    return model(nodes, [vi("x", ["N", 3])], [vi("y", ["N", 3])])


def _one_value_two_outputs():
    nodes = [
        node("Relu", ["x"], ["r"]),
        node("Identity", ["r"], ["y1"]),
        node("Identity", ["r"], ["y2"]),
        node("Neg", ["r"], ["y3"]),
    ]
    return model(nodes, [vi("x", ["N", 3])], [vi("y1", None), vi("y2", None), vi("y3", None)])


def _consumer_before_identity():
    nodes = [
        node("Relu", ["x"], ["r"]),
        node("Neg", ["r"], ["n"]),
        node("Identity", ["r"], ["y"]),
        node("Add", ["n", "y"], ["z"]),
    ]
    return model(nodes, [vi("x", ["N", 3])], [vi("y", None), vi("z", None)])


def _initializer_to_output():
    nodes = [node("Identity", ["table"], ["y"]), node("Dropout", ["x"], ["z"])]
    return model(nodes, [vi("x", ["N", 3])], [vi("y", None), vi("z", None)], [tensor("table", [2, 3])])


def _training_mode_false():
    nodes = [
        const("off", np.array(False)),
        node("Dropout", ["x", "", "off"], ["d1"]),
        node("Dropout", ["d1", "", "off_init"], ["d2"]),
        node("Relu", ["d2"], ["y"]),
    ]
    return model(nodes, [vi("x", ["N", 3])], [vi("y", None)], [numpy_helper.from_array(np.array(False), "off_init")])


# id, model, op types left in the optimized model
IDENTITIES = [
    ("chain-inside", _chain_inside, ["Relu", "Neg"]),
    ("chain-to-output", _chain_to_output, ["Relu"]),
    ("chain-from-input-to-output", _chain_from_input_to_output, ["Identity"]),
    ("one-value-two-outputs", _one_value_two_outputs, ["Relu", "Identity", "Neg"]),
    ("consumer-before-identity", _consumer_before_identity, ["Relu", "Neg", "Add"]),
    ("initializer-to-output", _initializer_to_output, ["Identity", "Identity"]),
    ("training-mode-false", _training_mode_false, ["Relu"]),
]


@pytest.mark.parametrize("build, left", [c[1:] for c in IDENTITIES], ids=[c[0] for c in IDENTITIES])
def test_identities_disappear(build, left):
    original = build()
    for transform in (remove_identity_nodes, optimize):
        optimized = check(original, transform, gone=["Dropout"])
        assert ops(optimized if transform is optimize else remove_dead_nodes(optimized)) == left


def test_renamed_producer_keeps_its_name_and_doc_string():
    optimized = optimize(_chain_to_output())
    (relu,) = optimized.graph.node
    assert (relu.name, relu.output[0], relu.doc_string) == (
        "net.relu_r",
        "y",
        _chain_to_output().graph.node[0].doc_string,
    )
    assert {v.name for v in optimized.graph.value_info} == set()


def test_one_value_two_outputs_wiring():
    g = optimize(_one_value_two_outputs()).graph
    assert [(n.op_type, list(n.input), list(n.output)) for n in g.node] == [
        ("Relu", ["x"], ["y1"]),
        ("Identity", ["y1"], ["y2"]),
        ("Neg", ["y1"], ["y3"]),
    ]


def _training_on():
    nodes = [
        const("on", np.array(True)),
        const("zero", np.array(0.0, np.float32)),  # ratio 0: deterministic even in training mode
        node("Dropout", ["x", "zero", "on"], ["y"]),
    ]
    return model(nodes, [vi("x", ["N", 3])], [vi("y", None)])


def _training_mode_input():
    nodes = [node("Dropout", ["x", "", "train"], ["y"])]
    return model(nodes, [vi("x", ["N", 3]), vi("train", [], TensorProto.BOOL)], [vi("y", None)])


def _mask_used():
    nodes = [node("Dropout", ["x"], ["y", "mask"])]
    return model(nodes, [vi("x", ["N", 3])], [vi("y", None), vi("mask", None, TensorProto.BOOL)])


def test_values_a_subgraph_reads_keep_their_names():
    """An If branch reads the Identity's output and a foldable constant from the outer scope."""
    branch = helper.make_graph(
        [helper.make_node("Add", ["i", "k2"], ["out"], name="branch.add")], "branch", [], [vi("out", None)]
    )
    other = helper.make_graph(
        [helper.make_node("Neg", ["i"], ["out2"], name="other.neg")], "other", [], [vi("out2", None)]
    )
    nodes = [
        const("k", np.array([2.0], np.float32)),
        node("Mul", ["k", "k"], ["k2"]),
        node("Relu", ["x"], ["r"]),
        node("Identity", ["r"], ["i"]),
        node("If", ["cond"], ["y"], then_branch=branch, else_branch=other),
    ]
    original = model(nodes, [vi("x", [3]), vi("cond", [], TensorProto.BOOL)], [vi("y", None)])
    optimized = check(original, gone=["Mul"])
    assert ops(optimized) == ["Relu", "Identity", "If"]
    for cond in (True, False):
        inputs = {"x": np.array([-1.0, 0.5, 2.0], np.float32), "cond": np.array(cond)}
        np.testing.assert_allclose(run(optimized, inputs)[0], run(original, inputs)[0])


@pytest.mark.parametrize("build", [_training_on, _training_mode_input, _mask_used], ids=lambda f: f.__name__.strip("_"))
def test_dropout_that_may_drop_stays(build):
    assert "Dropout" in ops(check(build()))


# --- constant folding ------------------------------------------------------------------------------------------


def reshape_by_shape_model(opset, x_shape=(2, 3, 4, 5)):
    """x.reshape(x.shape[0], -1), built the way exporters do it."""
    nodes = [
        const("zero", np.array(0, np.int64)),
        const("axes", np.array([0], np.int64)),
        const("minus_one", np.array([-1], np.int64)),
        node("Shape", ["x"], ["shape"]),
        node("Gather", ["shape", "zero"], ["batch"], axis=0),
        node("Unsqueeze", ["batch", "axes"], ["batch_1d"]),
        node("Concat", ["batch_1d", "minus_one"], ["target"], axis=0),
        node("Reshape", ["x", "target"], ["y"], name="net.flatten"),
    ]
    return model(nodes, [vi("x", list(x_shape))], [vi("y", None)], opset=opset)


@pytest.mark.parametrize("opset", [17, 18, 21, 28])
def test_shape_arithmetic_on_a_static_input_folds(opset):
    original = reshape_by_shape_model(opset)
    for transform in (fold_constants, optimize):
        check(original, transform, gone=["Shape", "Gather", "Unsqueeze", "Concat"])
    optimized = optimize(original)
    assert ops(optimized) == ["Reshape"] and optimized.graph.node[0].name == "net.flatten"
    assert [t.name for t in optimized.graph.initializer] == ["target"]
    np.testing.assert_array_equal(initializer(optimized, "target"), [2, -1])
    assert optimized.opset_import[0].version == opset


def test_shape_of_a_symbolic_input_stays():
    original = reshape_by_shape_model(17, x_shape=("N", 3, 4, 5))
    assert ops(check(original)) == ops(remove_dead_nodes(original))


@pytest.mark.parametrize(
    "start, end, expected",
    [(1, None, [3, 4, 5]), (1, -1, [3, 4]), (-10, 2, [2, 3]), (3, 1, []), (None, 9, [2, 3, 4, 5])],
)
def test_shape_start_end_fold(start, end, expected):
    attrs = {k: v for k, v in (("start", start), ("end", end)) if v is not None}
    nodes = [node("Shape", ["x"], ["s"], **attrs), node("Cast", ["s"], ["f"], to=F32), node("ReduceSum", ["f"], ["y"])]
    original = model(nodes, [vi("x", [2, 3, 4, 5])], [vi("y", None)], opset=18)
    optimized = check(original, gone=["Shape", "Cast"])
    assert ops(optimized) == ["ReduceSum"]
    np.testing.assert_array_equal(initializer(optimized, "f"), np.array(expected, np.float32))


def test_constant_arithmetic_folds_into_one_initializer():
    nodes = [
        const("two", np.array([2.0], np.float32)),
        node("Add", ["var", "eps"], ["v"]),
        node("Sqrt", ["v"], ["std"]),
        node("Reciprocal", ["std"], ["inv"]),
        node("Mul", ["inv", "two"], ["scale"]),
        node("Transpose", ["scale"], ["scale_t"], perm=[0]),
        node("Mul", ["x", "scale_t"], ["y"], name="net.scale"),
    ]
    inits = [tensor("var", [3], 0.5, 2.0), numpy_helper.from_array(np.array(1e-3, np.float32), "eps")]
    original = model(nodes, [vi("x", ["N", 3])], [vi("y", None)], inits)
    optimized = check(original, gone=["Add", "Sqrt", "Reciprocal", "Transpose", "Constant"])
    assert ops(optimized) == ["Mul"] and [t.name for t in optimized.graph.initializer] == ["scale_t"]


def test_large_results_random_ops_and_graph_outputs_do_not_fold():
    nodes = [
        const("big", np.array([2000, 1000], np.int64)),
        const("small", np.array([4, 3], np.int64)),
        node("ConstantOfShape", ["big"], ["zeros_big"]),  # 2 M elements from 2: kept as a computation
        node("ConstantOfShape", ["small"], ["zeros_small"]),  # 12 elements: folded
        node("ReduceSum", ["zeros_big"], ["total"], keepdims=0),
        node("RandomUniformLike", ["seed_shape"], ["noise"], seed=1.0),
        node("Mul", ["noise", "zero"], ["no_noise"]),
        node("Add", ["x", "total"], ["xt"]),
        node("Add", ["xt", "no_noise"], ["y"]),
        node("Add", ["zeros_small", "seed_shape"], ["also_out"]),  # constant, but a graph output
    ]
    inits = [tensor("seed_shape", [4, 3]), numpy_helper.from_array(np.zeros([4, 3], np.float32), "zero")]
    original = model(nodes, [vi("x", [4, 3])], [vi("y", None), vi("also_out", None)], inits)
    optimized = check(original)
    assert ops(optimized) == [
        "Constant",
        "ConstantOfShape",
        "ReduceSum",
        "RandomUniformLike",
        "Mul",
        "Add",
        "Add",
        "Add",
    ]
    assert "zeros_small" in {t.name for t in optimized.graph.initializer}


def test_blow_ups_are_not_even_evaluated(monkeypatch):
    evaluated = []
    evaluate = onnx_optimize._evaluate

    def spy(node, *args):
        evaluated.append(node.op_type)
        return evaluate(node, *args)

    monkeypatch.setattr(onnx_optimize, "_evaluate", spy)
    nodes = [
        const("huge", np.array([10**6, 10**6], np.int64)),
        node("ConstantOfShape", ["huge"], ["zeros"]),
        node("Tile", ["x_const", "huge"], ["tiled"]),
        node("Expand", ["x_const", "huge"], ["expanded"]),
        node("Concat", ["zeros", "tiled", "expanded"], ["y"], axis=0),
    ]
    original = model(nodes, [], [vi("y", None)], [tensor("x_const", [1, 1])])
    assert ops(fold_constants(original)) == ops(original)
    assert evaluated == []


def test_growth_limit_is_the_documented_knob(monkeypatch):
    monkeypatch.setattr(onnx_optimize, "FOLD_GROWTH_LIMIT", 0)
    nodes = [
        const("shape", np.array([4, 3], np.int64)),
        node("Expand", ["one", "shape"], ["e"]),
        node("Add", ["x", "e"], ["y"]),
    ]
    original = model(
        nodes, [vi("x", [4, 3])], [vi("y", None)], [numpy_helper.from_array(np.ones(1, np.float32), "one")]
    )
    assert "Expand" in ops(optimize(original))
    monkeypatch.undo()
    assert ops(optimize(original)) == ["Add"]


# --- dead code ---------------------------------------------------------------------------------------------------


def test_dead_nodes_initializers_and_value_info_go_graph_inputs_stay():
    nodes = [
        node("Relu", ["x"], ["r"]),
        node("Neg", ["r"], ["dangling"]),
        node("MatMul", ["unused_input", "unused.weight"], ["dead"]),
        node("Add", ["r", "bias"], ["y"]),
    ]
    inits = [tensor("bias", [3]), tensor("unused.weight", [3, 3]), tensor("orphan", [5])]
    original = model(nodes, [vi("x", ["N", 3]), vi("unused_input", ["N", 3])], [vi("y", None)], inits)
    optimized = check(original, remove_dead_nodes, gone=["Neg", "MatMul"])
    assert [t.name for t in optimized.graph.initializer] == ["bias"]
    assert [v.name for v in optimized.graph.value_info] == ["r"]
    assert [i.name for i in optimized.graph.input] == ["x", "unused_input"]


# --- everything together, each pass on its own, and the promises about cost and determinism ----------------------


def kitchen_sink(opset=17):
    """A small CNN as netc emits it: conv+bn blocks, dropout, identity, shape arithmetic, a linear head."""
    nodes, inits = [], []
    x = "x"
    for i, (cin, cout) in enumerate([(3, 8), (8, 8)]):
        p = f"stage_{i}"
        inits.append(tensor(f"{p}.conv2d_0.weight", [cout, cin, 3, 3]))
        norm, norm_inits = bn(f"{p}/conv", f"{p}/bn", cout, f"{p}.batch_norm_0")
        nodes += [
            node("Conv", [x, f"{p}.conv2d_0.weight"], [f"{p}/conv"], name=f"{p}.conv2d_0", pads=[1, 1, 1, 1]),
            norm,
            node("Relu", [f"{p}/bn"], [f"{p}/relu"], name=f"{p}.relu"),
            node("Dropout", [f"{p}/relu"], [f"{p}/drop"], name=f"{p}.dropout"),
        ]
        inits += norm_inits
        x = f"{p}/drop"
    nodes += [
        const("zero", np.array(0, np.int64)),
        const("axes", np.array([0], np.int64)),
        const("minus_one", np.array([-1], np.int64)),
        node("Shape", [x], ["shape"], name="head.shape"),
        node("Gather", ["shape", "zero"], ["batch"], name="head.batch", axis=0),
        node("Unsqueeze", ["batch", "axes"], ["batch_1d"], name="head.unsqueeze"),
        node("Concat", ["batch_1d", "minus_one"], ["target"], name="head.target", axis=0),
        node("Reshape", [x, "target"], ["flat"], name="head.flatten"),
        node("Gemm", ["flat", "head.linear.weight", "head.linear.bias"], ["logits"], name="head.linear", transB=1),
        node("Identity", ["logits"], ["y"], name="head.out"),
    ]
    inits += [tensor("head.linear.weight", [4, 8 * 5 * 5]), tensor("head.linear.bias", [4])]
    return model(nodes, [vi("x", [2, 3, 5, 5])], [vi("y", [2, 4])], inits, opset)


@pytest.mark.parametrize("opset", [17, 18, 28])
@pytest.mark.parametrize("transform", PASSES, ids=lambda f: f.__name__)
def test_each_pass_alone_keeps_the_function(transform, opset):
    check(kitchen_sink(opset), transform)


@pytest.mark.parametrize("opset", [17, 18])
def test_optimize_leaves_convs_relus_a_reshape_and_a_gemm(opset):
    optimized = check(
        kitchen_sink(opset), gone=["BatchNormalization", "Dropout", "Identity", "Shape", "Gather", "Constant"]
    )
    assert ops(optimized) == ["Conv", "Relu", "Conv", "Relu", "Reshape", "Gemm"]
    assert optimized.graph.node[-1].output[0] == "y"


def test_same_bytes_whatever_the_hash_seed(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(kitchen_sink(), path)
    script = (
        "import hashlib, onnx, sys; from netc.backends.onnx_optimize import optimize; "
        "print(hashlib.sha256(optimize(onnx.load(sys.argv[1])).SerializeToString()).hexdigest())"
    )
    digests = set()
    for seed in ("0", "1", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run([sys.executable, "-c", script, str(path)], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        digests.add(done.stdout.strip())
    assert digests == {hashlib.sha256(optimize(kitchen_sink()).SerializeToString()).hexdigest()}


def test_only_rewritten_tensors_go_through_numpy(monkeypatch):
    original = kitchen_sink()
    read = []
    to_array = numpy_helper.to_array

    def spy(t, *args):
        read.append(t.name)
        return to_array(t, *args)

    monkeypatch.setattr(numpy_helper, "to_array", spy)
    optimize(original)
    assert "head.linear.weight" not in read and "head.linear.bias" not in read
    assert "stage_0.conv2d_0.weight" in read


def test_rejects_models_below_opset_17():
    m = helper.make_model(
        helper.make_graph([node("Relu", ["x"], ["y"])], "g", [vi("x", [1])], [vi("y", [1])]),
        opset_imports=[helper.make_opsetid("", 13)],
    )
    for transform in PASSES:
        with pytest.raises(ValueError, match="opset 17"):
            transform(m)


def resnetish(blocks=45, channels=256):
    """~100 MB of conv weights in conv+bn+relu+dropout+add blocks."""
    rng = np.random.default_rng(0)
    nodes, inits, x = [], [], "x"
    for i in range(blocks):
        p = f"stage_{i // 5}.block_{i}"
        w = rng.standard_normal((channels, channels, 3, 3), dtype=np.float32) * 0.01
        inits.append(numpy_helper.from_array(w, f"{p}.conv2d_0.weight"))
        norm, norm_inits = bn(f"{p}/conv", f"{p}/bn", channels, f"{p}.batch_norm_0")
        inits += norm_inits
        nodes += [
            node("Conv", [x, f"{p}.conv2d_0.weight"], [f"{p}/conv"], name=f"{p}.conv2d_0", pads=[1, 1, 1, 1]),
            norm,
            node("Relu", [f"{p}/bn"], [f"{p}/relu"], name=f"{p}.relu"),
            node("Dropout", [f"{p}/relu"], [f"{p}/drop"], name=f"{p}.dropout"),
            node("Add", [f"{p}/drop", x], [f"{p}/add"], name=f"{p}.add"),
        ]
        x = f"{p}/add"
    nodes.append(node("Identity", [x], ["y"], name="out"))
    return model(nodes, [vi("x", ["N", channels, 4, 4])], [vi("y", ["N", channels, 4, 4])], inits)


@pytest.mark.slow
def test_a_100_mb_model_optimizes_in_well_under_half_a_second():
    original = resnetish()
    assert original.ByteSize() > 100e6
    optimize(original)
    best = min(_timed(optimize, original) for _ in range(3))
    assert best < 0.5, best
    optimized = optimize(original)
    assert set(ops(optimized)) == {"Conv", "Relu", "Add"}
    onnx.checker.check_model(optimized, full_check=True)


def _timed(f, *args):
    start = time.process_time()
    f(*args)
    return time.process_time() - start


# --- a torch-exported model --------------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the TorchScript exporter, chosen on purpose
@pytest.mark.parametrize("dynamic_batch", [False, True], ids=["static", "dynamic-batch"])
def test_torch_exported_model(dynamic_batch):
    torch = pytest.importorskip("torch")

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 8, 3)
            self.bn = torch.nn.BatchNorm2d(8)
            self.drop = torch.nn.Dropout(0.5)
            self.fc = torch.nn.Linear(8 * 4 * 4, 5)

        def forward(self, x):
            h = self.drop(torch.relu(self.bn(self.conv(x))))
            return self.fc(h.reshape(h.shape[0], -1))

    torch.manual_seed(0)
    net = Net().eval()
    with torch.no_grad():
        net.bn.running_mean.uniform_(-1, 1)
        net.bn.running_var.uniform_(0.5, 2)
        net.bn.weight.uniform_(0.5, 2)
        net.bn.bias.uniform_(-1, 1)
    buffer = io.BytesIO()
    torch.onnx.export(
        net,
        (torch.randn(2, 3, 6, 6),),
        buffer,
        dynamo=False,
        opset_version=17,
        input_names=["x"],
        output_names=["y"],
        dynamic_axes={"x": {0: "N"}, "y": {0: "N"}} if dynamic_batch else None,
        do_constant_folding=False,  # leave the BatchNormalization for optimize to fold
    )
    exported = onnx.load_from_string(buffer.getvalue())
    assert "BatchNormalization" in ops(exported)
    optimized = check(exported, gone=["BatchNormalization", "Dropout", "Identity"])
    if not dynamic_batch:
        assert ops(optimized) == ["Conv", "Relu", "Reshape", "Gemm"]
    x = np.random.default_rng(1).standard_normal((2, 3, 6, 6), dtype=np.float32)
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(run(optimized, {"x": x})[0], expected, rtol=1e-4, atol=1e-5)


# --- would_change: the cheap look that lets emission skip the passes -----------------------------------------


class _Record:
    def __init__(self, op_type, inputs, outputs, **attrs):
        self.op_type, self.inputs, self.outputs, self.attrs = op_type, inputs, outputs, attrs


_PLAIN = [_Record("Gemm", ["x", "w", "b"], ["h"], transB=1), _Record("Relu", ["h"], ["y"])]


@pytest.mark.parametrize(
    "nodes, initializers, value_info, expected",
    [
        (_PLAIN, ["w", "b"], ["h"], False),
        ([_Record("Identity", ["x"], ["h"]), _PLAIN[1]], [], ["h"], True),
        ([_Record("Dropout", ["x"], ["h"]), _PLAIN[1]], [], ["h"], True),
        ([_Record("BatchNormalization", ["x", "s", "b", "m", "v"], ["h"]), _PLAIN[1]], ["s", "b", "m", "v"], [], True),
        ([_Record("Shape", ["x"], ["h"]), _PLAIN[1]], [], [], True),
        ([_Record("Neg", ["w"], ["h"]), _Record("Add", ["x", "h"], ["y"])], ["w"], [], True),  # foldable
        (
            [_Record("Constant", [], ["c"]), _Record("Neg", ["c"], ["h"]), _Record("Add", ["x", "h"], ["y"])],
            [],
            [],
            True,
        ),
        ([_Record("Constant", [], ["c"]), _Record("Add", ["x", "c"], ["y"])], [], [], False),
        (_PLAIN + [_Record("Relu", ["h"], ["unused"])], ["w", "b"], ["h"], True),  # dead
        (_PLAIN, ["w", "b", "stray"], ["h"], True),  # unused initializer
        (_PLAIN, ["w", "b"], ["h", "nobody"], True),  # value_info of a value no node makes
        ([_Record("If", ["x"], ["y"], then_branch=onnx.GraphProto())], [], [], True),
    ],
)
def test_would_change_says_when_a_pass_may_act(nodes, initializers, value_info, expected):
    assert onnx_optimize.would_change(nodes, ["y"], initializers, value_info) is expected


def test_skipping_the_passes_gives_what_running_them_gives():
    """Where emission skips the passes (would_change is False), running them returns the model unchanged."""
    from pathlib import Path

    from netc.backends.onnx import OnnxEmitter, emit
    from netc.compiler import compile_file

    root = Path(__file__).resolve().parent.parent
    skipped = []
    for path in sorted((root / "examples").glob("*.net")):
        compiled = compile_file(path)
        weights = compiled.weights()
        plain = emit(compiled.graph, weights, optimize=False)
        emitter = OnnxEmitter(compiled.graph, weights, 18)
        emitter.model()
        outputs = [name for name, _ in compiled.graph.outputs]
        if onnx_optimize.would_change(emitter.nodes, outputs, plain.weights, emitter.typed):
            continue
        skipped.append(path.name)
        whole = plain.to_proto()
        assert optimize(whole).SerializeToString() == whole.SerializeToString(), path.name
        assert emit(compiled.graph, weights).to_bytes() == plain.to_bytes(), path.name
    assert "residual_mlp.net" in skipped and len(skipped) >= 3, skipped


def test_a_gemm_bias_of_one_value_folds_to_one_per_channel_when_planned():
    """A Gemm's bias may broadcast; folding changes its shape, which a transform of a tensor
    not drawn yet cannot: it is drawn first."""
    from netc.backends.onnx_optimize import _shift_channels
    from netc.compiler import compile_string
    from netc.compiler.weights import Drawing

    drawing = Drawing(compile_string("network t(x: [N, 3]) { return x -> linear(1) }").graph, 0)
    bias = drawing.tensors["linear_0.bias"]  # shape (1,)
    mean, s, shift = np.zeros(4), np.arange(1.0, 5.0), np.ones(4)
    folded = _shift_channels(bias, mean, s, shift)
    assert folded.shape == (4,)
    np.testing.assert_array_equal(folded, _shift_channels(np.asarray(bias), mean, s, shift))
