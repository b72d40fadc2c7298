"""Graph -> Graph: leave out every node whose result reaches no output.

Requires: an elaborated graph with its outputs set.
Ensures: only nodes with a path to an output remain (network inputs always stay); one
warning per unused result (the last node of each dead chain), as LANGUAGE.md says such a
layer is reported and neither counted, emitted nor given parameters.
"""

from __future__ import annotations

import networkx as nx
from netc.dsl.diagnostics import Diagnostic

from .ir import Graph


def prune_unused(graph: Graph) -> tuple[Graph, list[Diagnostic]]:
    live = set()
    for _, value in graph.outputs:
        live.add(value.node)
        live |= nx.ancestors(graph.g, value.node)
    dead = [n for n in graph.nodes() if n.name not in live and n.op != "input"]
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
    for name in graph.inputs:
        if not any(True for _ in graph.g.successors(name)) and name not in {v.node for _, v in graph.outputs}:
            warnings.append(
                Diagnostic(
                    f"input `{name}` is not used",
                    graph.node(name).span,
                    severity="warning",
                    code="unused",
                )
            )
    graph.g.remove_nodes_from(dead_names)
    return graph, warnings
