"""Golden snapshots: the PyTorch source of five examples and the `netc check --dump-ir` of
two, checked into tests/golden/ and compared with a readable diff.

A change to the emitter or the IR printer that changes them fails here with the diff;
where the change is intended, refresh the files and review them in the commit:

    NETC_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_golden.py
"""

from __future__ import annotations

import difflib
import os

import pytest
from conftest import ROOT, run_netc
from netc.compiler import compile_file

GOLDEN = ROOT / "tests" / "golden"
UPDATE = os.environ.get("NETC_UPDATE_GOLDEN") == "1"
TORCH = ["resnet50", "densenet121", "unet", "transformer", "actor_critic"]
IR = ["actor_critic", "unet"]


def check(actual: str, golden_name: str):
    path = GOLDEN / golden_name
    if UPDATE:
        path.parent.mkdir(exist_ok=True)
        path.write_text(actual)
        return
    if not path.exists():
        pytest.fail(f"no golden file {path.relative_to(ROOT)}; create it with NETC_UPDATE_GOLDEN=1")
    expected = path.read_text()
    if actual != expected:
        diff = difflib.unified_diff(
            expected.splitlines(True), actual.splitlines(True), f"{golden_name} (golden)", f"{golden_name} (now)"
        )
        pytest.fail(
            "the output differs from the golden file; if intended, refresh with NETC_UPDATE_GOLDEN=1\n" + "".join(diff),
            pytrace=False,
        )


@pytest.mark.parametrize("name", TORCH)
def test_torch_source(name):
    check(compile_file(ROOT / "examples" / f"{name}.net").torch_source(), f"{name}.py")


@pytest.mark.parametrize("name", IR)
def test_dump_ir(name):
    proc = run_netc("check", ROOT / "examples" / f"{name}.net", "--dump-ir")
    assert proc.returncode == 0, proc.stderr
    check(proc.stdout, f"{name}.ir")


def test_the_example_in_docs_torch_md_is_what_netc_writes():
    """docs/torch.md shows a spec and its module; the module is netc's output for it."""
    from netc.compiler import compile_string

    text = (ROOT / "docs" / "torch.md").read_text()
    spec = text.split("```net\n", 1)[1].split("```", 1)[0]
    shown = text.split("```python\n", 1)[1].split("```", 1)[0]
    source = compile_string(spec, file="small.net").torch_source()
    source = source.replace("from a spec.", "from small.net.")  # a string has no file name
    check_text(source, shown)


def check_text(actual: str, expected: str):
    if actual != expected:
        diff = difflib.unified_diff(expected.splitlines(True), actual.splitlines(True), "docs/torch.md", "netc")
        pytest.fail("docs/torch.md shows other code than netc writes:\n" + "".join(diff), pytrace=False)
