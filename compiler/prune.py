"""Graph -> Graph: leave out every node whose result reaches no output.

Requires: an elaborated graph with its outputs set.
Ensures: only nodes with a path to an output remain (network inputs always stay); one
warning per unused result (the last node of each dead chain), as LANGUAGE.md says such a
layer is reported and neither counted, emitted nor given parameters.
"""

from __future__ import annotations

from dataclasses import replace

import networkx as nx
from netc.dsl.diagnostics import Diagnostic

from .ir import Graph, param_owner


def prune_unused(graph: Graph) -> tuple[Graph, list[Diagnostic]]:
    nodes = graph.nodes()
    # Nodes are in topological order: one sweep back from the outputs finds their ancestors.
    live = {value.node for _, value in graph.outputs}
    for node in reversed(nodes):
        if node.name in live:
            live.update(v.node for v in node.inputs)
    dead = [n for n in nodes if n.name not in live and n.op != "input"]
    if not dead:
        return graph, _unused_inputs(graph)
    warnings = []
    dead_names = {n.name for n in dead}
    for node in dead:
        if node.op == "constant" or any(s in dead_names for s in graph.g.successors(node.name)):
            continue
        upstream = [a for a in nx.ancestors(graph.g, node.name) if a in dead_names and graph.node(a).op != "constant"]
        extra = f" (with {len(upstream)} layer{'s' * (len(upstream) != 1)} before it)" if upstream else ""
        warnings.append(
            Diagnostic(
                f"the result of `{node.name}` ({node.op}) reaches no output; it is left out{extra}",
                node.span,
                severity="warning",
                code="unused",
            )
        )
    warnings += _unused_inputs(graph)
    _take_over_shared(graph, dead_names)
    graph.g.remove_nodes_from(dead_names)
    return graph, warnings


def _unused_inputs(graph: Graph) -> list[Diagnostic]:
    returned = {v.node for _, v in graph.outputs}
    return [
        Diagnostic(f"input `{name}` is not used", graph.node(name).span, severity="warning", code="unused")
        for name in graph.inputs
        if not any(True for _ in graph.g.successors(name)) and name not in returned
    ]


def _take_over_shared(graph: Graph, dead: set):
    """A kept layer that shares the parameters of a layer left out (`share=`) takes them
    over: the first such layer stores them under its own name, later ones use its."""
    moved: dict[str, str] = {}
    orphans: set = set()  # sharing block instances that lost a shared layer
    for node in graph.nodes():
        if node.name in dead or not node.shared:
            continue
        shared = {}
        for local, full in node.shared.items():
            if param_owner(full, local) in dead:
                orphans.update(path for path in graph.shares if node.scope[: len(path)] == path)
                if full not in moved:
                    moved[full] = replace(node, shared={}).param_name(local)
                    continue
                full = moved[full]
            shared[local] = full
        if shared != node.shared:
            graph.g.nodes[node.name]["node"] = replace(node, shared=shared)
    # the first sharing instance of a left-out instance is its heir: the others share it
    heirs: dict = {}
    for path in sorted(orphans, key=lambda p: _first_node(graph, p)):
        owner = graph.shares.pop(path)
        if owner in heirs:
            graph.shares[path] = heirs[owner]
        else:
            heirs[owner] = path


def _first_node(graph: Graph, path: tuple) -> int:
    """The position of an instance's first node in graph order."""
    for i, node in enumerate(graph.nodes()):
        if node.scope[: len(path)] == path:
            return i
    return -1
