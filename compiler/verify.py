"""The IR verifier: checks the invariants every pass must keep (FX's Graph.lint).

Acyclic; every input refers to an earlier node's existing output; every op is registered
with a matching arity; output types are what the op's shape rule infers; a shared
parameter is one an earlier node stores, with the same type. Failures are
`InternalError`s (a netc bug, not a spec error) that print the nodes around the fault.
"""

from __future__ import annotations

import networkx as nx
from netc.dsl.diagnostics import InternalError

from .ir import Graph
from .ops import REGISTRY
from .ops.registry import REQUIRED


def verify(graph: Graph) -> Graph:
    if not nx.is_directed_acyclic_graph(graph.g):
        raise InternalError("the graph has a cycle")
    seen: set[str] = set()
    stored: dict = {}  # full parameter or buffer name -> its type, for the nodes seen so far
    nodes = graph.nodes()
    for i, node in enumerate(nodes):
        for local, full in node.shared.items():
            mine = node.params.get(local, node.buffers.get(local))
            if mine is None:
                _fail(nodes, i, f"shares {local!r}, which it does not have")
            if stored.get(full) != mine:
                _fail(nodes, i, f"shares {local!r} {mine} as {full}, which no earlier node stores with that type")
        for local, t in (*node.params.items(), *node.buffers.items()):
            if local not in node.shared:
                stored[node.param_name(local)] = t
        op = REGISTRY.get(node.op)
        if op is None:
            _fail(nodes, i, f"unknown op {node.op!r}")
        for value in node.inputs:
            if value.node not in seen:
                _fail(nodes, i, f"input {value.node} is not defined before {node.name}")
            if value.index >= len(graph.node(value.node).outputs):
                _fail(nodes, i, f"input {value.node}:{value.index} does not exist")
        fixed = [a for a in op.args if a.tensor and not a.variadic]
        required = [a for a in fixed if a.default is REQUIRED]  # the others are optional (`mask=`)
        if not any(a.variadic for a in op.args) and not len(required) <= len(node.inputs) <= len(fixed):
            _fail(nodes, i, f"{node.op} takes {len(fixed)} inputs, got {len(node.inputs)}")
        if op.kind != "source":
            inferred = op.infer([graph.type_of(v) for v in node.inputs], node.attrs)
            if tuple(inferred) != node.outputs:
                _fail(
                    nodes,
                    i,
                    f"output types {node.outputs} differ from the inferred {tuple(inferred)}",
                )
        seen.add(node.name)
    for name, value in graph.outputs:
        if value.node not in seen:
            raise InternalError(f"output {name} refers to a missing node {value.node}")
    return graph


def _fail(nodes, i, message):
    from .printer import node_line

    context = "\n".join(
        ("> " if j == i else "  ") + node_line(nodes[j]) for j in range(max(0, i - 2), min(len(nodes), i + 3))
    )
    raise InternalError(f"IR verification failed at {nodes[i].name}: {message}\n{context}")
