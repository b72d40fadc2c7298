"""The graph IR: small typed records in a networkx DiGraph.

networkx is the container, not the schema: each graph node carries one `Node` payload
under the key "node"; argument order lives in `Node.inputs`, edges only record that a
node reads another. Nodes are added in elaboration order, which is a topological order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx
from netc.dsl.diagnostics import Span

from .dims import DimLike, shape_text, to_json

DTYPES = ("float32", "float64", "int64", "bool")
FLOAT_DTYPES = ("float32", "float64")
NUMERIC_DTYPES = ("float32", "float64", "int64")  # what arithmetic takes: not bool


@dataclass(frozen=True)
class TensorType:
    shape: tuple[DimLike, ...]
    dtype: str = "float32"

    @property
    def rank(self) -> int:
        return len(self.shape)

    def __str__(self) -> str:
        prefix = "" if self.dtype == "float32" else self.dtype
        return prefix + shape_text(self.shape)

    def to_json(self) -> list:
        return [to_json(d) for d in self.shape]


@dataclass(frozen=True)
class Value:
    """Output `index` of node `node`."""

    node: str
    index: int = 0


def param_owner(full: str, local: str) -> str:
    """The node that stores the parameter `full`, whose local name is `local`."""
    return full[: -len(local) - 1] if local else full


@dataclass(frozen=True, eq=False)
class Node:
    name: str  # the dotted path, unique in the graph: stage_1.bottleneck_0.conv2d_2
    op: str
    inputs: tuple[Value, ...]
    attrs: dict
    outputs: tuple[TensorType, ...]
    params: dict[str, TensorType] = field(default_factory=dict)  # trainable, by local name
    buffers: dict[str, TensorType] = field(default_factory=dict)
    span: Span | None = None
    scope: tuple[str, ...] = ()  # the block instances around it, outermost first
    call_sites: tuple[Span, ...] = ()  # the block calls that expanded it, outermost first
    var: str | None = None  # the spec variable its statement binds, a readable name for backends
    # `share=`: local parameter name -> the full name of the earlier instance's parameter this
    # node uses instead of its own. Such a parameter is not stored or counted here; every
    # backend reads and writes it under the owner's name.
    shared: dict[str, str] = field(default_factory=dict)

    def moved(self, name: str, inputs: tuple[Value, ...], scope: tuple[str, ...]) -> Node:
        """The same node under another name, reading `inputs` (a copied block instance,
        compiler/templates.py). Built field by field: `dataclasses.replace` goes through the
        frozen `__init__`, nine times slower, and a deep network copies thousands of nodes."""
        clone = object.__new__(Node)
        fields = clone.__dict__
        fields.update(self.__dict__)
        fields["name"], fields["inputs"], fields["scope"], fields["attrs"] = name, inputs, scope, dict(self.attrs)
        return clone

    def param_name(self, local: str) -> str:
        """The full name under which parameter (or buffer) `local` is stored."""
        # a `param` node's one parameter has the empty local name: it is the instance itself
        return self.shared.get(local) or (f"{self.name}.{local}" if local else self.name)

    @property
    def own_params(self) -> dict[str, TensorType]:
        """The parameters this node stores: its own, not the shared ones."""
        return {k: t for k, t in self.params.items() if k not in self.shared} if self.shared else self.params

    @property
    def parameter_count(self) -> int:
        total = 0
        for t in self.own_params.values():
            n = 1
            for d in t.shape:
                n *= d
            total += n
        return total


@dataclass
class Graph:
    name: str
    g: nx.DiGraph = field(default_factory=nx.DiGraph)
    inputs: list[str] = field(default_factory=list)  # names of the "input" nodes, in order
    outputs: list[tuple[str, Value]] = field(default_factory=list)  # (output name, value)
    instances: dict[tuple[str, ...], str] = field(default_factory=dict)  # block instance path -> block
    instance_args: dict[tuple[str, ...], dict] = field(default_factory=dict)  # path -> {Value: parameter}
    # How the spec wrote nodes and block calls (compiler/symbolic.py), for backends that
    # write code in the spec's terms: node name -> Provenance, instance path -> Call.
    provenance: dict[str, object] = field(default_factory=dict)
    calls: dict[tuple[str, ...], object] = field(default_factory=dict)
    # In a backward graph: the element-wise product steps (`g * factor`), node -> the factor's text
    factors: dict[str, str] = field(default_factory=dict)
    # `share=` on a block call: the sharing instance's path -> the path of the instance whose
    # parameters it uses (its nodes' `shared` name them one by one)
    shares: dict[tuple[str, ...], tuple[str, ...]] = field(default_factory=dict)

    def add(self, node: Node) -> Node:
        if node.name in self.g:
            raise ValueError(f"duplicate node {node.name}")
        self.g.add_node(node.name, node=node)
        for v in node.inputs:
            self.g.add_edge(v.node, node.name)
        return node

    def extend(self, nodes: list[Node]) -> None:
        """`add` for each node in order, through networkx's bulk calls (half the cost)."""
        g = self.g
        names = {node.name for node in nodes}
        if len(names) < len(nodes) or any(name in g for name in names):
            raise ValueError("duplicate nodes")
        g.add_nodes_from([node.name for node in nodes])  # plain names: networkx's fast path, not (name, data)
        attributes = g.nodes
        for node in nodes:
            attributes[node.name]["node"] = node
        g.add_edges_from((v.node, node.name) for node in nodes for v in node.inputs)

    def node(self, name: str) -> Node:
        return self.g.nodes[name]["node"]

    def nodes(self):
        """All nodes in insertion (elaboration) order."""
        return [data["node"] for _, data in self.g.nodes(data=True)]

    def type_of(self, value: Value) -> TensorType:
        return self.node(value.node).outputs[value.index]

    def __len__(self) -> int:
        return self.g.number_of_nodes()

    @property
    def parameter_count(self) -> int:
        return sum(n.parameter_count for n in self.nodes())
