"""Graph -> pictures: DOT, SVG, PNG and one self-contained interactive HTML page.

The picture of a graph is a *model*: its drawable nodes (layers, inputs, outputs), its
containers (block instances, and groups that bundle long runs of them), its edges, each
with the DOT attributes it is drawn with, and the facts the HTML panel shows. `assemble`
turns a model and the set of expanded containers into DOT: a collapsed container is one
box, an expanded one a cluster around its items, and every edge is redrawn between the
outermost collapsed containers of its ends. The HTML page carries the same model and a
JavaScript port of `assemble` (viz_assets/viz.js), so a click re-lays out the graph with
Graphviz compiled to WebAssembly (viz.js, inlined) and draws exactly what `netc viz`
would; tests check that both assemble the same text.

The model is built from any `Graph`: nodes are styled by their op's kind (a parameterized
layer, an element-wise function, a merge, a loss, ...), so a backward graph in the same IR
draws too; a node whose attributes carry a `factor` (an element-wise product step of the
backward graph) is labelled `· factor`. `--backward` draws the training forward and its
backward graph together (`backward_view`): each layer's backward nodes are grouped in a
box of their own beside the layer, inside the layer's block, so collapsed blocks hold both
halves; gradient edges point up, against the forward flow. `--gradflow` fills each
parameterized layer by its measured gradient norm at initialization (compiler/gradflow.py).

Layout is Graphviz `dot`, run as the `graphviz-pure` binary that `pip install netc`
brings (no system Graphviz). Every text from the spec is escaped for its sink: HTML-like
DOT labels, quoted DOT strings, the JSON inside the page; ids in DOT are our own (n12,
b3). docs/viz.md has the design and the layout-engine measurements.
"""

from __future__ import annotations

import html
import json
import math
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path

from netc.compiler.analysis import Instance, instance_tree
from netc.compiler.ir import FLOAT_DTYPES, Graph, Node
from netc.compiler.ops import REGISTRY

FORMATS = ("svg", "html", "dot", "png")
NODE_LIMIT = 1500  # drawn nodes past which a picture is collapsed: dot takes ~1 s per 1,000
LEVEL_LIMIT = 60  # items of one container past which runs of them are grouped
GROUP_SIZE = 32  # items per group
LAYOUT_TIMEOUT_S = 120
ASSETS = Path(__file__).parent / "viz_assets"

FONT = "Helvetica"  # graphviz-pure has metrics for it (Arimo); browsers have a match
MAIN_COLOR, SKIP_COLOR, ZERO_COLOR = "#555555", "#e8710a", "#cccccc"  # ZERO: no gradient path
GRAD_COLOR, SAVED_COLOR = "#c2185b", "#b0b0b0"  # backward pictures: gradient flow, values it reads
# An edge's kind (the fifth field of a model edge); where edges merge, the smallest wins.
MAIN, SKIP, GRADIENT, SAVED = 0, 1, 2, 3
# Node fills by gradient norm (--gradflow), log scale from the smallest (red: vanishing) to
# the largest (blue); black text stays readable on every one.
NORM_PALETTE = ("#e0443a", "#f46d43", "#fdae61", "#fee090", "#ffffbf", "#e0f3f8", "#abd9e9", "#74add1", "#5b8ac4")
NO_GRADIENT_FILL = "#bdbdbd"
# Edge colours by the number of gradient paths through the edge, light to dark, on a log
# scale (bits of the count); widths grow with them.
PALETTE = ("#c6dbef", "#9ecae1", "#6baed6", "#4292c6", "#2171b5", "#08519c", "#08306b", "#3f007d", "#7a0177")
WIDTHS = ("1", "1.3", "1.6", "1.9", "2.2", "2.6", "3", "3.5", "4")

_STYLE = {
    # kind: DOT attributes of its nodes
    "layer": 'shape=box, style="rounded,filled", fillcolor="#d6e4f7", color="#3b6fb6"',
    "elementwise": 'shape=ellipse, style=filled, fillcolor="#d9f0d3", color="#4c9a3f", height=0.3, margin="0.05,0.02"',
    "merge": 'shape=circle, fixedsize=true, width=0.36, style=filled, fillcolor="#ffe8a3", color="#b8860b", fontsize=16',
    "concat": 'shape=invtrapezium, style=filled, fillcolor="#ffe8a3", color="#b8860b", height=0.3',
    "arith": 'shape=circle, fixedsize=true, width=0.36, style=filled, fillcolor="#ffffff", color="#777777"',
    "structure": 'shape=box, style=filled, fillcolor="#f2f2f2", color="#9e9e9e", height=0.3',
    "loss": 'shape=octagon, style=filled, fillcolor="#f8d7da", color="#b02a37", penwidth=1.5',
    "input": 'shape=invhouse, style=filled, fillcolor="#fff7c2", color="#a08c00"',
    "output": 'shape=house, style=filled, fillcolor="#fff7c2", color="#a08c00"',
    "product": 'shape=box, style="filled,dashed", fillcolor="#fde2c8", color="#c05800"',
    "source": 'shape=box, style="rounded,filled", fillcolor="#d6e4f7", color="#3b6fb6"',
    "param": 'shape=box, style="rounded,filled", fillcolor="#ffffff", color="#3b6fb6", height=0.3',  # a weight
}
_SYMBOL = {"add": "+", "sub": "-", "mul": "x", "div": "/", "matmul": "@", "neg": "-", "pow": "^"}
PATHS_LEGEND = (
    '<font point-size="10">edge colour: the gradient paths through the edge, on a log scale '
    '(<font color="#6baed6">fewest</font> to <font color="#7a0177">most</font>); dashed: a skip edge</font>'
)
_TRAIN_BOX = 'shape=box, style="rounded,filled,bold", fillcolor="#d6e4f7", color="#3b6fb6", peripheries=2'
_GRAD_BOX = 'shape=box, style="rounded,filled,dashed,bold", fillcolor="#fde2c8", color="#c05800", peripheries=2'
_GRAD_OUTLINE = "#c05800"  # the outline of every backward node
BACKWARD_LEGEND = (
    '<font point-size="10">the training forward and its backward graph: grey edges carry values forward (down), '
    f'<font color="{GRAD_COLOR}">red edges carry gradients back (up)</font>, dotted edges the forward values the '
    'backward reads;<br/><font color="#c05800">orange outlines</font>: backward nodes; dashed orange boxes: '
    "element-wise product steps (&#183; factor); &#8706; boxes: the backward of one layer</font>"
)
_BLOCK_BOX = 'shape=box, style="rounded,filled,bold", fillcolor="#ede7f6", color="#5e35b1", peripheries=2'
_GROUP_BOX = 'shape=box, style="rounded,filled,dashed,bold", fillcolor="#f3eefb", color="#5e35b1", peripheries=2'
_CLUSTER_FILLS = ("#f7f4fc", "#efe9f8", "#e7def4", "#dfd3f0")


class VizError(Exception):
    """The picture could not be made (layout failed, no layout program): exit 4 or 5."""


# ---------------------------------------------------------------- escaping


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _html(text) -> str:
    """Text for an HTML-like DOT label (or HTML): every markup character escaped."""
    return html.escape(_CONTROL.sub("", str(text)), quote=True)


def _quote(text) -> str:
    """A DOT quoted string whose escapes (\\N, \\G, \\n, ...) stay literal text."""
    text = _CONTROL.sub("", str(text)).replace("\r", " ").replace("\n", " ")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _big(n: int) -> str:
    """A path count for the model: exact hex up to 64 bits, else its top 64 bits and a
    shift ("0x1fp300" is 0x1f << 300). A deep network's counts have thousands of digits;
    the page shows three, and both `assemble`s sum the same truncated values exactly."""
    shift = max(0, n.bit_length() - 64)
    return hex(n >> shift) + (f"p{shift}" if shift else "")


def _unbig(text: str) -> int:
    mantissa, _, shift = text.partition("p")
    return int(mantissa, 16) << int(shift or 0)


def json_for_html(value) -> str:
    """JSON that can sit inside <script>: no `<`, `>` or `&` appears literally."""
    text = json.dumps(value, ensure_ascii=True, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


# ---------------------------------------------------------------- the model


@dataclass
class Options:
    expand: bool = False
    colour_paths: bool = False
    links: bool = True  # href and tooltip on nodes (files); the HTML page has its panel
    spec_href: str | None = None  # how a node's link names the spec file
    backward: bool = False  # draw the training forward and its backward graph
    gradflow: dict | None = None  # layer name -> gradient norm at initialization: node fills
    gradflow_setting: str = ""  # how it was measured, for the legend ("batch 8, seed 0")


@dataclass
class Model:
    """What `assemble` draws from; `to_json()` is what the HTML page carries."""

    name: str
    nodes: dict = field(default_factory=dict)  # id -> {dot, parent, href, tip}
    blocks: dict = field(default_factory=dict)  # id -> {box, cluster, parent, size}
    children: dict = field(default_factory=dict)  # container id ("" the graph) -> item ids in order
    edges: list = field(default_factory=list)  # [u, v, value key, label, skip 0/1, paths (`_big`)]
    maxbits: int = 1  # bits of the largest path count of an edge: the top of the colour scale
    minbits: int = 1  # and of the smallest nonzero one: its bottom
    info: dict = field(default_factory=dict)  # id -> what the panel shows
    names: dict = field(default_factory=dict)  # node name -> id, for search
    notes: list = field(default_factory=list)
    caption: str = ""  # legends drawn under every picture (HTML-like DOT text)

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "graph": GRAPH_ATTRS,
            "nodes": self.nodes,
            "blocks": self.blocks,
            "children": self.children,
            "edges": self.edges,
            "maxbits": self.maxbits,
            "minbits": self.minbits,
            "palette": PALETTE,
            "widths": WIDTHS,
            "colors": [MAIN_COLOR, SKIP_COLOR, ZERO_COLOR, GRAD_COLOR, SAVED_COLOR],
            "legend": PATHS_LEGEND,
            "caption": self.caption,
            "info": self.info,
        }


GRAPH_ATTRS = (
    f'rankdir=TB, nodesep=0.22, ranksep=0.32, fontname="{FONT}", fontsize=12, '
    'newrank=true, outputorder=edgesfirst, bgcolor="white", pad=0.2'
)


def build_model(graph: Graph, *, sources=None, file: str | None = None, report=None, options=None) -> Model:
    """The drawing model of a graph. `sources` (a SourceMap) gives the spec lines the
    panel quotes; `report` a `PathReport` for the path statistics (computed if None).
    With `options.backward`, the model of the graph's training forward and backward graph,
    grouped by `backward_view`."""
    from netc.compiler.paths import analyze

    options = options or Options()
    view = None
    if options.backward:
        from netc.compiler.autodiff import backward_graph

        view = backward_view(backward_graph(graph), graph)
        # the gradient paths are the forward network's: the backward graph runs each of them
        report = analyze(graph) if report is None else report
        graph = view.graph
    if report is None:
        report = analyze(graph)
    return _Builder(graph, sources, file, report, options, view).build()


# ---------------------------------------------------------------- the backward picture


@dataclass
class BackwardView:
    """A backward graph made ready to draw: `graph` is it with two kinds of containers
    added as block instances are, each inside the block of the layer it belongs to:
    the training forward of a layer a train rule rewrote (batchnorm's primitives), and the
    backward of one forward layer (its `grad.<layer>.*` nodes, the weights they read and
    the `grad.<parameter>` outputs they make)."""

    graph: Graph
    forward: Graph
    containers: dict  # instance path -> ("train" | "grad", forward layer name)
    side: dict  # node name -> "forward" | "grad" (backward nodes and seeds)
    primitive_of: dict  # a training forward's node -> the layer it computes (for path counts)

    def is_backward(self, name: str) -> bool:
        return self.side.get(name) == "grad"


MIN_CONTAINER = 3  # drawn nodes a layer's backward needs to get a box (relu's mask and product do not)


def backward_view(graph: Graph, forward: Graph) -> BackwardView:
    """Groups the nodes of `graph` (`autodiff.backward_graph(forward)`) by the forward layer
    they belong to. Backward nodes are named `grad.<node>.<op>_k`, where <node> is a
    forward layer or a primitive of its training forward (`batchnorm_0.sub_0`), and carry
    that layer's scope; training primitives are named `<layer>.<op>_k`; parameter nodes
    name their owner. Returns a copy; `graph` is unchanged."""
    from dataclasses import replace

    names = {n.name for n in forward.nodes()}

    def layer_of(name: str) -> str | None:  # the longest dotted prefix that is a forward node
        while name and name not in names:
            name = name.rpartition(".")[0]
        return name or None

    side: dict[str, str] = {}
    owner: dict[str, tuple[str, str]] = {}
    for node in graph.nodes():
        backward = node.name not in names and node.name.startswith(("grad.", "seed."))
        side[node.name] = "grad" if backward else "forward"
        if node.name in names or node.op == "input":
            continue
        if node.name.startswith("grad."):
            layer, kind = layer_of(node.name[5:].rpartition(".")[0]), "grad"
        elif node.op == "parameter":
            layer = node.attrs.get("owner")
            kind = "train" if layer not in graph.g else "grad"  # a rewritten layer's weights stay with it
        else:
            layer, kind = layer_of(node.name), "train"
        if layer in names:
            owner[node.name] = (kind, layer)
    sizes: dict[tuple[str, str], int] = {}
    for name, key in owner.items():
        if graph.node(name).op not in ("constant", "parameter"):
            sizes[key] = sizes.get(key, 0) + 1
    g = graph.g.copy()
    instances = dict(graph.instances)
    containers = {}
    for name, key in owner.items():
        if sizes.get(key, 0) < MIN_CONTAINER:
            continue
        kind, layer = key
        at = forward.node(layer)
        local = layer.rsplit(".", 1)[-1]
        path = at.scope + (local if kind == "train" else f"\u2202{local}",)
        containers[path] = key
        instances[path] = at.op
        node = graph.node(name)
        g.nodes[name]["node"] = replace(node, scope=path, call_sites=at.call_sites + (at.span,))
    view = Graph(
        graph.name,
        g,
        list(graph.inputs),
        list(graph.outputs),
        instances,
        dict(graph.instance_args),
        factors=dict(graph.factors),
    )
    primitives = {name: layer for name, (kind, layer) in owner.items() if kind == "train"}
    return BackwardView(view, forward, containers, side, primitives)


class _Builder:
    def __init__(self, graph, sources, file, report, options, view=None):
        self.g, self.sources, self.file, self.report, self.options = graph, sources, file, report, options
        self.view: BackwardView | None = view
        self.model = Model(graph.name)
        self.ids: dict[str, str] = {}
        self.lines: dict[str, list[str]] = {}
        norms = [x for x in (options.gradflow or {}).values() if x > 0]
        self.norm_range = (min(norms), max(norms)) if norms else None

    def build(self) -> Model:
        g, m, view = self.g, self.model, self.view
        drawn = [n for n in g.nodes() if n.op != "constant"]
        for i, node in enumerate(drawn):
            self.ids[node.name] = f"n{i}"
        root = instance_tree(g)
        m.children[""] = [self.ids[x] for x in g.inputs]
        for x in g.inputs:
            m.nodes[self.ids[x]] = {"parent": None}
        self._container(root, "", 0)
        self._group_long_levels()
        skips = _skip_edges(g)
        forward, backward = self.report.forward, self.report.backward
        layer = view.primitive_of.get if view is not None else None  # counts of a training forward: its layer's
        bits = []
        for node in drawn:
            for slot, v in enumerate(node.inputs):
                if v.node not in self.ids:
                    continue
                carries = _carries(g, node, v)
                u, w = (layer(v.node, v.node), layer(node.name, node.name)) if layer else (v.node, node.name)
                count = forward.get(u, 0) * backward.get(w, 0) if carries else 0
                bits.append(count.bit_length())
                kind = SKIP if (node.name, slot) in skips else MAIN
                if view is not None and view.is_backward(node.name):
                    kind = GRADIENT if view.is_backward(v.node) else SAVED
                label = f'<font point-size="9" color="#505050">{_html(g.type_of(v))}</font>'
                if kind >= GRADIENT:
                    label = ""  # the forward edge beside it has the shape
                key = f"{self.ids[v.node]}:{v.index}"
                m.edges.append([self.ids[v.node], self.ids[node.name], key, label, kind, _big(count)])
        forward_outputs = {name for name, _ in view.forward.outputs} if view else None
        for k, (out, v) in enumerate(g.outputs):
            oid = f"o{k}"
            parent = None
            if view is not None and out not in forward_outputs:  # grad.<param>, <buffer>.next: beside their maker
                parent = m.nodes[self.ids[v.node]]["parent"]
            m.nodes[oid] = {"dot": f"{_STYLE['output']}, label=<<b>{_html(out)}</b>>", "parent": parent}
            m.children[parent or ""].append(oid)
            m.info[oid] = {"kind": "output", "title": out, "op": "output", "shape": str(g.type_of(v))}
            seeds = 1 if out in self.report.outputs else 0
            count = forward.get(layer(v.node, v.node) if layer else v.node, 0) * seeds
            bits.append(count.bit_length())
            kind = GRADIENT if view is not None and view.is_backward(v.node) else MAIN
            label = "" if kind == GRADIENT else f'<font point-size="9" color="#505050">{_html(g.type_of(v))}</font>'
            m.edges.append([self.ids[v.node], oid, f"{self.ids[v.node]}:{v.index}", label, kind, _big(count)])
        nonzero = [b for b in bits if b] or [1]
        m.minbits, m.maxbits = min(nonzero), max(nonzero)
        for node in drawn:
            self._node(node)
        m.caption = "<br/>".join(c for c in (self._backward_caption(), self._gradflow_caption()) if c)
        return m

    def _backward_caption(self) -> str:
        return BACKWARD_LEGEND if self.view is not None else ""

    def _gradflow_caption(self) -> str:
        if self.options.gradflow is None:
            return ""
        setting = f"; {_html(self.options.gradflow_setting)}" if self.options.gradflow_setting else ""
        if self.norm_range is None:
            return f'<font point-size="10">no parameterized layer receives a gradient{setting}</font>'
        low, high = self.norm_range
        swatches = "".join(f'<font color="{c}">&#9608;&#9608;</font>' for c in NORM_PALETTE)
        return (
            f'<font point-size="10">layer fill: the gradient norm reaching it at initialization, log scale: '
            f"{low:.2e} {swatches} {high:.2e}{setting}</font>"
        )

    def _norm_fill(self, norm: float) -> str:
        if not norm or self.norm_range is None:
            return NO_GRADIENT_FILL
        low, high = self.norm_range
        span = math.log(high) - math.log(low)
        b = 0 if span <= 0 else round((math.log(norm) - math.log(low)) / span * (len(NORM_PALETTE) - 1))
        return NORM_PALETTE[max(0, min(len(NORM_PALETTE) - 1, b))]

    # containers ------------------------------------------------------------

    def _container(self, inst: Instance, cid: str, depth: int) -> None:
        items = self.model.children.setdefault(cid, [])
        for item in inst.items:
            if isinstance(item, Instance):
                bid = f"b{len(self.model.blocks)}"
                self.model.blocks[bid] = {"parent": cid or None}
                items.append(bid)
                self._container(item, bid, depth + 1)
                self._block(bid, item, depth)
            elif item.op != "constant":
                items.append(self.ids[item.name])
                self.model.nodes[self.ids[item.name]] = {"parent": cid or None}

    def _block(self, bid: str, inst: Instance, depth: int) -> None:
        from netc.compiler.analysis import instance_nodes

        nodes = [n for n in instance_nodes(inst) if n.op != "constant"]
        if self.view is not None and inst.path in self.view.containers:
            self._layer_box(bid, inst, nodes, *self.view.containers[inst.path])
            return
        params = sum(n.parameter_count for n in nodes)
        layers = len(nodes)
        name = ".".join(inst.path)
        kind = inst.block or inst.local
        summary = f"{kind}, {layers} layer{'s' * (layers != 1)}" + (f", {params:,} params" if params else "")
        stats = None
        if self.view is not None or self.options.gradflow:
            stats = self._scope_stats().get(inst.path) or {"layers": 0, "params": 0, "norms": None}
        if self.view is not None:  # count the forward layers (a batchnorm once) and the backward nodes apart
            layers, params = stats["layers"], stats["params"]
            grads = sum(1 for n in nodes if self.view.is_backward(n.name))
            summary = f"{kind}, {layers} layer{'s' * (layers != 1)} + {grads} backward" + (
                f", {params:,} params" if params else ""
            )
        norms = stats["norms"] if stats else None
        if norms:
            summary += f"; grad norm {norms[0]:.2g} .. {norms[1]:.2g}"
        label = f'<<b>{_html(inst.local)}</b><br/><font point-size="9" color="#4a4a4a">{_html(summary)}</font>>'
        fill = _CLUSTER_FILLS[min(depth, len(_CLUSTER_FILLS) - 1)]
        cluster = (
            f'label=<<b>{_html(inst.local)}</b> <font color="#5e35b1">: {_html(kind)}</font>>; labeljust=l; labelloc=t; '
            f'style="rounded,filled"; fillcolor="{fill}"; color="#9575cd"; fontsize=11'
        )
        entry = self.model.blocks[bid]
        entry.update(box=f"{_BLOCK_BOX}, label={label}", cluster=cluster, size=layers)
        span = inst.call_span
        info = {
            "kind": "block",
            "title": name,
            "op": f"block {kind}",
            "layers": layers,
            "params": params,
            "inputs": [str(self.g.type_of(v)) for v in self._values(inst.inputs)],
            "outputs": [str(self.g.type_of(v)) for v in self._values(inst.outputs)],
        }
        info.update(self._spec(span))
        if self._values(inst.outputs):
            info.update(self._path_stats(self._values(inst.outputs)[0].node))
        if norms:
            info["grad_norms"] = norms
        self.model.info[bid] = info
        self._link(entry, name, span)

    def _values(self, values: list) -> list:
        """The values that enter or leave a block as the forward computes: in a backward
        picture, not gradients nor the weights the backward reads."""
        if self.view is None:
            return values
        return [v for v in values if self.view.side[v.node] == "forward" and self.g.node(v.node).op != "parameter"]

    def _scope_stats(self) -> dict:
        """Per block instance path, over the forward layers inside it at any depth: their
        number, parameters and the [smallest, largest] gradient norm (--gradflow)."""
        if hasattr(self, "_stats"):
            return self._stats
        norms = self.options.gradflow or {}
        stats: dict[tuple, dict] = {}
        for node in (self.view.forward if self.view is not None else self.g).nodes():
            norm = norms.get(node.name)
            for depth in range(1, len(node.scope) + 1):
                entry = stats.setdefault(node.scope[:depth], {"layers": 0, "params": 0, "norms": None})
                entry["layers"] += node.op not in ("input", "constant")
                entry["params"] += node.parameter_count
                if norm is not None:
                    low, high = entry["norms"] or (norm, norm)
                    entry["norms"] = [min(low, norm), max(high, norm)]
        self._stats = stats
        return stats

    def _layer_box(self, bid: str, inst: Instance, nodes, kind: str, layer: str) -> None:
        """The box of one layer's training forward ("train") or backward ("grad")."""
        at = self.view.forward.node(layer)
        local = layer.rsplit(".", 1)[-1]
        count = len(nodes)
        norm = (self.options.gradflow or {}).get(layer)
        if kind == "train":
            box = _TRAIN_BOX
            if norm is not None:
                box = _with_fill(box, self._norm_fill(norm))
            label = (
                f'<<b>{_html(at.op)}</b> <font point-size="9">training, {count} ops</font><br/>'
                f'<font point-size="8" color="#666666">{_html(local)}</font>>'
            )
            title, op, frame = layer, f"{at.op} (training forward)", ("#eef4fc", "#7aa2d6", "rounded,filled")
            heading = f"<b>{_html(local)}</b> : {_html(at.op)}, training forward"
        else:
            box = _GRAD_BOX
            label = (
                f"<<b>&#8706; {_html(local)}</b><br/>"
                f'<font point-size="9" color="#4a4a4a">backward of {_html(at.op)}, {count} nodes</font>>'
            )
            title, op, frame = f"grad.{layer}", f"backward of {at.op}", ("#fff6ee", "#e0a070", "rounded,filled,dashed")
            heading = f"<b>&#8706; {_html(local)}</b> : backward of {_html(at.op)}"
        entry = self.model.blocks[bid]
        cluster = (
            f"label=<{heading}>; labeljust=l; labelloc=t; "
            f'style="{frame[2]}"; fillcolor="{frame[0]}"; color="{frame[1]}"; fontsize=11'
        )
        entry.update(box=f"{box}, label={label}", cluster=cluster, size=count)
        info = {"kind": "block", "title": title, "op": op, "layers": count, "params": at.parameter_count}
        info.update(self._spec(at.span))
        if norm is not None:
            info["grad_norm"] = norm
        self.model.info[bid] = info
        self._link(entry, title, at.span)

    def _group_long_levels(self) -> None:
        """Bundles a container's items into groups of GROUP_SIZE while it has more than
        LEVEL_LIMIT: a 10,000-block `repeat` becomes a few levels of groups to expand."""
        m = self.model
        inputs = {self.ids[x] for x in self.g.inputs}
        for cid in list(m.children):
            kept = [i for i in m.children[cid] if i in inputs]  # inputs stay on top
            items = [i for i in m.children[cid] if i not in inputs]
            while len(items) > LEVEL_LIMIT:
                grouped = []
                for start in range(0, len(items), GROUP_SIZE):
                    chunk = items[start : start + GROUP_SIZE]
                    if len(chunk) == 1:
                        grouped += chunk
                        continue
                    gid = f"g{len(m.blocks)}"
                    first, last = self._title(chunk[0], 0), self._title(chunk[-1], -1)
                    size = sum(self._size(i) for i in chunk)
                    label = (
                        f"<<b>{_html(first)}</b><br/>...<br/><b>{_html(last)}</b><br/>"
                        f'<font point-size="9" color="#4a4a4a">{len(chunk)} items, {size} layers</font>>'
                    )
                    cluster = (
                        f'label=<{len(chunk)} items>; labeljust=l; labelloc=t; style="rounded,dashed"; color="#9575cd"'
                    )
                    cluster += "; fontsize=10"
                    m.blocks[gid] = {"parent": cid or None, "box": f"{_GROUP_BOX}, label={label}", "cluster": cluster}
                    m.blocks[gid]["size"] = size
                    for item in chunk:
                        (m.blocks if item in m.blocks else m.nodes)[item]["parent"] = gid
                    m.children[gid] = chunk
                    m.info[gid] = {"kind": "group", "title": f"{first} ... {last}", "op": "group", "items": len(chunk)}
                    m.info[gid]["ends"] = [first, last]
                    m.info[gid]["layers"] = size
                    grouped.append(gid)
                items = grouped
            m.children[cid] = kept + items

    def _title(self, item: str, end: int) -> str:
        """The local name of an item; of a group, that of its first (end 0) or last (-1) item."""
        info = self.model.info.get(item)
        if info is not None and "ends" in info:
            return info["ends"][end]
        if info is not None:
            return info["title"].rsplit(".", 1)[-1]
        return self._names_by_id()[item].rsplit(".", 1)[-1]

    def _names_by_id(self):
        if not hasattr(self, "_by_id"):
            self._by_id = {v: k for k, v in self.ids.items()}
        return self._by_id

    def _size(self, item: str) -> int:
        return self.model.blocks[item].get("size", 0) if item in self.model.blocks else 1

    # nodes -----------------------------------------------------------------

    def _node(self, node: Node) -> None:
        nid = self.ids[node.name]
        m = self.model
        entry = m.nodes.setdefault(nid, {"parent": None})
        factor = _factor(self.g, node)
        style_kind = _style_kind(node, factor)
        local = node.name.rsplit(".", 1)[-1]
        if style_kind == "input":
            label = f'<<b>{_html(node.name)}</b><br/><font point-size="9">{_html(node.outputs[0])}</font>>'
        elif style_kind == "param":
            owner, _, what = node.name.rpartition(".")
            label = (
                f'<<b>{_html(what)}</b> <font point-size="9">{_html(node.outputs[0])}</font><br/>'
                f'<font point-size="8" color="#666666">{_html(owner)}</font>>'
            )
        elif style_kind in ("merge", "arith"):
            const = _constant_operand(self.g, node)
            label = _html(_SYMBOL.get(node.op, node.op) + (f" {const}" if const else ""))
            label = f"<{label}>"
        elif style_kind == "product":
            label = f"<<b>{_html(node.op)}</b><br/>&#183; {_html(factor)}>"
        else:
            detail = _attr_summary(node)
            head = f"<b>{_html(node.op)}</b>" + (f" {_html(detail)}" if detail else "")
            if style_kind in ("layer", "loss", "source") or node.params:
                label = f'<{head}<br/><font point-size="8" color="#666666">{_html(local)}</font>>'
            else:
                label = f"<{head}>"
        if style_kind in ("merge", "arith") and len(label) > 12:  # a constant widens the circle
            style = _STYLE[style_kind].replace("shape=circle, fixedsize=true, width=0.36", "shape=ellipse, height=0.36")
        else:
            style = _STYLE[style_kind]
        if self.view is not None and self.view.is_backward(node.name) and style_kind != "product":
            style = _with_outline(style, _GRAD_OUTLINE)
        norm = (self.options.gradflow or {}).get(node.name) if node.params else None
        if norm is not None:
            style = _with_fill(style, self._norm_fill(norm))
            label = label.replace('color="#666666"', 'color="#262626"')  # readable on every fill
        entry["dot"] = f"{style}, label={label}"
        m.names[node.name] = nid
        op = REGISTRY.get(node.op)
        info = {
            "kind": style_kind,
            "title": node.name,
            "op": node.op,
            "opkind": op.kind if op else "",
            "attrs": {k: _attr_text(v) for k, v in node.attrs.items() if k != "type"},
            "shape": ", ".join(str(t) for t in node.outputs),
            "params": {k: str(t) for k, t in node.params.items()},
            "count": node.parameter_count,
        }
        if factor is not None:
            info["factor"] = factor
        if norm is not None:
            info["grad_norm"] = norm
        info.update(self._spec(node.span))
        if self.view is None or node.name in self.report.backward:  # in a backward picture: forward layers
            info.update(self._path_stats(node.name))
        m.info[nid] = info
        self._link(entry, node.name, node.span)

    def _spec(self, span) -> dict:
        if span is None:
            return {}
        text = None
        if self.sources is not None:
            lines = self.lines.get(span.file)
            if lines is None:
                lines = self.lines[span.file] = (self.sources.texts.get(span.file) or "").splitlines()
            text = lines[span.line - 1].strip() if 0 < span.line <= len(lines) else None
        return {"spec": f"{os.path.basename(span.file)}:{span.line}", "line": text or ""}

    def _path_stats(self, name: str) -> dict:
        count = self.report.backward.get(name, 0)
        stats = {"paths": _big(count)}
        layer = self._layer_paths().get(name)
        if layer is not None and count:
            stats.update(
                shortest=layer.shortest,
                longest=layer.longest,
                factors=[layer.factors_shortest, layer.factors_longest],
                bound=layer.attenuation_log10,
            )
        return stats

    def _layer_paths(self):
        if not hasattr(self, "_by_layer"):
            self._by_layer = {lp.name: lp for lp in self.report.layers}
        return self._by_layer

    def _link(self, entry: dict, name: str, span) -> None:
        if span is None or not self.options.links:
            return
        where = f"{os.path.basename(span.file)}:{span.line}"
        entry["tip"] = f"{name} ({where})"
        target = self.options.spec_href or span.file
        entry["href"] = f"{target}#L{span.line}"


def _with_fill(style: str, colour: str) -> str:
    return re.sub(r'fillcolor="#[0-9a-f]{6}"', f'fillcolor="{colour}"', style)


def _with_outline(style: str, colour: str) -> str:
    return re.sub(r'(?<![a-z])color="#[0-9a-f]{6}"', f'color="{colour}"', style)


def _factor(graph: Graph, node: Node) -> str | None:
    """The factor of an element-wise product step of a backward graph (`graph.factors`,
    or a `factor` attribute), else None."""
    factor = getattr(graph, "factors", {}).get(node.name, node.attrs.get("factor"))
    return factor if isinstance(factor, str) else None


def _style_kind(node: Node, factor: str | None = None) -> str:
    if factor is not None:
        return "product"
    op = REGISTRY.get(node.op)
    kind = op.kind if op else "structure"
    if node.op in ("input", "parameter"):
        return "param" if node.op == "parameter" else node.op
    if node.op == "concat":
        return "concat"
    if node.op in ("add", "sub"):
        return "merge"
    if kind in ("binary", "operator"):
        return "arith"
    if kind == "layer" or node.params:
        return "layer"
    if kind in ("elementwise", "loss", "structure"):
        return kind
    return "structure"


def _constant_operand(graph: Graph, node: Node) -> str:
    for v in node.inputs:
        other = graph.node(v.node)
        if other.op == "constant" and isinstance(other.attrs.get("value"), (int, float)):
            return f"{other.attrs['value']:.3g}"
    if node.op == "pow":
        return f"{node.attrs.get('exponent', ''):g}" if isinstance(node.attrs.get("exponent"), (int, float)) else ""
    return ""


def _attr_text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, tuple):
        return "(" + ", ".join(_attr_text(v) for v in value) + ")"
    return str(value)


def _attr_summary(node: Node) -> str:
    """A few words for the label: `64 3x3 /2`; the panel has every attribute."""
    op = REGISTRY.get(node.op)
    defaults = {a.name: a.default for a in op.args if not a.tensor} if op else {}
    parts = []
    for key, value in node.attrs.items():
        if key in ("type", "eps", "momentum", "factor"):
            continue
        default = defaults.get(key)
        if value == default or (isinstance(value, tuple) and value and all(v == default for v in value)):
            continue
        if key in ("out", "num", "dim", "hidden", "size") and not isinstance(value, tuple):
            parts.append(str(value))
        elif key == "kernel" and isinstance(value, tuple):
            parts.append("x".join(str(v) for v in value))
        elif key == "stride" and isinstance(value, tuple) and len(set(value)) == 1:
            if not (node.op.endswith("pool2d") and value == node.attrs.get("kernel")):
                parts.append(f"/{value[0]}")
        elif key == "padding" and isinstance(value, tuple) and len(set(value)) == 1:
            parts.append(f"p{value[0]}")
        elif key == "groups":
            parts.append(f"g{value}")
        elif key == "bias" and value is False:
            continue
        else:
            parts.append(f"{key}={_attr_text(value)}")
    text = " ".join(parts)
    return text if len(text) <= 40 else text[:37] + "..."


def _carries(graph: Graph, node: Node, value) -> bool:
    return graph.type_of(value).dtype in FLOAT_DTYPES and any(t.dtype in FLOAT_DTYPES for t in node.outputs)


def _skip_edges(graph: Graph) -> set[tuple[str, int]]:
    """(consumer, argument position) of the skip and residual edges. At a node that
    merges several values, the argument made deepest (longest path from an input) is
    the main path; every other argument is a skip edge, and so is the single-file chain
    of nodes that leads to it from a fork (a projection shortcut)."""
    depth: dict[str, int] = {}
    consumers: dict[str, int] = {}
    live = {n.name: n for n in graph.nodes() if n.op != "constant"}
    for node in live.values():
        ins = [v for v in node.inputs if v.node in live]
        depth[node.name] = 1 + max((depth[v.node] for v in ins), default=-1)
        for v in ins:
            consumers[v.node] = consumers.get(v.node, 0) + 1
    skips = set()
    for node in live.values():
        args = [(slot, v) for slot, v in enumerate(node.inputs) if v.node in live]
        if len({v.node for _, v in args}) < 2:
            continue
        main = max(args, key=lambda a: (depth[a[1].node], -a[0]))
        for slot, v in args:
            if v.node == main[1].node:
                continue
            skips.add((node.name, slot))
            cur = live[v.node]  # walk back along the shortcut while it is a single file
            while consumers.get(cur.name, 0) == 1:
                ins = [(s, u) for s, u in enumerate(cur.inputs) if u.node in live]
                if len(ins) != 1:
                    break
                skips.add((cur.name, ins[0][0]))
                cur = live[ins[0][1].node]
    return skips


# ---------------------------------------------------------------- assembling DOT
#
# viz_assets/viz.js ports `assemble` line for line; keep the two in step (tests compare).


def assemble(model: dict, expanded, colour_paths: bool = False, links: bool = False, note: str = "") -> str:
    """DOT for `model` (a `Model.to_json()`) with the containers in `expanded` open."""
    nodes, blocks, children = model["nodes"], model["blocks"], model["children"]
    expanded = set(expanded)

    def rep(item):  # the outermost collapsed container around item, else item
        chain = []
        parent = (nodes.get(item) or blocks.get(item))["parent"]
        while parent:
            chain.append(parent)
            parent = blocks[parent]["parent"]
        for cid in reversed(chain):
            if cid not in expanded:
                return cid
        return item

    out = ["digraph netc {", f"  graph [{model['graph']}];", f'  node [fontname="{FONT}", fontsize=11];']
    out.append(f'  edge [fontname="{FONT}", arrowsize=0.6];')
    lines = [f'<font color="#b02a37">{_html(note)}</font>'] if note else []
    if colour_paths:
        lines.append(model["legend"])
    if model.get("caption"):
        lines.append(model["caption"])
    if lines:
        out.append(f"  label=<{'<br/>'.join(lines)}>; labelloc=b;")

    def attrs(entry, item):
        text = f'id="{item}", {entry}'
        return text

    def emit(cid, indent):
        for item in children.get(cid, []):
            if item in blocks:
                block = blocks[item]
                if item in expanded:
                    out.append(f"{indent}subgraph cluster_{item} {{")
                    out.append(f'{indent}  id="{item}"; class="cluster-{item}"; {block["cluster"]};')
                    emit(item, indent + "  ")
                    out.append(f"{indent}}}")
                else:
                    extra = _link_attrs(block) if links else ""
                    out.append(f'{indent}{item} [{attrs(block["box"], item)}, class="box"{extra}];')
            else:
                node = nodes[item]
                extra = _link_attrs(node) if links else ""
                out.append(f"{indent}{item} [{attrs(node['dot'], item)}{extra}];")

    emit("", "  ")
    drawn = {}
    order = []
    for u, v, key, label, kind, paths in model["edges"]:
        ru, rv = rep(u), rep(v)
        if ru == rv:
            continue
        k = f"{ru}>{rv}>{'saved' if kind == SAVED else key}"
        if k not in drawn:
            drawn[k] = [ru, rv, label, kind, _unbig(paths)]
            order.append(k)
        else:
            drawn[k][3] = min(drawn[k][3], kind)  # a skip only if every edge it stands for is one
            drawn[k][4] += _unbig(paths)
    palette, widths = model["palette"], model["widths"]
    low, span = model["minbits"], max(1, model["maxbits"] - model["minbits"])
    main_color, skip_color, zero_color, grad_color, saved_color = model["colors"]
    joined = {f"{d[0]}>{d[1]}" for d in drawn.values() if d[3] != SAVED}
    i = 0
    for k in order:
        ru, rv, label, kind, paths = drawn[k]
        if kind == SAVED and f"{ru}>{rv}" in joined:  # the forward edge there says enough
            continue
        cls = ("main", "skip", "grad", "saved")[kind]
        style = ""
        if colour_paths and kind <= SKIP:  # log scale between the fewest and the most paths of an edge
            # a merged edge sums several, so it can pass the largest single edge: clamp
            b = min(len(palette) - 1, (max(0, paths.bit_length() - low) * (len(palette) - 1)) // span)
            color, width = (palette[b], widths[b]) if paths else (zero_color, "1")
            style = ", style=dashed" if kind == SKIP else ""
        else:
            color, width = ((main_color, "1.1"), (skip_color, "1.6"), (grad_color, "1.3"), (saved_color, "0.8"))[kind]
        weight = "4" if kind in (MAIN, GRADIENT) else "1"
        if kind == GRADIENT:  # drawn from the consumer up to the producer, arrowhead at the consumer
            ru, rv, style = rv, ru, style + ", dir=back"
        elif kind == SAVED:  # a value the backward reads
            style += ", style=dotted, arrowsize=0.4"
        out.append(
            f'  {ru} -> {rv} [id="e{i}", class="{cls}", label=<{label}>, color="{color}", '
            f"penwidth={width}, weight={weight}{style}];"
        )
        i += 1
    out.append("}")
    return "\n".join(out) + "\n"


def _link_attrs(entry: dict) -> str:
    if "href" not in entry:
        return ""
    return f", href={_quote(entry['href'])}, tooltip={_quote(entry['tip'])}"


# ---------------------------------------------------------------- which containers open


def visible_count(model: dict, expanded) -> int:
    """The number of boxes and nodes drawn with `expanded` open."""
    expanded = set(expanded)

    def count(cid):
        total = 0
        for item in model["children"].get(cid, []):
            total += count(item) if item in expanded else 1
        return total

    return count("")


def initial_expansion(model: dict, expand: bool) -> tuple[list[str], str]:
    """The containers open at first, and a note when the picture had to be collapsed.
    Default: none (each block instance one box). `expand`: all, as deep as NODE_LIMIT
    drawn nodes allow, whole levels at a time."""
    blocks = model["blocks"]
    depth = {}
    for bid in blocks:
        d, p = 0, blocks[bid]["parent"]
        while p:
            d, p = d + 1, blocks[p]["parent"]
        depth[bid] = d
    total = len(model["nodes"])
    deepest = max(depth.values(), default=-1) + 1
    limit_depth = deepest if expand else 0
    while True:
        opened = [b for b in blocks if depth[b] < limit_depth]
        if visible_count(model, opened) <= NODE_LIMIT or limit_depth == 0:
            break
        limit_depth -= 1
    note = ""
    if expand and limit_depth < deepest:
        note = (
            f"{total:,} nodes: more than the {NODE_LIMIT:,} that can be laid out at once; "
            f"blocks below depth {limit_depth} are drawn collapsed"
        )
    return opened, note


def trim_to_limit(model: dict, expanded) -> tuple[dict, str]:
    """A last resort when even the collapsed picture is too large: keep the first
    NODE_LIMIT top-level items, with a note."""
    top = model["children"][""]
    if visible_count(model, expanded) <= NODE_LIMIT:
        return model, ""
    keep = set(top[:NODE_LIMIT])
    trimmed = dict(model)
    trimmed["children"] = dict(model["children"])
    trimmed["children"][""] = top[:NODE_LIMIT]

    def inside(item):
        entry = model["nodes"].get(item) or model["blocks"].get(item)
        while entry["parent"]:
            item = entry["parent"]
            entry = model["blocks"][item]
        return item in keep

    trimmed["edges"] = [e for e in model["edges"] if inside(e[0]) and inside(e[1])]
    return trimmed, f"only the first {NODE_LIMIT:,} of {len(top):,} top-level items are drawn"


# ---------------------------------------------------------------- running Graphviz


def graphviz_program() -> str:
    """The graphviz-pure binary: in the environment's scripts folder, else on PATH."""
    here = [sysconfig.get_path("scripts"), os.path.dirname(sys.executable)]
    for folder in here:
        for name in ("graphviz-pure", "graphviz-pure.exe"):
            candidate = os.path.join(folder, name)
            if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
                return candidate
    found = shutil.which("graphviz-pure")
    if found:
        return found
    from netc.compiler.api import MissingExtra

    raise MissingExtra("the layout program graphviz-pure is not installed: pip install graphviz-pure (or netc)")


def layout(dot: str, fmt: str, dpi: int | None = None) -> bytes:
    """Runs Graphviz dot on `dot`; `fmt` svg or png."""
    args = [graphviz_program(), "-q", f"-T{fmt}"]
    if dpi:
        args.append(f"-Gdpi={dpi}")
    try:
        proc = subprocess.run(args, input=dot.encode(), capture_output=True, timeout=LAYOUT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise VizError(f"the layout took longer than {LAYOUT_TIMEOUT_S} s") from None
    except OSError as exc:
        raise VizError(f"cannot run {args[0]}: {exc.strerror or exc}") from None
    if proc.returncode != 0 or not proc.stdout:
        first = (proc.stderr.decode(errors="replace").strip().splitlines() or ["no output"])[0]
        raise VizError(f"graphviz-pure failed: {first}")
    return proc.stdout


def _svg_body(svg: bytes) -> str:
    """The <svg> element alone (no XML declaration or doctype), for inlining."""
    text = svg.decode("utf-8")
    return text[text.index("<svg") :]


# ---------------------------------------------------------------- the outputs


@dataclass
class Picture:
    data: bytes
    nodes: int  # drawn nodes and boxes
    note: str


def picture(compiled, fmt: str, options: Options | None = None, spec_href: str | None = None) -> Picture:
    """The picture of a compiled network in `fmt` (svg, html, dot, png)."""
    options = options or Options()
    if fmt not in FORMATS:
        raise ValueError(fmt)
    if spec_href is not None:
        options.spec_href = spec_href
    options.links = fmt != "html"
    model = build_model(compiled.graph, sources=compiled.sources, file=compiled.file, options=options).to_json()
    expanded, note = initial_expansion(model, options.expand)
    model_drawn, trim_note = trim_to_limit(model, expanded)
    note = "; ".join(n for n in (note, trim_note) if n)
    count = visible_count(model_drawn, expanded)
    if fmt == "html":
        dot = assemble(model_drawn, expanded, options.colour_paths, links=False)
        svg = _svg_body(layout(dot, "svg"))
        return Picture(_html_page(model, model_drawn is model, expanded, svg, dot, note, options), count, note)
    dot = assemble(model_drawn, expanded, options.colour_paths, links=options.links, note=note)
    if fmt == "dot":
        return Picture(dot.encode(), count, note)
    if fmt == "png":
        return Picture(layout(dot, "png", dpi=144), count, note)
    return Picture(layout(dot, "svg"), count, note)


def _html_page(model, whole, expanded, svg, dot, note, options) -> bytes:
    template = (ASSETS / "page.html").read_text(encoding="utf-8")
    state = {
        "expanded": sorted(expanded),
        "colourPaths": options.colour_paths,
        "note": note,
        "interactive": whole,  # a trimmed picture cannot be re-laid out from the model
        "limit": NODE_LIMIT,
        "dot": dot,
    }
    parts = {
        "TITLE": _html(f"{model['name']}: netc viz"),
        "CSS": (ASSETS / "viz.css").read_text(encoding="utf-8"),
        "MODEL": json_for_html(model),
        "STATE": json_for_html(state),
        "SVG": svg,
        "VIZJS": _script_safe((ASSETS / "viz-global.js").read_text(encoding="utf-8")),
        "APPJS": _script_safe((ASSETS / "viz.js").read_text(encoding="utf-8")),
        "NAME": _html(model["name"]),
    }
    return re.sub(r"/\*@(\w+)@\*/", lambda m: parts[m.group(1)], template).encode("utf-8")


def _script_safe(js: str) -> str:
    if "</script" in js.lower():
        raise VizError("an inlined script contains </script")
    return js


# ---------------------------------------------------------------- `netc viz`


def command(args) -> int:
    """`netc viz FILE -o OUT [--network NAME] [--expand] [--paths] [--backward] [--gradflow
    [--batch B] [--seed S] [--weights FILE] [--dim NAME=SIZE ...]]`."""
    from netc.compiler.builder import gc_paused

    with gc_paused():  # a big graph is millions of live objects: each full collection walks them all
        return _command(args)


def _command(args) -> int:
    from netc.compiler.api import compile_file
    from netc.compiler.cli import EXIT_INTERNAL, EXIT_OK, EXIT_SPEC, EXIT_USAGE, _report_errors, limits
    from netc.compiler.files import atomic_write
    from netc.dsl.diagnostics import NetcError, render

    fmt = Path(args.output).suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        print(
            f"netc: error: cannot tell the picture's format from {args.output!r}: "
            "give -o a file ending in .svg, .html, .dot or .png",
            file=sys.stderr,
        )
        return EXIT_USAGE
    try:
        compiled = compile_file(args.file, args.network, **limits(args))
    except NetcError as exc:
        return _report_errors(exc, False)
    except RecursionError:
        return _report_errors(NetcError(f"{args.file}: the spec nests too deeply to compile", code="limit"), False)
    for warning in compiled.warnings:
        print(render(warning, compiled.sources), file=sys.stderr)
    out_dir = os.path.dirname(os.path.abspath(args.output))
    href = os.path.relpath(os.path.abspath(args.file), out_dir).replace(os.sep, "/")
    options = Options(expand=args.expand, colour_paths=args.paths, backward=getattr(args, "backward", False))
    if getattr(args, "gradflow", False):
        from netc.compiler.gradflow import DimError, measure_from_args

        try:
            report = measure_from_args(compiled, args)
        except NetcError as exc:
            return _report_errors(exc, False)
        except DimError as exc:
            print(f"netc: error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        options.gradflow = report.norms()
        sizes = ", ".join(f"{k}={v}" for k, v in report.sizes.items())
        options.gradflow_setting = f"seed {report.seed}" + (f", {sizes}" if sizes else "")
    try:
        pic = picture(compiled, fmt, options, spec_href=href)
    except NetcError as exc:  # a backward graph that cannot be derived
        return _report_errors(exc, False)
    except VizError as exc:
        print(f"netc: cannot draw {compiled.name}: {exc}", file=sys.stderr)
        return EXIT_INTERNAL
    try:
        atomic_write(args.output, pic.data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(args.output, 0o666 & ~umask)  # a picture to share, not a private temporary file
    except OSError as exc:
        print(f"netc: cannot write {args.output}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_SPEC
    layers = sum(1 for n in compiled.graph.nodes() if n.op not in ("input", "constant"))
    print(f"wrote {args.output}: {pic.nodes:,} nodes and boxes drawn for {layers:,} layers", file=sys.stderr)
    if pic.note:
        print(f"note: {pic.note}", file=sys.stderr)
    return EXIT_OK
