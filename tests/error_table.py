"""The machinery of the error tables (test_errors.py, test_error_messages.py): a row is a
bad spec and where its first error must point; `check_first_error` checks one row."""

from __future__ import annotations

import re
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from netc.compiler import compile_file, compile_string
from netc.dsl.diagnostics import NetcError, render

DIRECTORY = object()  # a `files` entry that is a directory, not a file
ANY_FILE = "*"  # a row whose error may be in any file

# Terminal names of the grammar and Python object reprs that must never reach a user.
RAW_TERMINALS = re.compile(
    r"__ANON|\$END|\b(?:LPAR|RPAR|LSQB|RSQB|LBRACE|RBRACE|LPAR_EMPTY|NAME|INT|FLOAT|STRING|"
    r"COMMA|SEMICOLON|COLON|EQUAL|MINUS|PLUS|STAR|SLASH|MORETHAN|LESSTHAN)\b|lpar_empty"
)
REPR_LEAK = re.compile(r"\b(?:Multi|Tensor|TensorType|Value|Dim|Span)\(")


@dataclass(frozen=True)
class Case:
    spec: str | None  # main.net's text; None where the row writes no main.net
    line: int | None  # None: the error names no source position
    column: int | None
    message: str  # a substring of the first error's message; `{tmp}` stands for tmp_path
    note: str | None = None  # a substring of one of the first error's notes
    count: int | None = None  # the number of errors reported, where it matters
    files: dict = field(default_factory=dict)  # other files (text, bytes or DIRECTORY)
    target: str | None = None  # the path compiled, relative to tmp_path (default main.net)
    file: str | None = None  # the file name the first error is in (default: the spec's)
    network: str | None = None
    limits: dict = field(default_factory=dict)  # max_nodes / max_depth
    end: tuple[int, int] | None = None  # (end_line, end_column) of the first error
    recursion_limit: int | None = None  # pinned while compiling, for rows about nesting depth

    @property
    def on_disk(self) -> bool:
        """Compiled from files in tmp_path; other rows compile as the text "<string>"."""
        return bool(self.files) or self.target is not None or bool(re.search(r"^import ", self.spec or "", re.M))


def _text(spec):
    """Dedents a triple-quoted spec; its first line is line 1."""
    return textwrap.dedent(spec).lstrip("\n") if isinstance(spec, str) else spec


def row(id, spec, line, column, message, *, bug=None, files=None, **extra):
    """One table row; `bug` marks a behaviour believed wrong (a strict xfail, with why)."""
    case = Case(
        _text(spec),
        line,
        column,
        message,
        files={name: _text(content) for name, content in (files or {}).items()},
        **extra,
    )
    marks = [pytest.mark.xfail(reason=bug, strict=True)] if bug else []
    return pytest.param(case, id=id, marks=marks)


def nested(opening: str, depth: int) -> str:
    """A network whose body nests `depth` statements `opening { ... }`."""
    return "network n(x: [N, 8]) {\n" + f"{opening} {{\n" * depth + "x = x -> relu\n" + "}\n" * depth + "return x\n}\n"


def import_chain(length: int) -> dict:
    """m0.net imports m1.net, which imports m2.net, ... m{length}.net."""
    files = {f"m{i}.net": f'import "m{i + 1}.net"\nc{i} = {i}\n' for i in range(length)}
    files[f"m{length}.net"] = f"c{length} = {length}\n"
    return files


def write_case(case: Case, directory: Path) -> Path:
    """Writes the spec (main.net) and its other files; returns the path to compile."""
    for name, content in case.files.items():
        path = directory / name
        if content is DIRECTORY:
            path.mkdir()
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    if case.spec is not None:
        (directory / "main.net").write_text(case.spec)
    return directory / (case.target or "main.net")


def compile_errors(case: Case, tmp_path: Path):
    """Compiles the row from tmp_path; returns (error diagnostics, the NetcError)."""
    kwargs = dict(case.limits)
    if case.network is not None:
        kwargs["network"] = case.network
    limit = sys.getrecursionlimit()
    try:
        if case.recursion_limit is not None:
            sys.setrecursionlimit(case.recursion_limit)
        if case.on_disk:
            compile_file(write_case(case, tmp_path), **kwargs)
        else:
            compile_string(case.spec, **kwargs)
    except NetcError as exc:
        return [d for d in exc.diagnostics if d.severity == "error"], exc
    finally:
        sys.setrecursionlimit(limit)
    pytest.fail("netc reported no error for this spec")


def _show(diagnostics, exc) -> str:
    sources = getattr(exc, "sources", None)
    if sources is None:
        return "\n".join(f"{d.span}: {d.message} {list(d.notes)}" for d in diagnostics)
    return "\n\n".join(render(d, sources) for d in diagnostics)


def check_first_error(case: Case, tmp_path: Path):
    errors, exc = compile_errors(case, tmp_path)
    shown = _show(errors, exc)
    assert errors, shown
    first = errors[0]
    assert case.message.replace("{tmp}", str(tmp_path)).lower() in first.message.lower(), shown
    if case.line is None:
        assert first.span is None, shown
    else:
        assert first.span is not None, shown
        assert (first.span.line, first.span.column) == (case.line, case.column), shown
        expected_file = case.file or ((case.target or "main.net") if case.on_disk else "<string>")
        if expected_file != ANY_FILE:
            assert Path(first.span.file).name == Path(expected_file).name, shown
    if case.end is not None:
        assert (first.span.end_line, first.span.end_column) == case.end, shown
    if case.note is not None:
        assert any(case.note.lower() in n.lower() for n in first.notes), shown
    if case.count is not None:
        assert len(errors) == case.count, shown
    for d in errors:
        assert d.message.strip() and "Traceback" not in d.message, shown
        assert not RAW_TERMINALS.search(d.message) and not REPR_LEAK.search(d.message), shown
        if d.span is not None:
            assert (d.span.end_line, d.span.end_column) > (d.span.line, d.span.column), shown
