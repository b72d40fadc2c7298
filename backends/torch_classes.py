"""Which block instances share a class, and the template they share (for backends/torch.py).

A class's template is the union of its instances' bodies: one `Entry` per layer, block
call or folded `repeat`, with the instances ("samples") it appears in. A sample is `(n,)`
for instance n and `(n, k, loop)` for pass k of a folded loop in instance n. A value is
named by a ref: ("in", parameter), ("v", entry key, output), ("carry", loop) for the value
a loop passes from one pass to the next, ("chain", loop) for that value after the loop,
("join", default, options) for a value an optional layer replaces (`skip = x; if ... {
skip = ... }`).

`Template(...).build()` requires the instances of one block (or the network alone) and the
classes of the blocks they call already emitted (`emitter.returns`, `.info`, `.cls_of`);
it ensures that every sample has exactly the entries its guards and loop counts select,
that every input slot has one ref in every sample, and raises `Mismatch` (with a split of
the instances, or a loop to write out differently) where that cannot hold. `size_expr`
gives a value's size as an expression over the class's parameters and input sizes, exact
in every sample.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from netc.compiler import symbolic as S
from netc.compiler.analysis import Instance
from netc.compiler.dims import Dim
from netc.compiler.ir import Graph, Value

UNROLL_UP_TO = 3  # a `repeat` of a fixed count up to this stays unrolled: three lines read better than a loop


# ---------------------------------------------------------------- an instance's body


class Mismatch(Exception):
    """The instances cannot share one class as they are grouped (or a loop cannot fold)."""

    def __init__(self, clusters=None, unroll=None, peel=True):
        super().__init__("mismatch")
        self.clusters, self.unroll = clusters, unroll
        self.peel = peel  # a loop may fold from its second pass on (the first written out)


@dataclass(eq=False)
class Element:
    """One item of an instance's body: a node, a block call, or one run of a `repeat`."""

    kind: str  # "node", "call" or "loop"
    obj: object  # Node, Instance or Run
    prov: S.Provenance
    key: str  # its name in the instance (`conv2d_3`), the same in every instance of the block
    guards: tuple = ()  # the conditions of the `if`s around it, inside the loop it is in


@dataclass(eq=False)
class Run:
    """One execution of a `repeat` in one instance: its iterations' elements."""

    loop: S.Loop
    iterations: list  # list of lists of Element
    indices: list  # the iteration numbers seen


@dataclass(eq=False)
class Entry:
    key: str
    kind: str
    items: dict = field(default_factory=dict)  # sample -> Element
    guard: tuple = ()  # conditions (template expressions), outermost first
    inputs: list = field(default_factory=list)  # per input slot: a ref
    loop: object = None  # the folded loop this entry is in (its Entry), or None
    pos: int = 0
    # a folded loop
    body: list | None = None
    count: object = None
    var: str | None = None
    pattern: tuple | None = None  # a body entry: (prefix, a, b), its name is prefix_{a * i + b}
    chain: tuple | None = None  # (pre ref, (body key, output)) of the carried value
    end: int = 0
    start: int = 0  # the first pass the loop runs: 1 where the first is written out before it


def instance_elements(graph: Graph, inst: Instance, modes: dict) -> list:
    raw = []
    for item in inst.items:
        if isinstance(item, Instance):
            call = graph.calls.get(item.path)
            prov = call.provenance if call else S.Provenance()
            raw.append(Element("call", item, prov, item.path[-1], prov.guards))
        else:
            prov = graph.provenance.get(item.name) or S.Provenance()
            scope = ".".join(item.scope)
            local = item.name[len(scope) + 1 :] if scope and item.name.startswith(scope + ".") else item.name
            raw.append(Element("node", item, prov, local, prov.guards))  # a pass's node may keep dots: `loss.add_0`
    return _group_loops(raw, modes)


def _loop_key(loop: S.Loop) -> str:
    span = loop.span
    return f"repeat@{span.file}:{span.line}:{span.column}"


def _group_loops(raw: list, modes: dict) -> list:
    """The items of each outermost `repeat` gathered into one element, unless `modes` says
    "unroll" (or "peel": its first pass stays outside); loops inside a loop's body stay
    unrolled in it."""
    out, i = [], 0
    while i < len(raw):
        loops = raw[i].prov.loops
        if not loops or modes.get(_loop_key(loops[0])) == "unroll":
            out.append(raw[i])
            i += 1
            continue
        loop, j = loops[0], i
        while j < len(raw) and raw[j].prov.loops and raw[j].prov.loops[0].id == loop.id:
            j += 1
        iterations: dict[int, list] = {}
        for el in raw[i:j]:
            iterations.setdefault(el.prov.loops[0].iteration, []).append(el)
        order = sorted(iterations)
        if modes.get(_loop_key(loop)) == "peel" and order and order[0] == 0:
            out += iterations[0]
            order = order[1:]
            if not order:
                i = j
                continue
        run = Run(loop, [iterations[k] for k in order], order)
        guards = raw[i].prov.guards[: loop.outer_guards]
        out.append(Element("loop", run, S.Provenance(guards=guards), _loop_key(loop), guards))
        i = j
    return out


def name_number(name: str):
    match = re.fullmatch(r"(.*)_(\d+)", name)
    return (match.group(1), int(match.group(2))) if match else (name, None)


# ---------------------------------------------------------------- one class


class Template:
    """The template of a group of instances of one block (or of the network alone)."""

    def __init__(self, emitter, instances: list, block: str | None, modes: dict):
        self.e, self.graph = emitter, emitter.graph
        self.instances = instances
        self.block = block
        self.modes = modes  # loop key -> "peel" or "unroll"
        self.calls = [self.graph.calls.get(inst.path) for inst in instances] if block else [None]
        self.single = len(instances) == 1
        self.pre: dict = {}  # loop key -> instance -> the value its first pass starts from
        self.sizes: dict = {}  # (ref, axis) -> size_expr's answer

    # ------------------------------------------------------------ building the template

    def build(self):
        """The template of the instances, checked; raises Mismatch where they differ."""
        self._build()
        self._prepare_names()
        return self

    def _build(self):
        samples = [((n,), instance_elements(self.graph, inst, self.modes)) for n, inst in enumerate(self.instances)]
        self.entries = self._union(samples)
        self.entry_of: dict[str, Entry] = {}
        self.loops: dict[str, Entry] = {}
        self.loop_ids: dict[int, str] = {}  # a repeat's execution -> its loop entry
        self._index(self.entries, None)
        self.refs: dict[tuple, dict] = {}
        self.vals: dict[tuple, dict] = {}
        self.remaps: dict[tuple, list] = {}
        for n, inst in enumerate(self.instances):
            sid = (n,)
            refs = {}
            if self.block is None:
                for name in self.graph.inputs:
                    refs[Value(name)] = ("in", name)
            else:
                for value, pname in self.graph.instance_args.get(inst.path, {}).items():
                    refs[value] = ("in", pname)
            self.refs[sid] = refs
            self.remaps[sid] = []
        self._define(self.entries)
        self.vals = {sid: {ref: v for v, ref in dict.items(refs)} for sid, refs in self.refs.items()}
        self._position(self.entries, 0)
        for entry in self.all_entries():
            self._unify(entry)
            entry.guard = self._guard(entry)
            if entry.kind == "loop":
                counts = {sid: self.translate(sid, el.obj.loop.count, entry.pos) for sid, el in entry.items.items()}
                entry.count = self._same(counts)
        self._verify()
        self._simplify_guards()
        self.returns = self._returns()

    def _union(self, samples) -> list:
        order: list[str] = []
        where: dict[str, int] = {}
        entries: dict[str, Entry] = {}
        for sid, elements in samples:
            keys = [el.key for el in elements]
            if not order and len(set(keys)) == len(keys):
                order = keys
                where = {k: i for i, k in enumerate(order)}
                for el in elements:
                    entries[el.key] = Entry(el.key, el.kind)
                    self._add(entries[el.key], sid, el)
                continue
            if keys == order:
                for el in elements:
                    self._add(entries[el.key], sid, el)
                continue
            prev = -1
            for el in elements:
                entry = entries.get(el.key)
                if entry is None:
                    entry = entries[el.key] = Entry(el.key, el.kind)
                    order.insert(prev + 1, el.key)
                    where = {k: i for i, k in enumerate(order)}
                elif where[el.key] <= prev:
                    raise Mismatch(self._clusters_by_keys())
                self._add(entry, sid, el)
                prev = where[el.key]
        result = [entries[k] for k in order]
        for entry in result:
            if entry.kind == "loop":
                self._fold(entry)
        return result

    def _add(self, entry: Entry, sid, el: Element):
        if sid in entry.items:
            raise Mismatch(self._clusters_by_keys())
        first = next(iter(entry.items.values()), None)
        if first is not None and (entry.kind != el.kind or _what(first) != _what(el)):
            clusters: dict = {}
            for n, inst in enumerate(self.instances):
                found = [e for e in instance_elements(self.graph, inst, self.modes) if e.key == entry.key]
                clusters.setdefault(_what(found[0]) if found else None, []).append(n)
            groups = list(clusters.values())
            raise Mismatch(groups if len(groups) > 1 else self._clusters_by_keys())
        entry.items[sid] = el

    def _clusters_by_keys(self):
        """Instances whose bodies list the same layers and calls, in the same order."""
        clusters: dict[tuple, list] = {}
        for n, inst in enumerate(self.instances):
            elements = instance_elements(self.graph, inst, self.modes)
            clusters.setdefault(tuple((el.key, _what(el)) for el in elements), []).append(n)
        return list(clusters.values())

    def _fold(self, entry: Entry):
        """A `repeat` whose iterations are alike becomes one loop; else it is unrolled."""
        runs = entry.items
        entry.start = 1 if self.modes.get(entry.key) == "peel" else 0
        counts = {len(el.obj.iterations) for el in runs.values()}
        first = next(iter(runs.values())).obj.loop
        wanted = len(counts) > 1 or max(counts) + entry.start > UNROLL_UP_TO or not S.constant(first.count)
        if not wanted or first.count is None:
            raise Mismatch(unroll=entry.key, peel=False)
        shape = None
        body_samples = []
        for sid, el in runs.items():
            run = el.obj
            if run.indices != list(range(entry.start, entry.start + len(run.indices))):
                raise Mismatch(unroll=entry.key)
            for k, elements in zip(run.indices, run.iterations):
                here = [(el2.kind, _what(el2), name_number(el2.key)[0]) for el2 in elements]
                if any(kind == "loop" for kind, _, _ in here) or (shape is not None and here != shape):
                    raise Mismatch(unroll=entry.key)
                shape = here
                body_samples.append((sid + (k, entry.key), elements))
        body: list[Entry] = []
        numbers: list[list] = [[] for _ in shape]
        for sid, elements in body_samples:
            for p, el in enumerate(elements):
                if p == len(body):
                    body.append(Entry(f"{entry.key}#{p}", el.kind))
                outer = el.prov.loops[0].outer_guards if el.prov.loops else 0
                body[p].items[sid] = Element(el.kind, el.obj, el.prov, body[p].key, el.prov.guards[outer:])
                numbers[p].append((sid[1], name_number(el.key)[1]))
        for p, entry2 in enumerate(body):
            prefix = shape[p][2]
            pattern = _fit_pattern(numbers[p])
            if pattern is None:
                raise Mismatch(unroll=entry.key)
            entry2.pattern = (prefix,) + pattern
        first_el = next(iter(runs.values()))
        entry.body = body
        entry.var = first_el.obj.loop.var

    def _index(self, entries, loop):
        for entry in entries:
            entry.loop = loop
            self.entry_of[entry.key] = entry
            if entry.kind == "loop":
                self.loops[entry.key] = entry
                for el in entry.items.values():
                    self.loop_ids[el.obj.loop.id] = entry.key
                self._index(entry.body, entry)

    def all_entries(self, entries=None):
        for entry in self.entries if entries is None else entries:
            yield entry
            if entry.kind == "loop":
                yield from self.all_entries(entry.body)

    def _position(self, entries, pos: int) -> int:
        for entry in entries:
            entry.pos = pos
            pos += 1
            if entry.kind == "loop":
                pos = self._position(entry.body, pos)
                entry.end = pos - 1
        return pos

    def outputs_of(self, sid, el: Element) -> list:
        """The values an element makes, in the order its class returns them."""
        if el.kind == "node":
            return [Value(el.obj.name, i) for i in range(len(el.obj.outputs))]
        owner = self.graph.shares.get(el.obj.path)
        if owner is not None:  # its nodes are named as the shared instance's, under its own path
            mine, theirs = ".".join(el.obj.path) + ".", ".".join(owner) + "."
            return [Value(mine + v.node[len(theirs) :], v.index) for v in self.e.returns.get(owner, [])]
        return list(self.e.returns.get(el.obj.path, []))

    def _define(self, entries):
        """Fills `refs`: which ref names each value in each sample."""
        for entry in entries:
            if entry.kind != "loop":
                for sid, el in entry.items.items():
                    for i, v in enumerate(self.outputs_of(sid, el)):
                        self.refs[sid][v] = ("v", entry.key, i)
                continue
            self._define_loop(entry)

    def _define_loop(self, loop: Entry):
        """The refs of a folded loop's body, and its carried value (a chain of iterations)."""
        iteration_of: dict[tuple, dict] = {}  # top sample -> Value -> (k, ref)
        for body_entry in loop.body:
            for sid, el in body_entry.items.items():
                for i, v in enumerate(self.outputs_of(sid, el)):
                    iteration_of.setdefault(sid[:1], {})[v] = (sid[1], ("v", body_entry.key, i))
        carried, pre = set(), {}
        for body_entry in loop.body:
            for sid, el in body_entry.items.items():
                made = iteration_of.get(sid[:1], {})
                for v in read_values(el):
                    if v in made:
                        k, ref = made[v]
                        if k == sid[1] - 1:
                            carried.add(ref)
                        elif k != sid[1]:
                            raise Mismatch(unroll=loop.key)
        after = self._after_loop_reads(loop)
        last = {top: max(k for k, _ in made.values()) for top, made in iteration_of.items()}
        for top, values in after.items():
            for v in values:
                if v in iteration_of.get(top, {}):
                    k, ref = iteration_of[top][v]
                    if k != last[top]:
                        raise Mismatch(unroll=loop.key)
                    carried.add(ref)
        if len(carried) > 1:
            raise Mismatch(unroll=loop.key)
        out = next(iter(carried), None)
        # the value iteration 0 starts from: read at k = 0 where later iterations read the carried value
        slots = set()
        for body_entry in loop.body:
            for sid, el in body_entry.items.items():
                made = iteration_of.get(sid[:1], {})
                for j, v in enumerate(read_values(el)):
                    if v in made and made[v][1] == out and made[v][0] == sid[1] - 1:
                        slots.add((body_entry.key, j))
        if out is not None and not slots:  # no sample runs twice: the carried value is the one of the same spec name
            slots = self._guess_chain_slots(loop, out, iteration_of)
        for body_entry in loop.body:
            for sid, el in body_entry.items.items():
                if sid[1] != loop.start:
                    continue
                reads = read_values(el)
                for j, v in enumerate(reads):
                    if (body_entry.key, j) in slots and v not in iteration_of.get(sid[:1], {}):
                        pre.setdefault(sid[:1], set()).add(v)
        for top, values in pre.items():
            if len(values) > 1:
                raise Mismatch(unroll=loop.key)
        for top in loop.items:
            refs = self.refs[top]
            made = iteration_of.get(top, {})
            first = next(iter(pre.get(top, ())), None)
            count = len(loop.items[top].obj.iterations)
            by_k: dict[int, dict] = {}
            for v, (k, ref) in made.items():
                by_k.setdefault(k, {})[v] = ref
            for k in range(loop.start, loop.start + count):
                body_refs = dict(by_k.get(k, {}))
                for v, ref in by_k.get(k - 1, {}).items():
                    if ref == out:
                        body_refs[v] = ("carry", loop.key)
                if k == loop.start and first is not None:
                    body_refs[first] = ("carry", loop.key)
                self.refs[top + (k, loop.key)] = _Layered(body_refs, refs, top)
            for v, (k, ref) in made.items():
                if ref == out and k == loop.start + count - 1:
                    refs[v] = ("chain", loop.key)
            if first is not None:
                if first in after.get(top, ()):
                    raise Mismatch(unroll=loop.key)  # the value before the loop is still read after it
                self.remaps[top].append((loop, first, ("chain", loop.key)))
        pre_refs = {self.refs[top].get(v) for top, values in pre.items() for v in values}
        if len(pre_refs) > 1:
            raise Mismatch(unroll=loop.key)
        if pre_refs:
            pre_ref = pre_refs.pop()
            for n in range(len(self.instances)):
                top = (n,)
                if top not in loop.items:  # no iteration here: the value after the loop is the one before
                    for v, ref in list(self.refs[top].items()):
                        if ref == pre_ref:
                            self.remaps[top].append((loop, v, ("chain", loop.key)))
        loop.chain = (None, out)
        self.pre[loop.key] = pre

    def _guess_chain_slots(self, loop, out, iteration_of):
        out_entry = self.entry_of.get(out[1]) if out else None
        names = set()
        if out_entry is not None:
            for el in out_entry.items.values():
                names.add(spec_name(el, out[2]))
        slots = set()
        for body_entry in loop.body:
            for sid, el in body_entry.items.items():
                made = iteration_of.get(sid[:1], {})
                for j, v in enumerate(read_values(el)):
                    if v not in made and self._value_spec_name(sid[:1], v) in names:
                        slots.add((body_entry.key, j))
        return slots

    def _value_spec_name(self, top, value: Value):
        if value.node in self.graph.inputs:
            return value.node
        ref = self.refs[top].get(value)
        if ref and ref[0] == "in":
            return ref[1]
        if ref and ref[0] == "v" and ref[1] in self.entry_of:
            el = self.entry_of[ref[1]].items.get(top)
            return spec_name(el, ref[2]) if el else None
        return None

    def _after_loop_reads(self, loop: Entry) -> dict:
        reads: dict[tuple, set] = {}
        seen = False
        for entry in self.entries:
            if entry is loop:
                seen = True
                continue
            if not seen or entry.kind == "loop":
                continue
            for sid, el in entry.items.items():
                reads.setdefault(sid, set()).update(read_values(el))
        for n in range(len(self.instances)):
            outputs = [v for _, v in self.graph.outputs] if self.block is None else self._returned(n)
            reads.setdefault((n,), set()).update(outputs)
        return reads

    def ref_of(self, sid, value: Value, pos: int | None = None):
        refs = self.refs.get(sid)
        if refs is None:
            return None
        if len(sid) == 1 and pos is not None:
            for loop, v, ref in self.remaps.get(sid, ()):
                if v == value and pos > loop.end:
                    return ref
        return refs.get(value)

    def _unify(self, entry: Entry):
        """One ref per input slot, shared by every sample where the entry appears."""
        if entry.kind == "loop":
            return
        slots = None
        per_sample = {}
        for sid, el in entry.items.items():
            reads = read_values(el)
            refs = [self.ref_of(sid, v, entry.pos) for v in reads]
            if any(r is None for r in refs):
                raise Mismatch(self._clusters_by_keys())
            per_sample[sid] = refs
            slots = len(refs) if slots is None else slots
            if len(refs) != slots:
                raise Mismatch(self._clusters_by_keys())
        entry.inputs = []
        for j in range(slots or 0):
            options = {refs[j] for refs in per_sample.values()}
            if len(options) == 1:
                entry.inputs.append(options.pop())
                continue
            entry.inputs.append(self._join(entry.loop, j, per_sample))

    def _join(self, loop, j: int, per_sample: dict):
        """A slot fed by an optional layer where it exists, else by one value made before."""
        defaults = set()
        options = []
        for sid, refs in per_sample.items():
            ref = refs[j]
            producer = self.entry_of.get(ref[1]) if ref[0] == "v" else None
            if producer is not None and next(iter(producer.items.values())).guards and producer.loop is loop:
                if ref not in options:
                    options.append(ref)
            else:
                defaults.add(ref)
        if len(defaults) != 1 or not options:
            raise Mismatch(self._clusters_by_slot(j, per_sample))
        default = defaults.pop()
        for sid, refs in per_sample.items():
            present = [o for o in options if sid in self.entry_of[o[1]].items]
            want = present[0] if len(present) == 1 else (default if not present else None)
            if want != refs[j]:
                raise Mismatch(self._clusters_by_slot(j, per_sample))
        return ("join", default, tuple(options))

    def _clusters_by_slot(self, j, per_sample):
        clusters: dict = {}
        for sid, refs in per_sample.items():
            clusters.setdefault(refs[j], []).append(sid[0])
        absent = [n for n in range(len(self.instances)) if (n,) not in per_sample]
        groups = list(clusters.values())
        if groups:
            groups[0] += absent
        return [sorted(set(g)) for g in groups]

    def _guard(self, entry: Entry) -> tuple:
        """The entry's conditions, the same in every sample, or a mismatch."""
        per_sample = {}
        for sid, el in entry.items.items():
            raw = el.guards
            per_sample[sid] = tuple(self.translate(sid, g, entry.pos) if g is not None else None for g in raw)
        return self._same(per_sample)

    def _same(self, per_sample: dict):
        """The one value every sample gives, else a split of the instances by value
        (those without the entry join the first group)."""
        values = list(per_sample.values())
        if all(v == values[0] for v in values[1:]):
            return values[0] if values else ()
        if any(len(sid) > 1 for sid in per_sample):
            raise Mismatch(unroll=next(sid[2] for sid in per_sample if len(sid) > 1))
        groups: dict = {}
        for sid, value in per_sample.items():
            groups.setdefault(repr(value), []).append(sid[0])
        clusters = list(groups.values())
        clusters[0] += [n for n in range(len(self.instances)) if (n,) not in per_sample]
        raise Mismatch([sorted(g) for g in clusters])

    def translate(self, sid, expr, pos=None):
        """A recorded expression in template terms (values as refs), or None."""
        if expr is None:
            return None
        if isinstance(expr, S.Size):
            ref = self.ref_of(sid, expr.value, pos)
            return None if ref is None else S.Size(ref, expr.axis)
        if isinstance(expr, S.LoopVar):
            key = self.loop_ids.get(expr.loop)
            return None if key is None else S.LoopVar(key, expr.name)
        if isinstance(expr, S.Local):
            inner = self.translate(sid, expr.expr, pos)
            return None if inner is None else S.Local(expr.name, inner)
        if isinstance(expr, S.Op):
            args = tuple(self.translate(sid, a, pos) for a in expr.args)
            return None if any(a is None for a in args) else S.Op(expr.op, args)
        return expr

    # ------------------------------------------------------------ checking the template

    def env(self, sid):
        """`evaluate`'s environment in sample `sid`."""
        n = sid[0]
        call = self.calls[n]

        def leaf(e):
            if isinstance(e, S.Param):
                if call is None or e.name not in call.args:
                    raise S.Unknown(e.name)
                return call.args[e.name]
            if isinstance(e, S.Size):
                value = self.value_of(sid, e.value)
                if value is None:
                    raise S.Unknown(str(e))
                return self.graph.type_of(value).shape[e.axis]
            if isinstance(e, S.LoopVar):
                if len(sid) < 3 or sid[2] != e.loop:
                    raise S.Unknown(str(e))
                return sid[1]
            raise S.Unknown(str(e))

        return leaf

    def value_of(self, sid, ref):
        """The Value a ref names in a sample, or None."""
        if ref[0] == "join":
            for option in ref[2]:
                value = self.value_of(sid, option)
                if value is not None:
                    return value
            return self.value_of(sid, ref[1])
        vals = self.vals.get(sid)
        if vals is None:
            return None
        value = vals.get(ref)
        if value is None and len(sid) > 1:
            return self.value_of(sid[:1], ref)
        if value is None and ref[0] == "chain":
            for _, v, r in self.remaps.get(sid, ()):
                if r == ref:
                    return v
        return value

    def evaluate(self, sid, expr):
        try:
            return S.evaluate(expr, self.env(sid))
        except (S.Unknown, RecursionError):
            return UNKNOWN

    def _verify(self):
        """Every sample has exactly the entries its guards and loop counts select."""
        top = [(n,) for n in range(len(self.instances))]
        self._verify_level(self.entries, top)

    def _verify_level(self, entries, samples):
        for entry in entries:
            for sid in samples:
                present = sid in entry.items
                holds = self._holds(sid, entry.guard)
                if present and holds is False:
                    raise Mismatch(self._clusters_by_presence())
                if not present and holds is not False:
                    if entry.kind == "loop" and self.evaluate(sid, entry.count) == entry.start:
                        continue
                    if self.single and not entry.guard:
                        continue
                    raise Mismatch(self._clusters_by_presence())
                if present and entry.kind == "loop":
                    run = entry.items[sid].obj
                    if self.evaluate(sid, entry.count) != entry.start + len(run.iterations):
                        raise Mismatch(unroll=entry.key)
                    body_samples = [sid + (k, entry.key) for k in run.indices]
                    self._verify_level(entry.body, body_samples)

    def _simplify_guards(self):
        """A condition true in every instance (or one never to be decided) is left out."""
        top = [(n,) for n in range(len(self.instances))]
        for entry in self.all_entries():
            if not entry.guard:
                continue
            samples = top
            if entry.loop is not None:
                samples = [sid for e in entry.loop.body for sid in e.items] or list(entry.items)
            kept = []
            for g in entry.guard:
                if g is None or all(self._holds(sid, (g,)) is True for sid in samples):
                    continue
                kept.append(g)
            entry.guard = tuple(kept)

    def _holds(self, sid, guard):
        """True, False, or None where a condition is unknown or fails to evaluate."""
        for g in guard:
            if g is None:
                return None
            value = self.evaluate(sid, g)
            if value is UNKNOWN or not isinstance(value, bool):
                return None
            if not value:
                return False
        return True

    def _clusters_by_presence(self):
        clusters: dict = {}
        for n in range(len(self.instances)):
            present = tuple(entry.key for entry in self.all_entries() if any(sid[0] == n for sid in entry.items))
            clusters.setdefault(present, []).append(n)
        return list(clusters.values())

    def _returns(self) -> list:
        """The refs `forward` returns, in the order of the spec's `return`."""
        end = 1 << 60
        if self.block is None:
            return [self.ref_of((0,), v, end) for _, v in self.graph.outputs]
        per_sample = {}
        for n, inst in enumerate(self.instances):
            values = self._returned(n)
            refs = [self.ref_of((n,), v, end) for v in values]
            if any(r is None for r in refs):
                raise Mismatch([[i] for i in range(len(self.instances))])
            per_sample[(n,)] = refs
        counts = {len(refs) for refs in per_sample.values()}
        if len(counts) != 1:
            groups: dict = {}
            for sid, refs in per_sample.items():
                groups.setdefault(len(refs), []).append(sid[0])
            raise Mismatch(list(groups.values()))
        found = []
        for j in range(counts.pop()):
            options = {refs[j] for refs in per_sample.values()}
            found.append(options.pop() if len(options) == 1 else self._join(None, j, per_sample))
        for n, inst in enumerate(self.instances):
            self.e.returns[inst.path] = [self.value_of((n,), ref) for ref in found]
        return found

    def _returned(self, n: int) -> list:
        """The values instance n returns that are made inside it (an input passed back is not)."""
        call = self.calls[n]
        inst = self.instances[n]
        values = [v for v in call.returns if v is not None] if call is not None and call.returns else []
        values = [v for v in values if v.node in inst.names]
        if not values or any(v.node not in self.graph.g for v in values):
            return list(inst.outputs)
        return values

    # ------------------------------------------------------------ names of parameters and sizes

    def _prepare_names(self):
        """Constructor atoms: the compile-time parameters and the used input sizes."""
        self.params: list[str] = []
        self.runtime_params: list[str] = []  # sizes known at run time: `forward` arguments
        self.defaults: dict[str, object] = {}
        self.block_params: tuple = ()
        if self.block is not None and self.calls[0] is not None:
            self.block_params = self.calls[0].params
            for p in self.block_params:
                # A size known only at run time (`to_rows(x, N)`) cannot be a constructor
                # argument: the caller passes it to `forward`, which may not be able to
                # recover it from its inputs' shapes (`[24 * N]`).
                given = [c.args[p] for c in self.calls if c is not None and p in c.args]
                if any(_runtime(v) for v in given):
                    self.runtime_params.append(p)
                elif len(given) == len(self.calls):
                    self.params.append(p)
            for c in self.calls:
                for p in c.defaults:
                    if p in c.args:
                        self.defaults.setdefault(p, c.args[p])
        elif self.block is not None:  # a graph a pass rebuilt without call records: the tensors only
            names: list[str] = []
            for inst in self.instances:
                for p in reversed(list(self.graph.instance_args.get(inst.path, {}).values())):
                    if p not in names:
                        names.append(p)
            self.block_params = tuple(names)
        self.tensor_params = [p for p in self.block_params if p not in self.params and p not in self.runtime_params]
        self.local_size_names = {}
        for entry in self.all_entries():
            for sid, el in entry.items.items():
                for expr in el.prov.exprs.values():
                    for leaf in S.leaves(self.translate(sid, expr, entry.pos)):
                        if isinstance(leaf, S.Local) and isinstance(leaf.expr, S.Size) and leaf.expr.value[0] == "in":
                            self.local_size_names.setdefault((leaf.expr.value[1], leaf.expr.axis), leaf.name)
                break


class _Layered(dict):
    """A body sample's refs: its own, then the instance's."""

    def __init__(self, own: dict, outer: dict, top):
        super().__init__(own)
        self.outer, self.top = outer, top

    def get(self, key, default=None):
        if key in self:
            return self[key]
        return self.outer.get(key, default)

    def items(self):
        merged = dict(self.outer)
        merged.update(dict.items(self))
        return merged.items()


UNKNOWN = object()


def read_values(el: Element) -> list:
    """The values an element reads, in slot order."""
    if el.kind == "node":
        return list(el.obj.inputs)
    return list(el.obj.inputs)


def local_name(el: Element) -> str:
    """The attribute an element's submodule takes: the last part of its name."""
    return el.key.rsplit(".", 1)[-1]


def _what(el: Element):
    if el.kind == "node":
        return ("node", el.obj.op)
    if el.kind == "call":
        return ("call", el.obj.block)
    return ("loop",)


def spec_name(el: Element | None, index: int):
    """The spec's name for output `index` of an element, or None."""
    if el is None:
        return None
    names = el.prov.names
    count = len(el.obj.outputs) if el.kind == "node" else len(el.obj.outputs)
    if len(names) > 1 and len(names) == count:
        return names[index]
    if el.kind == "node":
        return el.obj.var if count == 1 else None
    return names[0] if len(names) == 1 and count == 1 else None


def _fit_pattern(samples):
    """(a, b) with number = a * iteration + b for every (iteration, number), or None."""
    if any(number is None for _, number in samples):
        return None
    by_k = {}
    for k, number in samples:
        if by_k.setdefault(k, number) != number:
            return None
    ks = sorted(by_k)
    b = by_k[ks[0]] - ks[0]
    a = 1
    if len(ks) > 1:
        a = (by_k[ks[1]] - by_k[ks[0]]) // (ks[1] - ks[0])
        b = by_k[ks[0]] - a * ks[0]
    if a < 1 or any(by_k[k] != a * k + b for k in ks):
        return None
    return a, b


# ---------------------------------------------------------------- sizes


def _size_samples(c: Template, ref) -> list:
    if ref[0] == "v":
        return list(c.entry_of[ref[1]].items)
    if ref[0] == "carry":
        return [sid for entry in c.loops[ref[1]].body for sid in entry.items]
    return [(n,) for n in range(len(c.instances)) if c.value_of((n,), ref) is not None]


def concrete_size(c: Template, sid, ref, axis):
    value = c.value_of(sid, ref)
    if value is None:
        return None
    shape = c.graph.type_of(value).shape
    return shape[axis] if axis < len(shape) else None


def _runtime(value) -> bool:
    """A compile-time value that holds a symbolic dimension."""
    if isinstance(value, tuple):
        return any(_runtime(v) for v in value)
    return isinstance(value, Dim)


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def size_expr(c: Template, ref, axis):
    """An expression over the class's parameters and input sizes for a static size of a
    value, exact in every sample; None where none is found."""
    memo = c.sizes
    key = (ref, axis)
    if key in memo:
        return memo[key]
    memo[key] = None  # a size does not depend on itself
    samples = _size_samples(c, ref)
    concrete = {sid: concrete_size(c, sid, ref, axis) for sid in samples}
    if not samples or not all(is_int(v) for v in concrete.values()):
        return None
    for candidate in _candidates(c, ref, axis, samples, concrete):
        if candidate is None or not _renderable(c, candidate):
            continue
        if all(_same_int(c.evaluate(sid, candidate), concrete[sid]) for sid in samples):
            candidate = expand_sizes(c, candidate)  # over parameters and input sizes only
            if S.constant(candidate) and not any(isinstance(x, S.Global) for x in S.leaves(candidate)):
                candidate = S.Lit(concrete[samples[0]])  # `256`, not `64 * 4`: no name to keep
            memo[key] = candidate
            return candidate
    return None


def all_sizes(c: Template):
    """Every value's sizes, in template order: each then reads only sizes already known."""
    for entry in c.all_entries():
        if entry.kind == "loop":
            refs = [("carry", entry.key)]
        else:
            refs = [("v", entry.key, i) for i in range(len(c.outputs_of(*next(iter(entry.items.items())))))]
        for ref in refs:
            value = c.value_of(next(iter(entry.items)) if entry.kind != "loop" else (0,), ref)
            if value is None and entry.kind == "loop":
                samples = _size_samples(c, ref)
                value = c.value_of(samples[0], ref) if samples else None
            if value is not None:
                for axis, d in enumerate(c.graph.type_of(value).shape):
                    if is_int(d):
                        size_expr(c, ref, axis)


def _same_int(a, b) -> bool:
    return is_int(a) and a == b


def _renderable(c: Template, expr) -> bool:
    """Every size it reads has an expression of its own (else it would print a number)."""
    for leaf in S.leaves(expr):
        if isinstance(leaf, S.Size) and leaf.value[0] != "in" and size_expr(c, leaf.value, leaf.axis) is None:
            return False
    return True


def _rank(c: Template, ref, sid):
    value = c.value_of(sid, ref)
    return None if value is None else c.graph.type_of(value).rank


def _candidates(c: Template, ref, axis, samples, concrete):
    sid0 = samples[0]
    if ref[0] == "in":
        if c.block is not None:
            yield S.Size(ref, axis)
            return
    if ref[0] == "join":
        yield S.Size(ref[1], axis)
        for option in ref[2]:
            yield S.Size(option, axis)
    if ref[0] == "v":
        entry = c.entry_of[ref[1]]
        el = entry.items[sid0]
        rank = _rank(c, ref, sid0)
        if entry.kind == "node":
            for expr in el.prov.exprs.values():
                translated = c.translate(sid0, expr, entry.pos)
                if isinstance(translated, S.Op) and translated.op == "tuple" and len(translated.args) == rank:
                    translated = translated.args[axis]  # reshape((n, t, d)): axis 2 is `d`
                if translated is not None and is_int(c.evaluate(sid0, translated)):
                    yield translated
        else:
            yield from _child_sizes(c, entry, el, ref, axis)
        same_rank = [r for r in entry.inputs if r[0] != "join" and _rank(c, r, sid0) == rank]
        for r in same_rank:
            yield S.Size(r, axis)
        if len(same_rank) > 1:
            total = S.Size(same_rank[0], axis)
            for r in same_rank[1:]:
                total = S.Op("add", (total, S.Size(r, axis)))
            yield total
    if ref[0] == "carry":
        loop = c.loops[ref[1]]
        pre = next(iter(c.pre.get(loop.key, {}).values()), None)
        if pre:
            value = next(iter(pre))
            pre_ref = c.ref_of((sid0[0],), value, loop.pos)
            if pre_ref is not None:
                yield S.Size(pre_ref, axis)
    yield from _fits(c, ref, samples, concrete)


def _child_sizes(c: Template, entry, el, ref, axis):
    """The child class's expression for the size, in this class's terms."""
    name = c.e.class_of(el.obj.path)
    info = c.e.info.get(name)
    if info is None:
        return
    expr = info.return_sizes.get((ref[2], axis))
    if expr is None:
        return
    call = c.graph.calls.get(el.obj.path)
    args = c.graph.instance_args.get(el.obj.path, {})
    slot = {args[v]: entry.inputs[j] for j, v in enumerate(read_values(el)) if v in args and j < len(entry.inputs)}
    sid0 = next(iter(entry.items))

    def substitute(e):
        if isinstance(e, S.Param):
            written = call.provenance.exprs.get(e.name) if call else None
            translated = c.translate(sid0, written, entry.pos)
            return translated if translated is not None else S.Lit(call.args[e.name])
        if isinstance(e, S.Size):
            return S.Size(slot[e.value[1]], e.axis) if e.value[1] in slot else None
        if isinstance(e, S.Op):
            args2 = tuple(substitute(a) for a in e.args)
            return None if any(a is None for a in args2) else S.Op(e.op, args2)
        if isinstance(e, S.Local):
            inner = substitute(e.expr)
            return None if inner is None else S.Local(e.name, inner)
        return e

    yield substitute(expr)


def _fits(c: Template, ref, samples, concrete):
    """Simple forms over the parameters and input sizes: `a`, `a * k`, `a // k`, `a + k`,
    and in a loop `a + k * i`; a constant where the size never changes."""
    values = list(concrete.values())
    if all(v == values[0] for v in values):
        yield S.Lit(values[0])
    sid0 = samples[0]
    atoms = []
    call = c.calls[sid0[0]]
    if call is not None:
        for p in c.params:
            if is_int(call.args.get(p)):
                atoms.append(S.Param(p))
    for p in c.tensor_params:
        value = c.value_of(sid0, ("in", p))
        if value is None:
            continue
        for axis, d in enumerate(c.graph.type_of(value).shape):
            if is_int(d) and d > 0:
                atoms.append(S.Size(("in", p), axis))
    target = concrete[sid0]
    loop = sid0[2] if len(sid0) > 2 else None
    index = S.LoopVar(loop, None) if loop else None
    for atom in atoms:
        a = c.evaluate(sid0, atom)
        if not is_int(a) or a == 0:
            continue
        yield atom
        if target % a == 0:
            yield S.Op("mul", (atom, S.Lit(target // a)))
        if a % target == 0 if target else False:
            yield S.Op("floordiv", (atom, S.Lit(a // target)))
        if index is None:
            yield S.Op("add", (atom, S.Lit(target - a)))
    if index is not None:  # a loop's pass i: `a + i * step`
        by_instance: dict = {}
        for sid in samples:
            by_instance.setdefault(sid[0], []).append(sid)
        pair = next((sids[:2] for sids in by_instance.values() if len(sids) > 1), None)
        if pair is not None:
            (first, second) = sorted(pair, key=lambda sid: sid[1])
            rise, run = concrete[second] - concrete[first], second[1] - first[1]
            if rise % run == 0:
                step = rise // run
                named = _global_named(c, step)
                term = S.Op("mul", (index, named)) if named else S.Op("mul", (S.Lit(step), index))
                for atom in atoms:
                    yield S.Op("add", (atom, term))
                yield S.Op("add", (S.Lit(concrete[first] - step * first[1]), term))


def _global_named(c: Template, value):
    for name, (_, v) in c.e.globals.items():
        if is_int(v) and v == value and value not in (0, 1):
            return S.Global(name, v)
    return None


def expand_sizes(c: Template, expr):
    """`expr` with every size of an inner value replaced by its own expression (which is
    already over parameters and input sizes only)."""
    if isinstance(expr, S.Size) and (expr.value[0] != "in" or c.block is None):
        return size_expr(c, expr.value, expr.axis)
    if isinstance(expr, S.Op):
        args = tuple(expand_sizes(c, a) for a in expr.args)
        return None if any(a is None for a in args) else S.Op(expr.op, args)
    if isinstance(expr, S.Local):
        inner = expand_sizes(c, expr.expr)
        return None if inner is None else S.Local(expr.name, inner)
    return expr
