"""Graph -> ONNX: a `ModelProto` built directly with `onnx.helper`, no tracing, no torch.

The model is the inference forward (LANGUAGE.md). Names carry the spec: graph inputs and
outputs take the spec's names, dtypes and shapes (a symbolic or derived dimension is a
`dim_param` holding its Python text); initializers take LANGUAGE.md's parameter names;
each ONNX node is named by the scope path of the netc node it lowers (the node that
computes the netc value takes that exact path, helpers `path/OpType`), and its
`doc_string` is the spec's `file:line`; every netc value keeps its netc type as
`value_info`, so a viewer such as Netron shows structure, shapes and source.

Each op's ONNX lowering lives in its registry entry as `(b, *inputs, **attrs)`; `b` is the
`Lowering` below: `b.Relu(x)` (any ONNX operator by name), `b.op(name, ..., outputs=k)`,
`b.param("weight")`, `b.buffer(...)`, constants (`b.const`, `b.scalar`, `b.ints`),
`b.shape(dims)` (a shape tensor, computing symbolic dimensions from the graph inputs at run
time), `b.reduce(...)` (axes as the opset wants them), `b.opset` and `b.node`.

Output is deterministic: nodes in graph order, initializers in order of first use,
attributes sorted by onnx.helper; nothing depends on hashing.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import onnx
from netc.compiler import dims as D
from netc.compiler.analysis import symbol_source
from netc.compiler.builder import gc_paused
from netc.compiler.files import atomic_open
from netc.compiler.ir import Graph, Node, TensorType, Value
from netc.compiler.ops import REGISTRY
from netc.compiler.templates import NotPlain, strict
from netc.dsl.diagnostics import InternalError
from onnx import TensorProto, helper, numpy_helper

MIN_OPSET = 17  # LayerNormalization
DEFAULT_OPSET = 18
# Protobuf cannot serialize a message over 2 GiB; above this the weights go to a file beside.
EXTERNAL_DATA_BYTES = 2**31 - 2**26

ELEMENT_TYPES = {
    "float32": TensorProto.FLOAT,
    "float64": TensorProto.DOUBLE,
    "int64": TensorProto.INT64,
    "bool": TensorProto.BOOL,
}
NUMPY_TYPES = {"float32": np.float32, "float64": np.float64, "int64": np.int64, "bool": np.bool_}


class OpsetError(ValueError):
    """An opset this installation cannot emit or run."""


def max_opset() -> int:
    """The newest opset both the installed onnx and onnxruntime support."""
    return min(onnx.defs.onnx_opset_version(), _runtime_max_opset())


def check_opset(opset: int) -> int:
    if not isinstance(opset, int) or isinstance(opset, bool) or opset < MIN_OPSET:
        raise OpsetError(f"opset {opset} is not supported: netc emits opset {MIN_OPSET} or newer")
    newest = onnx.defs.onnx_opset_version()
    if opset > newest:
        raise OpsetError(f"opset {opset} is newer than the installed onnx supports (at most {newest})")
    if opset > DEFAULT_OPSET and opset > _runtime_max_opset():  # asking onnxruntime costs an import
        raise OpsetError(f"opset {opset} is not supported by the installed onnxruntime (at most {max_opset()})")
    return opset


_RUNTIME_MAX: list[int] = []


def _runtime_max_opset() -> int:
    """onnxruntime says which opsets it runs only by trying: a one-node model per opset."""
    if not _RUNTIME_MAX:
        import onnxruntime as ort

        best = DEFAULT_OPSET
        for opset in range(DEFAULT_OPSET + 1, onnx.defs.onnx_opset_version() + 1):
            x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
            graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "probe", [x], [x])
            graph.output[0].name = "y"
            model = _model(opset)
            model.graph.CopyFrom(graph)
            try:
                ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
            except Exception:  # onnxruntime refuses an opset it does not know with a plain Fail
                break
            best = opset
        _RUNTIME_MAX.append(best)
    return _RUNTIME_MAX[0]


def _model(opset: int) -> onnx.ModelProto:
    """A model with an empty graph, to be filled in place (make_model would copy a graph in)."""
    from importlib.metadata import version

    opsets = [helper.make_opsetid("", opset)]
    return helper.make_model(
        onnx.GraphProto(),
        opset_imports=opsets,
        ir_version=helper.find_min_ir_version_for(opsets),
        producer_name="netc",
        producer_version=version("netc"),
    )


def tensor_type(name: str, t: TensorType, into=None) -> onnx.ValueInfoProto:
    """A value's type, a symbolic or derived dimension as its text (`N`, `(H - 1) // 2 + 1`);
    made in the repeated field `into` where given (adding in place saves a copy)."""
    proto = _TYPES.get(t)
    if proto is None:  # a deep network repeats few types: each is built once, then copied
        proto = helper.make_tensor_type_proto(ELEMENT_TYPES[t.dtype], [D.to_json(d) for d in t.shape])
        if len(_TYPES) < 4096:
            _TYPES[t] = proto
    info = onnx.ValueInfoProto(name=name) if into is None else into.add(name=name)
    info.type.CopyFrom(proto)
    return info


_TYPES: dict[TensorType, onnx.TypeProto] = {}


class Val(str):
    """An ONNX value's name; `type` is its netc type where it lowers a netc value."""

    type: TensorType | None = None

    @classmethod
    def of(cls, name: str, type: TensorType | None = None) -> Val:
        value = cls(name)
        value.type = type
        return value

    @property
    def shape(self):
        return self.type.shape

    @property
    def rank(self) -> int:
        return self.type.rank

    @property
    def dtype(self) -> str:
        return self.type.dtype


class Lowering:
    """What an ONNX lowering builds with, for one netc node (`b` in the registry)."""

    def __init__(self, emitter: OnnxEmitter, node: Node):
        self.emitter, self.node, self.opset = emitter, node, emitter.opset
        self.made: list[_Pending] = []

    def __getattr__(self, name: str):
        if name[:1].isupper():  # b.Relu(x): any ONNX operator by its name
            return partial(self.op, name)
        raise AttributeError(name)

    def op(self, op_type: str, *inputs, outputs: int = 1, **attrs):
        """One ONNX node; None stands for an omitted optional input."""
        names = [name if name is not None else "" for name in inputs]
        while names and names[-1] == "":
            names.pop()
        base = f"{self.node.name}/{op_type}"
        results = [self.emitter.fresh_value(base if outputs == 1 else f"{base}#{i}") for i in range(outputs)]
        pending = _Pending(op_type, names, results, self.emitter.fresh_node(base), attrs, self.emitter.where(self.node))
        self.made.append(pending)
        self.emitter.nodes.append(pending)
        values = [Val(r) for r in results]
        return values[0] if outputs == 1 else tuple(values)

    @property
    def trains(self) -> bool:
        """Whether this is a training model: its parameters are graph inputs, which
        onnxruntime cannot pre-pack as it does constant weights."""
        return self.emitter.parameters is not None

    # -- weights and constants
    def param(self, local: str) -> Val:
        """The node's parameter or buffer: an initializer, or in a training model an input
        (a shared one is the owner's: one initializer for every use)."""
        return self.emitter.initializer(self.node.param_name(local))

    buffer = param

    def parameter(self, name: str) -> Val:
        return self.emitter.initializer(name)

    def tensor(self, values, dtype: str) -> TensorProto:
        """A tensor attribute value (ConstantOfShape's value)."""
        return numpy_helper.from_array(np.asarray(values, dtype=NUMPY_TYPES[dtype]))

    def element_type(self, dtype: str) -> int:
        return ELEMENT_TYPES[dtype]

    def const(self, values, dtype: str) -> Val:
        array = np.asarray(values, dtype=NUMPY_TYPES[dtype])
        return self.op("Constant", value=numpy_helper.from_array(array))

    def scalar(self, value, dtype: str) -> Val:
        return self.const(value, dtype)

    def ints(self, values) -> Val:
        return self.const(list(values), "int64")

    # -- shapes
    def shape(self, dims) -> Val:
        """A 1-d int64 tensor of `dims`; a symbolic or derived one is computed at run time."""
        if all(isinstance(d, int) for d in dims):
            return self.ints(dims)
        parts, run = [], []
        for d in dims:
            if isinstance(d, int):
                run.append(d)
                continue
            if run:
                parts.append(self.ints(run))
                run = []
            parts.append(self.dim(d))
        if run:
            parts.append(self.ints(run))
        return self.Concat(*parts, axis=0)

    def dim(self, d) -> Val:
        """A dimension as a 1-element int64 tensor, computed once per graph."""
        if isinstance(d, int):
            return self.ints([d])
        key = d.text()
        if key not in self.emitter.dims:
            self.emitter.dims[key] = self._linear(d)
        return self.emitter.dims[key]

    def _linear(self, d: D.Dim) -> Val:
        total = None
        for atom, coeff in d.terms:
            term = self._atom(atom)
            if coeff != 1:
                term = self.Mul(term, self.ints([coeff]))
            total = term if total is None else self.Add(total, term)
        return self.Add(total, self.ints([d.const])) if d.const else total

    def _atom(self, atom) -> Val:
        if isinstance(atom, D.Sym):
            found = self.emitter.symbol(atom.name)
            if found is None:
                raise InternalError(f"no graph input carries the dimension {atom.name}")
            value, axis = found
            return self.Shape(value, start=axis, end=axis + 1)
        left, right = self.dim(atom.left), self.dim(atom.right)
        if atom.op == "*":
            return self.Mul(left, right)
        remainder = self.Mod(left, right)  # fmod=0: the divisor's sign, as Python's %
        if atom.op == "%":
            return remainder
        return self.Div(self.Sub(left, remainder), right)  # floor division, exact for any sign

    def reduce(self, op_type: str, x, axes, keepdims: bool) -> Val:
        """A Reduce* over `axes` (None: all); axes are an input from opset 18 (ReduceSum: 13)."""
        keep = int(bool(keepdims))
        if axes is None:
            return self.op(op_type, x, keepdims=keep)
        if self.opset >= 18 or op_type == "ReduceSum":
            return self.op(op_type, x, self.ints(axes), keepdims=keep)
        return self.op(op_type, x, axes=list(axes), keepdims=keep)


class OnnxEmitter:
    """`parameters`: a training model's parameters and buffers, which become graph inputs
    (after the other inputs, before the seeds) instead of initializers."""

    def __init__(self, graph: Graph, weights: dict, opset: int, parameters: dict[str, TensorType] | None = None):
        self.graph, self.weights, self.opset, self.parameters = graph, weights, opset, parameters
        self.nodes: list[_Pending] = []
        self.initializers: dict[str, np.ndarray] = {}  # the weights used, in order of first use
        self.dims: dict[str, Val] = {}
        self.value_names: set[str] = set()
        self.node_names: set[str] = set()
        self.env: dict[Value, Val] = {}
        self.symbols: dict[str, tuple[Value, int] | None] = {}
        self.basenames: dict[str, str] = {}
        self.typed: list[str] = []  # the values given a value_info, once the graph is written

    # -- names
    def fresh_value(self, base: str) -> str:
        return _fresh(self.value_names, base)

    def fresh_node(self, base: str) -> str:
        return _fresh(self.node_names, base)

    def where(self, node: Node) -> str:
        span = node.span
        if span is None:
            return ""
        base = self.basenames.get(span.file)
        if base is None:
            base = self.basenames[span.file] = os.path.basename(span.file)
        return f"{base}:{span.line}"

    def symbol(self, name: str):
        if name not in self.symbols:
            found = symbol_source(self.graph, name, [Value(n) for n in self.graph.inputs])
            self.symbols[name] = None if found is None else (self.env[found[0]], found[1])
        return self.symbols[name]

    def initializer(self, name: str) -> Val:
        if self.parameters is not None:
            if name not in self.parameters:
                raise InternalError(f"no parameter {name}")
            return Val(name)
        if name not in self.initializers:
            if name not in self.weights:
                raise InternalError(f"no weights for {name}")
            self.initializers[name] = self.weights[name]
        return Val(name)

    # -- the model
    def fill(self, graph_proto: onnx.GraphProto) -> None:
        """Writes the graph into `graph_proto` (an empty GraphProto, a model's own)."""
        g = self.graph
        for name in g.inputs:
            self.value_names.add(name)
            self.env[Value(name)] = Val.of(name, g.node(name).outputs[0])
        targets: dict[Value, str] = {}  # a value that is a graph output is named as the output
        for out_name, value in g.outputs:
            self.value_names.add(out_name)
            if value not in targets and g.node(value.node).op != "input":
                targets[value] = out_name
        nodes = g.nodes()
        names = self.value_names
        for node in nodes:
            if node.params or node.buffers:
                names.update([node.param_name(local) for local in (*node.params, *node.buffers)])
        names.update(self.parameters or ())
        value_info = []
        env = self.env
        for node in nodes:
            if node.op == "input":
                continue
            b = Lowering(self, node)
            result = REGISTRY[node.op].onnx(b, *[env[v] for v in node.inputs], **node.attrs)
            results = result if isinstance(result, tuple) else (result,)
            if len(results) != len(node.outputs):
                raise InternalError(
                    f"the ONNX lowering of {node.op} made {len(results)} values, not {len(node.outputs)}"
                )
            single = len(results) == 1
            for i, (made, t) in enumerate(zip(results, node.outputs)):
                value = Value(node.name, i)
                target = targets.get(value) if targets else None
                if target is not None:
                    name = self._settle(b, made, target, True)
                else:
                    name = self._settle(b, made, node.name if single else f"{node.name}#{i}", False)
                    value_info.append((name, t))
                env[value] = Val.of(name, t)
        for out_name, value in g.outputs:
            if self.env[value] != out_name:  # an input returned, or one value returned twice
                self.nodes.append(_Pending("Identity", [self.env[value]], [out_name], self.fresh_node(out_name)))
        # Built in place, field by field: make_node and make_graph would each copy every node once more.
        add = graph_proto.node.add
        for pending in self.nodes:
            pending.add_to(add)
        graph_proto.name = g.name
        inputs = graph_proto.input
        for name in g.inputs:
            if not name.startswith("seed."):
                tensor_type(name, g.node(name).outputs[0], inputs)
        for name, t in (self.parameters or {}).items():
            tensor_type(name, t, inputs)
        for name in g.inputs:
            if name.startswith("seed."):
                tensor_type(name, g.node(name).outputs[0], inputs)
        for out_name, value in g.outputs:
            tensor_type(out_name, g.type_of(value), graph_proto.output)
        infos = graph_proto.value_info
        for name, t in value_info:
            tensor_type(name, t, infos)
        self.typed = [name for name, _ in value_info]

    def model(self) -> onnx.ModelProto:
        model = _model(self.opset)
        with gc_paused():
            self.fill(model.graph)
        return model

    def _settle(self, b: Lowering, made: Val, want: str, exact: bool) -> str:
        """Names the value a lowering returned after the netc value it computes."""
        producer = next((p for p in reversed(b.made) if made in p.outputs), None)
        if producer is None:
            return made  # an existing value (an input passed through) keeps its name
        name = want if exact else self.fresh_value(want)
        for pending in b.made:
            if made in pending.inputs:
                pending.inputs = [name if inp == made else inp for inp in pending.inputs]
        producer.outputs[producer.outputs.index(made)] = name
        self.value_names.discard(made)
        if producer is b.made[-1] or len(producer.outputs) > 1:
            self.node_names.discard(producer.name)
            producer.name = _fresh(self.node_names, b.node.name)
        return name


@dataclass(slots=True)
class _Pending:
    """A node made for the graph, kept as Python lists until the graph is done: naming the
    values after the spec renames inputs and outputs, far cheaper here than in a NodeProto."""

    op_type: str
    inputs: list
    outputs: list
    name: str
    attrs: dict = field(default_factory=dict)
    doc: str = ""

    def add_to(self, add) -> None:
        """Adds the NodeProto to a graph (`add` is its `node.add`) as `helper.make_node` makes
        it: attributes sorted by name, None ones left out."""
        node = add(op_type=self.op_type, input=self.inputs, output=self.outputs)
        if self.name:
            node.name = self.name
        if self.doc:
            node.doc_string = self.doc
        if self.attrs:
            node.attribute.extend(_attribute(k, v) for k, v in sorted(self.attrs.items()) if v is not None)


def _attribute(key: str, value) -> onnx.AttributeProto:
    """`helper.make_attribute`, remembered for plain values: a deep network repeats a few
    attributes (`transB=1`, the same kernel shape) thousands of times."""
    try:  # strictly: -0.0 == 0.0 and 1 == 1.0, but they are different attributes
        cache_key = (key, strict(tuple(value) if type(value) is list else value))
    except NotPlain:  # a tensor, a graph
        return helper.make_attribute(key, value)
    made = _ATTRIBUTES.get(cache_key)
    if made is None:
        made = helper.make_attribute(key, value)
        if len(_ATTRIBUTES) < 4096:
            _ATTRIBUTES[cache_key] = made
    return made


_ATTRIBUTES: dict[tuple, onnx.AttributeProto] = {}


def _fresh(used: set, base: str) -> str:
    name, k = base, 1
    while name in used:
        name, k = f"{base}_{k}", k + 1
    used.add(name)
    return name


@dataclass
class OnnxModel:
    """A model whose weights stay numpy arrays until it is written: `proto` holds no
    initializer data, `weights` the initializers in order. Copying 100 MB through protobuf
    costs about 0.3 s a copy here, so the file is written straight from the arrays, once.
    Fresh weights are `weights.Planned` tensors, drawn as they are written
    (`np.asarray(planned)` draws one; `to_proto()` draws them all)."""

    proto: onnx.ModelProto
    weights: dict[str, np.ndarray]

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.weights.values())

    def to_proto(self) -> onnx.ModelProto:
        """The whole model as one ModelProto, initializers included."""
        model = onnx.ModelProto()
        model.CopyFrom(self.proto)
        model.graph.initializer.extend(numpy_helper.from_array(np.asarray(a), name) for name, a in self.weights.items())
        return model

    def to_bytes(self) -> bytes:
        out = io.BytesIO()
        self._write(out, None)
        return out.getvalue()

    def save(self, path: str | os.PathLike, external_data_bytes: int = EXTERNAL_DATA_BYTES) -> list[Path]:
        """Writes the model to `path`. Weights over `external_data_bytes` in all go to one
        file beside it, `<name>.data`, referenced by that plain name, never a path (path
        traversal through external-data names: CVE-2024-27318, CVE-2025-51480). Each file is
        written beside its target and renamed into place, so a failure leaves no half file.
        Returns the files written."""
        target = Path(path)
        if self.nbytes <= external_data_bytes:
            with atomic_open(target) as out:
                self._write(out, None)
            return [target]
        data = target.with_name(target.name + ".data")
        with atomic_open(data) as external, atomic_open(target) as out:
            self._write(out, (data.name, external))
        return [target, data]

    def _write(self, out, external) -> None:
        """The protobuf wire format, by hand only where the weights go: the model without
        initializers, then its `graph` field again holding only the initializers (protobuf
        merges a message field that occurs twice), each tensor's bytes taken from its array.
        Weights not drawn yet (`weights.Planned`) are drawn as they are written, a tensor at
        a time, when there are many of them (`weights.drawn_in_order`)."""
        from netc.compiler.weights import Planned, drawn_in_order

        planned = [v for v in self.weights.values() if isinstance(v, Planned)]
        size = sum(p.nbytes for p in planned)
        streamed = size >= _STREAM_BYTES and size >= _STREAM_TENSOR_BYTES * len(planned)
        drawn = drawn_in_order(planned) if streamed else None

        def data(value) -> np.ndarray:
            if isinstance(value, Planned):
                value = next(drawn) if drawn is not None else value.materialize()
            return np.ascontiguousarray(value, dtype=value.dtype.newbyteorder("<"))

        typed: dict[tuple, bytes] = {}  # (shape, dtype) -> a header's dims and data_type fields

        def embedded_head(name: str, value) -> bytes:
            # Serialized fields come in field-number order: dims (1), data_type (2), name (8).
            key = (value.shape, value.dtype)
            fields = typed.get(key)
            if fields is None:
                fields = typed[key] = _header(None, value).SerializeToString()
            encoded = name.encode()
            return (
                fields + _field_head(_TENSOR_NAME, len(encoded)) + encoded + _field_head(_TENSOR_RAW_DATA, value.nbytes)
            )

        try:
            entries, total = [], 0
            for name, value in self.weights.items():
                if external is None:
                    head = embedded_head(name, value)
                    size = len(head) + value.nbytes
                else:
                    header = _header(name, value)
                    location, stream = external
                    offset = stream.tell()
                    _write_bytes(stream, data(value))
                    header.data_location = TensorProto.EXTERNAL
                    for key, field_value in (("location", location), ("offset", offset), ("length", value.nbytes)):
                        header.external_data.add(key=key, value=str(field_value))
                    head = header.SerializeToString()
                    size = len(head)
                prefix = _field_head(_GRAPH_INITIALIZER, size)
                entries.append((prefix + head, value if external is None else None))
                total += len(prefix) + size
            out.write(self.proto.SerializeToString())
            out.write(_field_head(_MODEL_GRAPH, total))
            for head, value in entries:
                out.write(head)
                if value is not None:
                    _write_bytes(out, data(value))  # every planned tensor: the stream yields each
        finally:
            if drawn is not None:
                drawn.close()


# Weights not drawn yet are drawn tensor by tensor as they are written from this many bytes
# on (resnet50: 100 MB written from two 9 MB buffers), unless the tensors are small on
# average: a tensor at a time costs a few microseconds, and a residual MLP of 10,000
# blocks has 40,000 tensors of 1 kB, which one draw of them all makes in milliseconds.
_STREAM_BYTES = 16 << 20
_STREAM_TENSOR_BYTES = 64 << 10


# Field numbers of onnx.proto3 used by OnnxModel._write.
_MODEL_GRAPH, _GRAPH_INITIALIZER, _TENSOR_NAME, _TENSOR_RAW_DATA = 7, 5, 8, 9


def _field_head(field: int, length: int) -> bytes:
    """A length-delimited field's tag and length varint."""
    if length < 0x80:
        return bytes(((field << 3) | 2, length))
    out = bytearray([(field << 3) | 2])
    while True:
        byte, length = length & 0x7F, length >> 7
        out.append(byte | (0x80 if length else 0))
        if not length:
            return bytes(out)


def _write_bytes(out, array: np.ndarray) -> None:
    if array.size:  # memoryview cannot cast a shape with a zero in it
        out.write(memoryview(array).cast("B"))


def _element_type(array: np.ndarray) -> int:
    return helper.np_dtype_to_tensor_dtype(array.dtype.newbyteorder("="))  # '>f4' is FLOAT too


def emit(graph: Graph, weights: dict, opset: int = DEFAULT_OPSET, optimize: bool = True, owned=False) -> OnnxModel:
    """The inference model of a graph with the given weights (name -> numpy array, or a
    `weights.Planned` tensor, drawn when written). `owned`: nothing else holds the arrays,
    so folding may rewrite them rather than copy them."""
    check_opset(opset)
    emitter = OnnxEmitter(graph, weights, opset)
    model = OnnxModel(emitter.model(), emitter.initializers)
    if optimize:
        from .onnx_optimize import optimize as run_passes
        from .onnx_optimize import would_change

        outputs = [name for name, _ in graph.outputs]
        if not would_change(emitter.nodes, outputs, model.weights, emitter.typed):
            return model  # a residual MLP has nothing to fold: skip the passes' copy of the model
        arrays = dict(model.weights)
        headers = model.proto
        headers.graph.initializer.extend(_header(name, a) for name, a in arrays.items())
        proto = run_passes(headers, arrays, overwrite=owned)
        weights = {t.name: arrays[t.name] for t in proto.graph.initializer}
        proto.graph.ClearField("initializer")
        model = OnnxModel(proto, weights)
    return model


def emit_backward(graph: Graph, opset: int = DEFAULT_OPSET, training: bool = True, inputs: bool = True) -> OnnxModel:
    """The training model: the training forward and the backward graph (compiler/autodiff.py),
    every parameter and buffer an input, so that they can change at every step; with
    `inputs` False, without the inputs' gradients."""
    from netc.compiler.autodiff import backward_graph

    check_opset(opset)
    parameters = {
        node.param_name(local): t
        for node in graph.nodes()
        for local, t in {**node.params, **node.buffers}.items()
        if local != "num_batches_tracked"  # torch counts steps; nothing computes with it
        and local not in node.shared
    }
    emitter = OnnxEmitter(backward_graph(graph, training, inputs), {}, opset, parameters)
    return OnnxModel(emitter.model(), {})


def _header(name: str | None, array: np.ndarray) -> TensorProto:
    """An initializer's name, shape and type, without its data (None: without its name)."""
    if name is None:
        return TensorProto(dims=array.shape, data_type=_element_type(array))
    return TensorProto(name=name, dims=array.shape, data_type=_element_type(array))
