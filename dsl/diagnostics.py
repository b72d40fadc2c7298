"""Source spans and the one user-facing error type, with their text rendering.

Every diagnostic the compiler reports is a `Diagnostic` carrying a `Span`; the CLI renders
it as LANGUAGE.md's Errors section shows (file:line:col, the line, a caret under the span,
notes). `NetcError` wraps one or more diagnostics so that a pass can raise them.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Span:
    """A region of one source file; lines and columns count from 1, end_column is exclusive."""

    file: str
    line: int
    column: int
    end_line: int
    end_column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"

    def to(self, other: Span | None) -> Span:
        """The span from the start of self to the end of other (same file)."""
        if other is None or other.file != self.file:
            return self
        return Span(self.file, self.line, self.column, other.end_line, other.end_column)


@dataclass(frozen=True)
class Diagnostic:
    message: str
    span: Span | None
    notes: tuple[str, ...] = ()
    severity: str = "error"  # "error" or "warning"
    code: str = "error"  # a short machine-readable kind: syntax, shape, name, ...

    def to_json(self) -> dict:
        span = self.span
        return {
            "file": span.file if span else None,
            "line": span.line if span else None,
            "column": span.column if span else None,
            "end_line": span.end_line if span else None,
            "end_column": span.end_column if span else None,
            "severity": self.severity,
            "code": self.code,
            "message": self.message,
            "notes": list(self.notes),
        }


class NetcError(Exception):
    """The user-facing error: one or more diagnostics about the spec."""

    def __init__(self, message_or_diagnostics, span: Span | None = None, *, notes=(), code="error"):
        if isinstance(message_or_diagnostics, str):
            diagnostics = [Diagnostic(message_or_diagnostics, span, tuple(notes), code=code)]
        else:
            diagnostics = list(message_or_diagnostics)
        self.diagnostics: list[Diagnostic] = diagnostics
        super().__init__(diagnostics[0].message if diagnostics else "error")

    @property
    def diagnostic(self) -> Diagnostic:
        return self.diagnostics[0]


class InternalError(Exception):
    """A broken compiler invariant: a bug in netc, not in the spec."""


@dataclass
class SourceMap:
    """The text of every file read, so that diagnostics can quote their line."""

    texts: dict[str, str] = field(default_factory=dict)

    def add(self, file: str, text: str) -> None:
        self.texts[file] = text

    def line(self, file: str, line: int) -> str | None:
        text = self.texts.get(file)
        if text is None:
            return None
        lines = text.splitlines()
        return lines[line - 1] if 0 < line <= len(lines) else ""


def render(diag: Diagnostic, sources: SourceMap) -> str:
    """Renders like rustc/clang: location, message, the source line with carets, notes."""
    out = []
    span = diag.span
    where = f"{span}: " if span else ""
    out.append(f"{where}{diag.severity}: {diag.message}")
    if span is not None:
        text = sources.line(span.file, span.line)
        if text is not None:
            text = text.expandtabs(1)
            gutter = str(span.line)
            pad = " " * len(gutter)
            end = span.end_column if span.end_line == span.line else len(text) + 1
            width = max(1, end - span.column)
            out.append(f"{gutter:>5} | {text}")
            out.append(f"{pad:>5} | " + " " * (span.column - 1) + "^" * width)
    for note in diag.notes:
        out.append(f"note: {note}")
    return "\n".join(out)
