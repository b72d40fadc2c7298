"""Gradient flow at initialization: the gradient norm that reaches every parameterized layer.

`measure(compiled)` runs the network's derived training model (the ONNX model of
`compile_file(f).onnx(backward=True)`, docs/backward.md) once in onnxruntime, on random
input and the initial weights, and returns, per parameterized layer in graph order, the
L2 norm of the gradient of all its parameters together. Everything is fixed by the seed,
so a figure can be made again exactly (docs/viz.md, "Gradient flow", has the procedure):

* inputs: one `numpy.random.default_rng(seed)`, one call per network input in order:
  float inputs `standard_normal(shape)` in their dtype; int64 inputs `integers(0, high)`,
  high the `num` of an `embedding` that reads them, the K of a `cross_entropy` whose
  labels they are, else 2. The first symbolic dimension is the batch; others are given;
* weights: `compiled.weights(file or None, seed)` (torch.nn's initial distributions);
* dropout masks all ones (the network without dropout noise); batchnorm in training
  mode (batch statistics), as the training model computes it, or with `--eval` the
  inference forward (batchnorm with its running statistics, dropout off);
* the loss: the sum of the network's scalar float outputs (its losses) if it has any,
  else the sum of every element of its float outputs; so each seed is all ones, or all
  zeros for a non-scalar output beside a loss.

Requires: an elaborated graph whose backward graph can be derived. Changes nothing.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass

from . import dims as D
from .ir import FLOAT_DTYPES, Graph

DEFAULT_BATCH = 8


class DimError(ValueError):
    """A symbolic dimension without a size, or a size for none (a usage error, exit 2)."""


@dataclass(frozen=True)
class LayerFlow:
    name: str
    op: str
    depth: int  # its index among the parameterized layers, in graph order
    grad_norm: float

    def to_json(self) -> dict:
        return {"name": self.name, "op": self.op, "depth": self.depth, "grad_norm": self.grad_norm}


@dataclass(frozen=True)
class FlowReport:
    network: str
    layers: list[LayerFlow]
    sizes: dict[str, int]  # the size given to each symbolic dimension
    batch: int
    seed: int

    def to_json(self) -> dict:
        return {"network": self.network, "layers": [layer.to_json() for layer in self.layers]}

    def norms(self) -> dict[str, float]:
        return {layer.name: layer.grad_norm for layer in self.layers}


# ---------------------------------------------------------------- sizes and inputs


def symbols(graph: Graph) -> list[str]:
    """The symbolic dimensions of the network's inputs, in order of first appearance."""
    seen: list[str] = []

    def walk(value):
        if isinstance(value, D.Sym):
            if value.name not in seen:
                seen.append(value.name)
        elif isinstance(value, D.OpAtom):
            walk(value.left)
            walk(value.right)
        elif isinstance(value, D.Dim):
            for atom, _ in value.terms:
                walk(atom)

    for name in graph.inputs:
        for d in graph.node(name).outputs[0].shape:
            walk(d)
    return seen


def dim_sizes(graph: Graph, batch: int = DEFAULT_BATCH, given: dict[str, int] | None = None) -> dict[str, int]:
    """A size for every symbolic dimension of the inputs: the first is the batch (unless
    `given` names it), every other must be in `given`. Raises DimError naming what is
    missing, or a given name the network does not have."""
    given = dict(given or {})
    names = symbols(graph)
    unknown = sorted(set(given) - set(names))
    if unknown:
        have = ", ".join(names) or "none"
        raise DimError(f"{graph.name} has no dimension {', '.join(unknown)} (its symbolic dimensions: {have})")
    sizes = {}
    for i, name in enumerate(names):
        if name in given:
            sizes[name] = given[name]
        elif i == 0:
            sizes[name] = batch
        else:
            missing = [n for n in names[1:] if n not in given]
            raise DimError(f"give the size of dimension {', '.join(missing)} with --dim NAME=SIZE")
    return sizes


def size(d, sizes: dict[str, int]) -> int:
    """A dimension's value given its symbols' sizes."""
    if isinstance(d, int):
        return d
    if isinstance(d, D.Sym):
        return sizes[d.name]
    if isinstance(d, D.OpAtom):
        a, b = size(d.left, sizes), size(d.right, sizes)
        return a // b if d.op == "//" else a % b if d.op == "%" else a * b
    return d.const + sum(c * size(atom, sizes) for atom, c in d.terms)


def shape_of(t, sizes: dict[str, int]) -> tuple[int, ...]:
    return tuple(size(d, sizes) for d in t.shape)


def _int_ranges(graph: Graph, sizes: dict[str, int]) -> dict[str, int]:
    """The exclusive upper bound of each int64 input read as ids or labels."""
    high: dict[str, int] = {}
    for node in graph.nodes():
        if node.op == "embedding":
            bound, read = node.attrs["num"], node.inputs[0]
        elif node.op == "cross_entropy":
            bound, read = size(graph.type_of(node.inputs[0]).shape[1], sizes), node.inputs[1]
        else:
            continue
        if graph.node(read.node).op == "input":
            high[read.node] = min(bound, high.get(read.node, bound))
    return high


def random_inputs(graph: Graph, sizes: dict[str, int], seed: int = 0) -> dict[str, object]:
    """The network's inputs by name, drawn from one `numpy.random.default_rng(seed)`, one
    call per input in order (see the module docstring)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    high = _int_ranges(graph, sizes)
    out = {}
    for name in graph.inputs:
        t = graph.node(name).outputs[0]
        shape = shape_of(t, sizes)
        if t.dtype in FLOAT_DTYPES:
            out[name] = rng.standard_normal(shape).astype(t.dtype)
        elif t.dtype == "bool":
            out[name] = rng.integers(0, 2, shape).astype(bool)
        else:
            out[name] = rng.integers(0, high.get(name, 2), shape, dtype=np.int64)
    return out


def loss_seeds(graph: Graph, sizes: dict[str, int]) -> dict[str, object]:
    """The seed of each non-scalar float output (`seed.<output>`): ones, or zeros where
    the network also returns a scalar loss (the training model seeds scalars with 1)."""
    import numpy as np

    floats = [(name, graph.type_of(v)) for name, v in graph.outputs if graph.type_of(v).dtype in FLOAT_DTYPES]
    has_loss = any(t.rank == 0 for _, t in floats)
    fill = 0.0 if has_loss else 1.0
    return {f"seed.{name}": np.full(shape_of(t, sizes), fill, t.dtype) for name, t in floats if t.rank}


def dropout_masks(graph: Graph, sizes: dict[str, int]) -> dict[str, object]:
    """`<node>.mask` of every dropout and stochastic_depth: all ones (keep every element)."""
    import numpy as np

    from .ops.elementwise import stochastic_depth_mask_shape

    masks = {}
    for n in graph.nodes():
        if n.op in ("dropout", "stochastic_depth"):
            shape = shape_of(n.outputs[0], sizes)
            if n.op == "stochastic_depth":  # one per sample, or one for the batch
                shape = stochastic_depth_mask_shape(tuple(shape), n.attrs["mode"])
            masks[f"{n.name}.mask"] = np.ones(shape, n.outputs[0].dtype)
    return masks


# ---------------------------------------------------------------- the measurement


def parameterized_layers(graph: Graph):
    return [n for n in graph.nodes() if n.params]


def measure(
    compiled,
    *,
    batch: int = DEFAULT_BATCH,
    dims: dict[str, int] | None = None,
    seed: int = 0,
    weights=None,
    training: bool = True,
) -> FlowReport:
    """The gradient norm of every parameterized layer at initialization (module docstring).
    `weights`: a file (or a dict of arrays) read as `compiled.weights` reads it, else the
    initial weights drawn from `seed`; `training` False measures the inference forward
    (batchnorm with its running statistics, dropout off). Raises DimError for missing or unknown dimensions,
    NetcError where the gradient cannot be derived or the weights do not fit."""
    import numpy as np
    import onnxruntime as ort

    graph = compiled.graph
    sizes = dim_sizes(graph, batch, dims)
    feeds = random_inputs(graph, sizes, seed)
    if training:
        feeds.update(dropout_masks(graph, sizes))
    feeds.update(loss_seeds(graph, sizes))
    state = compiled.weights(weights, seed)
    model = compiled.onnx(backward=True, training=training)
    options = ort.SessionOptions()
    options.log_severity_level = 3  # onnxruntime's warnings are not the user's business
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    values = {i.name: feeds[i.name] if i.name in feeds else state[i.name] for i in session.get_inputs()}
    names = [o.name for o in session.get_outputs()]
    wanted = [n for n in names if n.startswith("grad.")]
    grads = dict(zip(wanted, session.run(wanted, values))) if wanted else {}
    layers = []
    for depth, node in enumerate(parameterized_layers(graph)):
        total = 0.0
        for local in node.params:
            g = grads.get(f"grad.{node.param_name(local)}")  # absent: no output depends on it
            if g is not None:
                total += float(np.sum(np.square(g, dtype=np.float64)))
        layers.append(LayerFlow(node.name, node.op, depth, math.sqrt(total)))
    return FlowReport(graph.name, layers, sizes, batch, seed)


# ---------------------------------------------------------------- output


def norm_text(x: float) -> str:
    return f"{x:.3e}" if x else "0"


def print_table(report: FlowReport, file=None) -> None:
    """The table of `netc gradflow`: one row per parameterized layer."""
    import io

    out = file or sys.stdout
    text = io.StringIO()
    sizes = ", ".join(f"{k}={v}" for k, v in report.sizes.items())
    title = f"gradient norms of {report.network} at initialization (seed {report.seed}{', ' + sizes if sizes else ''})"
    nonzero = [layer.grad_norm for layer in report.layers if layer.grad_norm]
    top = max(nonzero, default=0.0)
    rows = []
    for layer in report.layers:
        ratio = f"{layer.grad_norm / top:.3g}" if top else ""
        rows.append((str(layer.depth), layer.name, layer.op, norm_text(layer.grad_norm), ratio))
    header = ("Depth", "Layer", "Op", "Grad norm", "/ largest")
    if len(rows) > 1000:  # rich costs about a millisecond a row
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        line = lambda r: "  ".join(c.ljust(w) if i in (1, 2) else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
        text.write("\n".join([title, line(header), "  ".join("-" * w for w in widths), *map(line, rows)]) + "\n")
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(show_edge=False, pad_edge=False)
        for i, name in enumerate(header):
            table.add_column(name, no_wrap=i == 1, justify="left" if i in (1, 2) else "right")
        for r in rows:
            table.add_row(*r)
        tty = getattr(out, "isatty", lambda: False)()
        console = Console(file=text, highlight=False, soft_wrap=False, width=None if tty else 200, force_terminal=tty)
        console.print(title)
        console.print(table)
    out.write(text.getvalue())
    out.flush()


PLOT_FORMATS = ("png", "svg", "pdf")


def pyplot():
    """matplotlib.pyplot without a display; MissingExtra (exit 5) where it is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        from .api import MissingExtra

        raise MissingExtra("matplotlib is not installed: pip install 'netc[viz]'") from exc
    return plt


def plot(report: FlowReport, path: str) -> None:
    """The gradient norm of each layer against its depth, log scale, as an image file
    (its suffix is the format: .png, .svg, .pdf). Needs matplotlib (the `viz` extra)."""
    plt = pyplot()
    layers = [layer for layer in report.layers if layer.grad_norm > 0]
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=120)
    ops = sorted({layer.op for layer in layers})
    markers = "os^Dv<>pPX*"
    for k, op in enumerate(ops):
        mine = [layer for layer in layers if layer.op == op]
        ax.plot(
            [layer.depth for layer in mine],
            [layer.grad_norm for layer in mine],
            "-" + markers[k % len(markers)],  # one line per op: a conv -> batchnorm chain does not zigzag
            markersize=4,
            lw=1,
            label=op,
        )
    ax.set_yscale("log")
    ax.set_xlabel("depth (index among parameterized layers, from the input)")
    ax.set_ylabel("gradient norm (L2, all parameters of the layer)")
    sizes = ", ".join(f"{k}={v}" for k, v in report.sizes.items())
    ax.set_title(
        f"{report.network}: gradient norms at initialization (seed {report.seed}{', ' + sizes if sizes else ''})"
    )
    ax.grid(True, which="both", alpha=0.3)
    if ops:
        ax.legend(fontsize=8)
    zeros = len(report.layers) - len(layers)
    if zeros:
        ax.text(0.01, 0.01, f"{zeros} layers with no gradient not shown", transform=ax.transAxes, fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# ---------------------------------------------------------------- `netc gradflow`


def parse_dims(items) -> dict[str, int]:
    """`--dim NAME=SIZE` arguments as a dict; raises DimError on a malformed one."""
    out = {}
    for item in items or ():
        name, sep, value = item.partition("=")
        try:
            number = int(value)
        except ValueError:
            number = 0
        if not sep or not name.strip() or number < 1:
            raise DimError(f"--dim expects NAME=SIZE with a positive size, got {item!r}")
        out[name.strip()] = number
    return out


def measure_from_args(compiled, args) -> FlowReport:
    """`measure` with the options of a command line (--batch, --seed, --weights, --dim)."""
    return measure(
        compiled,
        batch=args.batch,
        dims=parse_dims(args.dim),
        seed=args.seed,
        weights=getattr(args, "weights", None),
        training=not getattr(args, "eval", False),
    )


def command(args) -> int:
    """`netc gradflow FILE [--network NAME] [--batch B] [--seed S] [--weights FILE]
    [--dim NAME=SIZE ...] [-o PLOT] [--json]`."""
    import json

    from netc.dsl.diagnostics import NetcError, render

    from .api import compile_file
    from .cli import EXIT_OK, EXIT_SPEC, EXIT_USAGE, _report_errors, limits

    if args.output:
        suffix = args.output.rsplit(".", 1)[-1].lower() if "." in args.output else ""
        if suffix not in PLOT_FORMATS:
            print(f"netc: error: give -o a file ending in .png, .svg or .pdf, not {args.output!r}", file=sys.stderr)
            return EXIT_USAGE
        pyplot()  # a missing matplotlib stops here, before the measurement (exit 5)
    try:
        compiled = compile_file(args.file, args.network, **limits(args))
        report = measure_from_args(compiled, args)
    except NetcError as exc:
        return _report_errors(exc, args.json)
    except DimError as exc:
        print(f"netc: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not args.json:
        for warning in compiled.warnings:
            print(render(warning, compiled.sources), file=sys.stderr)
    if args.output:
        try:
            plot(report, args.output)
        except OSError as exc:
            print(f"netc: cannot write {args.output}: {exc.strerror or exc}", file=sys.stderr)
            return EXIT_SPEC
        print(f"wrote {args.output}: {len(report.layers)} parameterized layers", file=sys.stderr)
    if args.json:
        print(json.dumps(report.to_json()))
    else:
        print_table(report)
    return EXIT_OK
