"""Graph -> Graph: the backward graph, by reverse-mode differentiation over the graph IR.

Requires: an elaborated, pruned graph (verified).
Ensures: one graph holding the training forward (`training_forward`: ops with a `train`
rule, such as batchnorm, dropout and lstm, rewritten into primitives) and, after it, the
backward nodes, named `grad.<forward node>.<op>_k`, each recording the span of the
forward node it differentiates. Its inputs are the forward inputs, dropout masks
(`<node>.mask`) and a seed per non-scalar output (`seed.<output>`; a scalar output, a loss,
is seeded with the constant 1). Its outputs are the forward outputs, the updated running
statistics (`<buffer>.next`), then `grad.<parameter>` for every parameter the outputs
depend on and `grad.<input>` for every float input they depend on.

The engine, not the rules, sums the gradients of a value used several times (every skip
edge) and un-broadcasts (`sum_to` over the axes broadcasting made). Rules live in the
registry entries: `grad(d, g, y, *inputs, **attrs)` returns a gradient (or None) per
input, built with `d` (a `Rules`), and gives parameters theirs with `d.param_grad`.
Gradients of values that reach no output, or that depend on no parameter or float input,
are not computed.
"""

from __future__ import annotations

from dataclasses import replace

from netc.dsl.diagnostics import NetcError

from .builder import Builder, V, gc_paused
from .ir import FLOAT_DTYPES, Graph, Node, TensorType, Value, param_owner
from .ops import REGISTRY, NoGrad
from .ops.internal import static_count


class Rules:
    """What train and grad rules build with: `d.apply(op, ...)`, `d.param(local)`, and
    helpers for the shapes rules keep needing."""

    def __init__(self, builder: Builder, node: Node, graph: Graph, training: bool = True):
        self.b, self.node, self.graph = builder, node, graph
        self.training = training  # False: train rules build the inference forward (running statistics)
        self.param_grads: dict[str, V] = {}
        self.extra_inputs: list[str] = []
        self.extra_outputs: list[tuple[str, V]] = []

    def apply(self, op: str, *inputs, **attrs):
        return self.b.apply(op, *inputs, **attrs)

    def param(self, local: str) -> V:
        """The node's parameter or buffer `local` as a value (one `param` node per name: a
        shared parameter is its owner's, so the gradients of every use meet there)."""
        name = self.node.param_name(local)
        if name not in self.graph.g:
            buffer = local not in self.node.params
            t = self.node.buffers[local] if buffer else self.node.params[local]
            owner = param_owner(name, local)
            attrs = {"owner": owner, "local": local, "type": t, "buffer": buffer}
            self.b.make("parameter", [], attrs, name, span=self.node.span, scope=self.node.scope)
        return V(self.b, Value(name))

    def param_grad(self, local: str, value: V) -> None:
        self.param_grads[local] = value

    def input(self, suffix: str, t: TensorType) -> V:
        """A new graph input named `<node>.<suffix>` (a dropout mask)."""
        name = f"{self.node.name}.{suffix}"
        self.b.make("input", [], {"type": t}, name, span=self.node.span, scope=self.node.scope)
        self.extra_inputs.append(name)
        return V(self.b, Value(name))

    def output(self, suffix: str, value: V) -> None:
        """A new graph output named `<node>.<suffix>` (a running statistic's next value)."""
        self.extra_outputs.append((f"{self.node.name}.{suffix}", value))

    # -- shape helpers
    def count(self, x: V, axes) -> V | float:
        """The number of elements over axes: a number where the sizes are known."""
        n = static_count(x.shape, axes)
        return float(n) if n is not None else self.apply("count", x, axes=tuple(axes), dtype=x.dtype)

    def mean_factor(self, x: V, axes) -> V | float:
        return 1.0 / self.count(x, axes)

    def transpose(self, x: V) -> V:
        """Swaps the last two axes."""
        order = list(range(x.rank))
        order[-2:] = order[-1], order[-2]
        return self.apply("permute", x, dims=tuple(order))


def training_forward(graph: Graph, training: bool = True) -> tuple[Graph, list[str], list[tuple[str, Value]]]:
    """Graph -> Graph: the training forward. Each node whose op has a `train` rule is
    replaced by the primitives the rule builds; all others are copied. With `training`
    False, the rules build the inference forward instead (batchnorm with its running
    statistics, dropout the identity), for gradients of the network as it is evaluated.

    Returns the new graph, the inputs it added (dropout masks) and the outputs it added
    (running statistics' next values), which are not yet among the graph's outputs."""
    new = Graph(
        graph.name,
        instances=dict(graph.instances),
        instance_args=dict(graph.instance_args),
        provenance=dict(graph.provenance),
        calls=dict(graph.calls),
        shares=dict(graph.shares),
    )
    b = Builder(new)
    mapping: dict[Value, Value] = {}
    extra_inputs: list[str] = []
    extra_outputs: list[tuple[str, Value]] = []
    for node in graph.nodes():
        inputs = tuple(mapping[v] for v in node.inputs)
        rule = REGISTRY[node.op].train
        if rule is None:
            new.add(replace(node, inputs=inputs))
            mapping.update({Value(node.name, i): Value(node.name, i) for i in range(len(node.outputs))})
            if node.op == "input":
                new.inputs.append(node.name)
            continue
        b.origin = node
        d = Rules(b, node, new, training)
        result = rule(d, *(V(b, v) for v in inputs), **node.attrs)
        results = result if isinstance(result, tuple) else (result,)  # lstm: out, h, c
        mapping.update({Value(node.name, i): r.value for i, r in enumerate(results)})
        extra_inputs += d.extra_inputs
        extra_outputs += [(name, v.value) for name, v in d.extra_outputs]
    new.inputs += extra_inputs
    new.outputs = [(name, mapping[v]) for name, v in graph.outputs]
    return new, extra_inputs, extra_outputs


def backward_graph(graph: Graph, training: bool = True, inputs: bool = True) -> Graph:
    """The training forward and its backward graph in one graph (see the module docstring);
    with `training` False, of the inference forward (`training_forward`). With `inputs`
    False, the parameters' gradients only: no `grad.<input>`, and nothing computed that
    only the inputs' gradients need (the first convolution's input gradient), as an SGD
    step wants."""
    with gc_paused():
        return _backward_graph(graph, training, inputs)


def _backward_graph(graph: Graph, training: bool, inputs: bool) -> Graph:
    g, _, next_outputs = training_forward(graph, training)
    forward_nodes = g.nodes()
    b = Builder(g)
    b.prefix = "grad."
    needs = _needs_grad(g, inputs)
    grads: dict[Value, V] = {}

    def add(value: Value, gradient: V):
        grads[value] = grads[value] + gradient if value in grads else gradient

    seeds = []
    for name, value in g.outputs:
        t = g.type_of(value)
        if t.dtype not in FLOAT_DTYPES or value.node not in needs:
            continue
        if t.rank == 0:
            b.origin = g.node(value.node)
            # a tensor, not a number: the torch backward calls tensor methods on it
            add(value, b.apply("constant_tensor", V(b, value), value=1.0))
        else:
            seed = f"seed.{name}"
            b.make("input", [], {"type": t}, seed)
            seeds.append(seed)
            add(value, V(b, Value(seed)))
    param_grads: dict[str, V] = {}
    for node in reversed(forward_nodes):
        if node.name not in needs:
            continue
        outs = [grads.get(Value(node.name, i)) for i in range(len(node.outputs))]
        if all(o is None for o in outs):
            continue
        if node.op == "parameter":
            name = node.name
            param_grads[name] = param_grads[name] + outs[0] if name in param_grads else outs[0]
            continue
        if node.op == "input":
            continue
        rule = REGISTRY[node.op].grad
        if rule is None or isinstance(rule, NoGrad):
            why = rule.reason if isinstance(rule, NoGrad) else "it has no gradient rule"
            raise NetcError(f"cannot derive the gradient of {node.op} (`{node.name}`): {why}", node.span, code="grad")
        b.origin = node
        d = Rules(b, node, g)
        ys = [V(b, Value(node.name, i)) for i in range(len(node.outputs))]
        if len(ys) > 1:
            outs = [o if o is not None else d.apply("zeros_like", y) for o, y in zip(outs, ys)]
            result = rule(d, tuple(outs), tuple(ys), *(V(b, v) for v in node.inputs), **node.attrs)
        else:
            result = rule(d, outs[0], ys[0], *(V(b, v) for v in node.inputs), **node.attrs)
        result = result if isinstance(result, (tuple, list)) else (result,)
        if REGISTRY[node.op].factor and result[0] is not None and g.node(result[0].value.node).op == "mul":
            g.factors[result[0].value.node] = REGISTRY[node.op].factor
        for x, gx in zip(node.inputs, result):
            if gx is None or x.node not in needs or g.type_of(x).dtype not in FLOAT_DTYPES:
                continue
            if tuple(gx.shape) != tuple(g.type_of(x).shape):  # broadcasting made gx larger
                gx = _sum_to(d, gx, V(b, x))
            add(x, gx)
        for local, gw in d.param_grads.items():
            name = node.param_name(local)  # a shared parameter sums the gradients of every use
            param_grads[name] = param_grads[name] + gw if name in param_grads else gw
    g.inputs += seeds
    g.outputs += next_outputs
    for node in graph.nodes():  # the parameters in state_dict order
        for local in node.own_params:
            name = node.param_name(local)
            if name in param_grads:
                g.outputs.append((f"grad.{name}", param_grads[name].value))
    for name in graph.inputs if inputs else ():
        if Value(name) in grads:
            g.outputs.append((f"grad.{name}", grads[Value(name)].value))
    return _without_dead_nodes(g)


def _sum_to(d: Rules, gx: V, like: V) -> V:
    """gx summed over the axes broadcasting made; a negation is applied after the sum, to
    the small tensor (the subtrahend's gradient, -g, is often summed: batchnorm's mean)."""
    node = d.b.graph.node(gx.value.node)
    if node.op == "neg":
        return -d.apply("sum_to", V(d.b, node.inputs[0]), like)
    return d.apply("sum_to", gx, like)


def attach_loss(graph: Graph, loss: str = "cross_entropy") -> Graph:
    """Graph -> Graph: the network with a loss on its outputs, for training and checking.

    Each output takes `cross_entropy` against new int64 labels `<output>_labels` where it is
    `[N, K]` and `loss` is "cross_entropy", else `mse_loss` against a new input `<output>_target`
    of its type; the only output is `loss`, the sum of them."""
    new = Graph(
        graph.name,
        graph.g.copy(),
        list(graph.inputs),
        [],
        dict(graph.instances),
        dict(graph.instance_args),
        dict(graph.provenance),  # how the spec wrote each node, for backends that write code
        dict(graph.calls),
        shares=dict(graph.shares),
    )
    b = Builder(new)
    b.prefix, b.scope = "loss.", ()  # the network's own nodes, named apart from later passes' ones
    total = None
    for name, value in graph.outputs:
        t = new.type_of(value)
        if t.dtype not in FLOAT_DTYPES:
            continue
        b.origin = new.node(value.node)
        if loss == "cross_entropy" and t.rank == 2:
            target = b.make("input", [], {"type": TensorType(t.shape[:1], "int64")}, f"{name}_labels")
            term = b.apply("cross_entropy", V(b, value), V(b, Value(target.name)))
        else:
            target = b.make("input", [], {"type": t}, f"{name}_target")
            term = b.apply("mse_loss", V(b, value), V(b, Value(target.name)))
        new.inputs.append(target.name)
        total = term if total is None else total + term
    new.outputs = [("loss", total.value)]
    return new


def _without_dead_nodes(g: Graph) -> Graph:
    """Rules build a gradient for every input; those no output reads (a dropout mask's, a
    constant's) are dropped here rather than in every rule."""
    live: set[str] = set()
    pending = [v.node for _, v in g.outputs]
    while pending:
        name = pending.pop()
        if name not in live:
            live.add(name)
            pending.extend(v.node for v in g.node(name).inputs)
    g.g.remove_nodes_from([n.name for n in g.nodes() if n.name not in live and n.op != "input"])
    return g


def _needs_grad(g: Graph, inputs: bool = True) -> set[str]:
    """Nodes on a path from a differentiable leaf (a float input unless `inputs` is False,
    a parameter, a layer with parameters) to an output."""
    depends: set[str] = set()
    leaves = ("input", "parameter") if inputs else ("parameter",)
    for node in g.nodes():
        leaf = (node.op in leaves and node.outputs[0].dtype in FLOAT_DTYPES) or bool(node.params)
        if leaf or any(v.node in depends for v in node.inputs):
            depends.add(node.name)
    reach: set[str] = set()
    pending = [v.node for _, v in g.outputs]
    while pending:
        name = pending.pop()
        if name in reach:
            continue
        reach.add(name)
        pending.extend(v.node for v in g.node(name).inputs)
    return depends & reach
