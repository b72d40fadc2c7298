"""Backward graph -> one Python function that computes the gradients with explicit torch
ops, no autograd: what `netc compile --target torch --backward` writes beside the module.

    def backward(model, x, y):
        '''...'''
        linear_0 = model.get_submodule("linear_0")
        ...
        with torch.no_grad():
            linear_0_out = linear_0(x)
            ...
        return {"output_0": ..., "grad.linear_0.weight": ..., "grad.x": ...}

`model` is the netc module of the same spec (its layers and parameters are read by name);
the other arguments are the backward graph's inputs: the forward inputs, dropout masks
(`<node>.mask`), and seeds of non-scalar outputs (`seed.<output>`), as Python names. The
result is keyed by the backward graph's output names, the ONNX training model's names.
Every op lowers through its registry entry's torch lowering, the flat way: a layer is the
model's submodule, a `param` node the model's parameter or buffer.
"""

from __future__ import annotations

import re

from netc.compiler.analysis import symbol_source
from netc.compiler.autodiff import backward_graph
from netc.compiler.ir import Graph, Value
from netc.compiler.ops import REGISTRY

from .torch import Code, InPlace, Namespace, Unpack, _fit, exact, opt, py, shared_layer


class _Flat:
    """The lowering context `t` for one flat function (backends/torch.py describes `t`)."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self.names = Namespace({"model"})
        self.hoisted: dict[str, tuple[str, str]] = {}  # target -> (variable, its line)
        self.body: list[str] = []
        self.env: dict[Value, str] = {}
        self.node = None

    # -- what lowerings call
    def layer(self, cls: str, *args, **kwargs) -> Code:
        owner = shared_layer(self.graph, self.node) if self.node.shared else None
        return Code(self._hoist((owner or self.node).name, "get_submodule"))

    @property
    def tied(self) -> bool:
        return bool(self.node.shared) and shared_layer(self.graph, self.node) is None

    def param(self, local: str) -> Code:
        return Code.of(self._hoist(self.node.param_name(local), "get_parameter"), atom=True)

    def parameter(self, name: str, buffer: bool = False) -> Code:
        return Code.of(self._hoist(name, "get_buffer" if buffer else "get_parameter"), atom=True)

    def learned(self, function: str, *args, times=None, **kwargs) -> Code:
        return self.parameter(self.node.param_name(""))

    def tensor(self, function: str, *args, static: bool, **kwargs) -> Code:
        device = self.device()
        if device is not None:
            kwargs["device"] = Code(device)
        return Code(function)(*args, **kwargs)

    def device(self) -> str | None:
        return f"{self.env[Value(self.graph.inputs[0])]}.device" if self.graph.inputs else None

    def call(self, function: str, *args, **kwargs) -> Code:
        return Code(function)(*args, **kwargs)

    def literal(self, value) -> Code:
        return Code.of(py(value), atom=True)

    def code(self, text: str) -> Code:
        return Code(text)

    opt = staticmethod(opt)
    exact = staticmethod(exact)

    def unpack(self, pattern: str, code: Code) -> Unpack:
        return Unpack(pattern, code)

    def augment(self, target: Code, op: str, other: Code) -> InPlace:
        raise AssertionError("a flat function never overwrites in place")

    def inplace(self, index: int) -> bool:
        return False  # values stay alive until the backward nodes have read them

    def dim(self, d) -> str:
        """A dimension as a run-time expression over the inputs' sizes."""
        if isinstance(d, int):
            return str(d)

        def size(match):
            value, axis = symbol_source(self.graph, match.group(0), [Value(n) for n in self.graph.inputs])
            return f"{self.env[value]}.shape[{axis}]"

        return "(" + re.sub(r"[A-Za-z_]\w*", size, d.text()) + ")"

    def _hoist(self, target: str, kind: str) -> str:
        """A variable bound once, before the computation, to `model.<kind>(target)`."""
        if target not in self.hoisted:
            var = self.names.fresh(re.sub(r"\W", "_", target))
            self.hoisted[target] = (var, f"{var} = model.{kind}({py(target)})")
        return self.hoisted[target][0]

    # -- the function
    def source(self) -> str:
        g = self.graph
        args = []
        for name in g.inputs:
            var = self.names.fresh(re.sub(r"\W", "_", name))
            self.env[Value(name)] = var
            args.append(var)
        for node in g.nodes():
            if node.op == "input":
                continue
            self.node = node
            inputs = [Code.of(self.env[v], g.type_of(v), atom=True) for v in node.inputs]
            expression = REGISTRY[node.op].torch(self, *inputs, **node.attrs)
            if isinstance(expression, Code) and expression.atom:
                self.env[Value(node.name)] = str(expression)
                continue
            targets = [self.names.fresh(re.sub(r"\W", "_", node.name)) for _ in node.outputs]
            for i, target in enumerate(targets):
                self.env[Value(node.name, i)] = target
            lhs = ", ".join(targets)
            if len(targets) == 1 and REGISTRY[node.op].n_outputs != 1:  # a one-part split is still a tuple
                lhs = f"({lhs},)"
            if isinstance(expression, Unpack):
                lhs, expression = expression.pattern.format(*targets), expression.code
            self.body.append(f"{lhs} = {expression}")
        hoisted = [line for _, line in self.hoisted.values()]
        doc = [
            f'"""Network `{_safe(g.name)}`: its outputs and gradients, with explicit torch ops.',
            "",
            "No autograd: `model` is the netc module of the same spec, whose layers and",
            "parameters are read by name. Returns {output name: tensor}.",
            '"""',
        ]
        lines = [f"def backward(model{''.join(', ' + a for a in args)}):"]
        lines += ["    " + line if line else "" for line in doc]
        for line in hoisted:
            lines += _fit("    ", line, "")
        lines.append("    with torch.no_grad():")
        for line in self.body:
            lines += _fit("        ", line, "")
        lines.append("        return {")
        lines += [f"            {py(name)}: {self.env[v]}," for name, v in g.outputs]
        lines.append("        }")
        return "\n".join(lines) + "\n"


def _safe(text: str) -> str:
    return re.sub(r"[^\w.\-]", "_", text)


def backward_source(graph: Graph, inputs: bool = True) -> str:
    """The `backward` function of a forward graph, as Python source (needs `torch`, `F`);
    `inputs` False: without the inputs' gradients (`autodiff.backward_graph`)."""
    return _Flat(backward_graph(graph, inputs=inputs)).source()


def torch_source_with_backward(graph: Graph, source_file: str | None = None, inputs: bool = True) -> str:
    """The network's module source (backends/torch.py) with its `backward` function after it."""
    from .torch import torch_source

    source = torch_source(graph, source_file)
    head, _, rest = source.partition("\n\n")  # the docstring, then the imports
    imports = [line for line in ("import torch", "import torch.nn.functional as F") if line + "\n" not in source]
    if imports:
        rest = "\n".join(imports) + "\n" + rest
    return f"{head}\n\n{rest}\n\n{backward_source(graph, inputs)}"
