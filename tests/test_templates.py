"""Block templates (compiler/templates.py): copying an earlier identical block call gives the
graph elaboration gives. Every example, conformance case and a table of specs built to
tell copies apart (loops, `x.shape`, nested blocks, aliased arguments, arguments that are
equal but not the same) compile with templates on and off; the graphs must be the same
in every field, and so must the errors of mutated specs."""

import re

import pytest
from conftest import ROOT
from hypothesis import HealthCheck, given, settings
from netc.compiler import compile_string, templates
from netc.dsl.diagnostics import NetcError
from test_fuzz import mutated

SPECS = sorted((ROOT / "examples").glob("*.net")) + sorted((ROOT / "tests" / "conformance").glob("*/*.net"))

TABLE = {
    "repeat inside a repeated block": """
block stage(x, n) {
    repeat n {
        x = x -> linear(8) -> relu
    }
    return x
}
network net(x: [N, 8]) {
    repeat 3 {
        x = stage(x, 2)
    }
    return x
}
""",
    "loop variable and shapes in attributes": """
block grow(x, k) {
    c = x.shape[1]
    repeat 2 as i {
        x = x -> linear(c + i * 0 + k)
        c = x.shape[1]
    }
    return x -> linear(c)
}
network net(x: [N, 8]) {
    repeat 3 {
        x = grow(x, 0)
    }
    return x
}
""",
    "nested blocks and several results": """
block halves(x) {
    a, b = split(x, 4, axis=1)
    return a, b
}
block pair(x) {
    a, b = halves(x)
    return concat(a -> relu, b -> tanh, axis=1), 4
}
network net(x: [N, 8]) {
    h = x
    repeat 4 {
        h, k = pair(h)
        h = h -> linear(8)
    }
    return h
}
""",
    "aliased and distinct tensor arguments": """
block add2(a, b) {
    return a + b -> relu
}
network net(x: [N, 8], y: [N, 8]) {
    a = x
    b = x
    repeat 6 as i {
        s = add2(a, b)
        a = s
        if i >= 1 {
            b = y
        } else {
            b = s
        }
    }
    repeat 2 {
        a = add2(a, a)
    }
    return a
}
""",
    "equal arguments of different types": """
block scaled(x, f) {
    return x * f
}
network net(x: [N, 8]) {
    fs = (1, 1.0, 1, 1.0, 1, 1.0, 2, -0.0, 0.0, -0.0, 0.0, -0.0, 0.0)
    h = x
    repeat 13 as i {
        h = scaled(h, fs[i])
    }
    return h
}
""",
    "symbolic sizes written differently": """
block flat(x) {
    return reshape(x, (x.shape[0], -1)) -> relu
}
block pick(x, y, i) {
    if i == 0 {
        z = concat(x, y, axis=1)
    } else {
        z = concat(y, x, axis=1)
    }
    return flat(z)
}
network net(x: [N, A], y: [N, B]) {
    a = pick(x, y, 0)
    repeat 6 as i {
        a = a + pick(x, y, i % 2)
    }
    return a
}
""",
    "calls from different call sites and block depths": """
block inner(x) {
    return x -> linear(8) -> relu
}
block outer(x) {
    return inner(inner(x))
}
network net(x: [N, 8]) {
    a = inner(x)
    b = outer(a)
    c = outer(b)
    repeat 3 {
        c = inner(c)
    }
    return c
}
""",
    "share inside and around blocks": """
block tied(x) {
    h = x -> linear(8, name="a")
    return linear(h, 8, share="a")
}
network net(x: [N, 8]) {
    a = tied(x)
    b = tied(a)
    c = tied(b, name="c")
    d = tied(c, share="c")
    return d
}
""",
}


def _fields(node):
    return (
        node.name, node.op, node.inputs, node.attrs, tuple(map(str, node.outputs)), node.outputs,
        node.params, node.buffers, node.span, node.scope, node.call_sites, node.var, node.shared,
    )  # fmt: skip


def _graph(text):
    """Everything a compile gives, or its diagnostics."""
    try:
        compiled = compile_string(text, max_nodes=20_000)
    except NetcError as exc:
        return ("error", [(d.message, d.span, d.notes, d.code) for d in exc.diagnostics])
    except RecursionError:
        return ("recursion",)
    g = compiled.graph
    # repr as well as ==: 0.0 == -0.0, and equal dimensions may be written differently
    return (
        [_fields(n) for n in g.nodes()],
        [repr(_fields(n)) for n in g.nodes()],
        repr(list(g.provenance.items())),
        repr(list(g.calls.items())),
        list(g.g.edges()),
        g.inputs,
        g.outputs,
        list(g.instances.items()),
        list(g.instance_args.items()),
        list(g.provenance.items()),
        list(g.calls.items()),
        list(g.shares.items()),
        [(w.message, w.span) for w in compiled.warnings],
    )


def _both(text):
    templates.ENABLED = False
    try:
        plain = _graph(text)
    finally:
        templates.ENABLED = True
    return plain, _graph(text)


def _copies(text) -> int:
    """How many block calls were copied rather than elaborated (checks the table exercises templates)."""
    calls = []
    original = templates.Template.copy

    def counting(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    templates.Template.copy = counting
    try:
        _graph(text)
    finally:
        templates.Template.copy = original
    return len(calls)


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_examples_compile_the_same_with_templates(path):
    plain, copied = _both(path.read_text())
    assert plain == copied


@pytest.mark.parametrize("name", list(TABLE))
def test_specs_that_could_tell_a_copy_apart(name):
    text = TABLE[name]
    plain, copied = _both(text)
    assert plain[0] != "error", plain
    assert plain == copied
    if name != "share inside and around blocks":
        assert _copies(text) >= 1


def test_a_block_called_once_per_key_is_not_recorded():
    text = "block f(x) {\n return x -> relu\n}\nnetwork n(x: [N, 4]) {\n" + "    x = f(x)\n" * 30 + "    return x\n}\n"
    recorded = []
    original = templates.Template.record

    def counting(*args, **kwargs):
        recorded.append(1)
        return original(*args, **kwargs)

    templates.Template.record = counting
    try:
        _graph(text)
    finally:
        templates.Template.record = original
    assert not recorded and _copies(text) == 0


def test_share_keeps_calls_from_being_copied():
    # `share=` on the call, around it or inside the block: elaborated every time
    assert _copies(TABLE["share inside and around blocks"]) == 0


def test_a_deep_network_is_copied_block_by_block():
    text = re.sub(r"\brepeat 3\b", "repeat 50", TABLE["repeat inside a repeated block"])
    assert _copies(text) == 48  # the first call is elaborated, the second recorded
    plain, copied = _both(text)
    assert plain == copied


def test_limits_are_reached_where_elaboration_reaches_them():
    text = re.sub(r"\brepeat 3\b", "repeat 40", TABLE["repeat inside a repeated block"])
    for limit in (50, 51, 52, 97, 200):
        templates.ENABLED = False
        try:
            plain = _graph_limited(text, limit)
        finally:
            templates.ENABLED = True
        assert plain == _graph_limited(text, limit), limit


def _graph_limited(text, limit):
    try:
        compile_string(text, max_nodes=limit)
    except NetcError as exc:
        return [(d.message, d.span) for d in exc.diagnostics]
    return "ok"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_specs_compile_or_fail_the_same_with_templates(text):
    plain, copied = _both(text)
    assert plain == copied
