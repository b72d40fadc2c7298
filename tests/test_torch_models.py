"""netc's PyTorch modules against hand-written torch.nn references (tests/torch_reference.py).

For each example model: compile the spec, build the reference, copy the reference's weights
into the netc module by name mapping, and compare the outputs in eval mode and in train mode
(batch statistics; dropout with the same seed before each forward), the batchnorm running
statistics after a train-mode forward, and the gradients of a train-mode backward.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from netc.compiler import compile_file  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch_reference as R  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
BATCH = 2

# name -> input shape; the U-Net's module is size-agnostic (any multiple of 16), so the
# default run uses 64x64 and the spec's 256x256 runs under -m slow.
INPUTS = {
    "resnet18": (BATCH, 3, 224, 224),
    "resnet50": (BATCH, 3, 224, 224),
    "densenet121": (BATCH, 3, 224, 224),
    "mobilenet_v2": (BATCH, 3, 224, 224),
    "unet": (BATCH, 3, 64, 64),
    "transformer": (BATCH, 16),
}
CASES = [pytest.param(name, INPUTS[name], id=name) for name in INPUTS] + [
    pytest.param("unet", (BATCH, 3, 256, 256), id="unet-256", marks=pytest.mark.slow),
]


def make_input(shape):
    g = torch.Generator().manual_seed(0)
    if len(shape) == 2:  # the transformer's token ids
        return torch.randint(0, 1000, shape, generator=g)
    return torch.randn(shape, generator=g)


pytestmark = pytest.mark.usefixtures("two_torch_threads")


def pair(name):
    compiled = compile_file(EXAMPLES / f"{name}.net").torch()
    torch.manual_seed(0)
    reference = R.MODELS[name]()
    R.randomize(reference)
    mapping = R.copy_weights(reference, compiled)
    return reference, compiled, mapping


@pytest.mark.parametrize("name, shape", CASES)
def test_matches_reference(name, shape):
    reference, compiled, mapping = pair(name)
    x = make_input(shape)

    # eval: running statistics, no dropout
    reference.eval()
    compiled.eval()
    with torch.no_grad():
        expected = reference(x)
        actual = compiled(x)
    assert actual.shape == expected.shape
    assert expected.abs().max().item() > 1e-3, "degenerate reference output: the comparison would prove nothing"
    R.close(actual, expected, f"{name} eval")

    # train: batch statistics; the same dropout masks (seed right before each forward)
    reference.train()
    compiled.train()
    torch.manual_seed(0)
    expected = reference(x)
    torch.manual_seed(0)
    actual = compiled(x)
    R.close(actual, expected, f"{name} train")

    # running statistics (and num_batches_tracked) updated alike by the train forward
    net_sd = compiled.state_dict()
    buffers = 0
    for key, value in reference.state_dict().items():
        if key.rsplit(".", 1)[-1] in ("running_mean", "running_var", "num_batches_tracked"):
            buffers += 1
            if value.dtype == torch.long:
                assert torch.equal(net_sd[mapping[key]], value), key
            else:
                R.close(net_sd[mapping[key]], value, f"{name} {key} -> {mapping[key]}")
    assert buffers == (0 if name == "transformer" else 3 * sum(1 for _ in _batchnorms(reference)))

    # the train-mode backward: gradients of every parameter
    weights = torch.randn(expected.shape, generator=torch.Generator().manual_seed(2))
    (expected * weights).sum().backward()
    (actual * weights).sum().backward()
    ref_params = dict(reference.named_parameters())
    net_params = dict(compiled.named_parameters())
    for key, param in ref_params.items():
        R.close(net_params[mapping[key]].grad, param.grad, f"{name} grad {key} -> {mapping[key]}")


def _batchnorms(model):
    return (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_mapping_is_by_name_and_complete():
    reference, compiled, mapping = pair("resnet18")
    assert mapping["conv1.weight"] == "conv2d_0.weight"
    assert mapping["layer2.0.downsample.0.weight"] == "stage_1.basic_0.conv2d_2.weight"
    assert mapping["layer2.0.downsample.1.running_var"] == "stage_1.basic_0.batchnorm_2.running_var"
    assert mapping["fc.bias"] == "linear_0.bias"
    assert set(mapping.values()) == set(compiled.state_dict())
