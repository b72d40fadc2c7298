"""Block templates: a block called again exactly as before is copied, not elaborated again.

A deep network calls one block thousands of times with the same argument types (`repeat
1000 { h = residual(h) }`). Elaborating a call evaluates every statement, binds every
argument, normalizes attributes and runs every shape rule; copying the nodes of an earlier
identical call renames them and nothing else. The copy must be exactly what elaboration
would have made, so a call is copied only when everything elaboration reads is the same:

* the same block, called from the same call expression through the same chain of block
  calls (the nodes' spans and `call_sites` follow from these);
* the same compile-time arguments, compared strictly (`1`, `1.0` and `True` differ, as do
  dimensions that are equal but written differently), and tensor arguments of the same
  types passed in the same pattern (`f(x, x)` is not `f(x, y)`);
* no `share=` on the call or around it, none inside the block, and the first call raised no
  error.

The second call with a key is recorded as its template and the third and later ones are
copied: a block called once per key (an unrolled network, each line a call of its own)
costs nothing to record.

Requires: the elaborator records, in order, every node and block instance it makes
(`made`, `made_instances`), and gives each `repeat` an id from `Tracer.loops_made`.
Ensures: `Template.copy` adds to the graph what elaborating the call would add (node names,
inputs, attributes, types, spans, scopes, provenance, nested instances and their calls),
spends the same steps, and returns the same values; `tests/test_templates.py` checks this
graph for graph against elaboration with templates turned off.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .dims import Dim
from .ir import Graph, Node, TensorType, Value
from .symbolic import Call, Local, Loop, LoopVar, Op, Provenance, Size
from .values import Multi, Tensor

ENABLED = True  # tests turn templates off to compare against plain elaboration
SEEN = "seen once"  # a key called once: the next call with it records the template


class NotPlain(Exception):
    """A value a template key cannot hold exactly."""


def strict(value):
    """A hashable key equal only for values elaboration cannot tell apart."""
    kind = type(value)
    if kind in (int, str, bool) or value is None:
        return (kind, value)
    if kind is float:
        return (kind, value.hex())  # -0.0 == 0.0, nan != nan
    if kind is tuple:
        return (kind, tuple(strict(v) for v in value))
    if kind is Dim:
        return (kind, value.text(), value.key())  # equal dimensions print as they were written
    raise NotPlain(kind)


def type_key(t: TensorType):
    return (t.dtype, tuple(d if type(d) is int else strict(d) for d in t.shape))


def call_key(block_name: str, call, expansions, bound: dict):
    """The key of a block call, or None where the call cannot be copied."""
    args = []
    seen: dict[Value, int] = {}
    try:
        for i, (name, value) in enumerate(bound.items()):
            if type(value) is Tensor:
                args.append((name, "tensor", type_key(value.type), seen.setdefault(value.value, i)))
            else:
                args.append((name, strict(value)))
    except NotPlain:
        return None
    return (block_name, id(call), expansions, tuple(args))


@dataclass
class Template:
    """The first call of a block with a given key, as it was made."""

    call: object  # kept alive: the key holds its id
    path: tuple[str, ...]
    args: dict[str, Value]  # tensor parameter -> the value the first call passed
    nodes: list[Node]
    provenance: list  # per node, as the first call recorded it (None: none recorded)
    renamed: list[bool]  # per node: its provenance holds a value or a loop; else copies share it
    instances: list[tuple[str, ...]]  # nested block instances, in order
    returns: list
    steps: int
    extra_results: int
    first_loop: int
    loops: int

    @classmethod
    def record(cls, graph: Graph, call, path, bound, names, instances, returns, steps, extra, first_loop, loops):
        """The template of the call just elaborated at `path`, or None where it cannot be copied."""
        nodes = [graph.node(name) for name in names]
        if any(node.shared for node in nodes) or any(p in graph.shares for p in instances):
            return None
        args = {name: v.value for name, v in bound.items() if type(v) is Tensor}
        inside = set(names) | {v.node for v in args.values()}
        if any(v.node not in inside for node in nodes for v in node.inputs):
            return None  # a block body sees only its parameters; anything else is not copied
        for value in returns:
            if not (type(value) in (Tensor, Multi) or _plain(value)):
                return None
        provenance = [graph.provenance.get(name) for name in names]
        renamed = [_mentions(p) for p in provenance]
        return cls(call, path, args, nodes, provenance, renamed, instances, returns, steps, extra, first_loop, loops)

    def copy(self, graph: Graph, path: tuple[str, ...], bound: dict, loops_made: int, made: list, made_instances: list):
        """Adds the copy at `path` to `graph`; returns the values the call returns."""
        old, new = ".".join(self.path) + ".", ".".join(path) + "."
        cut, depth = len(old), len(self.path)
        arguments = {v: bound[name].value for name, v in self.args.items()}
        shift = loops_made - self.first_loop

        def value(v: Value) -> Value:
            # the instance's own nodes, and only they, are named below its path
            node = v.node
            return Value(new + node[cut:], v.index) if node.startswith(old) else arguments[v]

        provenance, copies = graph.provenance, []
        for node, recorded, rename in zip(self.nodes, self.provenance, self.renamed):
            name = new + node.name[cut:]
            copies.append(node.moved(name, tuple([value(v) for v in node.inputs]), path + node.scope[depth:]))
            made.append(name)
            if recorded is not None:
                provenance[name] = _renamed(recorded, value, shift) if rename else recorded
        graph.extend(copies)
        for inner in self.instances:
            there = path + inner[depth:]
            graph.instances[there] = graph.instances[inner]
            graph.instance_args[there] = {value(v): p for v, p in graph.instance_args[inner].items()}
            if inner in graph.calls:
                graph.calls[there] = _renamed(graph.calls[inner], value, shift)
            made_instances.append(there)
        return [_renamed_value(v, value) for v in self.returns]


def _plain(value) -> bool:
    try:
        strict(value)
    except NotPlain:
        return False
    return True


def _renamed_value(v, value):
    if type(v) is Tensor:
        return Tensor(value(v.value), v.type)
    if type(v) is Multi:
        return Multi(tuple(_renamed_value(x, value) for x in v.values))
    return v


_WALKED = (Value, Size, Loop, LoopVar)


def _mentions(obj) -> bool:
    """Whether a provenance record holds a tensor value or a loop (which a copy renames)."""
    if isinstance(obj, _WALKED):
        return True
    if isinstance(obj, Provenance):
        return bool(obj.loops) or _mentions(obj.guards) or _mentions(tuple(obj.exprs.values()))
    if isinstance(obj, Op):
        return _mentions(obj.args)
    if isinstance(obj, Local):
        return _mentions(obj.expr)
    if isinstance(obj, Call):
        return True
    if isinstance(obj, (tuple, list)):
        return any(_mentions(x) for x in obj)
    return False


def _renamed(obj, value, shift: int):
    """`obj` (a provenance or call record) with its values and loop ids those of the copy."""
    if isinstance(obj, Value):
        return value(obj)
    if isinstance(obj, Size):
        return Size(value(obj.value), obj.axis)
    if isinstance(obj, LoopVar):
        return LoopVar(obj.loop + shift, obj.name)
    if isinstance(obj, Loop):
        return replace(obj, id=obj.id + shift, count=_renamed(obj.count, value, shift))
    if isinstance(obj, Op):
        return Op(obj.op, _renamed(obj.args, value, shift))
    if isinstance(obj, Local):
        return Local(obj.name, _renamed(obj.expr, value, shift))
    if isinstance(obj, Provenance):
        return replace(
            obj,
            guards=_renamed(obj.guards, value, shift),
            loops=_renamed(obj.loops, value, shift),
            exprs={k: _renamed(v, value, shift) for k, v in obj.exprs.items()},
        )
    if isinstance(obj, Call):
        return replace(
            obj,
            provenance=_renamed(obj.provenance, value, shift),
            returns=tuple(None if v is None else value(v) for v in obj.returns),
        )
    if isinstance(obj, tuple):
        return tuple(_renamed(x, value, shift) for x in obj)
    if isinstance(obj, list):
        return [_renamed(x, value, shift) for x in obj]
    return obj
