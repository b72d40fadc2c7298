"""No input makes the compiler fail with anything but a clean diagnostic.

Hypothesis feeds random text and mutated examples (tokens swapped, numbers changed,
slices deleted or duplicated) to the compiler; each must compile or raise NetcError
with positioned diagnostics. A subprocess sample checks the CLI prints no traceback.
"""

import re

from conftest import ROOT, run_netc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from netc.compiler import compile_string
from netc.dsl.diagnostics import NetcError

# Comments are removed (strings kept): mutated text is joined on one line, where a leading
# comment would swallow the whole file, and every example starts with one.
SOURCES = [
    re.sub(r'"(?:[^"\\\n]|\\.)*"|#[^\n]*', lambda m: m.group() if m.group()[0] == '"' else "", p.read_text())
    for p in sorted((ROOT / "examples").glob("*.net")) + sorted((ROOT / "tests" / "conformance").glob("*/*.net"))
]
TOKENS = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\d+\.\d*|\d+|\"[^\"]*\"|->|\*\*|//|==|!=|<=|>=|\S")
VOCABULARY = [
    "(", ")", "[", "]", "{", "}", ",", "=", "->", "+", "-", "*", "/", "//", "%", "@", "**", ".", ":",
    "0", "1", "-1", "3", "7", "1e-5", "0.5", "1000000000", '"same"', '"x"', "true", "false",
    "relu", "linear", "conv2d", "concat", "split", "reshape", "x", "N", "shape", "repeat", "if",
    "else", "return", "block", "network", "import", "assert", "name", "_", "int64", "not", "and",
]  # fmt: skip


def _compile(text):
    try:
        compile_string(text, max_nodes=20_000)
    except NetcError as exc:
        assert exc.diagnostics, "a NetcError must carry diagnostics"
        for d in exc.diagnostics:
            assert d.message
            if d.span is not None:
                assert d.span.line >= 1 and d.span.column >= 1
    except RecursionError:
        pass  # the CLI runs on a deep stack and reports this as a diagnostic


@st.composite
def mutated(draw):
    text = draw(st.sampled_from(SOURCES))
    tokens = [m.group(0) for m in TOKENS.finditer(text)]
    for _ in range(draw(st.integers(1, 4))):
        if not tokens:
            break
        i = draw(st.integers(0, len(tokens) - 1))
        kind = draw(st.sampled_from(["replace", "delete", "insert", "duplicate", "number"]))
        if kind == "replace":
            tokens[i] = draw(st.sampled_from(VOCABULARY))
        elif kind == "delete":
            del tokens[i : i + draw(st.integers(1, 5))]
        elif kind == "insert":
            tokens.insert(i, draw(st.sampled_from(VOCABULARY)))
        elif kind == "duplicate":
            j = min(len(tokens), i + draw(st.integers(1, 12)))
            tokens[i:i] = tokens[i:j]
        else:
            numbers = [k for k, t in enumerate(tokens) if t.isdigit()]
            if numbers:
                k = draw(st.sampled_from(numbers))
                tokens[k] = str(draw(st.sampled_from([0, 1, 2, 3, 5, 1000, 2**40, 10**30])))
    return " ".join(tokens)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_examples_compile_or_report(text):
    _compile(text)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(VOCABULARY + ["\n", "#", "\t", "é", "\\"]), max_size=80).map(" ".join))
def test_random_token_soup_compiles_or_reports(text):
    _compile(text)


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=200))
def test_random_text_compiles_or_reports(text):
    _compile(text)


def test_hostile_inputs_through_the_cli(tmp_path):
    cases = {
        "deep_parens": "network n(x: [N, 2]) { return " + "(" * 5000 + "x" + ")" * 5000 + " }",
        "deep_pipe": "network n(x: [N, 2]) { return x" + " -> relu" * 3000 + " }",
        "huge_repeat": "network n(x: [N, 2]) { repeat 1000000000 { x = x -> relu } return x }",
        "nested_repeat": "network n(x: [N, 2]) { repeat 100000 { repeat 100000 { y = 1 } } return x }",
        "huge_power": "c = 10 ** 10 ** 10\nnetwork n(x: [N, 2]) { return x -> linear(c) }",
        "binary_garbage": "\x00\x01\xff network",
        "empty": "",
        "only_comment": "# nothing",
    }
    for name, text in cases.items():
        path = tmp_path / f"{name}.net"
        path.write_text(text, errors="surrogateescape")
        for extra in ([], ["--json"]):
            proc = run_netc("check", *extra, path, timeout=30)
            assert "Traceback" not in proc.stdout + proc.stderr, name
            assert proc.returncode in (0, 1), (name, proc.returncode, proc.stderr[-500:])
