"""Gradient-path analysis: how many backward paths reach each layer, and how long they are.

A gradient path from an output back to a node is a forward path from that node to the
output, reversed (docs/viz.md says this precisely). Requires an elaborated graph; changes
nothing. Every count is an exact Python int computed by dynamic programming over the
graph in topological order, never by enumerating paths:

* `paths(v)`: the number of paths from v to the outputs, `sum over edges v->w of
  paths(w)`, one edge per argument a node reads (`x + x` reads x twice: two paths);
* shortest and longest length, counted in parameterized layers passed after v, and
  separately in element-wise factors passed;
* the attenuation bound of a path: the product of the largest derivative of each
  element-wise function on it (sigmoid 0.25, tanh 1, relu 1), its maximum over paths;
* for each network input, the histogram of path lengths (a polynomial in z, one term
  z^length per path) with the attenuation bound per length.

The histogram is the expensive part: in a stack of n residual blocks it has n + 1 terms
of up to n bits, and carrying it node by node costs O(n^3) bit operations. So the graph
is cut at its *articulation nodes* (every input-to-output path passes through them): the
histogram is the product of the small polynomials of the segments between cuts, equal
segments are grouped (a `repeat` makes them equal), and each group's power q^e comes from
the coefficient recurrence of q(z) * (q^e)'(z) = e * q'(z) * q^e(z) (J.C.P. Miller), one
coefficient at a time. 10,000 residual blocks take well under a second.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from itertools import compress

from .builder import gc_paused
from .ir import FLOAT_DTYPES, Graph

INF = math.inf
UNBOUNDED = 1e12  # the log10 gain of an unbounded function: finite, so sums never give nan

# The largest |f'(x)| over all x of each element-wise function: the factor its backward
# multiplies by is at most this. None: unbounded (exp, log, sqrt). The backward graph
# differentiates the training forward, so dropout scales by 1 / (1 - p).
MAX_DERIVATIVE = {
    "relu": lambda a: 1.0,
    "relu6": lambda a: 1.0,
    "leaky_relu": lambda a: max(1.0, abs(a.get("slope", 0.01))),
    "elu": lambda a: max(1.0, a.get("alpha", 1.0)),  # alpha * e^x just left of 0
    "sigmoid": lambda a: 0.25,  # s(1 - s) at x = 0
    "tanh": lambda a: 1.0,
    "softplus": lambda a: 1.0,  # sigmoid(x) < 1
    "gelu": lambda a: 1.1289930685887128 if a.get("approximate") == "tanh" else 1.1289041449424886,  # at x = 2**0.5
    "silu": lambda a: 1.0998393202843460,  # at x = 2.3994
    "mish": lambda a: 1.0884981611614108,
    "hardswish": lambda a: 1.5,  # (2x + 3) / 6 just left of x = 3
    "hardsigmoid": lambda a: 1 / 6,
    "exp": lambda a: None,
    "log": lambda a: None,
    "sqrt": lambda a: None,
    "abs": lambda a: 1.0,
    "identity": lambda a: 1.0,
    "clamp": lambda a: 1.0,
    "dropout": lambda a: 1.0 / (1.0 - a.get("p", 0.5)),
    "stochastic_depth": lambda a: 1.0 / (1.0 - a.get("p", 0.0)),
}


def max_derivative(op: str, attrs: dict) -> float | None:
    """The bound of an element-wise op's factor; None when unbounded or unknown (so a
    bound built from it stays a bound)."""
    rule = MAX_DERIVATIVE.get(op)
    return None if rule is None else rule(attrs)


@dataclass(slots=True)
class LayerPaths:
    name: str
    op: str
    paths: int  # backward paths from the outputs to this node's output
    shortest: int | None  # parameterized layers passed after it, None where no path
    longest: int | None
    factors_shortest: int | None  # element-wise functions passed after it
    factors_longest: int | None
    attenuation_log10: float | None  # log10 of the largest bound over its paths; None: unbounded

    def to_json(self) -> dict:
        reached = self.paths > 0
        return {
            "name": self.name,
            "op": self.op,
            "paths": self.paths,
            "shortest": self.shortest,
            "longest": self.longest,
            "factors": [self.factors_shortest, self.factors_longest] if reached else None,
            "attenuation_log10": _finite(self.attenuation_log10) if reached else None,
        }


@dataclass
class InputPaths:
    name: str
    paths: int
    histogram: dict[int, int] = field(default_factory=dict)  # length -> number of paths
    attenuation_log10: dict[int, float | None] = field(default_factory=dict)  # length -> bound

    def to_json(self) -> dict:
        return {
            "paths": self.paths,
            "histogram": {str(k): v for k, v in self.histogram.items()},
            "attenuation_log10": {str(k): _finite(v) for k, v in self.attenuation_log10.items()},
        }


@dataclass
class PathReport:
    network: str
    outputs: list[str]  # the outputs the paths start from (the losses, where there are any)
    inputs: dict[str, InputPaths]
    layers: list[LayerPaths]
    backward: dict[str, int]  # node -> paths from it to the outputs (inputs included)
    forward: dict[str, int]  # node -> paths to it from the gradient's leaves (inputs, leaf layers)
    order: list[str]  # the nodes in graph order
    consumers: list[list[int]]  # by position in `order`: the gradient-carrying readers, once per argument read

    def edge_paths(self, u: str, v: str) -> int:
        """Leaf-to-output paths through the edge u -> v (each argument v reads of u counts)."""
        position = {name: i for i, name in enumerate(self.order)}
        if u not in position or v not in position:
            return 0
        reads = self.consumers[position[u]].count(position[v])
        return self.forward.get(u, 0) * self.backward.get(v, 0) * reads

    def to_json(self) -> dict:
        return {
            "network": self.network,
            "outputs": self.outputs,
            "inputs": {name: p.to_json() for name, p in self.inputs.items()},
            "layers": [layer.to_json() for layer in self.layers],
        }


def _finite(x):
    return None if x is None else round(x, 12)


# ---------------------------------------------------------------- the gradient graph


def gradient_edges(graph: Graph) -> dict[str, list[str]]:
    """node -> the nodes that read it along a gradient-carrying argument, with repeats.
    Only float values into a node with a float result carry one: an int64 id, a bool
    mask, a comparison or a cast to int stops the gradient."""
    nodes = graph.nodes()
    return {nodes[i].name: [nodes[w].name for w in ws] for i, ws in enumerate(_consumers(nodes)) if ws}


def _consumers(nodes) -> list[list[int]]:
    """`gradient_edges` by position in `nodes` (graph order), the form the analysis runs on."""
    return _scan(nodes).consumers


_FLOAT, _NOT_FLOAT = (True,), (False,)  # the flags of a one-output node, shared


@dataclass(slots=True)
class _Scan:
    names: list[str]
    ops: list[str]
    position: dict[str, int]  # name -> position in graph order
    consumers: list[list[int]]  # as `_consumers`
    weight: list[int]  # 1: a parameterized layer
    factor: list[int]  # 1: an element-wise function
    gain: list[float]  # log10 of its largest derivative; 0 off element-wise nodes
    forward: list[int]  # paths to the node from the gradient's leaves (see `_analyze`)
    forward_by_name: dict[str, int]  # the same, by name: built here, where each name is at hand


def _scan(nodes, inputs=frozenset()) -> _Scan:
    """Everything the analysis needs per node, in one pass in graph order: a deep network
    has tens of thousands of nodes, scattered in memory, and each pass over them costs
    more than the arithmetic. `inputs`: the float network inputs, where forward paths start."""
    from .ops import REGISTRY

    n_all = len(nodes)
    position: dict[str, int] = {}
    floats: list = [None] * n_all  # per node, per output: does it carry a gradient?
    names: list = [None] * n_all
    ops: list = [None] * n_all
    consumers: list[list[int]] = [[] for _ in range(n_all)]
    # filled where not 0: most nodes are neither layers nor functions
    weight, factor, gain, forward = [0] * n_all, [0] * n_all, [0.0] * n_all, [0] * n_all
    forward_by_name: dict[str, int] = {}
    kinds: dict = {}  # op -> 1 if element-wise
    gains: dict = {}  # (op, attributes) -> gain: a deep network repeats a few activations
    for i, node in enumerate(nodes):
        name, op, outputs = node.name, node.op, node.outputs
        position[name] = i
        names[i] = name
        ops[i] = op
        if len(outputs) == 1:
            flags = _FLOAT if outputs[0].dtype in FLOAT_DTYPES else _NOT_FLOAT
        else:
            flags = [t.dtype in FLOAT_DTYPES for t in outputs]
        floats[i] = flags
        paths, reads = 0, False
        if True in flags:
            for v in node.inputs:
                j = position[v.node]
                if floats[j][v.index]:
                    consumers[j].append(i)
                    paths += forward[j]  # once per argument read, as the edges count
                    reads = True
        params = node.params
        if params:
            weight[i] = 1
        # a leaf: a float input, or a layer whose parameters no gradient reaches through an input
        if (params and not reads) or name in inputs:
            paths += 1
        if paths:
            forward[i] = paths
        forward_by_name[name] = paths
        elementwise = kinds.get(op)
        if elementwise is None:
            elementwise = kinds[op] = int(getattr(REGISTRY.get(op), "kind", None) == "elementwise")
        if not elementwise:
            continue
        factor[i] = 1
        attrs = node.attrs
        try:
            key = (op, tuple(sorted(attrs.items()))) if attrs else op
            g = gains.get(key)
        except TypeError:  # an unhashable attribute
            key, g = None, None
        if g is None:
            d = max_derivative(op, attrs)
            g = UNBOUNDED if d is None else math.log10(d)
            if key is not None:
                gains[key] = g
        gain[i] = g
    return _Scan(names, ops, position, consumers, weight, factor, gain, forward, forward_by_name)


def default_outputs(graph: Graph) -> list[str]:
    """The outputs gradients start from: the losses where the network returns any, else
    every float output."""
    from .ops import REGISTRY

    def kind(name):
        op = REGISTRY.get(graph.node(name).op)
        return op.kind if op else None

    floats = [(n, v) for n, v in graph.outputs if graph.type_of(v).dtype in FLOAT_DTYPES]
    losses = [n for n, v in floats if kind(v.node) == "loss"]
    return losses or [n for n, _ in floats]


# ---------------------------------------------------------------- the analysis


def analyze(graph: Graph, outputs: list[str] | None = None) -> PathReport:
    """Path counts, lengths and bounds for every node, histograms for every input.
    `outputs` names the outputs the paths start from (default: `default_outputs`);
    an unknown name raises KeyError."""
    with gc_paused():  # many short-lived ints and lists, no cycles: the collector only costs
        return _analyze(graph, outputs)


def _analyze(graph: Graph, outputs) -> PathReport:
    chosen = default_outputs(graph) if outputs is None else list(outputs)
    known = dict(graph.outputs)
    for o in chosen:
        if o not in known:
            raise KeyError(o)
    # Forward paths start at the gradient's leaves: float inputs, and layers whose
    # parameters no gradient reaches through an input, such as an embedding.
    float_inputs = {x for x in graph.inputs if graph.node(x).outputs[0].dtype in FLOAT_DTYPES}
    scan = _scan(graph.nodes(), float_inputs)
    names, succ, weight, factor, gain = scan.names, scan.consumers, scan.weight, scan.factor, scan.gain
    index = scan.position
    roots = [0] * len(names)
    for o in chosen:
        roots[index[known[o].node]] += 1

    # Backward, reverse topological order: paths to the outputs, and the extremes of the
    # lengths and bounds over them (None where no path leaves the node: what its
    # LayerPaths says, and never read, since only successors with paths are).
    n_all = len(names)
    back = [0] * n_all
    lo, hi, flo, fhi, att = [None] * n_all, [None] * n_all, [None] * n_all, [None] * n_all, [None] * n_all
    for i in range(n_all - 1, -1, -1):
        ws = succ[i]
        count = roots[i]
        if not count and len(ws) == 1:  # most nodes of a deep network: one step along a chain
            w = ws[0]
            bw = back[w]
            if bw:
                back[i] = bw
                ww, fw = weight[w], factor[w]
                lo[i], hi[i] = lo[w] + ww, hi[w] + ww
                flo[i], fhi[i] = flo[w] + fw, fhi[w] + fw
                att[i] = att[w] + gain[w]
            continue
        first = not count
        a_lo = a_hi = a_flo = a_fhi = 0
        a_att = 0.0
        for w in ws:
            bw = back[w]
            if not bw:
                continue
            count += bw
            ww, fw = weight[w], factor[w]
            c_lo, c_hi, c_flo, c_fhi, c_att = lo[w] + ww, hi[w] + ww, flo[w] + fw, fhi[w] + fw, att[w] + gain[w]
            if first:
                a_lo, a_hi, a_flo, a_fhi, a_att, first = c_lo, c_hi, c_flo, c_fhi, c_att, False
                continue
            if c_lo < a_lo:
                a_lo = c_lo
            if c_hi > a_hi:
                a_hi = c_hi
            if c_flo < a_flo:
                a_flo = c_flo
            if c_fhi > a_fhi:
                a_fhi = c_fhi
            if c_att > a_att:
                a_att = c_att
        if count:
            back[i] = count
            lo[i], hi[i], flo[i], fhi[i], att[i] = a_lo, a_hi, a_flo, a_fhi, a_att

    # One LayerPaths per node but the inputs and constants, built column-wise (map calls
    # the constructor without a Python loop around it).
    limit = UNBOUNDED / 10
    bounds = [None if a is None or a >= limit else a for a in att]
    columns = [names, scan.ops, back, lo, hi, flo, fhi, bounds]
    keep = [op != "constant" for op in scan.ops]
    for x in graph.inputs:
        keep[index[x]] = False
    layers = list(map(LayerPaths, *[compress(column, keep) for column in columns]))

    inputs = {}
    for x in graph.inputs:
        i = index[x]
        if not back[i]:
            inputs[x] = InputPaths(x, 0)
            continue
        hist, bound = _histogram(i, succ, roots, back, weight, gain)
        total = sum(hist.values())
        if total != back[i]:  # the two computations must agree
            from netc.dsl.diagnostics import InternalError

            raise InternalError(f"path histogram of {x} sums to {total}, but {back[i]} paths were counted")
        inputs[x] = InputPaths(x, back[i], hist, {k: (None if b >= limit else b) for k, b in bound.items()})
    backward = dict(zip(names, back))
    return PathReport(graph.name, chosen, inputs, layers, backward, scan.forward_by_name, names, succ)


# ---------------------------------------------------------------- histograms
#
# A polynomial is a list of coefficients c[L] (paths of length L), with a parallel list
# b[L] of log10 bounds (-inf where c[L] == 0).


def _histogram(x: int, succ, roots, back, weight, gain):
    # One pass in topological order over the nodes on some path from x to an output
    # (reached from x, with a path onward), then a sink at position n_all that joins the
    # outputs. Each such node's step is (weight, gain, offset of each edge out of it);
    # None off the paths. A node is a cut when no edge seen so far jumps over it (every
    # x -> output path passes through it): `furthest` is the farthest edge end yet.
    n_all = len(succ)
    reach = [False] * (n_all + 1)
    reach[x] = True
    step: list = [None] * (n_all + 1)
    step[n_all] = (0, 0.0)
    cuts = []
    furthest = x
    for i in range(x, n_all):
        if not (reach[i] and back[i]):
            continue
        if furthest <= i:
            cuts.append(i)
        ws = succ[i]
        if len(ws) == 1 and not roots[i]:  # a chain: its one successor has paths onward
            w = ws[0]
            reach[w] = True
            if w > furthest:
                furthest = w
            step[i] = (weight[i], gain[i], w - i)
            continue
        targets = [w for w in ws if back[w]] + [n_all] * roots[i]
        for w in targets:
            reach[w] = True
        far = max(targets)  # not empty: the node has paths onward
        if far > furthest:
            furthest = far
        step[i] = (weight[i], gain[i], *[w - i for w in targets])
    cuts.append(n_all)

    # Segments between consecutive cuts. Equal steps (relative to the segment's start)
    # make equal polynomials, so the DP runs once per distinct segment, not once per
    # block: a `repeat` of 10,000 blocks has five distinct ones. The key covers
    # the steps of both ends too, which is more than the DP reads: never less.
    seen: dict = {}  # segment key -> [start, end, how many]
    for a, b in zip(cuts, cuts[1:]):
        key = tuple(step[a : b + 1])
        entry = seen.get(key)
        if entry is None:
            seen[key] = [a, b, 1]
        else:
            entry[2] += 1
    groups: Counter = Counter()  # equal polynomials grouped, in order of first appearance
    for a, b, e in seen.values():
        coef, bnd = _segment(a, b, step)
        groups[(tuple(coef), tuple(v if v == -INF else round(v, 12) for v in bnd))] += e

    total_c, total_b = [1], [0.0]
    for (c, bd), e in sorted(groups.items(), key=lambda kv: len(kv[0][0])):
        pc, pb = _power(list(c), list(bd), e)
        total_c = _multiply(total_c, pc)
        total_b = _maxplus(total_b, pb)
    hist = {L: c for L, c in enumerate(total_c) if c}
    bound = {L: total_b[L] for L in hist}
    return hist, bound


def _segment(a: int, b: int, step) -> tuple[list[int], list[float]]:
    """The polynomial of the paths from cut a to cut b, by plain DP."""
    incoming: dict[int, list[int]] = {}
    for u in range(a, b):
        s = step[u]
        if s is not None:
            for offset in s[2:]:  # no edge leaves the segment: b is a cut
                incoming.setdefault(u + offset, []).append(u)
    coef = {a: [1]}
    bnd = {a: [0.0]}
    for i in range(a + 1, b + 1):
        if step[i] is None:
            continue
        ins = incoming[i]
        s, g = step[i][0], step[i][1]
        if len(ins) == 1:  # a chain: shift the one predecessor's polynomial
            cu, bu = coef[ins[0]], bnd[ins[0]]
            coef[i] = [0] * s + cu if s else cu
            bnd[i] = [-INF] * s + [v + g for v in bu] if s or g else bu
            continue
        c_acc: list[int] = []
        b_acc: list[float] = []
        for u in ins:
            cu, bu = coef[u], bnd[u]
            need = len(cu) + s
            if len(c_acc) < need:
                c_acc += [0] * (need - len(c_acc))
                b_acc += [-INF] * (need - len(b_acc))
            for L, c in enumerate(cu):
                if c:
                    c_acc[L + s] += c
                    v = bu[L] + g
                    if v > b_acc[L + s]:
                        b_acc[L + s] = v
        coef[i], bnd[i] = c_acc, b_acc
    return coef[b], bnd[b]


def _strip(c: list[int]) -> tuple[int, list[int]]:
    """(m, q) with c = z^m q and q[0] != 0."""
    m = 0
    while m < len(c) and not c[m]:
        m += 1
    end = len(c)
    while end > m and not c[end - 1]:
        end -= 1
    return m, c[m:end]


def _power(c: list[int], b: list[float], e: int) -> tuple[list[int], list[float]]:
    """(c, b) ** e: counts by Miller's recurrence, bounds in the (max, +) semiring."""
    m, q = _strip(c)
    # q(z) = r(z^g) where every exponent of q is a multiple of g: then q^e = r^e(z^g),
    # and the recurrence skips the coefficients that are 0 (1 + z^2, a block of two layers)
    g = 0
    for j in range(1, len(q)):
        if q[j]:
            g = math.gcd(g, j)
    if g > 1:
        q = q[::g]
    d = len(q) - 1
    degree = e * d  # of q^e
    # a palindromic q has a palindromic power (z^degree q^e(1/z) = q^e(z)): half the coefficients
    top = degree // 2 if q == q[::-1] else degree
    q0 = q[0]
    out = [q0**e]
    if d == 1:  # a binomial: one term in the recurrence
        q1, prev = q[1], out[0]
        for k in range(1, top + 1):
            prev = (e + 1 - k) * q1 * prev // (k * q0)
            out.append(prev)
    else:
        terms = [(j, q[j]) for j in range(1, d + 1) if q[j]]
        for k in range(1, top + 1):
            acc = 0
            for j, qj in terms:
                if j > k:
                    break
                acc += ((e + 1) * j - k) * qj * out[k - j]
            out.append(acc // (k * q0))  # exact: the coefficients are integers
    if top < degree:
        out += out[degree - top - 1 :: -1]
    if g > 1:
        spread = [0] * (degree * g + 1)
        spread[::g] = out
        out = spread
    counts = [0] * (m * e) + out
    values = {v for v in b if v != -INF}
    if len(values) == 1:  # every path through the segment has one bound: e times it
        (v,) = values
        return counts, [v * e if n else -INF for n in counts]
    bounds, base, power = [0.0], b, e
    while power:  # square and multiply: O(log e) convolutions
        if power & 1:
            bounds = _maxplus(bounds, base)
        power >>= 1
        if power:
            base = _maxplus(base, base)
    return counts, bounds


def _multiply(a: list[int], b: list[int]) -> list[int]:
    if len(a) < len(b):
        a, b = b, a
    terms = [(j, bj) for j, bj in enumerate(b) if bj]
    if len(terms) == 1:  # a monomial (a segment of one path): a shift
        ((j, bj),) = terms
        return [0] * j + (a[:] if bj == 1 else [ai * bj for ai in a]) + [0] * (len(b) - 1 - j)
    out = [0] * (len(a) + len(b) - 1)
    for j, bj in terms:
        for i, ai in enumerate(a):
            if ai:
                out[i + j] += ai * bj
    return out


def _maxplus(a: list[float], b: list[float]) -> list[float]:
    if len(a) < len(b):
        a, b = b, a
    out = [-INF] * (len(a) + len(b) - 1)
    if len(b) > 64 and len(a) > 64:
        import numpy as np

        acc = np.full(len(out), -np.inf)
        av = np.asarray(a, dtype=float)
        for j, bj in enumerate(b):
            if bj != -INF:
                np.maximum(acc[j : j + len(a)], av + bj, out=acc[j : j + len(a)])
        return acc.tolist()
    for j, bj in enumerate(b):
        if bj != -INF:
            for i, ai in enumerate(a):
                v = ai + bj
                if v > out[i + j]:
                    out[i + j] = v
    return out


# ---------------------------------------------------------------- `netc paths`


def count_text(n: int) -> str:
    """An exact count, or its leading digits and size when it is long."""
    if n < 10**18:
        return f"{n:,}"
    digits = math.log10(n)
    exponent = int(digits)
    mantissa = 10 ** (digits - exponent)
    if mantissa >= 9.995:
        mantissa, exponent = 1.0, exponent + 1
    return f"{mantissa:.2f}e{exponent}"


def bound_text(log10: float | None) -> str:
    """10 ** log10, readable at any size: `1`, `0.25`, `9.54e-07`, `1.00e-6020`."""
    if log10 is None:
        return "unbounded"
    if -4 < log10 < 6:
        return f"{10**log10:.4g}"
    exponent = math.floor(log10)
    return f"{10 ** (log10 - exponent):.2f}e{exponent}"


def command(args) -> int:
    """`netc paths FILE [--network NAME] [--from OUTPUT] [--json]`."""
    with gc_paused():  # a big graph is millions of live objects: each full collection walks them all
        return _command(args)


def _command(args) -> int:
    import json
    import sys

    from netc.dsl.diagnostics import NetcError

    from .api import compile_file
    from .cli import EXIT_OK, EXIT_USAGE, _report_errors, limits

    try:
        compiled = compile_file(args.file, args.network, **limits(args))
    except NetcError as exc:
        return _report_errors(exc, args.json)
    except RecursionError:
        exc = NetcError(f"{args.file}: the spec nests too deeply to compile", code="limit")
        return _report_errors(exc, args.json)
    graph = compiled.graph
    try:
        report = analyze(graph, [args.start] if args.start else None)
    except KeyError:
        names = ", ".join(n for n, _ in graph.outputs)
        print(f"netc: error: {graph.name} has no output named {args.start!r} (its outputs: {names})", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        limit = getattr(sys, "get_int_max_str_digits", lambda: 0)()
        if limit:  # path counts run to thousands of digits; Python caps int -> str at 4300
            sys.set_int_max_str_digits(0)
        try:
            sys.stdout.write(json.dumps(report.to_json()) + "\n")
        finally:
            if limit:
                sys.set_int_max_str_digits(limit)
        return EXIT_OK
    print_report(report)
    return EXIT_OK


_RICH_ROWS = 1000  # past this, plain columns: rich costs about a millisecond a row


def print_report(report: PathReport, file=None) -> None:
    """The tables of `netc paths`, written in one piece (a closed pipe stays a BrokenPipeError)."""
    import io
    import sys

    out = file or sys.stdout
    text = io.StringIO()
    starts = ", ".join(report.outputs) or "no float output"
    # The tables are built a column at a time: a deep network has tens of thousands of
    # rows, and a Python loop around each of them costs more than all the rest.
    for name, p in report.inputs.items():
        if not p.paths:
            text.write(f"input {name}: no gradient path reaches it\n\n")
            continue
        lengths = list(p.histogram)
        title = (
            f"input {name}: {count_text(p.paths)} gradient path{'s' * (p.paths != 1)} from {starts}, "
            f"{min(lengths)} to {max(lengths)} parameterized layers long"
        )
        counts = list(p.histogram.values())
        if p.paths < 2**1000:
            shares = [f"{100 * (count / p.paths):.3g}%" for count in counts]
        else:  # past a float: the ratio of logarithms
            log_total = math.log(p.paths)
            shares = [f"{100 * math.exp(math.log(count) - log_total):.3g}%" for count in counts]
        columns = [
            list(map(str, lengths)),
            list(map(count_text, counts)),
            shares,
            _bound_texts([p.attenuation_log10[length] for length in lengths]),
        ]
        _table(text, out, title, ("Length", "Paths", "Share", "Bound"), columns)
    layers = report.layers
    paths = [layer.paths for layer in layers]
    shortest, longest = [layer.shortest for layer in layers], [layer.longest for layer in layers]
    few = [layer.factors_shortest for layer in layers]
    most = [layer.factors_longest for layer in layers]
    number = {n: str(n) for n in {*shortest, *longest, *few, *most}}.__getitem__  # each value converted once
    columns = [
        [layer.name for layer in layers],
        [layer.op for layer in layers],
        _count_texts(paths),
        list(map(number, shortest)),
        list(map(number, longest)),
        list(map("..".join, zip(map(number, few), map(number, most)))),
        _bound_texts([layer.attenuation_log10 for layer in layers]),
    ]
    if 0 in paths:  # blank columns where no path reaches
        for i, n in enumerate(paths):
            if not n:
                for column in columns[3:]:
                    column[i] = ""
    title = f"layers of {report.network}: gradient paths from {starts}"
    _table(text, out, title, ("Layer", "Op", "Paths", "Shortest", "Longest", "Factors", "Bound"), columns)
    text.write(
        "Lengths count the parameterized layers a path passes after the layer; Factors, the element-wise\n"
        "functions it passes; Bound, the largest product of their greatest derivatives (sigmoid 0.25, relu 1).\n"
    )
    out.write(text.getvalue())
    out.flush()


def _count_texts(counts: list[int]) -> list[str]:
    """`count_text` of each, once per run of equal counts: a chain of layers shares one
    count (one int object: the identity test is the fast path), and the text of a count
    of thousands of digits costs a microsecond."""
    texts: list[str] = []
    last, text = None, ""
    for n in counts:
        if n is not last:
            if n != last:
                text = count_text(n)
            last = n
        texts.append(text)
    return texts


def _bound_texts(bounds: list) -> list[str]:
    """`bound_text` of each, once per distinct bound (a deep network repeats a few)."""
    texts = {b: bound_text(b) for b in set(bounds)}  # 0.0 and -0.0 merge: both print 1
    return list(map(texts.__getitem__, bounds))


def _table(text, out, title, header, columns) -> None:
    if len(columns[0]) > _RICH_ROWS:
        _plain(text, title, header, columns)
    else:
        _rich(text, out, title, header, list(zip(*columns)))


def _plain(out, title, header, columns) -> None:
    widths = [max(len(name), max(map(len, column), default=0)) for name, column in zip(header, columns)]
    # one %-format a row, fed by zip and map: 60,000 rows of a deep network print in a
    # few hundredths of a second (%-ws and %ws pad a string as ljust and rjust do)
    line = "  ".join(f"%{'-' if i in (0, 1) else ''}{w}s" for i, w in enumerate(widths))
    rule = "  ".join("-" * w for w in widths)
    out.write("\n".join([title, line % header, rule, *map(line.__mod__, zip(*columns))]) + "\n\n")


def _rich(text, out, title, header, rows) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(show_edge=False, pad_edge=False)
    for i, name in enumerate(header):
        table.add_column(name, no_wrap=i == 0, justify="left" if i in (0, 1) else "right")
    for r in rows:
        table.add_row(*r)
    tty = getattr(out, "isatty", lambda: False)()
    console = Console(file=text, highlight=False, soft_wrap=False, width=None if tty else 200, force_terminal=tty)
    console.print(title)
    console.print(table)
    console.print()
