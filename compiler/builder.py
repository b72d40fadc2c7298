"""The one way to make a node: `Builder.make` normalizes the attributes, runs the op's shape
rule, works out its parameters and buffers, and adds the node to the graph.

The elaborator, the passes and the gradient rules all build through it, so every node is
checked, printed and emitted the same way. `Builder.apply(op, *inputs, **attrs)` is the
short form for passes and rules: it fills the defaults of the op's signature, names the
node after the builder's current `origin` (the forward node a pass or rule works for,
whose span it records) and returns `V`s, a thin wrapper whose operators build nodes, so
that a rule reads as math: `g * (1 - y * y)`.
"""

from __future__ import annotations

import gc
from collections.abc import Sequence
from contextlib import contextmanager

from netc.dsl.diagnostics import InternalError, Span

from .ir import FLOAT_DTYPES, Graph, Node, TensorType, Value
from .ops import REGISTRY, OpDef
from .ops.registry import REQUIRED, fits


@contextmanager
def gc_paused():
    """Building a graph allocates many small objects and no cycles worth collecting: with the
    collector paused, building stays linear in the graph's size (each collection would
    walk everything built so far)."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            if not gc.get_freeze_count():
                # What was built lives as long as the graph. Left young, the next collection
                # would walk all of it (0.12 s for a 50,000-node graph) to promote it; freezing
                # and unfreezing moves it to the oldest generation at once. Skipped where the
                # program froze objects of its own, which unfreezing would release.
                gc.freeze()
                gc.unfreeze()
            gc.enable()


class Builder:
    def __init__(self, graph: Graph):
        self.graph = graph
        self.origin: Node | None = None  # the node whose span and scope new nodes take
        self.prefix = ""  # prepended to the names apply() makes
        self.scope: tuple[str, ...] | None = None  # where new nodes live, if not in the origin's scope
        self._counts: dict[str, int] = {}

    # ------------------------------------------------------------ the core

    def make(
        self,
        op: OpDef | str,
        inputs: Sequence[Value],
        attrs: dict,
        name: str,
        *,
        span: Span | None = None,
        scope: tuple[str, ...] = (),
        call_sites: tuple[Span, ...] = (),
        var: str | None = None,
    ) -> Node:
        """Adds one node; a failing shape rule raises its ShapeError and adds nothing."""
        op = REGISTRY[op] if isinstance(op, str) else op
        if op.normalize is not None:
            attrs = op.normalize(attrs)
        types = [self.graph.type_of(v) for v in inputs]
        outputs = op.infer(types, attrs)
        params = op.params(types, attrs) if op.params else {}
        dtype = types[0].dtype if types and types[0].dtype in FLOAT_DTYPES else "float32"
        node = Node(
            name=name,
            op=op.name,
            inputs=tuple(inputs),
            attrs=attrs,
            outputs=tuple(outputs),
            params={k: TensorType(tuple(shape), dtype) for k, shape in params.items()},
            buffers=op.buffers(types, attrs) if op.buffers else {},
            span=span,
            scope=scope,
            call_sites=call_sites,
            var=var,
        )
        return self.graph.add(node)

    # ------------------------------------------------------------ the short form

    def fresh(self, base: str) -> str:
        """A node name not in the graph: `prefix` + the origin's name + `.base_k`."""
        stem = self.prefix + (f"{self.origin.name}." if self.origin is not None else "") + base
        k = self._counts.get(stem, 0)
        while f"{stem}_{k}" in self.graph.g:
            k += 1
        self._counts[stem] = k + 1
        return f"{stem}_{k}"

    def apply(self, op: str, *inputs, **attrs):
        """`op(*inputs, **attrs)` with the signature's defaults; numbers among the inputs
        become 0-d constants of the first tensor's dtype. Returns a V, or a tuple of V."""
        definition = REGISTRY[op]
        if definition.unit is not None and len(inputs) == 2:
            for x, other in (inputs, inputs[::-1]):
                if isinstance(other, V) and not isinstance(x, V) and x == definition.unit:
                    return other  # a number broadcasts to the other operand's shape: x * 1 is x
        tensors = [x for x in inputs if isinstance(x, V)]
        dtype = tensors[0].dtype if tensors else "float32"
        values = [x if isinstance(x, V) else self.constant(x, dtype) for x in inputs]
        full = {}
        for arg in definition.args:
            if arg.tensor:
                continue
            if arg.name in attrs:
                full[arg.name] = attrs.pop(arg.name) if arg.check is None else arg.check(attrs.pop(arg.name))
            elif arg.default is REQUIRED:
                raise InternalError(f"{op} needs the attribute {arg.name}")
            else:
                full[arg.name] = arg.default if arg.default is None or arg.check is None else arg.check(arg.default)
        if attrs:
            raise InternalError(f"{op} has no attributes {sorted(attrs)}")
        if definition.pointwise:
            spared = self._before_broadcast(op, values)
            if spared is not None:
                return spared
        origin = self.origin
        node = self.make(
            definition,
            [v.value for v in values],
            full,
            self.fresh(op),
            span=origin.span if origin else None,
            scope=self.scope if self.scope is not None else origin.scope if origin else (),
            call_sites=origin.call_sites if origin and self.scope is None else (),
        )
        results = tuple(V(self, Value(node.name, i)) for i in range(len(node.outputs)))
        return results[0] if definition.n_outputs == 1 else results

    def _before_broadcast(self, op: str, values: list[V]) -> V | None:
        """A pointwise op with an operand `broadcast_like` made (a reduction's gradient)
        works on that operand before its broadcast where the result is the same: against an
        operand as large as the broadcast, the op broadcasts it itself; against one no larger
        than the unbroadcast operand (a scale), the op runs on the small tensor and its
        result is broadcast. Either way no full-size copy is written: batchnorm's gradient
        wrote three a layer."""
        for i, v in enumerate(values):
            node = self.graph.node(v.value.node)
            if node.op != "broadcast_like":
                continue
            small, other = V(self, node.inputs[0]), values[1 - i]
            operands = (small, other) if i == 0 else (other, small)
            if len(other.shape) == len(v.shape) and fits(v.shape, other.shape):
                return self.apply(op, *operands)
            if fits(other.shape, small.shape):
                return self.apply("broadcast_like", self.apply(op, *operands), V(self, node.inputs[1]))
        return None

    def constant(self, value, dtype: str) -> V:
        value = float(value) if dtype in FLOAT_DTYPES else int(value)
        return self.apply("constant", value=value, dtype=dtype)

    def wrap(self, value: Value) -> V:
        return V(self, value)


class V:
    """A value being built with: its operators make nodes (`a * b` is a `mul` node)."""

    __slots__ = ("b", "value")

    def __init__(self, builder: Builder, value: Value):
        self.b, self.value = builder, value

    @property
    def type(self) -> TensorType:
        return self.b.graph.type_of(self.value)

    @property
    def shape(self):
        return self.type.shape

    @property
    def rank(self) -> int:
        return self.type.rank

    @property
    def dtype(self) -> str:
        return self.type.dtype

    def __add__(self, other):
        return self.b.apply("add", self, other)

    def __radd__(self, other):
        return self.b.apply("add", other, self)

    def __sub__(self, other):
        return self.b.apply("sub", self, other)

    def __rsub__(self, other):
        return self.b.apply("sub", other, self)

    def __mul__(self, other):
        return self.b.apply("mul", self, other)

    def __rmul__(self, other):
        return self.b.apply("mul", other, self)

    def __truediv__(self, other):
        return self.b.apply("div", self, other)

    def __rtruediv__(self, other):
        return self.b.apply("div", other, self)

    def __neg__(self):
        return self.b.apply("neg", self)

    def __pow__(self, exponent: float):
        return self.b.apply("pow", self, exponent=float(exponent))

    def __matmul__(self, other):
        return self.b.apply("matmul", self, other)

    def __repr__(self) -> str:
        return f"V({self.value.node}#{self.value.index}: {self.type})"
