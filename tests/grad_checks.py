"""Running a network's derived backward graph both ways, beside torch.autograd.

`derived(compiled, module, inputs, seeds, masks)` runs the ONNX training model in
onnxruntime and the emitted torch `backward` function, and returns both results by
output name; `autograd(...)` computes the same names with torch.autograd on the netc
module in training mode. Shared by the op table (tests/test_grad.py) and the examples.
"""

from __future__ import annotations

import numpy as np
import torch
from netc.backends.onnx import emit_backward
from netc.backends.torch import load_module
from netc.backends.torch_backward import torch_source_with_backward


def onnx_gradients(graph, module, feeds: dict) -> dict:
    """The ONNX training model of a graph run in onnxruntime, parameters from `module`."""
    import onnxruntime as ort

    model = emit_backward(graph).to_proto()
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    state = module.state_dict()
    values = {}
    for i in session.get_inputs():
        values[i.name] = feeds[i.name] if i.name in feeds else state[i.name].detach().numpy().copy()
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, values)))


def torch_gradients(graph, module, feeds: dict) -> dict:
    """The emitted torch `backward` function of a graph, run on `module`."""
    import sys

    from netc.backends.torch import network_class
    from netc.compiler.autodiff import backward_graph

    source = torch_source_with_backward(graph)
    backward = sys.modules[load_module(source, network_class(graph.name)).__module__].backward
    order = backward_graph(graph).inputs
    result = backward(module, *(torch.from_numpy(np.array(feeds[name])) for name in order))
    return {k: v.detach().numpy() for k, v in result.items()}


def feeds_for(compiled, tensors: list, seeds: dict, masks: dict) -> dict:
    feeds = {name: t.detach().numpy() for name, t in zip(compiled.graph.inputs, tensors)}
    feeds.update({f"seed.{name}": s.numpy() for name, s in seeds.items()})
    feeds.update({name: m.numpy() for name, m in masks.items()})
    return feeds


def autograd(compiled, module, tensors: list, seeds: dict, forward=None) -> dict:
    """The backward graph's outputs as torch.autograd computes them (training mode):
    forward outputs, running statistics' next values, grad.<param>, grad.<input>."""
    module.train()
    tensors = [t.detach().clone().requires_grad_(t.is_floating_point()) for t in tensors]
    outputs = (forward or module)(*tensors)
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    names = [name for name, _ in compiled.graph.outputs]
    result = {name: o.detach().numpy() for name, o in zip(names, outputs)}
    for key, value in module.state_dict().items():
        if key.endswith(("running_mean", "running_var")):
            result[f"{key}.next"] = value.detach().numpy().copy()
    params = dict(module.named_parameters())
    wrt = list(params.values()) + [t for t in tensors if t.requires_grad]
    wrt_names = [f"grad.{k}" for k in params] + [
        f"grad.{n}" for n, t in zip(compiled.graph.inputs, tensors) if t.requires_grad
    ]
    grads = [seeds.get(name, torch.ones(())) for name in names]
    pairs = [(o, g) for o, g in zip(outputs, grads) if o.is_floating_point() and o.requires_grad]
    got = torch.autograd.grad([o for o, _ in pairs], wrt, [g for _, g in pairs], allow_unused=True)
    for name, g in zip(wrt_names, got):
        if g is not None:
            result[name] = g.numpy()
    return result


def compare(got: dict, want: dict, rtol: float, atol: float, what: str) -> None:
    missing = sorted(set(want) - set(got))
    assert not missing, f"{what}: no {missing}"
    for name, value in want.items():
        np.testing.assert_allclose(got[name], value, rtol=rtol, atol=atol, err_msg=f"{what}: {name}")


def masks_for(compiled, generator, sizes=None):
    """Dropout masks of the training graph, drawn as dropout draws them."""
    from netc.compiler.ops.elementwise import stochastic_depth_mask_shape

    masks = {}
    for node in compiled.graph.nodes():
        if node.op in ("dropout", "stochastic_depth"):
            shape = tuple(d if isinstance(d, int) else sizes[d.text()] for d in node.outputs[0].shape)
            if node.op == "stochastic_depth":  # one draw per sample, or one for the batch
                shape = stochastic_depth_mask_shape(shape, node.attrs["mode"])
            keep = torch.rand(shape, generator=generator) >= node.attrs["p"]
            masks[f"{node.name}.mask"] = keep.to(getattr(torch, node.outputs[0].dtype))
    return masks


def with_masks(compiled, module, masks):
    """The module's training forward with the given dropout masks instead of fresh ones."""
    masked = iter([masks[f"{n.name}.mask"] for n in compiled.graph.nodes() if n.op == "dropout"])
    # stochastic_depth lowers to torch.feature_dropout on x with new leading axes, which the
    # mask ([N, 1, ...] or [1, ...]) broadcasts against; a call with p = 0 takes no mask (below),
    # so those nodes take none here either (ConvNeXt's first block has p = 0)
    depth = iter(
        [masks[f"{n.name}.mask"] for n in compiled.graph.nodes() if n.op == "stochastic_depth" and n.attrs["p"] > 0]
    )
    original, original_feature = torch.nn.functional.dropout, torch.feature_dropout

    def forward(*tensors):
        def dropout(x, p=0.5, training=True, inplace=False):
            return x * next(masked) / (1 - p) if training else x

        def feature_dropout(x, p, training):
            return x * next(depth) / (1 - p) if training and p > 0 else x

        torch.nn.functional.dropout, torch.feature_dropout = dropout, feature_dropout
        try:
            return module(*tensors)
        finally:
            torch.nn.functional.dropout, torch.feature_dropout = original, original_feature

    return forward
