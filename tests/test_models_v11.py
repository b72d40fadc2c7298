"""The language 1.1 examples against hand-written torch.nn references (tests/torch_reference.py).

Parameter counts: torchvision's own for vit_b_16, convnext_tiny and efficientnet_b0 (the
numbers are the spec: torchvision is not a dependency), and the references' for the others.

Equality: compile the spec, build the reference, copy the reference's weights into the netc
module by name (the GPT, LSTM, GRU and SAC modules use the reference's names exactly; ViT's
differ by a few renames; ConvNeXt's and EfficientNet's are paired in registration order,
each pair checked for the same leaf name, shape and kind of layer), then compare outputs in
eval mode and in train mode (stochastic depth and dropout with the same seed before each
forward), and every parameter's gradient after a train-mode backward. The references use
nn.MultiheadAttention, nn.LSTM and nn.GRU themselves; the GPT reference writes its causal
attention out with `@`, a mask and softmax, and ties its head with
`F.linear(x, self.wte.weight)`.

The full ViT-B/16 runs once under `-m slow`; the default run checks the same spec text with
smaller constants (the example's constants substituted), against the same reference class.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from netc.compiler import compile_file, compile_string  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch_reference as R  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"

TORCHVISION = {"vit_b_16": 86_567_656, "convnext_tiny": 28_589_128, "efficientnet_b0": 5_288_548}
SMALL = {"gpt2": 470_528, "lstm_classifier": 295_940, "sac_actor": 73_484}


pytestmark = pytest.mark.usefixtures("two_torch_threads")


# ---------------------------------------------------------------- helpers


def renamed(key: str, renames) -> str:
    for pattern, replacement in renames:
        key = re.sub(pattern, replacement, key)
    return key


def copy_by_name(reference, compiled, renames=()) -> dict[str, str]:
    """Reference key -> netc key by name (after `renames`); every netc tensor is covered."""
    ref_sd, net_sd = reference.state_dict(), compiled.state_dict()
    mapping = {k: renamed(k, renames) for k in ref_sd}
    assert sorted(mapping.values()) == sorted(net_sd), (
        f"only in the reference: {sorted(set(mapping.values()) - set(net_sd))[:8]}; "
        f"only in netc: {sorted(set(net_sd) - set(mapping.values()))[:8]}"
    )
    for rk, nk in mapping.items():
        assert ref_sd[rk].shape == net_sd[nk].shape, f"{rk} {tuple(ref_sd[rk].shape)} vs {nk} {tuple(net_sd[nk].shape)}"
    compiled.load_state_dict({mapping[k]: v.detach().clone() for k, v in ref_sd.items()}, strict=True)
    return mapping


def _kind(module) -> type:
    """The torch.nn layer class a module is (torchvision's LayerNorm2d is a LayerNorm)."""
    return next((c for c in type(module).__mro__ if c.__module__.startswith("torch.nn.modules")), type(module))


def copy_in_order(reference, compiled) -> dict[str, str]:
    """Pairs the two state_dicts in registration order (both follow the forward's order),
    checking each pair's leaf name, shape, and kind of layer for layer tensors."""
    ref_sd, net_sd = reference.state_dict(), compiled.state_dict()
    assert len(ref_sd) == len(net_sd), f"{len(ref_sd)} reference tensors vs {len(net_sd)} netc tensors"
    mapping = {}
    for (rk, rv), (nk, nv) in zip(ref_sd.items(), net_sd.items()):
        leaf = rk.rsplit(".", 1)[-1]
        assert leaf == nk.rsplit(".", 1)[-1], f"leaf names differ: {rk} vs {nk}"
        assert rv.shape == nv.shape, f"shapes differ: {rk} {tuple(rv.shape)} vs {nk} {tuple(nv.shape)}"
        if leaf in R.LEAVES:
            r_owner = _kind(reference.get_submodule(rk.rsplit(".", 1)[0]))
            n_owner = _kind(compiled.get_submodule(nk.rsplit(".", 1)[0]))
            assert r_owner is n_owner, f"layer kinds differ: {rk} ({r_owner.__name__}) vs {nk} ({n_owner.__name__})"
        mapping[rk] = nk
    compiled.load_state_dict({mapping[k]: v.detach().clone() for k, v in ref_sd.items()}, strict=True)
    return mapping


def as_tuple(out):
    return out if isinstance(out, tuple) else (out,)


def check_equal(reference, compiled, mapping, inputs, what, train=True):
    """Eval outputs, train outputs (same seed before each), running statistics, gradients."""
    reference.eval()
    compiled.eval()
    with torch.no_grad():
        expected = as_tuple(reference(*inputs))
        actual = as_tuple(compiled(*inputs))
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        assert a.shape == e.shape
        assert e.abs().max().item() > 1e-3, "degenerate reference output: the comparison would prove nothing"
        R.close(a, e, f"{what} eval")
    if not train:
        return
    reference.train()
    compiled.train()
    torch.manual_seed(0)
    expected = as_tuple(reference(*inputs))
    torch.manual_seed(0)
    actual = as_tuple(compiled(*inputs))
    for a, e in zip(actual, expected):
        R.close(a, e, f"{what} train")
    net_sd = compiled.state_dict()
    for key, value in reference.state_dict().items():
        if key.endswith(("running_mean", "running_var", "num_batches_tracked")):
            R.close(net_sd[mapping[key]].double(), value.double(), f"{what} {key}")
    g = torch.Generator().manual_seed(2)
    weights = [torch.randn(e.shape, generator=g) for e in expected]
    sum((e * w).sum() for e, w in zip(expected, weights)).backward()
    sum((a * w).sum() for a, w in zip(actual, weights)).backward()
    net_params = dict(compiled.named_parameters())
    for key, param in reference.named_parameters():
        assert net_params[mapping[key]].grad is not None, f"{what}: no gradient reaches {mapping[key]}"
        R.close(net_params[mapping[key]].grad, param.grad, f"{what} grad {key} -> {mapping[key]}")


def ids(shape, high, seed=0):
    return torch.randint(0, high, shape, generator=torch.Generator().manual_seed(seed))


def randn(*shape, seed=0):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def count(module) -> int:
    return sum(p.numel() for p in module.parameters())


# ---------------------------------------------------------------- parameter counts


@pytest.mark.parametrize("name,expected", TORCHVISION.items())
def test_torchvision_parameter_counts(name, expected):
    compiled = compile_file(EXAMPLES / f"{name}.net")
    assert compiled.parameters == expected
    assert compiled.summary()["outputs"][0]["shape"] == ["N", 1000]


@pytest.mark.parametrize("name,expected", SMALL.items())
def test_parameter_counts_equal_the_references(name, expected):
    compiled = compile_file(EXAMPLES / f"{name}.net")
    assert compiled.parameters == expected
    assert count(compiled.torch()) == count(R.MODELS[name]()) == expected


# ---------------------------------------------------------------- ViT

VIT_SMALL = {"classes": 10, "size": 32, "patch": 8, "hidden": 64, "layers": 2, "heads": 4, "mlp_dim": 128}


def vit_spec(**constants) -> str:
    text = (EXAMPLES / "vit_b_16.net").read_text()
    for name, value in constants.items():
        text, n = re.subn(rf"(?m)^{name} = \d+$", f"{name} = {value}", text)
        assert n == 1, f"examples/vit_b_16.net has no constant line `{name} = ...`"
    return text


def test_vit_small_matches_reference():
    compiled = compile_string(vit_spec(**VIT_SMALL)).torch()
    c = VIT_SMALL
    torch.manual_seed(0)
    reference = R.VisionTransformer(
        c["size"], c["patch"], c["layers"], c["heads"], c["hidden"], c["mlp_dim"], c["classes"]
    )
    R.randomize(reference)
    mapping = copy_by_name(reference, compiled, R.VIT_RENAMES)
    assert mapping["encoder.layers.encoder_layer_1.self_attention.in_proj_weight"] == (
        "encoder.encoder_layer_1.self_attention.in_proj.weight"
    )
    assert mapping["class_token"] == "class_token" and mapping["encoder.pos_embedding"] == "encoder.pos_embedding"
    check_equal(reference, compiled, mapping, [randn(3, 3, 32, 32)], "vit small")


@pytest.mark.slow
def test_vit_b_16_matches_reference():
    compiled = compile_file(EXAMPLES / "vit_b_16.net").torch()
    torch.manual_seed(0)
    reference = R.vit_b_16()
    R.randomize(reference)
    mapping = copy_by_name(reference, compiled, R.VIT_RENAMES)
    assert count(compiled) == count(reference) == TORCHVISION["vit_b_16"]
    check_equal(reference, compiled, mapping, [randn(1, 3, 224, 224)], "vit_b_16", train=False)


# ---------------------------------------------------------------- ConvNeXt, EfficientNet


# The emitted modules, like the references, take any image size that survives the 32x
# downsampling; the default run uses 64x64 (30 s less), the spec's 224x224 runs under -m slow.
@pytest.mark.parametrize(
    "name,size",
    [
        ("convnext_tiny", 64),
        ("efficientnet_b0", 64),
        pytest.param("convnext_tiny", 224, marks=pytest.mark.slow),
        pytest.param("efficientnet_b0", 224, marks=pytest.mark.slow),
    ],
)
def test_vision_model_matches_reference(name, size):
    compiled = compile_file(EXAMPLES / f"{name}.net").torch()
    torch.manual_seed(0)
    reference = R.MODELS[name]()
    R.randomize(reference)
    mapping = copy_in_order(reference, compiled)
    check_equal(reference, compiled, mapping, [randn(2, 3, size, size)], f"{name} {size}x{size}")


def test_convnext_names_follow_the_spec():
    compiled = compile_file(EXAMPLES / "convnext_tiny.net")
    keys = set(compiled.torch().state_dict())
    assert "stage_2.cnblock_8.layer_scale" in keys
    assert "stage_2.cnblock_8.conv2d_0.weight" in keys
    assert not any(k.endswith("layer_scale.weight") for k in keys)


# ---------------------------------------------------------------- GPT-style decoder (tied head)


def test_gpt2_tied_head_is_stored_and_counted_once():
    compiled = compile_file(EXAMPLES / "gpt2.net")
    module = compiled.torch()
    reference = R.gpt2()
    assert set(module.state_dict()) == set(reference.state_dict())
    assert count(module) == count(reference) == compiled.parameters == SMALL["gpt2"]
    assert len(list(module.parameters())) == len(list(reference.parameters()))
    # the head owns no parameter: no tensor of its own, and no second name for the embedding's
    assert not any(k.startswith("linear_") for k in module.state_dict())
    assert len(dict(module.named_parameters(remove_duplicate=False))) == len(module.state_dict())


@pytest.mark.parametrize("length", [10, 64])
def test_gpt2_matches_reference(length):
    compiled = compile_file(EXAMPLES / "gpt2.net").torch()
    torch.manual_seed(0)
    reference = R.gpt2()
    R.randomize(reference)
    mapping = copy_by_name(reference, compiled)
    check_equal(reference, compiled, mapping, [ids((2, length), 512)], f"gpt2 T={length}")


def test_gpt2_is_causal():
    compiled = compile_file(EXAMPLES / "gpt2.net").torch().eval()
    a = ids((1, 12), 512)
    b = a.clone()
    b[0, 7:] = (b[0, 7:] + 1) % 512
    with torch.no_grad():
        la, lb = compiled(a), compiled(b)
    R.close(la[:, :7], lb[:, :7], "positions before the change")
    assert (la[:, 7:] - lb[:, 7:]).abs().max() > 1e-4


# ---------------------------------------------------------------- recurrent layers


def test_lstm_classifier_matches_reference():
    compiled = compile_file(EXAMPLES / "lstm_classifier.net").torch()
    torch.manual_seed(0)
    reference = R.lstm_classifier()
    R.randomize(reference)
    mapping = copy_by_name(reference, compiled)
    assert "lstm.weight_hh_l1" in mapping
    check_equal(reference, compiled, mapping, [ids((3, 9), 1000)], "lstm_classifier")


GRU_SPEC = """
network gru_encoder(x: [N, T, 8], h0: [4, N, 16]) {
    out, h = x -> gru(16, layers=2, bidirectional=true, h0=h0, name="gru")
    return out, h
}
"""

LSTM_SPEC = """
network lstm_encoder(x: [N, T, 8], h0: [2, N, 16], c0: [2, N, 16]) {
    out, h, c = lstm(x, 16, bidirectional=true, h0=h0, c0=c0, name="lstm")
    return out, h, c
}
"""


class _Recurrent(torch.nn.Module):
    """nn.GRU / nn.LSTM as a network of the spec's inputs and outputs."""

    def __init__(self, kind, **kwargs):
        super().__init__()
        self.kind = kind
        setattr(self, kind, getattr(torch.nn, kind.upper())(8, 16, batch_first=True, **kwargs))

    def forward(self, x, *state):
        if self.kind == "gru":
            return self.gru(x, state[0])
        out, (h, c) = self.lstm(x, state)
        return out, h, c


def test_gru_matches_nn_gru():
    compiled = compile_string(GRU_SPEC).torch()
    torch.manual_seed(0)
    reference = _Recurrent("gru", num_layers=2, bidirectional=True)
    mapping = copy_by_name(reference, compiled)
    assert "gru.bias_hh_l1_reverse" in mapping
    check_equal(reference, compiled, mapping, [randn(3, 5, 8), randn(4, 3, 16, seed=1)], "gru")


def test_bidirectional_lstm_from_a_given_state_matches_nn_lstm():
    compiled = compile_string(LSTM_SPEC).torch()
    torch.manual_seed(0)
    reference = _Recurrent("lstm", bidirectional=True)
    mapping = copy_by_name(reference, compiled)
    inputs = [randn(3, 5, 8), randn(2, 3, 16, seed=1), randn(2, 3, 16, seed=2)]
    check_equal(reference, compiled, mapping, inputs, "lstm")


# ---------------------------------------------------------------- SAC actor


def test_sac_actor_matches_reference_and_clamps():
    compiled = compile_file(EXAMPLES / "sac_actor.net").torch()
    torch.manual_seed(0)
    reference = R.sac_actor()
    with torch.no_grad():  # wide enough that both bounds of the clamp are reached
        reference.fc_logstd.weight.mul_(400.0)
    mapping = copy_by_name(reference, compiled)
    x = randn(64, 17)
    with torch.no_grad():
        _, log_std = reference(x)
    assert (log_std == R.LOG_STD_MAX).any() and (log_std == R.LOG_STD_MIN).any()
    assert ((log_std > R.LOG_STD_MIN) & (log_std < R.LOG_STD_MAX)).any()
    check_equal(reference, compiled, mapping, [x], "sac_actor")
