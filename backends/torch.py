"""Graph -> PyTorch source: readable `nn.Module` code, as a person would write it.

One class for the network and one per distinct block specialization (same block, same
structure and sizes); layers are built in `__init__` with explicit sizes; `forward` reads
top to bottom with each statement commented with the spec line it came from. Submodule
attribute names are the spec's instance names, so `state_dict()` keys are LANGUAGE.md's
parameter names.

Nothing from a spec reaches the source unsanitized: identifiers go through a namespace that
renames keywords, builtins and clashes (`self`, `torch`, `nn`, `F`, ...) consistently;
strings are emitted as literals; comments keep only safe characters. Source generation
needs no torch; `load_module` does.
"""

from __future__ import annotations

import builtins
import keyword
import re
import sys
import types
from dataclasses import dataclass

from netc.compiler.analysis import Instance, instance_tree, symbol_source
from netc.compiler.ir import Graph, Node, TensorType, Value
from netc.compiler.ops import REGISTRY
from netc.dsl.diagnostics import NetcError

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
# A torch lowering is `(t, *inputs, **attrs) -> Code`: `t` is the `_Function` emitting the
# node, each input a `Code` naming its value (with its type), the attributes the node's
# normalized ones. The result is a Python expression; `t.layer(...)` declares the node's
# submodule, `t.call(...)` renders a call, `t.inplace(i)` says whether input i may be
# overwritten and `t.augment` writes that overwrite (`y += skip`).


def py(value) -> str:
    """A Python literal; strings through repr, so nothing from a spec is spliced raw."""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, str):
        simple = all(c.isalnum() or c in " _-." for c in value)
        return f'"{value}"' if simple else repr(value)
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, tuple):
        return "(" + ", ".join(py(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    raise TypeError(f"no literal for {value!r}")


def py_size(value) -> str:
    """A per-axis tuple that is uniform reads as one int, as people write it."""
    if isinstance(value, tuple) and value and all(v == value[0] for v in value):
        return py(value[0])
    return py(value)


class Code(str):
    """A Python expression; for a tensor value, its type too. `atom`: a name or literal
    that needs no statement of its own."""

    type: TensorType | None = None
    atom: bool = False

    @classmethod
    def of(cls, text: str, type: TensorType | None = None, atom: bool = False) -> Code:
        code = cls(text)
        code.type, code.atom = type, atom
        return code

    @property
    def shape(self):
        return self.type.shape

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


def exact(value) -> Exact:
    return Exact(value)


def opt(value, default) -> Opt:
    return Opt(value, default)


def _render(value) -> str:
    if isinstance(value, Code):
        return str(value)
    if isinstance(value, Exact):
        return py(value.value)
    return py_size(value)


def _arguments(args, kwargs) -> str:
    parts = [_render(a) for a in args]
    for key, value in kwargs.items():
        if isinstance(value, Opt):
            if value.value == value.default or py_size(value.value) == py_size(value.default):
                continue
            value = value.value
        parts.append(f"{key}={_render(value)}")
    return ", ".join(parts)


def camel(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.split("_") if part) or "Net"


def network_class(name: str, namespace: Namespace | None = None) -> str:
    """The network's class: its name in CamelCase, renamed where that is taken (`f` -> `F_`)."""
    return (namespace or Namespace()).fresh(camel(name))


def _comment(node_span) -> str:
    if node_span is None:
        return ""
    file = re.sub(r"[^\w.\-]", "_", node_span.file.rsplit("/", 1)[-1])
    return f"{file}:{node_span.line}"


def _signature(inst: Instance, graph: Graph):
    """Equal signatures mean one class serves both instances."""
    local: dict[Value, tuple] = {v: ("in", i) for i, v in enumerate(inst.inputs)}
    parts = [inst.block, tuple(str(graph.type_of(v)) for v in inst.inputs)]
    for item in inst.items:
        if isinstance(item, Instance):
            args = tuple(local.get(v) for v in item.inputs)
            parts.append(("inst", item.local, item.key, args))
            for i, v in enumerate(item.outputs):
                local[v] = (item.local, i)
        else:
            args = tuple(local.get(v) for v in item.inputs)
            rel = item.name.rsplit(".", 1)[-1]
            parts.append((rel, item.op, repr(item.attrs), args, tuple(str(t) for t in item.outputs), item.var))
            for i in range(len(item.outputs)):
                local[Value(item.name, i)] = (rel, i)
    parts.append(tuple(local.get(v) for v in inst.outputs))
    return repr(parts)


# ---------------------------------------------------------------- emission


class _Function:
    """Emits one class: its __init__ layers and its forward body."""

    def __init__(self, emitter, inst: Instance, graph: Graph, arg_values, out_values):
        self.emitter, self.inst, self.graph = emitter, inst, graph
        self.init_lines: list[str] = []
        self.body: list[tuple[str, str]] = []  # (code, comment)
        self.names = Namespace(emitter.class_names)
        self.env: dict[Value, str] = {}
        self.holder: dict[str, Value] = {}
        self.symbols: dict[str, str] = {}
        self.node: Node | None = None
        self.arg_values, self.out_values = arg_values, out_values
        self.last_use = self._last_uses()
        self.position = -1
        self.uses: dict[Value, int] = {}
        for item in inst.items:
            for v in item.inputs:
                self.uses[v] = self.uses.get(v, 0) + 1
        self.direct = {Value(n.name, i) for n in inst.items if isinstance(n, Node) for i in range(len(n.outputs))}

    def _last_uses(self):
        last = {}
        for i, item in enumerate(self.inst.items):
            for v in item.inputs:
                last[v] = i
        for v in self.out_values:
            last[v] = len(self.inst.items) + 1
        return last

    # -- what lowerings call
    def layer(self, cls: str, *args, **kwargs) -> Code:
        """Declares the node's submodule `cls(*args, **kwargs)`; returns its attribute."""
        node = self.node
        if any(t.dtype == "float64" for t in node.params.values()):
            kwargs["dtype"] = Code("torch.float64")
        attr = self._attr(node.name.rsplit(".", 1)[-1])
        self.init_lines.append(f"{attr} = {cls}({_arguments(args, kwargs)})")
        return Code(attr)

    def call(self, function: str, *args, **kwargs) -> Code:
        return Code(function)(*args, **kwargs)

    def literal(self, value) -> Code:
        return Code.of(py(value), atom=True)

    def code(self, text: str) -> Code:
        return Code(text)

    opt = staticmethod(opt)
    exact = staticmethod(exact)

    def augment(self, target: Code, op: str, other: Code) -> InPlace:
        return InPlace(target, op, other)

    def inplace(self, index: int) -> bool:
        """May the node overwrite its input `index`, as hand-written code does (`relu_`, `+=`)?

        Only a value made in this forward by an op whose backward does not read its own
        output, used once (here), dead after, not returned, and of the result's type."""
        value = self.node.inputs[index]
        producer = self.graph.node(value.node)
        return (
            value in self.direct
            and not REGISTRY[producer.op].grad_reads_output
            and self.uses.get(value) == 1
            and self.last_use.get(value) == self.position
            and value not in self.out_values
            and self.graph.type_of(value) == self.node.outputs[0]
        )

    def dim(self, d) -> str:
        if isinstance(d, int):
            return str(d)
        text = d.text()
        for name in sorted(set(re.findall(r"[A-Za-z_]\w*", text))):
            if name not in self.symbols:
                self.symbols[name] = self.names.fresh(name)
        return re.sub(r"[A-Za-z_]\w*", lambda m: self.symbols[m.group(0)], text)

    # -- the class
    def _attr(self, local: str) -> str:
        if local.isidentifier() and not keyword.iskeyword(local) and local not in _MODULE_ATTRS:
            if not local.startswith("_"):
                return f"self.{local}"
        return f"self._modules[{py(local)}]"

    def _bind(self, value: Value, preferred: str, position: int) -> str:
        base = re.sub(r"\W", "_", preferred)
        candidate, k = base, 1
        while True:
            if candidate in _RESERVED or candidate in self.emitter.class_names or candidate in self.symbols.values():
                candidate = base + "_"
            holder = self.holder.get(candidate)
            free = holder is None and candidate not in self.names.used
            reusable = holder is not None and self.last_use.get(holder, -1) <= position
            if free or reusable:
                break
            candidate, k = f"{base}_{k}", k + 1
        self.names.used.add(candidate)
        self.holder[candidate] = value
        self.env[value] = candidate
        return candidate

    def _preferred(self, value: Value) -> str:
        node = self.graph.node(value.node)
        if node.op == "input":
            return node.name
        return node.var or node.op

    def emit(self):
        params = []
        names = self.graph.instance_args.get(self.inst.path, {})
        for v in self.arg_values:
            params.append(self._bind(v, names.get(v) or self._preferred(v), -1))
        for position, item in enumerate(self.inst.items):
            if isinstance(item, Instance):
                self._child(item, position)
            else:
                self._node(item, position)
        outs = [self.env[v] for v in self.out_values]
        return params, outs

    def _child(self, child: Instance, position: int):
        attr = self._attr(child.local)
        self.init_lines.append(f"{attr} = {child.cls}()")
        args = ", ".join(self.env[v] for v in child.inputs)
        targets = [self._bind(v, self._preferred(v), position) for v in child.outputs]
        if targets:
            self.body.append((f"{', '.join(targets)} = {attr}({args})", _comment(child.call_span)))

    def _node(self, node: Node, position: int):
        args = [Code.of(self.env[v], self.graph.type_of(v), atom=True) for v in node.inputs]
        self.node, self.position = node, position
        expression = REGISTRY[node.op].torch(self, *args, **node.attrs)
        if isinstance(expression, InPlace):  # `y += skip`: the result takes the target's name
            target = str(expression.target)
            self.holder[target] = Value(node.name)
            self.env[Value(node.name)] = target
            self.body.append((f"{target} {expression.op} {expression.other}", _comment(node.span)))
            return
        if isinstance(expression, Code) and expression.atom:  # a name or literal: no statement
            self.env[Value(node.name)] = str(expression)
            return
        targets = [
            self._bind(Value(node.name, i), self._preferred_output(node, i), position) for i in range(len(node.outputs))
        ]
        lhs = ", ".join(targets)
        self.body.append((f"{lhs} = {expression}", _comment(node.span)))

    def _preferred_output(self, node: Node, index: int) -> str:
        base = node.var or node.op
        return base if len(node.outputs) == 1 else f"{base}_{index}"

    def symbol_lines(self) -> list[str]:
        lines = []
        for name, var in self.symbols.items():
            source = self._find_symbol(name)
            if source is None:
                where = self.inst.block or self.graph.name
                raise NetcError(f"cannot compute the size `{name}` at run time inside `{where}` for the PyTorch module")
            lines.append(f"{var} = {source}")
        return lines

    def _find_symbol(self, name: str):
        found = symbol_source(self.graph, name, self.arg_values)
        if found is None:
            return None
        value, axis = found
        return f"{self.env[value]}.shape[{axis}]"  # an argument keeps its name


class TorchEmitter:
    def __init__(self, graph: Graph, source_file: str | None = None):
        self.graph = graph
        self.source_file = source_file
        self.class_names: set[str] = set()
        self.classes: list[str] = []

    def source(self) -> str:
        root = instance_tree(self.graph)
        class_ns = Namespace()
        by_key: dict[str, Instance] = {}
        order: list[Instance] = []
        root.cls = network_class(self.graph.name, class_ns)  # the network's class name comes first

        def visit(inst: Instance):
            for item in inst.items:
                if isinstance(item, Instance):
                    visit(item)
            if inst is root:
                return
            inst.key = _signature(inst, self.graph)
            if inst.key in by_key:
                inst.cls = by_key[inst.key].cls
                return
            inst.cls = class_ns.fresh(camel(inst.block), numbered=True)  # Bottleneck, Bottleneck2, ...
            by_key[inst.key] = inst
            order.append(inst)

        visit(root)
        self.class_names = set(class_ns.used) - _RESERVED
        blocks = [self._class(inst, inst.inputs, inst.outputs, f"Block `{inst.block}`.") for inst in order]
        inputs = [Value(name) for name in self.graph.inputs]
        outputs = [v for _, v in self.graph.outputs]
        network = self._class(root, inputs, outputs, f"Network `{self.graph.name}`.")
        body = "\n\n".join(blocks + [network])
        return self._header(body) + body

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
        return doc + "\n\n" + "\n".join(imports) + "\n\n\n"

    def _class(self, inst: Instance, arg_values, out_values, doc: str) -> str:
        fn = _Function(self, inst, self.graph, arg_values, out_values)
        params, outs = fn.emit()
        symbol_lines = fn.symbol_lines()
        lines = [f"class {inst.cls}(nn.Module):", f'    """{_safe_doc(doc)}"""', ""]
        lines += ["    def __init__(self):", "        super().__init__()"]
        for line in fn.init_lines:
            lines += _fit("        ", line, "")
        lines.append("")
        lines += _fit("    ", f"def forward(self{''.join(', ' + p for p in params)}):", "")
        for line in symbol_lines:
            lines += _fit("        ", line, "")
        for code, comment in fn.body:
            lines += _fit("        ", code, comment)
        lines += _fit("        ", "return " + ", ".join(outs) if outs else "return None", "")
        return "\n".join(lines) + "\n"


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
    if len(inner_indent + inner) <= LINE_LENGTH and not inner.rstrip().endswith(","):
        return lines + [indent + head, inner_indent + inner, indent + tail]
    parts = _split_top(inner)
    body = []
    for part in parts:
        body += _fit(inner_indent, part + ",", "")
    return lines + [indent + head] + body + [indent + tail]


def _outer_call(code: str):
    """The index of the `(` whose `)` ends the code, if the code ends with a call."""
    if not code.endswith((")", "]")):
        return None
    depth = 0
    for i in range(len(code) - 1, -1, -1):
        c = code[i]
        if c in ")]":
            depth += 1
        elif c in "([":
            depth -= 1
            if depth == 0:
                return i if i > 0 else None
        elif c in "\"'":
            return None
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
