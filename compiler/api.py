"""The Python API: `compile_file` and `compile_string` give a `CompiledNetwork`."""

from __future__ import annotations

import os
from dataclasses import dataclass

from netc.dsl.diagnostics import Diagnostic, NetcError, SourceMap

from .builder import gc_paused
from .elaborate import elaborate
from .ir import Graph
from .limits import Limits
from .loader import load_file, load_string
from .prune import prune_unused


@dataclass
class CompiledNetwork:
    """An elaborated, shape-checked network with unused layers left out."""

    graph: Graph
    warnings: list[Diagnostic]
    sources: SourceMap
    file: str | None = None

    @property
    def class_name(self) -> str:
        """The PyTorch class of the network: its name in CamelCase (actor_critic -> ActorCritic)."""
        from netc.backends.torch import network_class

        return network_class(self.graph.name)

    def torch_source(self) -> str:
        """The PyTorch module source: imports only torch and the standard library."""
        from netc.backends.torch import torch_source

        return torch_source(self.graph, self.file)

    def torch(self):
        """A fresh `nn.Module` of the network, built in memory (no file is written)."""
        try:
            import torch  # noqa: F401
        except ImportError as exc:
            raise MissingExtra("PyTorch is not installed: pip install 'netc[torch]'") from exc
        from netc.backends.torch import load_module

        return load_module(self.torch_source(), self.class_name)()

    def weights(self, weights=None, seed: int = 0) -> dict:
        """The parameters and buffers as numpy arrays, by name: read from `weights` (a
        `.pt`, `.safetensors` or `.npz` path, or a dict name -> array), else drawn as
        torch.nn initializes them, from `seed`."""
        from .weights import initial_weights, load_weights

        if weights is None:
            return initial_weights(self.graph, seed)
        return load_weights(weights, self.graph)

    def onnx(
        self,
        opset=18,
        weights=None,
        seed: int = 0,
        optimize: bool = True,
        backward=False,
        loss=None,
        training=True,
        input_grads=True,
    ):
        """The inference model as an `onnx.ModelProto` (see `weights` for the weights); with
        `backward`, the training model: the forward outputs and every gradient, parameters
        and buffers as inputs (see docs/backward.md); `loss` ("cross_entropy" or "mse")
        attaches a loss to the outputs first (`autodiff.attach_loss`); `input_grads` False
        leaves out the inputs' gradients (and what only they need). An opset outside what
        the installed onnx and onnxruntime support raises ValueError."""
        return self.onnx_model(opset, weights, seed, optimize, backward, loss, training, input_grads).to_proto()

    def onnx_model(
        self, opset=18, weights=None, seed=0, optimize=True, backward=False, loss=None, training=True, input_grads=True
    ):
        """The same model as a `netc.backends.onnx.OnnxModel`, whose weights stay numpy
        arrays until `.save(path)` writes them (the fast way to a file); fresh weights
        (`weights=None`) are not drawn until then (`weights.Planned`)."""
        from netc.backends.onnx import check_opset, emit, emit_backward

        check_opset(opset)
        if backward:
            from .autodiff import attach_loss

            return emit_backward(attach_loss(self.graph, loss) if loss else self.graph, opset, training, input_grads)
        if weights is None:
            from .weights import Drawing

            # Planned, not drawn: the model's writer draws each tensor as it writes it.
            return emit(self.graph, Drawing(self.graph, seed).tensors, opset, optimize, owned=True)
        # Weights read from a file are this call's own; a caller's dict is not.
        owned = isinstance(weights, (str, os.PathLike))
        return emit(self.graph, self.weights(weights, seed), opset, optimize, owned)

    def backward_graph(self):
        """The training forward and its backward graph in one graph (compiler/autodiff.py)."""
        from .autodiff import backward_graph

        return backward_graph(self.graph)

    @property
    def name(self) -> str:
        return self.graph.name

    @property
    def parameters(self) -> int:
        return self.graph.parameter_count

    def layers(self):
        """The operator nodes a person thinks of as layers: all but inputs and constants."""
        return [n for n in self.graph.nodes() if n.op not in ("input", "constant")]

    def summary(self) -> dict:
        """The `netc check --json` report for a good spec."""
        g = self.graph
        inputs = [g.node(name) for name in g.inputs]
        return {
            "ok": True,
            "network": g.name,
            "inputs": [{"name": n.name, "dtype": n.outputs[0].dtype, "shape": n.outputs[0].to_json()} for n in inputs],
            "outputs": [
                {"name": name, "dtype": g.type_of(v).dtype, "shape": g.type_of(v).to_json()} for name, v in g.outputs
            ],
            "parameters": self.parameters,
            "layers": [
                {
                    "name": n.name,
                    "op": n.op,
                    "shape": n.outputs[0].to_json(),
                    "parameters": n.parameter_count,
                    **({"shapes": [t.to_json() for t in n.outputs]} if len(n.outputs) > 1 else {}),
                    **({"shares": dict(n.shared)} if n.shared else {}),  # local name -> the stored parameter
                }
                for n in self.layers()
            ],
            "warnings": [w.to_json() for w in self.warnings],
        }


class MissingExtra(Exception):
    """An optional dependency is not installed; the message names the pip command."""


def _compile(load, network, limits: dict, file=None) -> CompiledNetwork:
    limits = Limits(**limits)  # a keyword that names no limit is a TypeError, as for any function
    sources = SourceMap()
    # Elaboration allocates many small objects and no cycles worth collecting: pausing the
    # collector keeps compile time linear in the size of the network.
    with gc_paused():
        try:
            program = load(sources, limits)
            graph = elaborate(program, network, limits)
            graph, warnings = prune_unused(graph)
        except NetcError as exc:
            exc.sources = sources
            raise
    return CompiledNetwork(graph, warnings, sources, file)


def compile_file(path: str | os.PathLike, network: str | None = None, **limits: int) -> CompiledNetwork:
    """Compiles the network of a `.net` file (the only one, or the one named). `limits` are
    keywords named as the fields of `compiler.limits.Limits` (`max_nodes=`, `max_depth=`,
    `max_nesting=`, `max_source_bytes=`, `max_imports=`, `max_dim_terms=`, `max_dim_degree=`)."""
    return _compile(lambda sources, lim: load_file(path, sources, lim), network, limits, str(path))


def compile_string(text: str, network: str | None = None, *, file: str = "<string>", **limits: int) -> CompiledNetwork:
    """Compiles spec text; imports are relative to the current directory. `limits` as for
    `compile_file`."""
    return _compile(lambda sources, lim: load_string(text, file, sources, lim), network, limits)
