"""Every spec example in the docs compiles, or fails to compile where it says it does.

A fenced block whose info string is `net` must be a complete spec (with a network) that
`compile_string` accepts; one whose info string is `net error` must raise `NetcError`.
Other fenced blocks (shell sessions, JSON, compiler output) are not checked here.
"""

import re

import pytest
from conftest import ROOT
from netc.compiler import compile_string
from netc.dsl.diagnostics import NetcError

DOCS = [ROOT / "docs" / "language.md", ROOT / "docs" / "cli.md"]
_FENCE = re.compile(r"^(`{3,}|~{3,})\s*(.*?)\s*$")
_NETWORK = re.compile(r"^\s*network\s+([A-Za-z_][A-Za-z0-9_]*)\s*\(", re.M)


def extract_blocks(path):
    """(id, info string, text) for every fenced block of a Markdown file."""
    blocks = []
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, info, start = m.group(1), m.group(2), i + 1
        body = []
        i += 1
        while i < len(lines) and not (lines[i].strip().startswith(fence) and lines[i].strip().strip(fence[0]) == ""):
            body.append(lines[i])
            i += 1
        i += 1  # the closing fence
        blocks.append((f"{path.name}:L{start}", info, "\n".join(body) + "\n"))
    return blocks


def spec_blocks():
    out = []
    for path in DOCS:
        if path.exists():
            out += [b for b in extract_blocks(path) if b[1] in ("net", "net error")]
    return out


BLOCKS = spec_blocks()


def test_docs_have_examples():
    assert (ROOT / "docs" / "language.md").exists()
    assert len([b for b in BLOCKS if b[1] == "net"]) >= 20
    assert any(b[1] == "net error" for b in BLOCKS)


def test_fences_are_closed():
    """An unclosed fence would swallow the rest of the file, hiding examples."""
    for path in DOCS:
        if path.exists():
            fences = [line for line in path.read_text(encoding="utf-8").splitlines() if _FENCE.match(line)]
            assert len(fences) % 2 == 0, f"{path.name} has an unclosed code fence"


@pytest.mark.parametrize("block_id, info, text", BLOCKS, ids=[b[0] for b in BLOCKS])
def test_example(block_id, info, text):
    if info == "net":
        names = _NETWORK.findall(text)
        assert names, f"the example at {block_id} defines no network"
        for name in names:  # a block may show several networks; each must compile
            try:
                compiled = compile_string(text, name if len(names) > 1 else None, file=block_id)
            except NetcError as exc:
                messages = "\n".join(f"{d.span}: {d.message}" for d in exc.diagnostics)
                pytest.fail(f"the example at {block_id} does not compile:\n{messages}")
            assert compiled.graph.outputs, f"the example at {block_id} has no outputs"
    else:
        with pytest.raises(NetcError):
            compile_string(text, file=block_id)
