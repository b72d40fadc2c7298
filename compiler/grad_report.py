"""`netc grad`: what the backward graph of a network is made of.

The summary counts the training forward's and the backward graph's nodes by op, the
gradient steps that are element-wise products (`g * factor`) by the function whose
factor they apply, and lists the parameters and inputs the gradient reaches.
"""

from __future__ import annotations

from collections import Counter

from .autodiff import backward_graph
from .ir import Graph


def grad_report(graph: Graph) -> tuple[dict, Graph]:
    """The `netc grad --json` report of a forward graph, and its backward graph."""
    g = backward_graph(graph)
    nodes = g.nodes()
    backward = [n for n in nodes if n.name.startswith("grad.") and n.op != "input"]
    forward = [n for n in nodes if not n.name.startswith("grad.") and n.op not in ("input", "parameter")]
    products: dict[str, dict] = {}
    for name, factor in g.factors.items():
        op = next(n.op for n in graph.nodes() if name.startswith(f"grad.{n.name}."))
        entry = products.setdefault(op, {"factor": factor, "count": 0})
        entry["count"] += 1
    gradients = [name for name, _ in g.outputs if name.startswith("grad.")]
    report = {
        "network": graph.name,
        "forward_nodes": len(forward),
        "backward_nodes": len(backward),
        "backward_ops": dict(sorted(Counter(n.op for n in backward).items())),
        "elementwise_products": {"count": sum(e["count"] for e in products.values()), "by_function": products},
        "parameters": [name[5:] for name in gradients if name[5:] not in graph.inputs],
        "inputs": [name[5:] for name in gradients if name[5:] in graph.inputs],
        "seeds": [name for name in g.inputs if name.startswith("seed.")],
        "extra_inputs": [name for name in g.inputs if name not in graph.inputs and not name.startswith("seed.")],
        "extra_outputs": [name for name, _ in g.outputs if name.endswith(".next")],
    }
    return report, g


def print_report(report: dict) -> str:
    lines = [
        f"network {report['network']}: backward graph",
        f"  training forward {report['forward_nodes']} nodes, backward {report['backward_nodes']} nodes",
        "  backward ops: " + ", ".join(f"{op} {n}" for op, n in report["backward_ops"].items()),
        f"  element-wise product steps (g * factor): {report['elementwise_products']['count']}",
    ]
    for op, entry in report["elementwise_products"]["by_function"].items():
        lines.append(f"    {op:<12} {entry['count']:>5} x  · {entry['factor']}")
    lines.append(
        f"  gradients of {len(report['parameters'])} parameters and inputs {', '.join(report['inputs']) or '(none)'}"
    )
    if report["seeds"]:
        lines.append(f"  seeds (inputs): {', '.join(report['seeds'])}")
    if report["extra_inputs"]:
        lines.append(f"  dropout masks (inputs): {', '.join(report['extra_inputs'])}")
    if report["extra_outputs"]:
        lines.append(f"  running statistics (outputs): {', '.join(report['extra_outputs'])}")
    return "\n".join(lines) + "\n"
