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
TOKENS = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\d+\.\d*|\d+|\"[^\"]*\"|->|\*\*|//|==|!=|<=|>=|\.\.\.|\S")
VOCABULARY = [
    "(", ")", "[", "]", "{", "}", ",", "=", "->", "+", "-", "*", "/", "//", "%", "@", "**", ".", ":",
    "0", "1", "-1", "3", "7", "1e-5", "0.5", "1000000000", '"same"', '"x"', "true", "false",
    "relu", "linear", "conv2d", "concat", "split", "reshape", "x", "N", "shape", "repeat", "if",
    "else", "return", "block", "network", "import", "assert", "name", "_", "int64", "not", "and",
    # language 1.1
    "...", "<", ">", "<=", ">=", "==", "!=", "bool", "min", "max", "round", "int", "len", "where",
    "masked_fill", "param", "ones", "zeros", "arange", "expand", "tril", "cast", "clamp", "roll",
    "index_select", "attention", "lstm", "gru", "share", "eps", "axis", '"bool"', "-2", "T",
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


_SHAPE = (3, 5, 4, 6)
_BOUNDS = st.one_of(st.none(), st.integers(-8, 8))


@st.composite
def subscripts(draw):
    """A NumPy basic index of up to 4 items: ints, slices (step >= 1), at most one `...`."""
    items = []
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["int", "slice", "slice", "ellipsis"]))
        if kind == "int":
            items.append(str(draw(st.integers(-7, 7))))
        elif kind == "ellipsis":
            items.append("...")
        else:
            start, stop = draw(_BOUNDS), draw(_BOUNDS)
            step = draw(st.one_of(st.none(), st.integers(1, 3)))
            text = ("" if start is None else str(start)) + ":" + ("" if stop is None else str(stop))
            items.append(text + ("" if step is None else f":{step}"))
    return items


@settings(max_examples=300, deadline=None)
@given(subscripts())
def test_tensor_indexing_agrees_with_numpy(items):
    """`x[...]` compiles to NumPy's result shape, or fails with a diagnostic exactly where
    NumPy fails (an index out of range, a second `...`, too many indices) or the slice is
    empty (netc refuses empty tensors)."""
    import numpy as np

    index = ", ".join(items) or ":"
    text = f"network n(x: [{', '.join(map(str, _SHAPE))}]) {{\n    y = x[{index}]\n    return y\n}}\n"
    try:
        want = np.zeros(_SHAPE)[eval(f"np.s_[{index}]", {"np": np})].shape  # noqa: S307 (digits, colons, dots)
    except IndexError:
        want = None
    try:
        graph = compile_string(text).graph
    except NetcError as exc:
        assert want is None or 0 in want, (index, want, str(exc))
        d = exc.diagnostics[0]
        assert d.span is not None and d.span.line == 2, str(exc)
        return
    assert want is not None and 0 not in want, (index, want)
    assert tuple(graph.type_of(graph.outputs[0][1]).shape) == want, index


@settings(max_examples=100, deadline=None)
@given(subscripts(), st.sampled_from(["<", "<=", ">", ">=", "==", "!="]), st.sampled_from(["0", "0.5", "x", "-x"]))
def test_symbolic_indexing_and_comparisons_compile_or_report(items, op, other):
    """On symbolic axes the same indices compile or report, and comparisons give bool."""
    index = ", ".join(items) or ":"
    _compile(f"network n(x: [N, T, 4, 6], m: bool[N, T, 4, 6]) {{\n y = x[{index}] {op} {other}\n return y\n}}")
    _compile(f"network n(x: [N, T, 4, 6], m: bool[N, T, 4, 6]) {{\n y = m[{index}] {op} true\n return y\n}}")


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
