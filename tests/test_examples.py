"""Parameter counts of the torchvision architectures, and properties of the examples."""

import pytest
from conftest import ROOT
from netc.compiler import compile_file
from netc.compiler.verify import verify

TORCHVISION = {
    "resnet18": 11_689_512,
    "resnet50": 25_557_032,
    "resnext50_32x4d": 25_028_904,
    "wide_resnet50_2": 68_883_240,
    "densenet121": 7_978_856,
    "mobilenet_v2": 3_504_872,
    "vgg16": 138_357_544,
}
EXAMPLES = sorted((ROOT / "examples").glob("*.net"))


@pytest.mark.parametrize("name,count", TORCHVISION.items())
def test_torchvision_parameter_counts(name, count):
    compiled = compile_file(ROOT / "examples" / f"{name}.net")
    assert compiled.parameters == count
    assert compiled.summary()["outputs"][0]["shape"] == ["N", 1000]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_compiles_cleanly(path):
    compiled = compile_file(path)
    verify(compiled.graph)
    assert compiled.warnings == []
    assert compiled.parameters > 0


def test_plain_and_residual_differ_only_in_skip_edges():
    plain = compile_file(ROOT / "examples" / "plain_deep.net")
    residual = compile_file(ROOT / "examples" / "residual_deep.net")

    def params(c):
        return [(n.name, n.op, {k: t.shape for k, t in n.params.items()}) for n in c.layers() if n.params]

    assert params(plain) == params(residual)
    assert sum(n.op == "add" for n in residual.layers()) > sum(n.op == "add" for n in plain.layers())


def test_resnet50_parameter_names_follow_the_naming_rules():
    compiled = compile_file(ROOT / "tests" / "conformance" / "ok" / "resnet50.net")
    names = {n.name for n in compiled.graph.nodes()}
    assert "stage_1.bottleneck_0.conv2d_2" in names
    assert "stage_1.bottleneck_0.conv2d_3" in names  # the projection, taken only where stride != 1
    assert "stage_0.bottleneck_1.conv2d_3" not in names
    node = compiled.graph.node("stage_1.bottleneck_0.conv2d_2")
    assert node.params["weight"].shape == (512, 128, 1, 1)
    assert set(compiled.graph.node("batchnorm_0").buffers) == {
        "running_mean",
        "running_var",
        "num_batches_tracked",
    }
