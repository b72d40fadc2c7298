"""The language's public conformance cases (copied from shared/conformance) and every example,
checked through `netc check --json` exactly as the conformance runner checks them."""

import json

import pytest
from conftest import ROOT, expectations, run_netc

CASES = sorted((ROOT / "tests" / "conformance").glob("*/*.net")) + sorted((ROOT / "examples").glob("*.net"))


def shape_text(shape):
    return "[" + ", ".join(str(d) for d in shape) + "]"


def test_cases_exist():
    assert len([c for c in CASES if "conformance" in c.parts]) >= 12
    assert all(expectations(c) for c in CASES if "conformance" in c.parts)


@pytest.mark.parametrize("case", CASES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_case(case):
    proc = run_netc("check", "--json", case)
    assert "Traceback" not in proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    for kind, text in expectations(case):
        if kind == "expect" and text.startswith("parameters"):
            assert proc.returncode == 0, report
            assert report["parameters"] == int(text.split()[1])
        elif kind == "expect" and text.startswith("output"):
            _, name, shape = text.split(None, 2)
            outputs = {o["name"]: shape_text(o["shape"]) for o in report["outputs"]}
            assert outputs.get(name) == shape
        elif kind == "expect-error":
            where, _, needle = text.partition(" ")
            line, column = (int(v) for v in where.split(":"))
            assert proc.returncode == 1 and report["ok"] is False
            hits = [
                e
                for e in report["errors"]
                if (e["line"], e["column"]) == (line, column) and needle.strip().lower() in e["message"].lower()
            ]
            assert hits, report["errors"]
    if case.parent.name == "errors":
        assert proc.returncode == 1
    else:
        assert proc.returncode == 0 and report["ok"] is True
