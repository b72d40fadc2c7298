"""The one text form of a graph, for golden tests and `--dump-ir`; deterministic.

%stage_1.conv2d_0 : f32[N, 64, 56, 56] = conv2d(%x) {out=64, kernel=(1, 1)}  # resnet.net:3
"""

from __future__ import annotations

from .ir import Graph, Node, TensorType

_SHORT = {"float32": "f32", "float64": "f64", "int64": "i64", "bool": "bool"}


def type_text(t: TensorType) -> str:
    return _SHORT[t.dtype] + "[" + ", ".join(str(d) for d in t.shape) + "]"


def _value_text(value) -> str:
    return f"%{value.node}" + (f"#{value.index}" if value.index else "")


def _attr_text(value) -> str:
    if isinstance(value, TensorType):
        return type_text(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return "(" + ", ".join(_attr_text(v) for v in value) + ")"
    return str(value)


def node_line(node: Node) -> str:
    outs = ", ".join(type_text(t) for t in node.outputs)
    args = ", ".join(_value_text(v) for v in node.inputs)
    attrs = ", ".join(f"{k}={_attr_text(v)}" for k, v in node.attrs.items() if node.op != "input")
    line = f"%{node.name} : {outs} = {node.op}({args})"
    if attrs:
        line += " {" + attrs + "}"
    if node.shared:
        line += " shares {" + ", ".join(f"{k}={v}" for k, v in node.shared.items()) + "}"
    if node.span is not None:
        line += f"  # {node.span.file.rsplit('/', 1)[-1]}:{node.span.line}"
    return line


def print_graph(graph: Graph) -> str:
    lines = [f"network {graph.name}"]
    lines += [node_line(n) for n in graph.nodes()]
    lines.append(
        "return " + ", ".join(f"{name}=%{v.node}" + (f"#{v.index}" if v.index else "") for name, v in graph.outputs)
    )
    return "\n".join(lines) + "\n"
