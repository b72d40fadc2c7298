"""What every emitted ONNX model must satisfy, shared by the op table and the example tests."""

from __future__ import annotations

import numpy as np
import onnx
from netc.compiler.dims import to_json
from onnx import shape_inference


def check_model(model: onnx.ModelProto, graph=None) -> None:
    """The full checker passes; strict shape inference accepts the model as it is (its
    value_info holds netc's types, so a disagreement raises) and, run again without that
    value_info, infers for every netc value a shape that agrees with netc's."""
    onnx.checker.check_model(model, full_check=True)
    shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
    if graph is None:
        return
    bare = onnx.ModelProto()
    bare.CopyFrom(model)
    del bare.graph.value_info[:]
    inferred = shape_inference.infer_shapes(bare, strict_mode=True, data_prop=True)
    known = {v.name: v for v in list(inferred.graph.value_info) + list(inferred.graph.output)}
    netc = {v.name: v for v in list(model.graph.value_info) + list(model.graph.output)}
    compared = 0
    for name, mine in netc.items():
        theirs = known.get(name)
        if theirs is None or not theirs.type.tensor_type.HasField("shape"):
            continue
        assert theirs.type.tensor_type.elem_type == mine.type.tensor_type.elem_type, name
        a, b = mine.type.tensor_type.shape.dim, theirs.type.tensor_type.shape.dim
        assert len(a) == len(b), f"{name}: rank {len(a)} vs inferred {len(b)}"
        for x, y in zip(a, b):
            if x.HasField("dim_value") and y.HasField("dim_value"):
                assert x.dim_value == y.dim_value, f"{name}: {a} vs inferred {b}"
            elif x.HasField("dim_param") and y.HasField("dim_value"):
                raise AssertionError(f"{name}: netc has {x.dim_param}, ONNX infers {y.dim_value}")
        compared += 1
    assert compared, "shape inference compared nothing"


def feeds(graph, sizes: dict, seed: int = 0) -> dict:
    """Random inputs for a graph, a symbolic dimension taking its size from `sizes`."""
    rng = np.random.default_rng(seed)
    out = {}
    for name in graph.inputs:
        t = graph.node(name).outputs[0]
        shape = [d if isinstance(d, int) else sizes[to_json(d)] for d in t.shape]
        if t.dtype == "int64":
            out[name] = rng.integers(0, 2, size=shape).astype(np.int64)
        else:
            out[name] = (rng.random(shape) + 0.5).astype(t.dtype)
    return out


def run(model: onnx.ModelProto, inputs: dict) -> list:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, inputs)
