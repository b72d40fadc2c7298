"""Graph -> PyTorch source: one `nn.Module` class per block, written as a person would.

A block's class takes the block's compile-time parameters and the input sizes its layers
depend on, named as the spec names them (`Bottleneck(in_channels, width, stride=1)`), and
builds its layers from them with the expressions the spec wrote (`nn.Conv2d(in_channels,
width * 4, kernel_size=1, bias=False)`; compiler/symbolic.py records them). The calls of
a block share its class through a template, the union of the calls (torch_classes.py): a
layer made under an `if` becomes an optional submodule built under the same condition
(`forward` tests it), a `repeat` a loop in `__init__` and `forward`, or an `nn.Sequential`
where the block is a chain of calls. Every call is rendered through the template and must
give the same text; where two calls cannot share a class (a size with no expression, a
branch that renumbers layers) they get classes named for what differs. Expressions are
checked against the elaborated values before use, so the module computes exactly what the
graph does.

`forward` uses the spec's names: a value takes the variable its statement binds (a block
call's result too); unnamed values in a chain reuse the name of the value they replace
(`x = self.conv2d_0(x)`) or are written inline; no name holds two live values. One comment
per spec statement gives its file and line. Submodule attributes are the spec's instance
names, so `state_dict()` keys are LANGUAGE.md's parameter names. docs/torch.md has the rules.

Nothing from a spec reaches the source unsanitized: identifiers go through namespaces that
rename keywords, builtins and clashes (`self`, `torch`, `nn`, `F`, ...) consistently;
strings are emitted as literals; comments keep only safe characters. Source generation
needs no torch; `load_module` does.
"""

from __future__ import annotations

import ast
import builtins
import keyword
import re
import sys
import types
from dataclasses import dataclass

from netc.compiler import dims as D
from netc.compiler import symbolic as S
from netc.compiler.analysis import Instance, instance_nodes, instance_tree, symbol_source
from netc.compiler.ir import Graph, Node, TensorType, Value, param_owner
from netc.compiler.ops import REGISTRY
from netc.dsl.diagnostics import NetcError

from .torch_classes import (
    Element,
    Entry,
    Mismatch,
    Template,
    all_sizes,
    concrete_size,
    expand_sizes,
    is_int,
    local_name,
    name_number,
    read_values,
    size_expr,
    spec_name,
)

LINE_LENGTH = 88  # ruff format's default: the emitted file passes `ruff format --check`
_MODULE_NAMES = {"torch", "nn", "F", "math"}
_RESERVED = set(keyword.kwlist) | set(keyword.softkwlist) | set(dir(builtins)) | _MODULE_NAMES | {"self"}
# nn.Module's own attributes: a layer with one of these names is reached through _modules.
_MODULE_ATTRS = {
    "forward", "training", "train", "eval", "parameters", "buffers", "children", "modules",
    "state_dict", "load_state_dict", "to", "cuda", "cpu", "xpu", "mtia", "ipu", "type", "float",
    "double", "half", "bfloat16", "apply", "zero_grad", "register_buffer", "register_parameter",
    "register_module", "add_module", "named_parameters", "named_buffers", "named_children",
    "named_modules", "requires_grad_", "share_memory", "extra_repr", "get_submodule",
    "get_parameter", "get_buffer", "dump_patches", "call_super_init", "compile", "to_empty",
    "set_submodule", "set_extra_state", "get_extra_state", "T_destination",
}  # fmt: skip


class Namespace:
    """Hands out legal, unique Python identifiers that shadow nothing reserved (FX's _Namespace)."""

    def __init__(self, reserved=()):
        self.used = set(_RESERVED) | set(reserved)

    def fresh(self, base: str, numbered: bool = False) -> str:
        """`base`, else `base_`, `base_1`, ...; numbered: `base`, `base2`, `base3`, ..."""
        base = re.sub(r"\W", "_", base) or "v"
        if base[0].isdigit():
            base = "_" + base
        first = 2 if numbered else 1
        if base in self.used and not numbered:
            base = base + "_"
        name, k = base, first
        while name in self.used:
            name, k = f"{base}{k}", k + 1
        self.used.add(name)
        return name


# ---------------------------------------------------------------- what lowerings build with
# A torch lowering is `(t, *inputs, **attrs) -> Code`: `t` is the `_Lowering` emitting the
# node, each input a `Code` naming its value (with its type), the attributes the node's
# normalized ones. The result is a Python expression; `t.layer(...)` declares the node's
# submodule, `t.call(...)` renders a call, `t.inplace(i)` says whether input i may be
# overwritten and `t.augment` writes that overwrite (`y += skip`). Attribute values and
# input sizes a lowering sees may be `_Spelled`: they compute as their value and write
# themselves as the spec's expression (`width * 4` in `__init__`, `self.heads` in `forward`).


class _Spelled:
    """A compile-time value that writes itself as the spec wrote it."""

    def spelled(self, init: bool) -> str:
        return self._init if init else self._forward

    def plain(self):
        raise NotImplementedError

    def __str__(self):
        return self._forward

    def __repr__(self):
        return self._forward

    def __format__(self, spec):
        return self._forward if not spec else format(self.plain(), spec)


class _Int(_Spelled, int):
    def plain(self):
        return int(self)


class _Float(_Spelled, float):
    def plain(self):
        return float(self)


class _Str(_Spelled, str):
    def plain(self):
        return str.__str__(self)


class _Tuple(_Spelled, tuple):
    def plain(self):
        return tuple(_plain(v) for v in self)


class _Dim(_Spelled, D.Dim):
    def plain(self):
        return D.Dim(self.terms, self.const)


def _spelled(value, init: str, forward: str, exact: bool = True, fixed: bool = True):
    """`value` that writes itself as `init` / `forward`; `exact`: the expression's value is
    the value itself, not an int standing for a uniform tuple; `fixed`: it is a constant."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        out = _Int(value)
    elif isinstance(value, float):
        out = _Float(value)
    elif isinstance(value, str):
        out = _Str(value)
    elif isinstance(value, tuple):
        out = _Tuple(value)
    elif isinstance(value, D.Dim):
        out = _Dim(value.terms, value.const)
        for key, v in (("_init", init), ("_forward", forward), ("_exact", exact), ("_fixed", fixed)):
            object.__setattr__(out, key, v)
        return out
    else:
        return value
    out._init, out._forward, out._exact, out._fixed = init, forward, exact, fixed
    return out


def _plain(value):
    if isinstance(value, _Spelled):
        return value.plain()
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    return value


def py(value) -> str:
    """A Python literal; strings through repr, so nothing from a spec is spliced raw."""
    value = _plain(value)
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, str):
        simple = all(c.isalnum() or c in " _-." for c in value)
        return f'"{value}"' if simple else repr(value)
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, tuple):
        return "(" + ", ".join(py(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    if value is None:
        return "None"
    raise TypeError(f"no literal for {value!r}")


def py_size(value) -> str:
    """A per-axis tuple that is uniform reads as one int, as people write it."""
    value = _plain(value)
    if isinstance(value, tuple) and value and all(v == value[0] for v in value):
        return py(value[0])
    return py(value)


class Code(str):
    """A Python expression; for a tensor value, its type too. `atom`: a name or literal
    that needs no statement of its own."""

    type: TensorType | None = None
    atom: bool = False
    sizes: tuple | None = None  # the shape as lowerings see it (sizes that spell themselves)

    @classmethod
    def of(cls, text: str, type: TensorType | None = None, atom: bool = False) -> Code:
        code = cls(text)
        code.type, code.atom = type, atom
        return code

    @property
    def shape(self):
        return self.sizes if self.sizes is not None else self.type.shape

    @property
    def rank(self) -> int:
        return self.type.rank

    def __call__(self, *args, **kwargs) -> Code:
        return Code(f"{self}({_arguments(args, kwargs)})")


@dataclass(frozen=True)
class Exact:
    """A tuple argument rendered as written (a uniform per-axis tuple would read as one int)."""

    value: tuple


@dataclass(frozen=True)
class Opt:
    """A keyword argument left out where it equals torch's default."""

    value: object
    default: object


@dataclass(frozen=True)
class InPlace:
    """`target op= other`: the node's result overwrites `target` (an input)."""

    target: Code
    op: str
    other: Code


@dataclass(frozen=True)
class Unpack:
    """A call whose results nest (`nn.LSTM`'s `out, (h, c)`): `pattern` places the node's
    result names, `"{}, ({}, {})"`."""

    pattern: str
    code: Code


def exact(value) -> Exact:
    return Exact(value)


def opt(value, default) -> Opt:
    return Opt(value, default)


def _render(value, init: bool = False) -> str:
    if isinstance(value, Code):
        return str(value)
    if isinstance(value, Exact):
        inner = value.value
        if isinstance(inner, _Spelled) and inner._exact:
            return inner.spelled(init)
        if isinstance(inner, tuple):
            return "(" + ", ".join(_render(v, init) for v in inner) + ("," if len(inner) == 1 else "") + ")"
        return _render(inner, init)
    if isinstance(value, _Spelled):
        return value.spelled(init)
    return py_size(value)


def _arguments(args, kwargs, init: bool = False) -> str:
    parts = [_render(a, init) for a in args]
    for key, value in kwargs.items():
        if isinstance(value, Opt):
            fixed = not isinstance(value.value, _Spelled) or value.value._fixed
            plain, default = _plain(value.value), _plain(value.default)
            if fixed and (plain == default or py_size(plain) == py_size(default)):
                continue
            value = value.value
        parts.append(f"{key}={_render(value, init)}")
    return ", ".join(parts)


def camel(name: str) -> str:
    """CamelCase of a spec name: `double_conv` -> `DoubleConv`, each part's first letter
    raised and the rest kept as written (`DQN` stays `DQN`); an underscore stays between
    two digits, where dropping it would merge two numbers (`resnext50_32x4d` ->
    `Resnext50_32x4d`)."""
    out = ""
    for part in (p for p in name.split("_") if p):
        if out and out[-1].isdigit() and part[0].isdigit():
            out += "_"
        out += part[:1].upper() + part[1:]
    return out or "Net"


def network_class(name: str, namespace: Namespace | None = None) -> str:
    """The network's class: its name in CamelCase, renamed where that is taken (`f` -> `F_`)."""
    return (namespace or Namespace()).fresh(camel(name))


def shared_layer(graph: Graph, node: Node) -> Node | None:
    """The earlier layer whose module computes `node` with the parameters `node` shares
    (all of them from it, same op and attributes), else None."""
    owners = {param_owner(full, local) for local, full in node.shared.items()}
    if len(owners) != 1 or set(node.shared) != set(node.params) | set(node.buffers):
        return None
    (name,) = owners
    owner = graph.node(name) if name in graph.g else None
    if owner is None or owner.op != node.op or owner.attrs != node.attrs:
        return None
    return owner


def _owner_of(node: Node) -> str:
    local, full = next(iter(node.shared.items()))
    return param_owner(full, local)


def _where(span) -> str:
    """`file.net:12` or `file.net:9-11` for a statement over several lines."""
    if span is None:
        return ""
    file = re.sub(r"[^\w.\-]", "_", span.file.replace("\\", "/").rsplit("/", 1)[-1])
    end = getattr(span, "end_line", span.line)
    return f"{file}:{span.line}" + (f"-{end}" if end and end != span.line else "")


def _is_primary(text: str) -> bool:
    """A name, literal, attribute, call or subscript: safe as an operand without parentheses."""
    if text.isidentifier():
        return True
    try:
        node = ast.parse(text, mode="eval").body
    except SyntaxError:
        return False
    if isinstance(node, ast.Constant):
        return not (isinstance(node.value, (int, float)) and str(node.value).startswith("-"))
    return isinstance(node, (ast.Name, ast.Attribute, ast.Call, ast.Subscript))


# ---------------------------------------------------------------- module-level state


class TorchEmitter:
    def __init__(self, graph: Graph, source_file: str | None = None):
        self.graph = graph
        self.source_file = source_file
        self.class_names: set[str] = set()
        self.classes: list[tuple[str, list[str]]] = []
        self.info: dict[str, _ClassInfo] = {}
        self.cls_of: dict[tuple, str] = {}
        self.returns: dict[tuple, list] = {}  # instance path -> its class's return values, in order
        # every name `forward` binds: (class, name, value, spec name, defined at, last use, group);
        # names of one group (a join, a loop's carried value) hold one spec value. For tests.
        self.bindings: list = []

    def source(self) -> str:
        for path, owner in self.graph.shares.items():
            self._check_share(path, owner)
        root = instance_tree(self.graph)
        self.namespace = Namespace()
        root.cls = network_class(self.graph.name, self.namespace)  # the network's class name comes first
        self.globals = self._globals()
        self.class_names = {root.cls} | {name for name, _ in self.globals.values()}
        groups: dict[str, list] = {}
        self._post_order(root, groups)
        for block, instances in groups.items():
            self._emit_block(block, instances)
        info = self._emit([root], None)
        self.classes.append((root.cls, info.lines(root.cls, f"Network `{self.graph.name}`.")))
        self.bindings += [(root.cls,) + b for b in info.bindings]
        body = "\n\n".join("\n".join(lines) + "\n" for _, lines in self.classes)
        return self._header(body) + body

    def _post_order(self, inst: Instance, groups: dict):
        # an instance that shares another's parameters has no class: it calls the other's module
        children = [item for item in inst.items if isinstance(item, Instance) and item.path not in self.graph.shares]
        for item in children:
            self._post_order(item, groups)
        for item in children:
            groups.setdefault(item.block, []).append(item)

    def _check_share(self, path: tuple, owner: tuple):
        """A sharing call runs the shared instance's module: only right where both were made
        with the same compile-time arguments."""
        mine, theirs = self.graph.calls.get(path), self.graph.calls.get(owner)
        if mine is not None and theirs is not None and mine.args != theirs.args:
            differ = sorted(k for k in mine.args if mine.args.get(k) != theirs.args.get(k))
            inside = [n for n in self.graph.nodes() if n.scope[: len(path)] == path]
            raise NetcError(
                f"the PyTorch backend runs a sharing block call as `{owner[-1]}`'s module, so both need "
                f"the same compile-time arguments; `{'`, `'.join(differ)}` differ",
                inside[0].call_sites[len(path) - 1] if inside else None,
                code="share",
            )

    def class_of(self, path: tuple) -> str | None:
        """The class of the block instance at `path`: a sharing instance's is the shared one's."""
        return self.cls_of.get(self.graph.shares.get(path, path))

    def _globals(self) -> dict:
        """Every file-level constant an expression names: spec name -> (Python name, value)."""
        seen: dict[str, object] = {}
        records = list(self.graph.provenance.values()) + [c.provenance for c in self.graph.calls.values()]
        for prov in records:
            exprs = list(prov.exprs.values()) + list(prov.guards) + [loop.count for loop in prov.loops]
            for expr in exprs:
                for leaf in S.leaves(expr):
                    if isinstance(leaf, S.Global) and _literal_ok(leaf.value):
                        seen.setdefault(leaf.name, leaf.value)
        return {name: (self.namespace.fresh(name), seen[name]) for name in sorted(seen)}

    def _emit(self, group: list, block: str | None):
        """One class for `group`: a loop that cannot fold is tried with its first pass written
        out, then unrolled; a Mismatch that splits the group goes to the caller."""
        modes: dict[str, str] = {}
        while True:
            try:
                return _Writer(Template(self, group, block, modes).build()).write()
            except Mismatch as exc:
                mode = modes.get(exc.unroll)
                if exc.unroll is None or mode == "unroll":
                    if len(group) == 1:
                        raise AssertionError(f"netc cannot write the class of one instance of {block}") from None
                    raise
                modes = {**modes, exc.unroll: "peel" if mode is None and exc.peel else "unroll"}

    def _emit_block(self, block: str, instances: list):
        done, pending = [], [instances]
        while pending:
            group = pending.pop(0)
            try:
                done.append((group, self._emit(group, block)))
            except Mismatch as exc:
                clusters = exc.clusters if exc.clusters and len(exc.clusters) > 1 else [[i] for i in range(len(group))]
                pending[:0] = [[group[i] for i in cluster] for cluster in clusters]
        for (group, info), base in zip(done, _class_names(self.graph, block, [g for g, _ in done])):
            name = self.namespace.fresh(base, numbered=True)
            self.class_names.add(name)
            for inst in group:
                self.cls_of[inst.path] = name
            self.info[name] = info
            self.classes.append((name, info.lines(name, f"Block `{block}`.")))
            self.bindings += [(name,) + b for b in info.bindings]

    def _header(self, body: str) -> str:
        code = "\n".join(line.split("  #")[0] for line in body.splitlines())
        imports = []
        if re.search(r"\btorch\.", code):
            imports.append("import torch")
        if re.search(r"\bF\.", code):
            imports.append("import torch.nn.functional as F")
        imports.append("from torch import nn")
        origin = (
            re.sub(r"[^\w.\-]", "_", self.source_file.replace("\\", "/").rsplit("/", 1)[-1])
            if self.source_file
            else "a spec"
        )
        doc = f'"""{camel(self.graph.name)}: PyTorch modules generated by netc from {origin}."""'
        head = doc + "\n\n" + "\n".join(imports) + "\n\n"
        used = [(name, value) for name, value in self.globals.values() if re.search(rf"(?<![\w.]){name}\b", code)]
        if used:
            first = {name: re.search(rf"(?<![\w.]){name}\b", code).start() for name, _ in used}
            used.sort(key=lambda item: first[item[0]])
            head += "".join(f"{name} = {py(value)}\n" for name, value in used) + "\n"
        return head + "\n"


def _class_names(graph: Graph, block: str, groups: list) -> list[str]:
    """The block's name in CamelCase; where its calls need several classes, each named for
    what differs: a parameter whose value is the same in all its calls and in no call of
    the others (`InvertedResidualT1`, `InvertedResidualT6`), else numbered (`Block2`)."""
    base = camel(block)
    if len(groups) == 1:
        return [base]
    values = []  # per group: parameter -> the set of its values
    for group in groups:
        seen: dict = {}
        for inst in group:
            call = graph.calls.get(inst.path)
            for p, v in call.args.items() if call else ():
                seen.setdefault(p, set()).add(v if isinstance(v, (int, str, bool)) else repr(v))
        values.append(seen)
    # a parameter an `if` of the block reads says best what differs: try those first
    tested: list[str] = []
    for group in groups:
        for node in instance_nodes(group[0]):
            prov = graph.provenance.get(node.name)
            if prov is None or node.scope != group[0].path:
                continue
            for guard in prov.guards:
                for leaf in S.leaves(guard):
                    if isinstance(leaf, S.Param) and leaf.name not in tested:
                        tested.append(leaf.name)
    names = []
    for k, seen in enumerate(values):
        name = base
        for p, vs in sorted(seen.items(), key=lambda item: item[0] not in tested):
            (v,) = vs if len(vs) == 1 else (None,)
            others = [other.get(p, set()) for j, other in enumerate(values) if j != k]
            text = _value_name(v)
            if text and all(v not in other for other in others):
                name = base + camel(p) + text
                break
        names.append(name)
    return names if len(set(names)) == len(names) else [base] * len(groups)


def _value_name(value) -> str | None:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value) if value >= 0 else None
    if isinstance(value, str) and value.isidentifier():
        return camel(value)
    return None


def _literal_ok(value) -> bool:
    if isinstance(value, tuple):
        return all(_literal_ok(v) for v in value)
    return isinstance(value, (bool, int, float, str))


@dataclass
class _ClassInfo:
    """What a parent needs from an emitted class, and its text."""

    bindings: list  # (name, value, spec name, defined at, last use, group) of `forward`'s names
    params: list  # constructor parameters: (kind, key, name, default); kind "size" (key (param, axis)) or "param"
    forward_params: list  # the tensor parameters `forward` takes, in order
    returns: list  # refs of the values `forward` returns, in order
    return_sizes: dict  # (return index, axis) -> expression over the constructor parameters
    init: list
    forward: list | None  # None: an nn.Sequential
    base: str = "nn.Module"

    def lines(self, name: str, doc: str) -> list[str]:
        out = [f"class {name}({self.base}):", f'    """{_safe_doc(doc)}"""', ""]
        signature = ["self"]
        for _, _, pname, default in self.params:
            signature.append(pname if default is _NO_DEFAULT else f"{pname}={py(default)}")
        out += _fit("    ", f"def __init__({', '.join(signature)}):", "")
        out += ["        super().__init__()"] + self.init
        if self.forward is not None:
            out.append("")
            out += self.forward
        return out


_NO_DEFAULT = object()


def _match(expected, value):
    """ "exact" where an expression's value is the attribute, "broadcast" where an int stands
    for a uniform tuple, else None."""
    if S.same_value(expected, _plain(value)):
        return "exact"
    plain = _plain(value)
    if isinstance(plain, tuple) and plain and is_int(expected) and all(S.same_value(expected, v) for v in plain):
        return "broadcast"
    return None


# ---------------------------------------------------------------- writing a class


@dataclass(frozen=True)
class _Number(S.Lit):
    """A size written as its number: folded with the numbers around it (`256`, not `64 * 4`)."""


def _fold(expr):
    if not isinstance(expr, S.Op):
        return expr
    args = tuple(_fold(a) for a in expr.args)
    folded = S.Op(expr.op, args)
    if expr.op != "tuple" and all(isinstance(a, S.Lit) for a in args) and any(isinstance(a, _Number) for a in args):
        try:
            value = S.evaluate(folded, lambda leaf: (_ for _ in ()).throw(S.Unknown(str(leaf))))
        except S.Unknown:
            return folded
        return _Number(value)
    return folded


class _NoText(Exception):
    """An expression that cannot be written in this context."""


class _Lowering:
    """The context `t` a registry lowering writes one node of one sample with."""

    def __init__(self, writer: _Writer, entry: Entry, sid, node: Node, kept=frozenset()):
        self.w, self.entry, self.sid, self.node = writer, entry, sid, node
        self.init_line: str | None = None
        self.kept = kept  # inputs not to overwrite: written inline, `+=` would need a name for them
        self.retry: int | None = None

    def layer(self, cls: str, *args, **kwargs) -> Code:
        """Declares the node's submodule `cls(*args, **kwargs)`; returns its attribute. A
        node that shares an earlier layer's parameters (`share=`) calls that layer instead."""
        if self.node.shared:
            owner = self.w.share_owner(self.node)
            if owner is None:
                raise NetcError(
                    f"the PyTorch backend cannot write this {self.node.op} with the parameters of "
                    f"`{_owner_of(self.node)}`: it would need the functional form of {self.node.op}",
                    self.node.span,
                    code="share",
                )
            return Code(self.w._attr(owner))
        if any(t.dtype == "float64" for t in self.node.params.values()):
            kwargs["dtype"] = Code("torch.float64")
        self.init_line = self.w.register(self.entry, f"{cls}({_arguments(args, kwargs, init=True)})")
        return Code(self.w.access(self.entry))

    def call(self, function: str, *args, **kwargs) -> Code:
        return Code(function)(*args, **kwargs)

    @property
    def tied(self) -> bool:
        """Does the node use parameters stored in a layer it cannot call as its own (a
        classifier tied to an embedding)? Its lowering then writes the functional form with
        `param`."""
        return bool(self.node.shared) and self.w.share_owner(self.node) is None

    def param(self, local: str) -> Code:
        """The stored parameter the node uses as `local`: `self.wte.weight`."""
        full = self.node.param_name(local)
        owner = param_owner(full, local)
        scope = ".".join(self.node.scope)
        if scope and not owner.startswith(scope + "."):
            raise NetcError(
                f"the PyTorch backend cannot reach `{owner}` from this {self.node.op}: it shares a layer "
                "of another block instance",
                self.node.span,
                code="share",
            )
        attr = self.w._attr(owner[len(scope) + 1 :] if scope else owner)
        return Code(f"{attr}.{local}" if local else attr)

    def literal(self, value) -> Code:
        spelled = self.w.spell(self.sid, self.entry, "value", value)
        if isinstance(spelled, _Spelled):
            text = spelled.spelled(False)
            return Code.of(text if _is_primary(text) else f"({text})", atom=True)
        return Code.of(py(value), atom=True)

    def code(self, text: str) -> Code:
        return Code(text)

    opt = staticmethod(opt)
    exact = staticmethod(exact)

    def unpack(self, pattern: str, code: Code) -> Unpack:
        return Unpack(pattern, code)

    def augment(self, target: Code, op: str, other: Code) -> InPlace:
        index = next((i for i, ref in enumerate(self.entry.inputs) if self.w.env.get(ref) == str(target)), None)
        if index is not None and self.entry.inputs[index] in self.w.pending:
            self.retry = index  # `x + f(x)` reads better than naming f(x) to write `+=`
        return InPlace(target, op, other)

    def inplace(self, index: int) -> bool:
        """May the node overwrite its input `index`, as hand-written code does (`relu_`, `+=`)?

        Only a value made in this forward by an op whose backward does not read its own
        output, used once (here), dead after, not returned, and of the result's type."""
        if index in self.kept or not self.w.inplace_ok(self.entry, index):
            return False
        value = self.node.inputs[index]
        return self.w.graph.type_of(value) == self.node.outputs[0]

    def dim(self, d) -> str:
        if isinstance(d, _Spelled):
            return d.spelled(False)
        if isinstance(d, int):
            return str(d)
        return self.w.dim_text(d)

    # -- language 1.1: tensors a node makes itself
    def learned(self, function: str, *args, times=None, **kwargs) -> Code:
        """Declares the node's `param` tensor, `nn.Parameter(function(*args) * times)`, as an
        attribute named by the instance (its state_dict key is the instance path)."""
        if self.node.shared:  # `share=`: the earlier instance's tensor
            return Code.of(self.param(""), atom=True)
        made = f"{function}({_arguments(args, kwargs, init=True)})"
        if times is not None:
            factor = _render(times, init=True)
            made = f"{made} * {factor if _is_primary(factor) else f'({factor})'}"
        self.init_line = self.w.register_tensor(self.entry, f"nn.Parameter({made})", parameter=True)
        return Code(self.w.access_tensor(self.entry))

    def tensor(self, function: str, *args, static: bool, **kwargs) -> Code:
        """A constant tensor `function(*args, **kwargs)`: a buffer made once where its sizes
        are known (persistent=False: no weight), else made in `forward` on the inputs' device."""
        if static:
            made = f"{function}({_arguments(args, kwargs, init=True)})"
            self.init_line = self.w.register_tensor(self.entry, made, parameter=False)
            return Code(self.w.access_tensor(self.entry))
        device = self.device()
        if device is not None:
            kwargs["device"] = Code(device)
        return Code(function)(*args, **kwargs)

    def device(self) -> str | None:
        """The device of the class's first tensor input, where it has one."""
        for p in self.w.forward_params:
            name = self.w.env.get(("in", p))
            if name and name.isidentifier() and (self.w.c.block is None or p in self.w.c.tensor_params):
                return f"{name}.device"
        return None


class _Writer:
    """Writes one class from its template: `__init__` and `forward` in one walk."""

    def __init__(self, c: Template):
        self.c, self.graph, self.e = c, c.graph, c.e
        reserved = set(self.e.class_names) | {name for name, _ in self.e.globals.values()}
        self.init_names = Namespace(reserved)
        self.fwd_names = Namespace(reserved)
        taken = set(_MODULE_ATTRS)
        for entry in c.all_entries():
            for el in entry.items.values():
                taken.add(el.key if entry.loop is None else name_number(el.key)[0])
                if entry.kind != "loop":
                    taken.add(el.obj.name.rsplit(".", 1)[-1] if entry.kind == "node" else el.obj.path[-1])
        self.attr_names = Namespace(taken)
        self.param_init = {p: self.init_names.fresh(p) for p in c.params}
        self.param_attr: dict[str, str] = {}
        self.atoms: dict[tuple, str] = {}
        self.static: dict = {}
        self.init_locals: dict = {}  # (name, expression) -> (Python name, definition text)
        self.fwd_locals: dict = {}
        self.init_loop_var: dict[str, str] = {}
        self.fwd_loop_var: dict[str, str] = {}
        self.symbols: dict[str, str] = {}
        self.init: list = []  # (depth, text)
        self.fwd: list = []  # (depth, text, span)
        self.init_depth = self.fwd_depth = 0
        self.init_top: list[str] = []  # the spec's locals that read only parameters, first in __init__
        self.fwd_top: list[str] = []
        self.init_declared: list[set] = [set()]
        self.fwd_declared: list[set] = [set()]
        self.env: dict = {}  # ref -> Python text
        self.pending: dict = {}  # ref -> inline depth, for values written inline
        self.raw: dict = {}  # ref -> the expression of a value written inline, unparenthesized
        self.holder: dict[str, object] = {}
        self.forced: dict = {}
        self.group: dict = {}  # ref -> the join or loop whose one spec value it is
        self.bindings: list = []
        self.sid = None

    # ------------------------------------------------------------ expressions

    def atom(self, param: str, axis: int) -> str:
        key = (param, axis)
        if key not in self.atoms:
            name = self.c.local_size_names.get(key)
            if name is None:
                value = self.c.value_of((0,), ("in", param))
                rank = self.graph.type_of(value).rank if value is not None else 0
                first = self.c.tensor_params[:1] == [param]
                prefix = "in_" if first else f"{param}_"
                if axis == 1 and rank >= 3:
                    name = prefix + "channels"
                elif axis == rank - 1:
                    name = prefix + "features"
                else:
                    name = f"{prefix}size{axis}"
            self.atoms[key] = self.init_names.fresh(name)
        return self.atoms[key]

    def render(self, expr, init: bool) -> str:
        if init:
            return S.render(_fold(self._inline_sizes(expr)), self._init_leaf, self._literal_init)
        return S.render(expr, self._fwd_leaf, self._literal_fwd)

    def _inline_sizes(self, expr):
        """In `__init__`, a value's size is written as its expression (or its number)."""
        if isinstance(expr, S.Size) and not (expr.value[0] == "in" and self.c.block is not None):
            inner = size_expr(self.c, expr.value, expr.axis)
            if inner is not None:
                return _Number(inner.value) if isinstance(inner, S.Lit) else inner
            value = concrete_size(self.c, self.sid, expr.value, expr.axis)
            if not is_int(value):
                raise _NoText(str(expr))
            return _Number(value)
        if isinstance(expr, S.Op):
            return S.Op(expr.op, tuple(self._inline_sizes(a) for a in expr.args))
        if isinstance(expr, S.Local) and not isinstance(expr.expr, S.Size):
            return S.Local(expr.name, self._inline_sizes(expr.expr))
        return expr

    def _literal_init(self, value) -> str:
        if isinstance(value, D.Dim):
            raise _NoText(str(value))
        return py(value)

    def _literal_fwd(self, value) -> str:
        if isinstance(value, D.Dim):
            return self.dim_text(value)
        return py(value)

    def _global(self, e) -> str:
        if e.name in self.e.globals:
            return self.e.globals[e.name][0]
        return py(e.value)

    def _init_leaf(self, e) -> str:
        if isinstance(e, S.Param):
            if e.name not in self.param_init:
                raise _NoText(e.name)
            return self.param_init[e.name]
        if isinstance(e, S.Global):
            return self._global(e)
        if isinstance(e, S.LoopVar):
            if e.loop not in self.init_loop_var:
                raise _NoText(e.loop)
            return self.init_loop_var[e.loop]
        if isinstance(e, S.Size):
            if e.value[0] == "in" and self.c.block is not None and self._static_input(e):
                return self.atom(e.value[1], e.axis)
            raise _NoText(str(e))
        if isinstance(e, S.Local):
            if isinstance(e.expr, S.Size) and e.expr.value[0] == "in" and self.c.block is not None:
                return self._init_leaf(e.expr)
            key = (e.name, e.expr)
            if key not in self.init_locals:
                definition = self.render(e.expr, True)
                top = not any(isinstance(x, S.LoopVar) for x in S.leaves(e.expr))
                self.init_locals[key] = (self.init_names.fresh(e.name), definition, top)
            return self.init_locals[key][0]
        raise _NoText(str(e))

    def _static_input(self, e) -> bool:
        """The input's size on this axis is a number in every instance (an atom can name it)."""
        key = (e.value, e.axis)
        if key not in self.static:
            n = len(self.c.instances)
            self.static[key] = all(is_int(concrete_size(self.c, (i,), e.value, e.axis)) for i in range(n))
        return self.static[key]

    def _fwd_leaf(self, e) -> str:
        if isinstance(e, S.Param) and e.name in self.c.runtime_params:
            return self.env[("in", e.name)]
        if isinstance(e, S.Param):
            if e.name not in self.param_init:
                raise _NoText(e.name)
            if e.name not in self.param_attr:
                self.param_attr[e.name] = self.attr_names.fresh(e.name)
            return f"self.{self.param_attr[e.name]}"
        if isinstance(e, S.Global):
            return self._global(e)
        if isinstance(e, S.LoopVar):
            if e.loop not in self.fwd_loop_var:
                raise _NoText(e.loop)
            return self.fwd_loop_var[e.loop]
        if isinstance(e, S.Size):
            name = self.env.get(e.value)
            value = self.c.value_of(self.sid, e.value)
            if name is not None and e.value not in self.pending and name.isidentifier() and value is not None:
                held = self.holder.get(name)
                held_value = self.c.value_of(self.sid, held) if held is not None else None
                if held_value is not None:
                    shape, want = self.graph.type_of(held_value).shape, self.graph.type_of(value).shape
                    if e.axis < len(shape) and D.equal(shape[e.axis], want[e.axis]):
                        return f"{name}.shape[{e.axis}]"
            size = concrete_size(self.c, self.sid, e.value, e.axis)
            if size is None:
                raise _NoText(str(e))
            return str(size) if is_int(size) else f"({self.dim_text(size)})"
        if isinstance(e, S.Local):
            key = (e.name, e.expr)
            if key not in self.fwd_locals:
                definition = self.render(e.expr, False)
                top = all(
                    not isinstance(x, S.LoopVar) and (not isinstance(x, S.Size) or x.value[0] == "in")
                    for x in S.leaves(e.expr)
                )
                self.fwd_locals[key] = (self.fwd_names.fresh(e.name), definition, top)
            return self.fwd_locals[key][0]
        raise _NoText(str(e))

    def dim_text(self, d) -> str:
        text = d.text()
        for name in sorted(set(re.findall(r"[A-Za-z_]\w*", text))):
            if name not in self.symbols:
                self.symbols[name] = self.fwd_names.fresh(name)
        return re.sub(r"[A-Za-z_]\w*", lambda m: self.symbols[m.group(0)], text)

    def spell(self, sid, entry: Entry, name: str, value):
        """An attribute as the lowering sees it: spelled where the spec wrote an expression."""
        el = entry.items[sid]
        written = el.prov.exprs.get(name)
        if written is None or isinstance(written, S.Lit) or isinstance(value, bool):
            return value
        expr = self.c.translate(sid, written, entry.pos)
        return self._spell_expr(sid, expr, value)

    def _spell_expr(self, sid, expr, value):
        if expr is None:
            return value
        match = _match(self.c.evaluate(sid, expr), value)
        if match is None:
            return value
        if isinstance(value, tuple) and match == "exact" and isinstance(expr, S.Op) and expr.op == "tuple":
            if len(expr.args) == len(value):
                value = tuple(self._spell_expr(sid, a, v) for a, v in zip(expr.args, value))
        self.sid = sid
        try:
            forward = self.render(expr, False)
        except _NoText:
            return value
        try:
            init = self.render(expr, True)
        except _NoText:
            init = py(value) if _literal_ok(_plain(value)) else forward
        fixed = S.constant(expr)
        return _spelled(value, init, forward, exact=match == "exact", fixed=fixed)

    def input_code(self, sid, ref, value: Value, text: str) -> Code:
        """An input as its lowering sees it: a name (or inline expression), with its sizes."""
        t = self.graph.type_of(value)
        code = Code.of(text, t, atom=True)
        sizes = []
        for axis, d in enumerate(t.shape):
            expr = size_expr(self.c, ref, axis) if is_int(d) else None
            if expr is None:
                sizes.append(d)
                continue
            self.sid = sid
            try:
                init = self.render(expr, True)
            except _NoText:
                sizes.append(d)
                continue
            sizes.append(_spelled(d, init, str(d), fixed=S.constant(expand_sizes(self.c, expr) or expr)))
        code.sizes = tuple(sizes)
        return code

    # ------------------------------------------------------------ layers and their attributes

    def share_owner(self, node: Node) -> str | None:
        """The local name of the earlier layer of this scope whose module computes `node`
        with the parameters `node` shares (same op and attributes), else None."""
        owner = shared_layer(self.graph, node)
        if owner is None or owner.scope != node.scope:
            return None
        return owner.name.rsplit(".", 1)[-1]

    def _attr(self, local: str) -> str:
        if local.isidentifier() and not keyword.iskeyword(local) and local not in _MODULE_ATTRS:
            if not local.startswith("_"):
                return f"self.{local}"
        return f"self._modules[{py(local)}]"

    def _name_text(self, entry: Entry, init: bool) -> str:
        """A loop's layer name as an f-string of its pass: `f"conv2d_{i + 1}"`."""
        prefix, a, b = entry.pattern
        var = (self.init_loop_var if init else self.fwd_loop_var)[entry.loop.key]
        number = var if a == 1 else f"{a} * {var}"
        number = number if b == 0 else f"{number} + {b}"
        return f'f"{prefix}_{{{number}}}"'

    def register(self, entry: Entry, ctor: str) -> str:
        """The `__init__` statement that makes an entry's submodule."""
        if entry.loop is None:
            el = next(iter(entry.items.values()))
            return f"{self._attr(local_name(el))} = {ctor}"
        return f"self.add_module({self._name_text(entry, True)}, {ctor})"

    def access(self, entry: Entry) -> str:
        if entry.loop is None:
            return self._attr(local_name(next(iter(entry.items.values()))))
        return f"getattr(self, {self._name_text(entry, False)})"

    def register_tensor(self, entry: Entry, made: str, parameter: bool) -> str:
        """The `__init__` statement that makes an entry's own tensor: a `param`'s
        nn.Parameter, or a constant's buffer (not in state_dict)."""
        if entry.loop is None:
            local = local_name(next(iter(entry.items.values())))
            attr = self._attr(local)
            if parameter and not attr.startswith("self._modules"):
                return f"{attr} = {made}"
            name = py(local)
        else:
            name = self._name_text(entry, True)
        if parameter:
            return f"self.register_parameter({name}, {made})"
        return f"self.register_buffer({name}, {made}, persistent=False)"

    def access_tensor(self, entry: Entry) -> str:
        if entry.loop is None:
            local = local_name(next(iter(entry.items.values())))
            attr = self._attr(local)
            return f"getattr(self, {py(local)})" if attr.startswith("self._modules") else attr
        return f"getattr(self, {self._name_text(entry, False)})"

    # ------------------------------------------------------------ liveness

    def _liveness(self):
        """Where each value is read last (`last_use`) and how often (`uses`, `consumers`): a
        value read in a loop it was made outside of lives to the loop's end; a size a
        `forward` expression reads (`x.shape[1]`) keeps its value's name."""
        c = self.c
        self.last_use: dict = {}
        self.uses: dict = {}
        self.end = max((e.pos for e in c.all_entries()), default=-1) + 1

        def use(ref, pos, slot=True):
            if ref[0] == "join":
                use(ref[1], pos, slot)
                for option in ref[2]:
                    use(option, pos, slot)
            self.last_use[ref] = max(self.last_use.get(ref, -1), pos)
            if slot:
                self.uses[ref] = self.uses.get(ref, 0) + 1

        self.consumers: dict = {}
        for entry in c.all_entries():
            at = entry.pos
            outer = entry.loop
            for slot, ref in enumerate(entry.inputs):
                self.consumers.setdefault(ref, []).append((entry, slot))
                where = at
                if outer is not None and not self._inside(ref, outer):
                    where = outer.end
                use(ref, where)
            for sid, el in list(entry.items.items())[:1]:
                layer = entry.kind == "node" and (REGISTRY[el.obj.op].params or REGISTRY[el.obj.op].buffers)
                exprs = ([] if layer else list(el.prov.exprs.values())) + list(entry.guard)
                if entry.kind == "loop":
                    exprs.append(el.obj.loop.count)
                for expr in exprs:
                    for leaf in S.leaves(c.translate(sid, expr, entry.pos)):
                        if isinstance(leaf, S.Size):
                            where = at if outer is None or self._inside(leaf.value, outer) else outer.end
                            use(leaf.value, where, slot=False)
            if entry.kind == "loop":
                pre = {c.ref_of(top, v, entry.pos) for top, values in c.pre.get(entry.key, {}).items() for v in values}
                for ref in pre - {None}:
                    use(ref, entry.pos)
        for ref in c.returns:
            use(ref, self.end)

    def _inside(self, ref, loop: Entry) -> bool:
        if ref[0] == "carry":
            return ref[1] == loop.key
        if ref[0] == "v":
            return self.c.entry_of[ref[1]].loop is loop
        return False

    def inplace_ok(self, entry: Entry, index: int) -> bool:
        """The template's part of `t.inplace`: the type check is per call."""
        if index >= len(entry.inputs):
            return False
        ref = entry.inputs[index]
        if ref[0] != "v":
            return False
        producer = self.c.entry_of[ref[1]]
        if producer.kind != "node" or producer.loop is not entry.loop:
            return False
        op = next(iter(producer.items.values())).obj.op
        return (
            not REGISTRY[op].grad_reads_output
            and self.uses.get(ref) == 1
            and self.last_use.get(ref) == entry.pos
            and ref not in self.c.returns
            and ref not in self.forced
            and entry.guard == producer.guard
        )

    # ------------------------------------------------------------ names

    def _free(self, name: str, pos: int) -> bool:
        if name in _RESERVED or name in self.e.class_names:
            return False
        holder = self.holder.get(name)
        if holder is None:
            return name not in self.fwd_names.used
        return self.last_use.get(holder, -1) <= pos and holder not in self.forced

    def _take(self, name: str, ref, pos: int, spec=None) -> str:
        held = self.holder.get(name)
        if held is not None and held[0] == "released":
            self.group.setdefault(ref, held[1])  # computing the join's value in its block
        self.fwd_names.used.add(name)
        self.holder[name] = ref
        self.env[ref] = name
        self.bindings.append([name, ref, spec, pos, self.last_use.get(ref, pos), self.group.get(ref, ref)])
        return name

    def _fresh(self, base: str, pos: int) -> str:
        base = re.sub(r"\W", "_", base) or "v"
        if base[0].isdigit():
            base = "_" + base
        candidate, k = base, 1
        while not self._free(candidate, pos):
            if candidate in _RESERVED or candidate in self.e.class_names:
                base = base + "_"
                candidate = base
                continue
            candidate, k = f"{base}_{k}", k + 1
        return candidate

    def _named(self, entry: Entry, ref, spec):
        """The spec's name for a value: its statement's variable where the value is that
        statement's result or is piped on (`y = x -> conv -> bn`), not for an operand inside
        it (`concat(a, a * 0.0)`: the product has no name)."""
        if spec is None:
            return None
        mine = self._span(entry)
        for consumer, slot in self.consumers.get(ref, ()):
            if consumer.kind != "loop" and self._span(consumer) == mine and slot != 0:
                return None
        return spec

    def _bind_one(self, entry: Entry, ref, spec, op: str, text: str, depth_in: int):
        """Names a single result, or keeps it to be written inline; returns the name or None."""
        pos = entry.pos
        spec = self._named(entry, ref, spec)
        if ref in self.forced:
            return self._take(self.forced[ref], ref, pos, spec)
        if spec and self._free(spec, pos):
            return self._take(spec, ref, pos, spec)
        inline = self._inline_ok(entry, ref) and (depth_in < 4 or ref in self.c.returns)
        if inline and (ref in self.c.returns or len(entry.inputs) != 1):
            return self._inline(ref, text, depth_in)
        if spec is None and len(entry.inputs) == 1:
            for r in entry.inputs:
                name = self.env.get(r)
                if (
                    name
                    and r not in self.pending
                    and r[0] in ("v", "in")
                    and self.holder.get(name) == r
                    and self.last_use.get(r) == pos
                    and self._free(name, pos)
                ):
                    return self._take(name, ref, pos, spec)
        if inline:
            return self._inline(ref, text, depth_in)
        return self._take(self._fresh(spec or op, pos), ref, pos, spec)

    def _inline(self, ref, text: str, depth_in: int):
        """Keeps a value to be written inside the expression that reads it."""
        self.env[ref] = text if _is_primary(text) else f"({text})"
        self.raw[ref] = text
        self.pending[ref] = depth_in + 1
        return None

    def _inline_ok(self, entry: Entry, ref) -> bool:
        if self.uses.get(ref) != 1 or ref in self.forced or ref in self.c.returns and not self._last(entry):
            return False
        if ref in self.c.returns:
            return self._last(entry) and len(self.c.returns) == 1 and entry.loop is None and not entry.guard
        nxt = self.next_entry.get(entry.key)
        if nxt is None or self.last_use.get(ref) != nxt.pos or ref not in nxt.inputs:
            return False
        return nxt.loop is entry.loop and nxt.guard == entry.guard and nxt.kind != "loop"

    def _last(self, entry: Entry) -> bool:
        return entry.loop is None and self.next_entry.get(entry.key) is None

    # ------------------------------------------------------------ statements

    def emit_init(self, text: str):
        self._declare(text, True)
        self.init.append((self.init_depth, text))

    def emit_fwd(self, text: str, span=None):
        at = len(self.fwd)
        while span is not None and at > 0 and self.fwd[at - 1][2] == span and self.fwd[at - 1][0] == self.fwd_depth:
            at -= 1  # the spec's locals go before the statement's first line
        before = len(self.fwd)
        self._declare(text, False)
        added = self.fwd[before:]
        del self.fwd[before:]
        self.fwd[at:at] = added
        self.fwd.append((self.fwd_depth, text, span))

    def _declare(self, text: str, init: bool):
        """Writes the definitions of the spec's compile-time locals a statement reads, first."""
        table = self.init_locals if init else self.fwd_locals
        if not table:
            return
        declared = self.init_declared if init else self.fwd_declared
        names = {name: (definition, top) for name, definition, top in table.values()}
        for name in _names_in_order(text):
            if name in names and not any(name in scope for scope in declared):
                definition, top = names[name]
                self._declare(definition, init)
                line = f"{name} = {definition}"
                if top:  # it reads only parameters and inputs: stated once, first, as the spec does
                    declared[0].add(name)
                    (self.init_top if init else self.fwd_top).append(line)
                    continue
                declared[-1].add(name)
                if init:
                    self.init.append((self.init_depth, line))
                else:
                    self.fwd.append((self.fwd_depth, line, None))

    def _open(self):
        self.init_depth += 1
        self.fwd_depth += 1
        self.init_declared.append(set())
        self.fwd_declared.append(set())

    def _close(self):
        self.init_depth -= 1
        self.fwd_depth -= 1
        self.init_declared.pop()
        self.fwd_declared.pop()

    # ------------------------------------------------------------ the walk

    def write(self) -> _ClassInfo:
        c = self.c
        self.cls_label = c.block or self.graph.name
        all_sizes(c)
        self.next_entry: dict = {}
        self._link(c.entries)
        self._liveness()
        self._joins()
        self.forward_params = self._forward_params()
        for p in self.forward_params:
            name = self.fwd_names.fresh(p)
            self._take(name, ("in", p), -1, p)
        self.sequential = self._is_sequential()
        self._walk(c.entries, 0)
        span = None
        for ref in c.returns:
            if ref in self.pending and ref[0] == "v":
                span = self._span(c.entry_of[ref[1]])  # the statement whose value is written inline
        outs = [self._output(ref) for ref in c.returns]
        return_line = "return " + ", ".join(outs) if outs else "return None"
        self.emit_fwd(return_line, span)
        return self._info()

    def _link(self, entries):
        for a, b in zip(entries, entries[1:]):
            self.next_entry[a.key] = b
        for entry in entries:
            if entry.kind == "loop":
                self._link(entry.body)

    def _output(self, ref) -> str:
        text = self.env.get(ref)
        if text is None:
            raise Mismatch([[i] for i in range(len(self.c.instances))])
        if self.pending.pop(ref, None) is not None:
            return self.raw[ref]
        return text

    def _forward_params(self) -> list:
        c = self.c
        if c.block is None:
            return list(self.graph.inputs)
        read = set()
        for entry in c.all_entries():
            for ref in entry.inputs:
                for r in _flat_refs(ref):
                    if r[0] == "in":
                        read.add(r[1])
            for r in c.returns:
                if r[0] == "in":
                    read.add(r[1])
        for pre in c.pre.values():
            for top, values in pre.items():
                for v in values:
                    r = c.ref_of(top, v)
                    if r and r[0] == "in":
                        read.add(r[1])
        return [p for p in c.block_params if (p in c.tensor_params and p in read) or p in c.runtime_params]

    def _joins(self):
        """Each join: the name it takes and the layer whose guard block starts it."""
        self.join_name: dict = {}
        self.join_start: dict = {}
        refs_read = [ref for entry in self.c.all_entries() for ref in entry.inputs] + list(self.c.returns)
        for ref in refs_read:
            if ref[0] != "join" or ref in self.join_name:
                continue
            first = min((self.c.entry_of[o[1]] for o in ref[2]), key=lambda e: e.pos)
            spec = None
            for option in ref[2]:
                producer = self.c.entry_of[option[1]]
                spec = spec or spec_name(next(iter(producer.items.values())), option[2])
            self.join_name[ref] = spec
            self.join_start.setdefault(first.key, []).append(ref)
        for entry in self.c.loops.values():
            _, out = entry.chain
            if out is not None:
                self.forced[out] = None  # filled when the loop starts

    def _walk(self, entries, level: int):
        i = 0
        while i < len(entries):
            entry = entries[i]
            if len(entry.guard) > level:
                j = i + 1
                while (
                    j < len(entries) and len(entries[j].guard) > level and entries[j].guard[level] == entry.guard[level]
                ):
                    j += 1
                self._guarded(entries[i:j], level)
                i = j
                continue
            self._entry(entry)
            i += 1

    def _guarded(self, entries, level: int):
        cond = entries[0].guard[level]
        for entry in entries:
            for ref in self.join_start.get(entry.key, ()):
                self._start_join(ref, entries[0].pos)
        if cond is None:
            return self._walk(entries, level + 1)
        modules = [a for e in entries for a in self._module_attrs(e)]
        init_at, fwd_at = len(self.init), len(self.fwd)
        init_declared, fwd_declared = self.init_declared[-1], self.fwd_declared[-1]
        self._open()
        for e in entries:
            for ref in self.join_start.get(e.key, ()):
                name = self.env.get(ref)
                if name:
                    self.holder[name] = ("released", ref)  # the layers in the block overwrite it
        self._walk(entries, level + 1)
        self._close()
        if len(self.init) > init_at:
            self.sid = self._first_sid(entries)
            self.init.insert(init_at, (self.init_depth, f"if {self._render_guard(cond, True)}:"))
            if modules:
                self.init.append((self.init_depth, "else:"))
                self.init.append((self.init_depth + 1, " = ".join(modules) + " = None"))
        if len(self.fwd) > fwd_at:
            if modules and modules[0].startswith("self.") and "[" not in modules[0]:
                header = f"if {modules[0]} is not None:"
            else:
                self.sid = self._first_sid(entries)
                header = f"if {self._render_guard(cond, False)}:"
            self.fwd.insert(fwd_at, (self.fwd_depth, header, None))
            self._declare_at(fwd_at, header, False)
        for e in entries:
            for ref in self.join_start.get(e.key, ()):
                self.holder[self.env[ref]] = ref
        del init_declared, fwd_declared

    def _declare_at(self, at: int, text: str, init: bool):
        """Definitions a block header reads go before the header."""
        before = len(self.fwd)
        self._declare(text, init)
        added = self.fwd[before:]
        del self.fwd[before:]
        self.fwd[at:at] = added

    def _first_sid(self, entries):
        return next(iter(entries[0].items))

    def _render_guard(self, cond, init: bool) -> str:
        texts = set()
        for n in range(len(self.c.instances)):
            self.sid = (n,)
            try:
                texts.add(self.render(cond, init))
            except _NoText:
                raise Mismatch([[i] for i in range(len(self.c.instances))]) from None
        if len(texts) != 1:
            raise Mismatch([[i] for i in range(len(self.c.instances))])
        return texts.pop()

    def _module_attrs(self, entry: Entry) -> list:
        if entry.loop is not None or entry.kind == "loop":
            return []
        el = next(iter(entry.items.values()))
        if entry.kind == "call":
            return [self._attr(local_name(el))]
        op = REGISTRY[el.obj.op]
        if el.obj.shared:  # it calls, or reads the parameters of, an earlier layer
            return []
        return [self._attr(local_name(el))] if op.params or op.buffers else []

    def _start_join(self, ref, pos: int):
        if ref in self.env:
            return
        default = self.env.get(ref[1])
        if default is None:
            raise Mismatch([[i] for i in range(len(self.c.instances))])
        spec = self.join_name.get(ref)
        if default == spec or spec is None:
            name = default
            if ref[1] in self.pending:
                name = self._materialize(ref[1], pos)
            self.group[ref[1]] = ref  # the value before the block is the join's, under its name
        else:
            name = self._take(self._fresh(spec, pos), ref, pos, spec)
            if ref[1] in self.pending:
                self.pending.pop(ref[1])
            self.emit_fwd(f"{name} = {default}")
        self.env[ref] = name
        self.holder[name] = ref
        for option in ref[2]:
            self.forced[option] = name
            self.group[option] = ref

    def _materialize(self, ref, pos: int) -> str:
        text = self.raw.get(ref, self.env[ref])
        self.pending.pop(ref, None)
        base = "x"
        if ref[0] == "v":
            el = next(iter(self.c.entry_of[ref[1]].items.values()))
            base = spec_name(el, ref[2]) or (el.obj.op if el.kind == "node" else el.obj.block)
        name = self._take(self._fresh(base, pos), ref, pos)
        self.emit_fwd(f"{name} = {text}")
        return name

    def _entry(self, entry: Entry):
        if entry.kind == "loop":
            return self._loop(entry)
        if entry.kind == "call":
            return self._call(entry)
        return self._node(entry)

    def _input_texts(self, entry: Entry) -> list:
        texts = []
        for ref in entry.inputs:
            text = self.env.get(ref)
            if text is None:
                raise Mismatch([[i] for i in range(len(self.c.instances))])
            texts.append(text)
        return texts

    def _consume(self, entry: Entry) -> tuple[int, list]:
        """Takes the inline inputs of an entry: their depth, and (written, unparenthesized)."""
        depth, inline = 0, []
        for ref in entry.inputs:
            if ref in self.pending:
                depth = max(depth, self.pending.pop(ref))
                inline.append((self.env[ref], self.raw[ref]))
        return depth, inline

    def _span(self, entry: Entry):
        el = next(iter(entry.items.values()))
        if el.prov.statement is not None:
            return el.prov.statement
        return getattr(el.obj, "span", None) if entry.kind == "node" else getattr(el.obj, "call_span", None)

    def _node(self, entry: Entry):
        texts = self._input_texts(entry)
        results = {}
        for sid, el in entry.items.items():
            self.sid = sid
            node = el.obj
            codes = [
                self.input_code(sid, ref, value, text) for ref, value, text in zip(entry.inputs, node.inputs, texts)
            ]
            attrs = {k: self.spell(sid, entry, k, v) for k, v in node.attrs.items()}
            kept: frozenset = frozenset()
            while True:
                t = _Lowering(self, entry, sid, node, kept)
                out = REGISTRY[node.op].torch(t, *codes, **attrs)
                if t.retry is None:
                    break
                kept = kept | {t.retry}
            results[sid] = (t.init_line, _describe(out, codes))
        first = self._agree(results)
        init_line, (kind, payload) = first
        depth_in, inline = self._consume(entry)
        pattern = None
        if kind == "unpack":
            (pattern, payload), kind = payload, "expr"
        if kind == "expr":
            payload = _unparen(payload, inline)
        elif kind == "inplace":
            payload = payload[:2] + (_unparen(payload[2], inline),)
        if init_line:
            self.emit_init(init_line)
        el = next(iter(entry.items.values()))
        node = el.obj
        span = self._span(entry)
        if kind == "atom":
            self.env[("v", entry.key, 0)] = payload
            return
        if kind == "inplace":
            index, op, other = payload
            target_ref = entry.inputs[index]
            target = self.env[target_ref]
            if target_ref in self.pending or not target.isidentifier():
                target = self._materialize(target_ref, entry.pos)
            ref = ("v", entry.key, 0)
            self.holder[target] = ref
            self.env[ref] = target
            # an operand overwritten in place (`where(m, a + b, c)`) is not the statement's value
            spec = self._named(entry, ref, spec_name(el, 0))
            self.bindings.append([target, ref, spec, entry.pos, self.last_use.get(ref, entry.pos), ref])
            self.emit_fwd(f"{target} {op} {other}", span)
            return
        outputs = len(node.outputs)
        if outputs == 1 and REGISTRY[node.op].n_outputs == 1:
            ref = ("v", entry.key, 0)
            name = self._bind_one(entry, ref, spec_name(el, 0), node.op, payload, depth_in)
            if name is not None:
                self.emit_fwd(f"{name} = {payload}", span)
            return
        names = []
        for i in range(outputs):
            ref = ("v", entry.key, i)
            spec = spec_name(el, i)
            base = spec or f"{node.op}_{i}"
            names.append(self._take(self.forced.get(ref) or self._fresh(base, entry.pos), ref, entry.pos, spec))
        lhs = ", ".join(names) if len(names) > 1 else f"({names[0]},)"
        lhs = pattern.format(*names) if pattern else lhs
        self.emit_fwd(f"{lhs} = {payload}", span)

    def _agree(self, results: dict):
        """The one rendering every sample gives; else the samples split by rendering."""
        values = list(results.values())
        first = values[0]
        if all(v == first for v in values[1:]):
            return first
        loops = {sid[2] for sid in results if len(sid) > 2}
        if loops:
            raise Mismatch(unroll=loops.pop())
        clusters: dict = {}
        for sid, v in results.items():
            clusters.setdefault(repr(v), []).append(sid[0])
        groups = [sorted(set(g)) for g in clusters.values()]
        present = {sid[0] for sid in results}
        groups[0] += [n for n in range(len(self.c.instances)) if n not in present]
        raise Mismatch(groups)

    def _call(self, entry: Entry):
        texts = self._input_texts(entry)
        results = {}
        for sid, el in entry.items.items():
            self.sid = sid
            cls = self.e.class_of(el.obj.path)
            info = self.e.info.get(cls)
            if info is None:
                raise Mismatch([[i] for i in range(len(self.c.instances))])
            owner = self.graph.shares.get(el.obj.path)
            args = self.c.graph.instance_args.get(el.obj.path, {})
            by_param = {}
            for ref, value, text in zip(entry.inputs, read_values(el), texts):
                if value in args:
                    by_param[args[value]] = text
            call = self.graph.calls.get(el.obj.path)
            for p in info.forward_params:
                if p not in by_param and call is not None and p in call.args:
                    by_param[p] = self._runtime_arg(sid, entry, call, p)
            call_args = ", ".join(by_param.get(p, "None") for p in info.forward_params)
            if owner is not None:  # calls the shared instance's module again
                results[sid] = (None, f"{self._attr(owner[-1])}({call_args})", len(info.returns), cls)
                continue
            ctor = f"{cls}({self._ctor_args(sid, entry, el, info)})"
            results[sid] = (self.register(entry, ctor), f"{self.access(entry)}({call_args})", len(info.returns), cls)
        init_line, expression, count, cls = self._agree(results)
        depth_in, inline = self._consume(entry)
        expression = _unparen(expression, inline)
        if init_line is not None:
            self.emit_init(init_line)
        el = next(iter(entry.items.values()))
        span = self._span(entry)
        if self.sequential:
            for i in range(count):
                self.env[("v", entry.key, i)] = "_"
            return
        if count == 1:
            ref = ("v", entry.key, 0)
            name = self._bind_one(entry, ref, spec_name(el, 0), el.obj.block, expression, depth_in)
            if name is not None:
                self.emit_fwd(f"{name} = {expression}", span)
            return
        names = []
        for i in range(count):
            ref = ("v", entry.key, i)
            spec = spec_name(el, i)
            if self.uses.get(ref, 0) == 0 and ref not in self.c.returns:
                names.append("_")
                continue
            names.append(
                self._take(
                    self.forced.get(ref) or self._fresh(spec or f"{el.obj.block}_{i}", entry.pos), ref, entry.pos, spec
                )
            )
        if count:
            lhs = ", ".join(names) if len(names) > 1 else f"({names[0]},)"
            self.emit_fwd(f"{lhs} = {expression}", span)
        else:
            self.emit_fwd(expression, span)

    def _runtime_arg(self, sid, entry: Entry, call, p: str) -> str:
        """A size known at run time that a block's `forward` takes, as the caller computes it."""
        value = call.args[p]
        written = call.provenance.exprs.get(p)
        spelled = self._spell_expr(sid, self.c.translate(sid, written, entry.pos), value)
        if isinstance(spelled, _Spelled):
            return spelled.spelled(False)
        if isinstance(value, tuple):
            parts = [self.dim_text(v) if isinstance(v, D.Dim) else py(v) for v in value]
            return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"
        return self.dim_text(value) if isinstance(value, D.Dim) else py(value)

    def _ctor_args(self, sid, entry: Entry, el: Element, info: _ClassInfo) -> str:
        call = self.graph.calls.get(el.obj.path)
        args = self.graph.instance_args.get(el.obj.path, {})
        slot = {args[v]: entry.inputs[j] for j, v in enumerate(read_values(el)) if v in args and j < len(entry.inputs)}
        omit = self._omitted(entry, info)
        parts, keywords = [], False
        for kind, key, pname, _default in info.params:
            if kind == "size":
                p, axis = key
                ref = slot.get(p)
                if ref is None:
                    raise Mismatch([[i] for i in range(len(self.c.instances))])
                expr = size_expr(self.c, ref, axis)
                try:
                    text = self.render(expr, True) if expr is not None else None
                except _NoText:
                    text = None
                if text is None:
                    text = str(concrete_size(self.c, sid, ref, axis))
            else:
                if key in omit:
                    keywords = True
                    continue
                written = call.provenance.exprs.get(key) if call else None
                value = call.args[key]
                spelled = self._spell_expr(sid, self.c.translate(sid, written, entry.pos), value)
                text = spelled.spelled(True) if isinstance(spelled, _Spelled) else py(value)
            parts.append(f"{pname}={text}" if keywords else text)
        return ", ".join(parts)

    def _omitted(self, entry: Entry, info: _ClassInfo) -> set:
        """Parameters every call of this entry leaves to their defaults (trailing ones first)."""
        omit = set()
        for kind, key, _, default in info.params:
            if kind != "param" or default is _NO_DEFAULT:
                continue
            calls = [self.graph.calls.get(el.obj.path) for el in entry.items.values()]
            if all(call is not None and key in call.defaults for call in calls):
                omit.add(key)
        return omit

    def _loop(self, entry: Entry):
        c = self.c
        texts = set()
        for sid in entry.items:
            self.sid = sid
            try:
                texts.add((self.render(entry.count, True), self.render(entry.count, False)))
            except _NoText:
                raise Mismatch(unroll=entry.key) from None
        if len(texts) != 1:
            raise Mismatch(unroll=entry.key)
        count_init, count_fwd = texts.pop()
        init_var = self.init_names.fresh(entry.var or "i")
        fwd_var = self.fwd_names.fresh(entry.var or "i")
        self.init_loop_var[entry.key] = init_var
        self.fwd_loop_var[entry.key] = fwd_var
        # the carried value: iteration 0 starts from the value before the loop, under its name
        _, out = entry.chain
        carried = None
        pre = c.pre.get(entry.key, {})
        for top, values in pre.items():
            for v in values:
                ref = c.ref_of(top, v, entry.pos)
                if ref is not None and ref in self.env:
                    carried = self.env[ref]
                    if ref in self.pending or not carried.isidentifier():
                        carried = self._materialize(ref, entry.pos)
                    break
            if carried:
                break
        for top, values in pre.items():
            for v in values:
                self.group[c.ref_of(top, v, entry.pos)] = ("loop", entry.key)
        if out is not None:
            self.group[out] = ("loop", entry.key)
            if carried is None:
                el = next(iter(c.entry_of[out[1]].items.values()))
                carried = self._fresh(spec_name(el, out[2]) or "x", entry.pos)
            self.forced[out] = carried
            self.env[("carry", entry.key)] = carried
            self.holder[carried] = ("carry", entry.key)
            self.fwd_names.used.add(carried)
        init_at, fwd_at = len(self.init), len(self.fwd)
        self._open()
        self._walk(entry.body, 0)
        self._close()
        if len(self.init) > init_at:
            bounds = f"{entry.start}, {count_init}" if entry.start else count_init
            self.init.insert(init_at, (self.init_depth, f"for {init_var} in range({bounds}):"))
        if len(self.fwd) > fwd_at:
            header = f"for {fwd_var} in range({f'{entry.start}, ' if entry.start else ''}{count_fwd}):"
            self.fwd.insert(fwd_at, (self.fwd_depth, header, None))
            self._declare_at(fwd_at, header, False)
        if out is not None:
            self.env[("chain", entry.key)] = carried
            self.holder[carried] = ("chain", entry.key)
            self.last_use.setdefault(("carry", entry.key), entry.end)

    def _is_sequential(self) -> bool:
        c = self.c
        if c.block is None or len(self.forward_params) != 1 or len(c.returns) != 1:
            return False
        current = ("in", self.forward_params[0])
        for entry in c.entries:
            if entry.guard:
                return False
            if entry.kind == "call":
                if entry.inputs != [current] or self.uses.get(current, 0) != 1:
                    return False
                current = ("v", entry.key, 0)
            elif entry.kind == "loop":
                if len(entry.body) != 1 or entry.body[0].kind != "call" or entry.body[0].guard:
                    return False
                body = entry.body[0]
                if body.inputs != [("carry", entry.key)] or entry.chain[1] != ("v", body.key, 0):
                    return False
                if self.uses.get(current, 0) != 1:
                    return False
                current = ("chain", entry.key)
            else:
                return False
        return c.returns == [current] and all(
            len(self.e.info[self.e.class_of(el.obj.path)].returns) == 1
            for entry in c.all_entries()
            if entry.kind == "call"
            for el in entry.items.values()
        )

    # ------------------------------------------------------------ the class

    def _info(self) -> _ClassInfo:
        c = self.c
        forward = None if self.sequential else self._forward_lines()
        init_text = "\n".join([text for _, text in self.init] + self.init_top)
        used = _names_read(init_text) | _names_read("\n".join(self._param_lines()))
        params = []
        for p in c.block_params:
            if p in c.params:
                name = self.param_init[p]
                if name in used:
                    params.append(["param", p, name, self.c.defaults.get(p, _NO_DEFAULT)])
                continue
            for (param, axis), name in sorted(self.atoms.items(), key=lambda item: item[0][1]):
                if param == p and name in used:
                    params.append(["size", (param, axis), name, _NO_DEFAULT])
        for k in range(len(params) - 1, -1, -1):  # a default only where every later one has one
            if params[k][3] is _NO_DEFAULT:
                for earlier in params[:k]:
                    earlier[3] = _NO_DEFAULT
                break
        init = ["        " + line for line in self._param_lines()]
        for line in self.init_top:
            init += _fit("        ", line, "")
        for depth, text in self.init:
            init += _fit("        " + "    " * depth, text, "")
        return_sizes = {}
        for j, ref in enumerate(c.returns):
            value = c.value_of((0,), ref)
            if value is None:
                continue
            for axis, d in enumerate(self.graph.type_of(value).shape):
                if is_int(d):
                    expr = size_expr(c, ref, axis)
                    expanded = expand_sizes(c, expr) if expr is not None else None
                    if expanded is not None:
                        return_sizes[(j, axis)] = _to_signature(expanded, self)
        self.group.update({("carry", key): ("loop", key) for key in c.loops})
        self.group.update({("chain", key): ("loop", key) for key in c.loops})
        bindings = [tuple(b[:5]) + (self.group.get(b[1], b[5]),) for b in self.bindings]
        return _ClassInfo(
            bindings,
            [tuple(p) for p in params],
            self.forward_params,
            list(c.returns),
            {k: v for k, v in return_sizes.items() if v is not None},
            init,
            forward,
            "nn.Sequential" if self.sequential else "nn.Module",
        )

    def _param_lines(self) -> list:
        read = set()
        for _, text, _ in self.fwd:
            read |= set(re.findall(r"\bself\.(\w+)", text))
        return [f"self.{attr} = {self.param_init[p]}" for p, attr in self.param_attr.items() if attr in read]

    def _forward_lines(self) -> list:
        params = "".join(", " + self.env[("in", p)] for p in self.forward_params)
        lines = _fit("    ", f"def forward(self{params}):", "")
        for line in self._symbol_lines() + self.fwd_top:
            lines += _fit("        ", line, "")
        for group in _groups(self.fwd):
            depth, span = group[0][0], group[0][2]
            indent = "        " + "    " * depth
            comment = _where(span)
            if len(group) == 1:
                lines += _fit(indent, group[0][1], comment)
                continue
            if comment:
                lines.append(indent + "# " + comment)
            for _, text, _ in group:
                lines += _fit(indent, text, "")
        return lines

    def _symbol_lines(self) -> list:
        lines = []
        c = self.c
        inputs = [c.value_of((0,), ("in", p)) for p in self.forward_params]
        for name, var in self.symbols.items():
            found = symbol_source(self.graph, name, [v for v in inputs if v is not None])
            if found is None:
                where = c.block or self.graph.name
                raise NetcError(f"cannot compute the size `{name}` at run time inside `{where}` for the PyTorch module")
            value, axis = found
            ref = c.ref_of((0,), value)
            lines.append(f"{var} = {self.env[ref]}.shape[{axis}]")
        return lines


def _to_signature(expr, w: _Writer):
    """A return size in terms a parent can substitute: parameters and input sizes only."""
    for leaf in S.leaves(expr):
        if isinstance(leaf, S.LoopVar):
            return None
        if isinstance(leaf, S.Param) and leaf.name not in w.param_init:
            return None
    return expr


def _unparen(text: str, inline: list) -> str:
    """Drops the parentheses around an inline input where Python does not need them (the
    syntax tree, which has no parentheses, is the same without them)."""
    for written, raw in inline:
        if written == raw or written not in text:
            continue
        candidate = text.replace(written, raw, 1)
        try:
            if ast.dump(ast.parse(candidate)) == ast.dump(ast.parse(text)):
                text = candidate
        except SyntaxError:
            pass
    return text


def _flat_refs(ref):
    if ref[0] == "join":
        yield ref[1]
        yield from ref[2]
    else:
        yield ref


def _describe(out, codes):
    if isinstance(out, InPlace):
        index = next(i for i, code in enumerate(codes) if code is out.target)
        return ("inplace", (index, out.op, str(out.other)))
    if isinstance(out, Code) and out.atom:
        return ("atom", str(out))
    if isinstance(out, Unpack):
        return ("unpack", (out.pattern, str(out.code)))
    return ("expr", str(out))


def _names_read(text: str) -> set:
    """The names a piece of code reads (block headers included)."""
    names = set()
    for line in text.splitlines() or [text]:
        stripped = line.strip()
        if not stripped:
            continue
        for candidate in (stripped, stripped + " pass", stripped.rstrip(":") + ": pass"):
            try:
                tree = ast.parse(candidate)
            except SyntaxError:
                continue
            names |= {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
            break
    return names


def _names_in_order(text: str) -> list:
    """The names a piece of code reads, in the order they appear."""
    read = _names_read(text)
    seen = []
    for match in re.finditer(r"(?<![\w.])[A-Za-z_]\w*", text):
        name = match.group(0)
        if name in read and name not in seen:
            seen.append(name)
    return seen


def _groups(lines):
    """Consecutive statements of one spec statement, at one depth."""
    groups = []
    for line in lines:
        if groups and line[2] is not None and groups[-1][0][2] == line[2] and groups[-1][0][0] == line[0]:
            groups[-1].append(line)
        else:
            groups.append([line])
    return groups


def _safe_doc(text: str) -> str:
    return re.sub(r"[^\w `.,:()\-]", "_", text)


def _fit(indent: str, code: str, comment: str) -> list[str]:
    """Lays out one statement within LINE_LENGTH the way ruff format does."""
    suffix = f"  # {comment}" if comment else ""
    if len(indent + code + suffix) <= LINE_LENGTH:
        return [indent + code + suffix]
    lines = [indent + "# " + comment] if comment else []
    if len(indent + code) <= LINE_LENGTH:
        return lines + [indent + code]
    open_at = _outer_call(code)
    if open_at is None:
        return lines + [indent + code]
    head, inner = code[: open_at + 1], code[open_at + 1 : -1]
    tail = code[-1]
    inner_indent = indent + "    "
    if code.endswith(":"):
        tail = code[-2:]
    if len(inner_indent + inner) <= LINE_LENGTH and not inner.rstrip().endswith(","):
        return lines + [indent + head, inner_indent + inner, indent + tail]
    parts = _split_top(inner)
    body = []
    for part in parts:
        body += _fit(inner_indent, part + ",", "")
    return lines + [indent + head] + body + [indent + tail]


def _outer_call(code: str):
    """The index of the `(` whose `)` ends the code, if the code ends with a call."""
    if code.endswith(":"):
        code = code[:-1]
    if not code.endswith((")", "]")):
        return None
    depth = 0
    i = len(code) - 1
    while i >= 0:
        c = code[i]
        if c in ")]":
            depth += 1
        elif c in "([":
            depth -= 1
            if depth == 0:
                return i if i > 0 else None
        elif c in "\"'":
            start = code.rfind(c, 0, i)  # a generated string literal holds no quote of its own kind
            if start < 0 or "\\" in code[start:i]:
                return None
            i = start
        i -= 1
    return None


def _split_top(inner: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for i, c in enumerate(inner):
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif c == "," and depth == 0:
            parts.append(inner[start:i].strip())
            start = i + 1
    if inner[start:].strip():
        parts.append(inner[start:].strip())
    return parts


def torch_source(graph: Graph, source_file: str | None = None) -> str:
    return TorchEmitter(graph, source_file).source()


_loaded = 0


def load_module(source: str, class_name: str):
    """Executes generated source as a fresh Python module; returns the network class."""
    global _loaded
    import linecache

    _loaded += 1
    name = f"netc_generated_{_loaded}"
    module = types.ModuleType(name)
    module.__file__ = f"<{name}>"
    linecache.cache[module.__file__] = (len(source), None, source.splitlines(True), module.__file__)
    exec(compile(source, module.__file__, "exec"), module.__dict__)
    sys.modules[name] = module
    return getattr(module, class_name)
