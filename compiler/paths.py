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

import gc
import math
from collections import Counter
from dataclasses import dataclass, field

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
    succ: dict[str, list[str]]  # node -> its gradient-carrying consumers, once per argument read

    def edge_paths(self, u: str, v: str) -> int:
        """Leaf-to-output paths through the edge u -> v (each argument v reads of u counts)."""
        reads = sum(1 for w in self.succ.get(u, ()) if w == v)
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
    floats = {n.name: tuple(t.dtype in FLOAT_DTYPES for t in n.outputs) for n in nodes}
    succ: dict[str, list[str]] = {}
    for node in nodes:
        if any(floats[node.name]):
            for v in node.inputs:
                if floats[v.node][v.index]:
                    succ.setdefault(v.node, []).append(node.name)
    return succ


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
    collecting = gc.isenabled()
    gc.disable()  # many short-lived ints and lists, no cycles: the collector only costs
    try:
        return _analyze(graph, outputs)
    finally:
        if collecting:
            gc.enable()


def _analyze(graph: Graph, outputs) -> PathReport:
    from .ops import REGISTRY

    nodes = graph.nodes()
    names = [n.name for n in nodes]
    index = {name: i for i, name in enumerate(names)}
    named_succ = gradient_edges(graph)
    succ = [[index[w] for w in named_succ.get(name, ())] for name in names]
    chosen = default_outputs(graph) if outputs is None else list(outputs)
    known = dict(graph.outputs)
    for o in chosen:
        if o not in known:
            raise KeyError(o)
    roots = [0] * len(names)
    for o in chosen:
        roots[index[known[o].node]] += 1

    weight = [1 if n.params else 0 for n in nodes]  # a parameterized layer
    factor = [1 if getattr(REGISTRY.get(n.op), "kind", None) == "elementwise" else 0 for n in nodes]
    gain = [0.0] * len(names)  # log10 of the largest derivative; 0 off element-wise nodes
    for i, n in enumerate(nodes):
        if factor[i]:
            d = max_derivative(n.op, n.attrs)
            gain[i] = UNBOUNDED if d is None else math.log10(d)

    # Backward, reverse topological order: paths to the outputs, and the extremes of the
    # lengths and bounds over them (-1 / None where no path leaves the node).
    n_all = len(names)
    back = [0] * n_all
    lo, hi, flo, fhi = [0] * n_all, [0] * n_all, [0] * n_all, [0] * n_all
    att = [0.0] * n_all
    for i in range(n_all - 1, -1, -1):
        count = roots[i]
        first = not count
        a_lo = a_hi = a_flo = a_fhi = 0
        a_att = 0.0
        for w in succ[i]:
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
        back[i] = count
        lo[i], hi[i], flo[i], fhi[i], att[i] = a_lo, a_hi, a_flo, a_fhi, a_att

    # Forward: paths from the gradient's leaves (float inputs; layers whose parameters no
    # gradient reaches through an input, such as an embedding) to each node.
    has_pred = [False] * n_all
    for ws in succ:
        for w in ws:
            has_pred[w] = True
    fwd = [0] * n_all
    float_inputs = {x for x in graph.inputs if graph.node(x).outputs[0].dtype in FLOAT_DTYPES}
    for i, n in enumerate(nodes):
        if n.name in float_inputs or (n.params and not has_pred[i]):
            fwd[i] += 1
        if fwd[i]:
            for w in succ[i]:
                fwd[w] += fwd[i]

    layers = []
    inputs_set = set(graph.inputs)
    for i, n in enumerate(nodes):
        if n.name in inputs_set or n.op == "constant":
            continue
        if back[i]:
            a = None if att[i] >= UNBOUNDED / 10 else att[i]
            layers.append(LayerPaths(n.name, n.op, back[i], lo[i], hi[i], flo[i], fhi[i], a))
        else:
            layers.append(LayerPaths(n.name, n.op, 0, None, None, None, None, None))

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
        inputs[x] = InputPaths(x, back[i], hist, {k: (None if b >= UNBOUNDED / 10 else b) for k, b in bound.items()})
    by_name = lambda values: dict(zip(names, values))  # noqa: E731
    return PathReport(graph.name, chosen, inputs, layers, by_name(back), by_name(fwd), named_succ)


# ---------------------------------------------------------------- histograms
#
# A polynomial is a list of coefficients c[L] (paths of length L), with a parallel list
# b[L] of log10 bounds (-inf where c[L] == 0).

_SINK = "\0sink"  # joins the outputs, after every node


def _histogram(x: int, succ, roots, back, weight, gain):
    # The nodes on some path from x to an output, in topological order, then a sink
    # that joins the outputs.
    n_all = len(succ)
    reach = [False] * (n_all + 1)
    reach[x] = True
    order = []
    for i in range(x, n_all):
        if reach[i] and back[i]:
            order.append(i)
            for w in succ[i]:
                reach[w] = True
    sink = len(order)
    pos = {n: k for k, n in enumerate(order)}
    incoming: list[list[int]] = [[] for _ in range(sink + 1)]
    cover = [0] * (sink + 2)
    for k, n in enumerate(order):
        targets = [pos[w] for w in succ[n] if back[w]] + [sink] * roots[n]
        for t in targets:
            incoming[t].append(k)
            if t - k > 1:  # the edge jumps over the positions between
                cover[k + 1] += 1
                cover[t] -= 1
    # Cuts: positions no edge jumps over (every x -> output path passes through them).
    cuts, running = [], 0
    for k in range(sink + 1):
        running += cover[k]
        if running == 0:
            cuts.append(k)
    wt = [weight[n] for n in order] + [0]
    gn = [gain[n] for n in order] + [0.0]

    # Each segment's polynomial by plain DP; equal segments grouped.
    groups: Counter = Counter()
    for a, b in zip(cuts, cuts[1:]):
        coef = {a: [1]}
        bnd = {a: [0.0]}
        for i in range(a + 1, b + 1):
            ins = incoming[i]
            s, g = wt[i], gn[i]
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
        groups[(tuple(coef[b]), tuple(v if v == -INF else round(v, 12) for v in bnd[b]))] += 1

    total_c, total_b = [1], [0.0]
    for (c, bd), e in sorted(groups.items(), key=lambda kv: len(kv[0][0])):
        pc, pb = _power(list(c), list(bd), e)
        total_c = _multiply(total_c, pc)
        total_b = _maxplus(total_b, pb)
    hist = {L: c for L, c in enumerate(total_c) if c}
    bound = {L: total_b[L] for L in hist}
    return hist, bound


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
    d = len(q) - 1
    q0 = q[0]
    out = [q0**e]
    terms = [(j, q[j]) for j in range(1, d + 1) if q[j]]
    for k in range(1, e * d + 1):
        acc = 0
        for j, qj in terms:
            if j > k:
                break
            acc += ((e + 1) * j - k) * qj * out[k - j]
        out.append(acc // (k * q0))  # exact: the coefficients are integers
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
    out = [0] * (len(a) + len(b) - 1)
    for j, bj in enumerate(b):
        if bj:
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
    collecting = gc.isenabled()
    gc.disable()  # a big graph is millions of live objects: each full collection walks them all
    try:
        return _command(args)
    finally:
        if collecting:
            gc.enable()


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
    for name, p in report.inputs.items():
        if not p.paths:
            text.write(f"input {name}: no gradient path reaches it\n\n")
            continue
        lengths = list(p.histogram)
        title = (
            f"input {name}: {count_text(p.paths)} gradient path{'s' * (p.paths != 1)} from {starts}, "
            f"{min(lengths)} to {max(lengths)} parameterized layers long"
        )
        rows = []
        for length, count in p.histogram.items():
            share = count / p.paths if p.paths < 2**1000 else math.exp(math.log(count) - math.log(p.paths))
            bound = bound_text(p.attenuation_log10[length])
            rows.append((str(length), count_text(count), f"{100 * share:.3g}%", bound))
        _table(text, out, title, ("Length", "Paths", "Share", "Bound"), rows)
    rows = []
    for layer in report.layers:
        if layer.paths:
            factors = f"{layer.factors_shortest}..{layer.factors_longest}"
            bound = bound_text(layer.attenuation_log10)
            rows.append(
                (layer.name, layer.op, count_text(layer.paths), str(layer.shortest), str(layer.longest), factors, bound)
            )
        else:
            rows.append((layer.name, layer.op, "0", "", "", "", ""))
    title = f"layers of {report.network}: gradient paths from {starts}"
    _table(text, out, title, ("Layer", "Op", "Paths", "Shortest", "Longest", "Factors", "Bound"), rows)
    text.write(
        "Lengths count the parameterized layers a path passes after the layer; Factors, the element-wise\n"
        "functions it passes; Bound, the largest product of their greatest derivatives (sigmoid 0.25, relu 1).\n"
    )
    out.write(text.getvalue())
    out.flush()


def _table(text, out, title, header, rows) -> None:
    if len(rows) > _RICH_ROWS:
        _plain(text, title, header, rows)
    else:
        _rich(text, out, title, header, rows)


def _plain(out, title, header, rows) -> None:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(r):
        return "  ".join(c.ljust(w) if i in (0, 1) else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))

    rule = "  ".join("-" * w for w in widths)
    out.write("\n".join([title, line(header), rule, *map(line, rows)]) + "\n\n")


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
