"""Analyses of an elaborated graph that several backends need.

`instance_tree(graph)`: the block instances as a tree (what a backend draws as a box or
emits as a class), each with the values that enter and leave it. `symbol_source(...)`:
where a symbolic dimension can be read at run time (`x.shape[0]` in PyTorch, `Shape` in
ONNX). Both are pure functions of the graph; neither changes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import dims as D
from .ir import Graph, Value


@dataclass(eq=False)
class Instance:
    """One block instance (or the network itself, `block` None) and what it holds."""

    path: tuple[str, ...]
    block: str | None  # None for the network itself
    items: list = field(default_factory=list)  # Nodes and child Instances, in order
    names: set = field(default_factory=set)  # every node inside, at any depth
    inputs: list[Value] = field(default_factory=list)  # values made outside and read inside
    outputs: list[Value] = field(default_factory=list)  # values made inside and read outside
    call_span: object = None
    key: object = None  # backends' scratch: a structural signature
    cls: str = ""  # backends' scratch: the emitted class

    @property
    def local(self) -> str:
        return self.path[-1]


def instance_tree(graph: Graph) -> Instance:
    """The network as nested block instances; network inputs are not items."""
    root = Instance((), None)
    by_path = {(): root}
    for node in graph.nodes():
        if node.op == "input":
            continue
        for depth in range(1, len(node.scope) + 1):
            path = node.scope[:depth]
            if path not in by_path:
                child = Instance(path, graph.instances.get(path, path[-1]), call_span=node.call_sites[depth - 1])
                by_path[path] = child
                by_path[path[:-1]].items.append(child)
            by_path[path].names.add(node.name)
        root.names.add(node.name)
        by_path[node.scope].items.append(node)
    consumers: dict[str, set] = {}
    for node in graph.nodes():
        for v in node.inputs:
            consumers.setdefault(v.node, set()).add(node.name)
    graph_outputs = {v for _, v in graph.outputs}
    for inst in by_path.values():
        if inst is root:
            continue
        for node in instance_nodes(inst):
            for v in node.inputs:
                if v.node not in inst.names and v not in inst.inputs:
                    inst.inputs.append(v)
            for i in range(len(node.outputs)):
                v = Value(node.name, i)
                outside = any(c not in inst.names for c in consumers.get(node.name, ()))
                if (outside or v in graph_outputs) and v not in inst.outputs:
                    inst.outputs.append(v)
    return root


def instance_nodes(inst: Instance):
    """Every node of an instance, nested instances included, in order."""
    for item in inst.items:
        if isinstance(item, Instance):
            yield from instance_nodes(item)
        else:
            yield item


def symbol_source(graph: Graph, name: str, values) -> tuple[Value, int] | None:
    """The first of `values` (and axis) whose type carries the symbol `name`, else None."""
    wanted = D.symbol(name)
    for v in values:
        for axis, d in enumerate(graph.type_of(v).shape):
            if isinstance(d, D.Dim) and D.equal(d, wanted):
                return v, axis
    return None
