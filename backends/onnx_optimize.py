"""Inference-time rewrites of the ONNX models netc emits: same function, fewer nodes.

`optimize` runs four passes; each is also public and returns a new model, leaving its argument untouched:

1. `remove_identity_nodes`: Identity, and Dropout that is an identity at inference, disappear.
2. `fold_constants`: nodes whose inputs are all known before run time become initializers.
3. `fold_batch_norms`: an inference BatchNormalization folds into the Conv, ConvTranspose or Gemm before it.
4. `remove_dead_nodes`: nodes, initializers and value_info that no graph output needs are dropped.

What every pass requires of its model: a valid one (`onnx.checker.check_model` passes), nodes in topological
order, the default ONNX domain imported at opset 17 or later. Nodes of other domains, and control-flow
subgraphs, are left as they are; a value a subgraph reads is never renamed or removed.

What every pass ensures: the model still computes the same outputs in inference (up to float rounding: folded
BatchNormalization, constants computed by numpy rather than the runtime), still passes `check_model(full_check=True)`, keeps its graph inputs and outputs
(names, order and types), opset imports, ir_version, producer and metadata, and keeps the name and doc_string
(the spec's `file:line`) of every node it keeps or rewrites. The result is a function of the input's contents
only: the same model gives the same bytes whatever PYTHONHASHSEED is, and optimizing an optimized model changes
nothing.

Cost: one copy of the model; tensors go through numpy only where a pass reads or rewrites them (constant
inputs of folded nodes, the weights and BatchNormalization parameters of a fold), never the other parameters.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from functools import partial

import numpy as np
import onnx
from onnx import AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto, TypeProto, helper, numpy_helper

__all__ = [
    "FOLD_GROWTH_LIMIT",
    "would_change",
    "fold_batch_norms",
    "fold_constants",
    "optimize",
    "remove_dead_nodes",
    "remove_identity_nodes",
]

# A folded result may exceed its inputs by this many elements: beyond it, storing the tensor costs more than
# computing it (Expand, ConstantOfShape, Tile, Range turn a few numbers into a large tensor).
FOLD_GROWTH_LIMIT = 1_000_000

_DEFAULT_DOMAINS = ("", "ai.onnx")
_NONDETERMINISTIC = frozenset(
    {"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Multinomial", "Bernoulli"}
)
_CONSTANT_ATTRIBUTES = frozenset(
    {"value", "value_float", "value_floats", "value_int", "value_ints", "value_string", "value_strings"}
)


def optimize(model: ModelProto, arrays: dict[str, np.ndarray] | None = None, overwrite: bool = False) -> ModelProto:
    """A new model computing the same function as `model` in inference, after all four passes.

    Requires and ensures what the module docstring says. `model` is not modified. With `arrays`, the
    initializers of `model` are headers only (name, dims, data type) and their values are `arrays[name]`:
    netc keeps weights as numpy arrays until it writes the file, since each copy through protobuf costs
    more than the passes. `arrays` is then updated in place: folded values replace, new ones are added,
    unused ones removed; the returned model's initializers are the headers of what remains, in order.
    With `overwrite`, the arrays themselves may be rewritten (a folded weight is computed in its own
    memory): for weights nothing else holds, where resnet50's 100 MB would otherwise be copied.
    """
    out = _copy(model)
    opset = _default_opset(out)
    # A pass with nothing to rewrite still walks every node (0.3 s on 5,000); one look at
    # the op types skips it. Subgraphs are never rewritten, so the top level decides.
    ops = {node.op_type for node in out.graph.node}
    if ops & {"Identity", "Dropout"}:
        _remove_identities(out.graph)
    _fold_constants(out.graph, opset, arrays)
    if "BatchNormalization" in ops:
        _fold_batch_norms(out.graph, arrays, overwrite and arrays is not None)
    _remove_dead(out.graph, arrays)
    return out


def would_change(nodes, outputs: Iterable[str], initializers: Iterable[str], value_info: Iterable[str]) -> bool:
    """Whether `optimize` could rewrite a graph given as plain records, before any protobuf is
    built: `nodes` have `op_type`, `inputs`, `outputs` and `attrs` (a dict), in topological order;
    the graph's outputs, initializers (none of them a graph input) and value_info are names.

    Conservative: True whenever a pass might act (an Identity, Dropout or BatchNormalization; a
    Shape or Size; a node other than a Constant reading only initializers and Constant outputs;
    a dead node, an unused initializer, a value_info of a value no node makes; an attribute that
    is a graph). False means `optimize` returns the same model, so emitting can skip its copy.
    """
    live = set(outputs)
    initializers = list(initializers)
    constants = set(initializers)
    for node in nodes:
        op_type = node.op_type
        if op_type in ("Identity", "Dropout", "BatchNormalization", "Shape", "Size"):
            return True
        if op_type == "Constant":
            constants.update(node.outputs)
            continue
        names = [name for name in node.inputs if name]
        if names and constants.issuperset(names):
            return True
        if node.attrs and any(isinstance(value, GraphProto) for value in node.attrs.values()):
            return True
    produced = set()
    for node in reversed(nodes):
        if live.isdisjoint(node.outputs):  # "" (an omitted output) is never in live
            return True
        live.update(node.inputs)
        live.discard("")
        produced.update(node.outputs)
    return not live.issuperset(initializers) or not produced.issuperset(value_info)


def remove_identity_nodes(model: ModelProto) -> ModelProto:
    """A new model without Identity nodes, nor Dropout nodes that are identities in inference.

    A Dropout is an identity when it has no `training_mode` input or a constant false one, and its mask output is
    unused. Consumers of a removed node's output read its input instead. When that output is a graph output, the
    input's producer is renamed to produce it; where that cannot be done (the input is a graph input, an
    initializer, another graph output, or read inside a subgraph) one Identity stays in its place. An
    Identity or Dropout whose output a subgraph reads stays too. Value_info of vanished values is dropped.
    """
    out = _copy(model)
    _default_opset(out)
    _remove_identities(out.graph)
    return out


def fold_constants(model: ModelProto) -> ModelProto:
    """A new model where each node computable before run time is replaced by initializers holding its outputs.

    A node folds when all its inputs are initializers (not overridable as graph inputs, data stored in the model)
    or outputs of Constant nodes or of nodes folded before it, and also a `Shape` or `Size` of a value whose
    declared type (graph input, output or value_info) has a fully static shape. A folded node's outputs become
    initializers of the same names, appended in node order. Nodes that do not fold: Constant nodes themselves
    (they stay, with their names), random generators, nodes of other domains or with subgraphs, nodes producing a
    graph output, nodes whose result would exceed their inputs by more than `FOLD_GROWTH_LIMIT` elements, nodes
    whose result is not a tensor or disagrees with the declared or inferred output type, and nodes the reference
    evaluator cannot run. One pass in topological order reaches the fixpoint. Inputs left unused stay; run
    `remove_dead_nodes` to drop them.
    """
    out = _copy(model)
    _fold_constants(out.graph, _default_opset(out))
    return out


def fold_batch_norms(model: ModelProto) -> ModelProto:
    """A new model where each inference BatchNormalization folds into the Conv, ConvTranspose or Gemm feeding it.

    Folds when the BatchNormalization has one output and is not in training mode, its parameters are constants
    (initializers or Constant outputs) and 1-D of one length, and its input is produced by a default-domain Conv, ConvTranspose, or Gemm
    (alpha = beta = 1, either transB) whose output has no other reader and is not a graph output, and whose
    weight (and bias, if any) are initializers read by no other node; a Conv or ConvTranspose bias has one value per
    output channel, a Gemm C has rank at most 2 and a last dimension of 1 or N. With s = scale / sqrt(var + epsilon),
    computed in float64: output channel c of the weight is multiplied by s[c] (ConvTranspose, with weight layout
    [C_in, C_out/group, k...], per group), and the bias becomes (bias - mean) * s + B, with bias 0 when there was
    none. Results are cast back to the original dtypes and replace the initializers under their names; a new bias
    is named after the weight with `.weight` replaced by `.bias` (or a fresh name if taken) and appended. The
    producer takes over the BatchNormalization's output name and keeps its own name and doc_string.
    BatchNormalization parameters no longer read are dropped. Several BatchNormalizations in a row all fold.
    """
    out = _copy(model)
    _default_opset(out)
    _fold_batch_norms(out.graph)
    return out


def remove_dead_nodes(model: ModelProto) -> ModelProto:
    """A new model without the nodes no graph output depends on, and without unused initializers and value_info.

    An initializer is kept when a kept node (or one of its subgraphs) reads it, or when it is a graph input's
    default or a graph output. A value_info entry is kept when it describes an output of a kept node.
    """
    out = _copy(model)
    _default_opset(out)
    _remove_dead(out.graph)
    return out


# --- shared helpers -------------------------------------------------------------------------------------------


def _copy(model: ModelProto) -> ModelProto:
    out = ModelProto()
    out.CopyFrom(model)
    return out


def _default_opset(model: ModelProto) -> int:
    for imp in model.opset_import:
        if imp.domain in _DEFAULT_DOMAINS:
            if imp.version < 17:
                raise ValueError(f"onnx_optimize needs opset 17 or later, the model imports opset {imp.version}")
            return imp.version
    raise ValueError("the model imports no default-domain opset")


def _is_default(node: NodeProto, *op_types: str) -> bool:
    return node.domain in _DEFAULT_DOMAINS and (not op_types or node.op_type in op_types)


def _subgraphs(node: NodeProto) -> list[GraphProto]:
    graphs: list[GraphProto] = []
    for attr in node.attribute:
        if attr.type == AttributeProto.GRAPH:
            graphs.append(attr.g)
        elif attr.type == AttributeProto.GRAPHS:
            graphs.extend(attr.graphs)
    return graphs


def _subgraph_reads(node: NodeProto) -> list[str]:
    """Every name a node's subgraphs mention: a superset of the outer values they read, which is all that matters
    to passes that must not rename or remove those values."""
    names: list[str] = []
    for g in _subgraphs(node):
        for n in g.node:
            names.extend(i for i in n.input if i)
            names.extend(_subgraph_reads(n))
        names.extend(o.name for o in g.output)
    return names


def _reads(node: NodeProto) -> list[str]:
    return [i for i in node.input if i] + _subgraph_reads(node)


def _read_counts(graph: GraphProto) -> dict[str, int]:
    """How many times each name is read: once per node input slot or subgraph mention, once per graph output."""
    counts: dict[str, int] = {}
    for node in graph.node:
        for name in _reads(node):
            counts[name] = counts.get(name, 0) + 1
    for o in graph.output:
        counts[o.name] = counts.get(o.name, 0) + 1
    return counts


def _nested_reads(graph: GraphProto) -> set[str]:
    return {name for node in graph.node for name in _subgraph_reads(node)}


def _delete(repeated, indices: Iterable[int]) -> None:
    for i in sorted(set(indices), reverse=True):
        del repeated[i]


def _drop_value_info(graph: GraphProto, names: set[str]) -> None:
    if names:
        _delete(graph.value_info, [i for i, vi in enumerate(graph.value_info) if vi.name in names])


def _constant_node_value(node: NodeProto) -> np.ndarray:
    attr = node.attribute[0]
    if attr.name == "value":
        return numpy_helper.to_array(attr.t)
    if attr.name == "value_float":
        return np.array(attr.f, dtype=np.float32)
    if attr.name == "value_floats":
        return np.array(list(attr.floats), dtype=np.float32)
    if attr.name == "value_int":
        return np.array(attr.i, dtype=np.int64)
    if attr.name == "value_ints":
        return np.array(list(attr.ints), dtype=np.int64)
    if attr.name == "value_string":
        return np.array(attr.s, dtype=object)
    return np.array(list(attr.strings), dtype=object)


def _is_constant_node(node: NodeProto) -> bool:
    if not (_is_default(node, "Constant") and len(node.output) == 1 and len(node.attribute) == 1):
        return False
    attr = node.attribute[0]
    if attr.name == "value":
        return attr.t.data_location != TensorProto.EXTERNAL
    return attr.name in _CONSTANT_ATTRIBUTES


class _Constants:
    """The values of a graph known before run time, read into numpy only when asked for.

    Initializers that are also graph inputs are not constants (a caller may override them), nor are tensors
    stored outside the model.
    """

    def __init__(self, graph: GraphProto, arrays: dict[str, np.ndarray] | None = None):
        self._arrays = arrays if arrays is not None else {}
        inputs = {i.name for i in graph.input}
        self._tensors: dict[str, TensorProto] = {
            t.name: t for t in graph.initializer if t.name not in inputs and t.data_location != TensorProto.EXTERNAL
        }
        self._nodes: dict[str, NodeProto] = {}
        for node in graph.node:
            if _is_constant_node(node):
                self._nodes[node.output[0]] = node
        self._values: dict[str, np.ndarray] = {}

    def __contains__(self, name: str) -> bool:
        return name in self._values or name in self._tensors or name in self._nodes

    def value(self, name: str) -> np.ndarray:
        value = self.lazy(name)
        if not isinstance(value, np.ndarray):  # a weight not drawn yet (netc.compiler.weights.Planned)
            value = self._values[name] = np.asarray(value)
        return value

    def lazy(self, name: str):
        """The value, or a weight that is drawn only when the model is written, which takes
        per-channel scaling as a transform (`Planned.then`) without being drawn now."""
        if name not in self._values:
            if name in self._tensors and name in self._arrays:
                self._values[name] = self._arrays[name]
            elif name in self._tensors:
                self._values[name] = numpy_helper.to_array(self._tensors[name])
            else:
                self._values[name] = _constant_node_value(self._nodes[name])
        return self._values[name]

    def add(self, name: str, value: np.ndarray) -> None:
        self._values[name] = value


# --- pass 1: Identity and inference Dropout -------------------------------------------------------------------


def _is_inference_identity(node: NodeProto, constants: _Constants, reads: dict[str, int]) -> bool:
    if not node.input or not node.input[0] or not node.output or not node.output[0]:
        return False
    if _is_default(node, "Identity"):
        return True
    if not _is_default(node, "Dropout"):
        return False
    if len(node.output) > 1 and node.output[1] and reads.get(node.output[1], 0):
        return False
    if len(node.input) > 2 and node.input[2]:
        mode = node.input[2]
        # Only a constant false proves inference behaviour; a runtime flag might turn training on.
        if mode not in constants:
            return False
        value = constants.value(mode)
        return value.size == 1 and not bool(value.reshape(()))
    return True


def _remove_identities(graph: GraphProto) -> None:
    constants = _Constants(graph)
    reads = _read_counts(graph)
    nested = _nested_reads(graph)
    outputs = {o.name for o in graph.output}
    sources = {i.name for i in graph.input} | {t.name for t in graph.initializer}
    sources |= {t.values.name for t in graph.sparse_initializer}
    producer: dict[str, tuple[NodeProto, int]] = {}
    alias: dict[str, str] = {}
    removed: list[int] = []
    vanished: set[str] = set()

    def resolve(name: str) -> str:
        while name in alias:
            name = alias[name]
        return name

    for index, node in enumerate(graph.node):
        for j, name in enumerate(node.input):
            if name in alias:
                node.input[j] = resolve(name)
        if not _is_inference_identity(node, constants, reads):
            for k, name in enumerate(node.output):
                if name:
                    producer[name] = (node, k)
            continue
        x, y = node.input[0], node.output[0]
        if y not in outputs and y not in nested:
            alias[y] = x
            removed.append(index)
            vanished.add(y)
            continue
        if y in outputs and x in producer and x not in outputs and x not in sources and x not in nested:
            # The graph output's name must survive, so the value takes it over from its producer.
            owner, k = producer.pop(x)
            owner.output[k] = y
            producer[y] = (owner, k)
            alias[x] = y
            removed.append(index)
            vanished.add(x)
            continue
        if node.op_type == "Dropout":
            _make_identity(node)
        producer[y] = (node, 0)

    # Nodes between a renamed producer and the removed node were visited before the rename.
    for node in graph.node:
        for j, name in enumerate(node.input):
            if name in alias:
                node.input[j] = resolve(name)
    _delete(graph.node, removed)
    _drop_value_info(graph, vanished)


def _make_identity(node: NodeProto) -> None:
    x, y = node.input[0], node.output[0]
    del node.input[:]
    del node.output[:]
    del node.attribute[:]
    node.input.append(x)
    node.output.append(y)
    node.op_type = "Identity"
    node.domain = ""


# --- pass 2: constant folding ---------------------------------------------------------------------------------


def _static_shape(t: TypeProto) -> list[int] | None:
    if t.WhichOneof("value") != "tensor_type" or not t.tensor_type.HasField("shape"):
        return None
    dims = t.tensor_type.shape.dim
    if not all(d.HasField("dim_value") for d in dims):
        return None
    return [d.dim_value for d in dims]


def _declared_types(graph: GraphProto) -> dict[str, TypeProto]:
    types: dict[str, TypeProto] = {}
    for vi in [*graph.input, *graph.value_info, *graph.output]:
        if vi.HasField("type"):
            types.setdefault(vi.name, vi.type)
    return types


def _static_shape_of(name: str, graph_types: dict[str, TypeProto], initializers: dict[str, TensorProto]):
    if name in initializers:
        return list(initializers[name].dims)
    if name in graph_types:
        return _static_shape(graph_types[name])
    return None


def _shape_value(node: NodeProto, dims: list[int]) -> np.ndarray:
    if node.op_type == "Size":
        return np.array(math.prod(dims), dtype=np.int64)
    attrs = {a.name: a.i for a in node.attribute}
    start, end = attrs.get("start", 0), attrs.get("end", len(dims))
    # Shape's start/end clamp like Python slices do.
    return np.array(dims[start:end], dtype=np.int64)


def _result_size_bound(node: NodeProto, values: list[np.ndarray | None]) -> int | None:
    """An upper bound on the size of a node's result, for the ops that make large tensors from small inputs."""
    op = node.op_type

    def ints(v):
        return [int(x) for x in np.asarray(v).reshape(-1)]

    if op == "ConstantOfShape":
        return math.prod(ints(values[0]))
    if op == "Expand":
        return math.prod(np.broadcast_shapes(values[0].shape, tuple(ints(values[1]))))
    if op == "Tile":
        return math.prod(d * r for d, r in zip(values[0].shape, ints(values[1])))
    if op == "Range":
        start, limit, delta = (np.asarray(v).item() for v in values[:3])
        return max(0, math.ceil((limit - start) / delta)) if delta else None
    if op == "Pad" and len(values) > 1 and values[1] is not None:
        growth = sum(abs(p) for p in ints(values[1]))
        return math.prod(d + growth for d in values[0].shape)
    if op == "OneHot":
        return values[0].size * abs(int(np.asarray(values[1]).reshape(-1)[0]))
    return 0


def _evaluate(node: NodeProto, feeds: dict[str, np.ndarray], opset: int) -> list[np.ndarray] | None:
    from onnx.reference import ReferenceEvaluator

    try:
        results = ReferenceEvaluator(node, opsets={"": opset}).run(None, feeds)
    except Exception:  # noqa: BLE001 - an op the reference evaluator cannot run simply stays in the graph
        return None
    out = []
    for r in results:
        if not isinstance(r, np.ndarray | np.generic):
            return None  # sequences, optionals and maps cannot be initializers
        out.append(np.asarray(r))
    return out


def _expected_types(node: NodeProto, feeds: dict[str, np.ndarray], opset: int) -> dict[str, TypeProto]:
    try:
        schema = onnx.defs.get_schema(node.op_type, opset, "")
        input_types = {
            name: helper.make_tensor_type_proto(helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
            for name, v in feeds.items()
        }
        return onnx.shape_inference.infer_node_outputs(
            schema, node, input_types, opset_imports=[helper.make_opsetid("", opset)]
        )
    except Exception:  # noqa: BLE001 - no inferred type means only the declared one is checked
        return {}


def _agrees(value: np.ndarray, t: TypeProto | None) -> bool:
    if t is None or t.WhichOneof("value") != "tensor_type":
        return t is None
    tt = t.tensor_type
    if tt.elem_type and tt.elem_type != helper.np_dtype_to_tensor_dtype(value.dtype):
        return False
    if tt.HasField("shape"):
        dims = tt.shape.dim
        if len(dims) != value.ndim:
            return False
        return all(not d.HasField("dim_value") or d.dim_value == n for d, n in zip(dims, value.shape))
    return True


def _fold_constants(graph: GraphProto, opset: int, arrays: dict | None = None) -> None:
    constants = _Constants(graph, arrays)
    declared: list[dict] = []  # read on the first fold: most graphs fold nothing

    def graph_types() -> dict:
        if not declared:
            declared.append(_declared_types(graph))
        return declared[0]

    inputs = {i.name for i in graph.input}
    initializers = {t.name: t for t in graph.initializer}
    outputs = {o.name for o in graph.output}
    folded: list[int] = []
    new_tensors: list[TensorProto] = []

    for index, node in enumerate(graph.node):
        names = [i for i in node.input if i]
        if not names or not (node.op_type in ("Shape", "Size") or all(name in constants for name in names)):
            continue  # the cheap test first: most nodes read a run-time value
        if (
            not _is_default(node)
            or node.op_type in _NONDETERMINISTIC
            or _is_constant_node(node)
            or _subgraphs(node)
            or any(a.ref_attr_name for a in node.attribute)
            or any(o in outputs for o in node.output)
        ):
            continue
        results: list[np.ndarray] | None = None
        if all(name in constants for name in names):
            feeds = {name: constants.value(name) for name in names}
            in_size = sum(v.size for v in feeds.values())
            try:
                bound = _result_size_bound(node, [constants.value(i) if i else None for i in node.input])
            except Exception:  # noqa: BLE001 - malformed operands: the op would fail at run time too, leave it
                continue
            if bound is None or bound > in_size + FOLD_GROWTH_LIMIT:
                continue
            results = _evaluate(node, feeds, opset)
            if results is None or sum(r.size for r in results) > in_size + FOLD_GROWTH_LIMIT:
                continue
            expected = _expected_types(node, feeds, opset)
        elif node.op_type in ("Shape", "Size") and len(names) == 1:
            dims = _static_shape_of(names[0], graph_types(), initializers)
            if dims is None or (names[0] in inputs and names[0] in initializers):
                continue
            results = [_shape_value(node, dims)]
            expected = {}
        else:
            continue
        pairs = [(name, r) for name, r in zip(node.output, results) if name]
        if not all(_agrees(r, graph_types().get(name, expected.get(name))) for name, r in pairs):
            continue
        try:
            tensors = [_tensor(r, name, arrays) for name, r in pairs]
        except Exception:  # noqa: BLE001 - a dtype numpy_helper cannot store: keep computing it at run time
            continue
        for (name, r), tensor in zip(pairs, tensors):
            constants.add(name, r)
            new_tensors.append(tensor)
            if arrays is not None:
                arrays[name] = r
        folded.append(index)

    _delete(graph.node, folded)
    graph.initializer.extend(new_tensors)
    _drop_value_info(graph, {t.name for t in new_tensors})


# --- pass 3: BatchNormalization into Conv / ConvTranspose / Gemm ----------------------------------------------


def _fresh_name(wanted: str, taken: set[str]) -> str:
    name, n = wanted, 0
    while name in taken:
        n += 1
        name = f"{wanted}_{n}"
    taken.add(name)
    return name


def _all_names(graph: GraphProto) -> set[str]:
    names = {t.name for t in graph.initializer} | {t.values.name for t in graph.sparse_initializer}
    names |= {vi.name for vi in [*graph.input, *graph.output, *graph.value_info]}
    for node in graph.node:
        names.update(node.input)
        names.update(node.output)
        names.update(_subgraph_reads(node))
    return names


def _bias_name(weight: str, taken: set[str]) -> str:
    head, dot, tail = weight.rpartition(".weight")
    wanted = f"{head}.bias{tail}" if dot else f"{weight}.bias"
    return _fresh_name(wanted, taken)


def _fold_batch_norms(graph: GraphProto, arrays: dict | None = None, overwrite: bool = False) -> None:
    constants = _Constants(graph, arrays)
    reads = _read_counts(graph)
    inputs = {i.name for i in graph.input}
    outputs = {o.name for o in graph.output}
    init_index = {t.name: i for i, t in enumerate(graph.initializer)}
    producer = {name: node for node in graph.node for name in node.output if name}
    taken: set[str] | None = None
    removed: list[int] = []
    vanished: set[str] = set()

    def private_weight(name: str) -> bool:
        return (
            name in init_index
            and name in constants
            and name not in inputs
            and name not in outputs
            and reads.get(name, 0) == 1
        )

    for index, bn in enumerate(graph.node):
        if not _is_default(bn, "BatchNormalization") or len(bn.input) != 5:
            continue
        if any(bn.output[1:]) or any(a.name == "training_mode" and a.i for a in bn.attribute):
            continue
        x = bn.input[0]
        conv = producer.get(x)
        if conv is None or not _is_default(conv, "Conv", "ConvTranspose", "Gemm") or conv.output[0] != x:
            continue
        if reads.get(x, 0) != 1 or x in outputs or not all(p in constants for p in bn.input[1:]):
            continue
        w = conv.input[1]
        b = conv.input[2] if len(conv.input) > 2 and conv.input[2] else None
        if not private_weight(w) or (b is not None and not private_weight(b)):
            continue
        attrs = {a.name: a for a in conv.attribute}
        if conv.op_type == "Gemm" and any(attrs[k].f != 1.0 for k in ("alpha", "beta") if k in attrs):
            continue

        scale, shift, mean, var = (constants.value(p).astype(np.float64) for p in bn.input[1:])
        if not (scale.ndim == 1 and scale.shape == shift.shape == mean.shape == var.shape):
            continue
        weight = constants.lazy(w)
        bias = constants.lazy(b) if b is not None else np.zeros(scale.shape, weight.dtype)
        if conv.op_type == "Gemm":
            # C broadcasts to [M, N]; the folded C is that broadcast against the N channels.
            if bias.ndim > 2 or (bias.ndim and bias.shape[-1] not in (1, scale.size)):
                continue
        elif bias.shape != scale.shape:
            continue
        eps = next((a.f for a in bn.attribute if a.name == "epsilon"), 1e-5)
        s = scale / np.sqrt(var + eps)
        folded_w = _scale_output_channels(conv, weight, s, attrs, overwrite)
        if folded_w is None:
            continue
        folded_b = _shift_channels(bias, mean, s, shift)

        # A second BatchNormalization after this one folds into the weights as they are now.
        constants.add(w, folded_w)
        _replace_initializer(graph.initializer[init_index[w]], folded_w, arrays)
        if b is not None:
            _replace_initializer(graph.initializer[init_index[b]], folded_b, arrays)
        else:
            if taken is None:
                taken = _all_names(graph)
            b = _bias_name(w, taken)
            graph.initializer.append(_tensor(folded_b, b, arrays))
            if arrays is not None:
                arrays[b] = folded_b
            init_index[b] = len(graph.initializer) - 1
            reads[b] = 1
            if len(conv.input) > 2:
                conv.input[2] = b
            else:
                conv.input.append(b)
        constants.add(b, folded_b)

        y = bn.output[0]
        conv.output[0] = y
        producer[y] = conv
        del producer[x]
        vanished.add(x)
        removed.append(index)
        for p in bn.input[1:]:
            reads[p] -= 1

    _delete(graph.node, removed)
    _drop_value_info(graph, vanished)
    # Only the parameters this pass made unused go; the others are remove_dead_nodes' business.
    _delete_initializers(graph, [i for i, t in enumerate(graph.initializer) if reads.get(t.name) == 0], arrays)


def _scale_output_channels(conv: NodeProto, w: np.ndarray, s: np.ndarray, attrs, overwrite=False) -> np.ndarray | None:
    """The weight with output channel c multiplied by s[c], in w's dtype (in w itself with `overwrite`);
    None when w's layout does not fit s."""
    if conv.op_type == "Conv":
        if w.ndim < 2 or w.shape[0] != s.size:
            return None
        view, factors = w.shape, s.reshape((-1,) + (1,) * (w.ndim - 1))
    elif conv.op_type == "ConvTranspose":
        groups = attrs["group"].i if "group" in attrs else 1
        if w.ndim < 2 or groups < 1 or w.shape[0] % groups or w.shape[1] * groups != s.size:
            return None
        # Weight [C_in, C_out/g, k...]: output channel g*(C_out/g) + j lives at [group g's inputs, j].
        view = (groups, w.shape[0] // groups) + w.shape[1:]
        factors = s.reshape((groups, 1, w.shape[1]) + (1,) * (w.ndim - 2))
    else:
        trans_b = attrs["transB"].i if "transB" in attrs else 0
        if w.ndim != 2 or w.shape[0 if trans_b else 1] != s.size:
            return None
        view, factors = w.shape, s[:, None] if trans_b else s[None, :]
    if not isinstance(w, np.ndarray):  # drawn when written: scaled then, as it is drawn
        return w.then(partial(_scaled, view, factors))
    out = w if overwrite and w.flags.writeable and w.flags.c_contiguous else np.empty_like(w)
    return _scaled(view, factors, w, out)


def _scaled(view: tuple, factors: np.ndarray, w: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """w times factors (w seen as `view`), into `out` (default: w itself)."""
    out = w if out is None else out
    # Multiplying in float64 and rounding once into w's dtype, chunk by chunk: no float64 copy of the weight.
    np.multiply(w.reshape(view), factors, out=out.reshape(view), dtype=np.float64, casting="unsafe")
    return out


def _shift_channels(bias, mean: np.ndarray, s: np.ndarray, shift: np.ndarray):
    """The folded bias, (bias - mean) * s + shift in float64, rounded once into bias's dtype;
    of a bias drawn only when written, a transform of it."""
    if not isinstance(bias, np.ndarray):
        if np.broadcast_shapes(bias.shape, s.shape) == bias.shape:
            return bias.then(partial(_shift_channels, mean=mean, s=s, shift=shift))
        bias = np.asarray(bias)  # a Gemm's bias of one value broadcast to the channels: it changes shape
    return ((bias.astype(np.float64) - mean) * s + shift).astype(bias.dtype)


_RAW_FLOATS = frozenset({TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.BFLOAT16})


def _tensor(value: np.ndarray, name: str, arrays: dict | None) -> TensorProto:
    """An initializer: with `arrays`, its header only (the value is kept in `arrays`)."""
    if arrays is None:
        return numpy_helper.from_array(value, name)
    return TensorProto(name=name, dims=value.shape, data_type=helper.np_dtype_to_tensor_dtype(value.dtype))


def _delete_initializers(graph: GraphProto, indices: list[int], arrays: dict | None) -> None:
    if arrays is not None:
        for i in indices:
            arrays.pop(graph.initializer[i].name, None)
    _delete(graph.initializer, indices)


def _replace_initializer(tensor: TensorProto, value: np.ndarray, arrays: dict | None = None) -> None:
    """Overwrites an initializer's value, keeping its name and doc_string, without a second copy when the shape and
    dtype stay."""
    if arrays is not None:
        arrays[tensor.name] = value
        doc = tensor.doc_string
        tensor.CopyFrom(_tensor(value, tensor.name, arrays))
        tensor.doc_string = doc
        return
    if (
        tensor.data_type in _RAW_FLOATS
        and helper.np_dtype_to_tensor_dtype(value.dtype) == tensor.data_type
        and list(tensor.dims) == list(value.shape)
    ):
        for field in ("float_data", "double_data", "int32_data"):
            tensor.ClearField(field)
        tensor.raw_data = numpy_helper.tobytes_little_endian(value)
        return
    doc = tensor.doc_string
    tensor.CopyFrom(numpy_helper.from_array(value, tensor.name))
    tensor.doc_string = doc


# --- pass 4: dead code ----------------------------------------------------------------------------------------


def _remove_dead(graph: GraphProto, arrays: dict | None = None) -> None:
    live = {o.name for o in graph.output}
    dead: list[int] = []
    nodes = list(graph.node)
    for index in range(len(nodes) - 1, -1, -1):
        node = nodes[index]
        if any(o in live for o in node.output if o):
            live.update(node.input)
            if _subgraphs(node):
                live.update(_subgraph_reads(node))
        else:
            dead.append(index)
    live.discard("")
    _delete(graph.node, dead)

    inputs = {i.name for i in graph.input}
    _delete_initializers(
        graph, [i for i, t in enumerate(graph.initializer) if t.name not in live and t.name not in inputs], arrays
    )
    _delete(
        graph.sparse_initializer,
        [
            i
            for i, t in enumerate(graph.sparse_initializer)
            if t.values.name not in live and t.values.name not in inputs
        ],
    )
    produced = {o for node in graph.node for o in node.output if o}
    _delete(graph.value_info, [i for i, vi in enumerate(graph.value_info) if vi.name not in produced])
