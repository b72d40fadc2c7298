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


def onnx_gradients(compiled, module, feeds: dict) -> dict:
    import onnxruntime as ort

    model = emit_backward(compiled.graph).to_proto()
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    state = module.state_dict()
    values = {}
    for i in session.get_inputs():
        values[i.name] = feeds[i.name] if i.name in feeds else state[i.name].detach().numpy().copy()
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, values)))


def torch_gradients(compiled, module, feeds: dict) -> dict:
    source = torch_source_with_backward(compiled.graph)
    namespace = load_module(source, compiled.class_name).__module__
    import sys

    backward = sys.modules[namespace].backward
    from netc.compiler.autodiff import backward_graph

    order = backward_graph(compiled.graph).inputs
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
