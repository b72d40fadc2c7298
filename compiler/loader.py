"""Files -> a Program: the main module, its imports, and one namespace of definitions.

Imports are relative to the importing file; a cycle is an error at the import that closes
it. Names of blocks, networks and constants are unique across a file and its imports.
Only the main file's networks are entry points.

Reading is bounded (see compiler/limits.py): only regular files are read (a device, FIFO
or directory is refused before a byte is read), each by a read of at most
`max_source_bytes + 1` bytes; all files together stay within `max_source_bytes`, at most
`max_imports` files are imported, and statements nest at most `max_nesting` deep. A path
the system cannot use (a NUL byte, an unencodable character) is an error at the import.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

from netc.dsl import syntax as S
from netc.dsl.diagnostics import Diagnostic, NetcError, SourceMap, Span
from netc.dsl.parser import parse

from .limits import Limits


@dataclass
class Program:
    main: S.Module
    sources: SourceMap
    consts: dict[str, S.Const] = field(default_factory=dict)
    blocks: dict[str, S.Block] = field(default_factory=dict)
    networks: list[S.Network] = field(default_factory=list)


class _Unreadable(Exception):
    """A file that is not read: the reason, as it completes `cannot import "x": ...`."""

    def __init__(self, reason: str, code: str = "import"):
        super().__init__(reason)
        self.reason, self.code = reason, code


def read_source(path: str, budget: int) -> str:
    """The text of the regular file `path`, read up to `budget` bytes; else _Unreadable."""
    if "\0" in path:
        raise _Unreadable("the path contains a NUL byte")
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)  # a FIFO must not block
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise _Unreadable("no such file") from None
    except (ValueError, UnicodeError):
        raise _Unreadable("the path has characters the system cannot use") from None
    except OSError as exc:
        raise _Unreadable(exc.strerror or str(exc)) from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise _Unreadable("it is a directory")
        if not stat.S_ISREG(mode):
            raise _Unreadable("it is not a regular file (a device, FIFO or socket)")
        chunks, left = [], budget + 1  # one byte more tells a file over the budget
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    except OSError as exc:
        raise _Unreadable(exc.strerror or str(exc)) from None
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > budget:
        raise _Unreadable(f"it is larger than {budget} bytes (the limit; see --max-source-bytes)", "limit")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _Unreadable(str(exc)) from None


def load_string(
    text: str, file: str = "<string>", sources: SourceMap | None = None, limits: Limits | None = None
) -> Program:
    limits = limits or Limits()
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > limits.max_source_bytes:
        message = f"the spec is larger than {limits.max_source_bytes} bytes (the limit; see --max-source-bytes)"
        raise NetcError(message, code="limit")
    resolved = _resolve(Path(file)) if file != "<string>" else None
    return _Loader(sources, limits, size).load(text, file, resolved)


def load_file(path: str | os.PathLike, sources: SourceMap | None = None, limits: Limits | None = None) -> Program:
    limits = limits or Limits()
    path = str(path)
    try:
        text = read_source(path, limits.max_source_bytes)
    except _Unreadable as exc:
        reason = exc.reason
        if reason == "no such file":
            raise NetcError(f"no such file: {_printable(path)}", code="io") from None
        if reason == "it is a directory":
            raise NetcError(f"{_printable(path)} is a directory, not a .net file", code="io") from None
        code = "limit" if exc.code == "limit" else "io"
        raise NetcError(f"cannot read {_printable(path)}: {reason}", code=code) from None
    size = len(text.encode("utf-8"))
    return _Loader(sources, limits, size).load(text, path, _resolve(Path(path)))


def _resolve(path: Path) -> Path | None:
    try:
        return path.resolve()
    except (OSError, RuntimeError, ValueError):  # a symlink loop, a name the system refuses
        return None


def _printable(text: str) -> str:
    """A path as a message shows it: control characters escaped, never written raw."""
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


class _Loader:
    def __init__(self, sources: SourceMap | None, limits: Limits, size: int):
        self.sources = sources if sources is not None else SourceMap()
        self.limits = limits
        self.bytes_read = size  # every file's bytes, the main file's included
        self.modules: dict[Path, S.Module] = {}
        self.errors: list[Diagnostic] = []

    def load(self, text: str, display: str, resolved: Path | None) -> Program:
        self.sources.add(display, text)
        too_deep = _braces_too_deep(text, display, self.limits.max_nesting)
        if too_deep:
            raise NetcError([too_deep])  # before parsing, which takes seconds at such depths
        main = parse(text, display)  # a syntax error in the main file stops here
        too_deep = _too_deep(main, self.limits.max_nesting)
        if too_deep:
            raise NetcError(too_deep)
        program = Program(main, self.sources)
        order: list[S.Module] = []
        self._imports(main, display, resolved, order)
        order.append(main)
        defined: dict[str, Span] = {}
        for module in order:
            for item in module.consts:
                self._define(program.consts, item.name, item, item.span, defined)
            for item in module.blocks:
                self._check_params(item)
                # A block may take an operator's name (LANGUAGE.md 1.1): where it is seen,
                # calls of that name mean the block, so new operators break no spec.
                self._define(program.blocks, item.name, item, item.span, defined)
        for net in main.networks:
            if net.name in defined:
                self._duplicate(net.name, net.span, defined[net.name])
            else:
                defined[net.name] = net.span
                program.networks.append(net)
        if self.errors:
            raise NetcError(self.errors)
        return program

    def _check_params(self, block: S.Block):
        seen, defaulted = set(), False
        for param in block.params:
            if param.name in seen:
                self.errors.append(Diagnostic(f"parameter `{param.name}` is listed twice", param.span, code="name"))
            seen.add(param.name)
            if param.default is not None:
                defaulted = True
            elif defaulted:
                message = f"parameter `{param.name}` without a default follows a parameter with one"
                self.errors.append(Diagnostic(message, param.span, code="syntax"))

    def _define(self, table, name, item, span, defined):
        if name in defined:
            self._duplicate(name, span, defined[name])
            return
        defined[name] = span
        table[name] = item

    def _duplicate(self, name, span, first):
        self.errors.append(
            Diagnostic(
                f"`{name}` is defined twice",
                span,
                (f"the first definition is at {first}",),
                code="name",
            )
        )

    def _imports(self, root: S.Module, display: str, resolved: Path | None, order: list):
        """Depth-first over the imports, children before parents in `order`; an explicit
        stack, so that a long chain of imports needs no deep recursion."""
        path = [resolved] if resolved else []  # the files being imported, for cycles
        stack = [(display, resolved, iter(root.imports))]
        while stack:
            display, resolved, pending = stack[-1]
            imp = next(pending, None)
            if imp is None:
                stack.pop()
                if stack:
                    order.append(self.modules[resolved])
                    path.pop()
                continue
            child = self._import(imp, display, resolved, path)
            if child is not None:
                target, shown, module = child
                self.modules[target] = module
                path.append(target)
                stack.append((shown, target, iter(module.imports)))

    def _import(self, imp: S.Import, display: str, resolved: Path | None, path: list):
        """Reads and parses one import: (its path, its shown name, its module), or None
        where it is not followed (an error, a cycle, or a file already read)."""
        quoted = f'"{_printable(imp.path)}"'
        if "\0" in imp.path:
            return self._refuse(imp, f"cannot import {quoted}: the path contains a NUL byte")
        base_dir = resolved.parent if resolved else Path.cwd()
        target = _resolve(base_dir / imp.path) or Path(os.path.abspath(base_dir / imp.path))  # the read says why
        shown = os.path.normpath(os.path.join(os.path.dirname(display), imp.path))
        if target in path:
            cycle = " -> ".join(p.name for p in path[path.index(target) :] + [target])
            return self._refuse(imp, f"import cycle: {cycle}")
        if target in self.modules:
            return None
        if len(self.modules) >= self.limits.max_imports:
            message = f"cannot import {quoted}: more than {self.limits.max_imports} files are imported (the limit; see --max-imports)"
            return self._refuse(imp, message, "limit")
        budget = self.limits.max_source_bytes - self.bytes_read
        try:
            text = read_source(str(target), budget)
        except _Unreadable as exc:
            reason = exc.reason
            if exc.code == "limit":
                reason = (
                    f"the files read add up to more than {self.limits.max_source_bytes} bytes "
                    "(the limit; see --max-source-bytes)"
                )
            return self._refuse(imp, f"cannot import {quoted}: {reason}", exc.code)
        self.bytes_read += len(text.encode("utf-8"))
        self.sources.add(shown, text)
        found = [d for d in [_braces_too_deep(text, shown, self.limits.max_nesting)] if d]
        try:
            module = None if found else parse(text, shown)
        except NetcError as exc:
            found = exc.diagnostics
        else:
            found = found or _too_deep(module, self.limits.max_nesting)
        if found:
            notes = (f"imported at {imp.span}",)
            self.errors += [Diagnostic(d.message, d.span, d.notes + notes, code=d.code) for d in found]
            return None
        return target, shown, module

    def _refuse(self, imp: S.Import, message: str, code: str = "import"):
        self.errors.append(Diagnostic(message, imp.span, code=code))
        return None


_BRACES = re.compile(r'#[^\n]*|"(?:[^"\\\n]|\\.)*"|[{}]')  # comments and strings hold no braces
_SPACE = re.compile(r"\s*")
_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\S")


def _next_token(text: str, pos: int):
    """The token at or after `pos`, past white space and comments; None at the end."""
    while True:
        pos = _SPACE.match(text, pos).end()
        if not text.startswith("#", pos):
            return _TOKEN.match(text, pos)
        pos = text.find("\n", pos)
        if pos < 0:
            return None


def _braces_too_deep(text: str, file: str, limit: int) -> Diagnostic | None:
    """The nesting check of `_too_deep`, done on the text before it is parsed: a body's
    statements sit inside as many braces as they are deep, so the first token inside a
    brace more than `limit` deep (other than a closing one) is the first statement too deep."""
    depth = 0
    for m in _BRACES.finditer(text):
        brace = m.group()
        if brace == "}":
            depth -= 1
        elif brace == "{":
            depth += 1
            if depth > limit:
                token = _next_token(text, m.end())
                if token is None or token.group() == "}":
                    continue
                start = token.start()
                line = text.count("\n", 0, start) + 1
                column = start - (text.rfind("\n", 0, start) + 1) + 1
                span = Span(file, line, column, line, column + len(token.group()))
                message = f"statements nest more than {limit} deep (the limit; see --max-nesting)"
                return Diagnostic(message, span, code="limit")
    return None


def _too_deep(module: S.Module, limit: int) -> list[Diagnostic]:
    """Statements nest at most `limit` deep: one error, at the first statement too deep, per
    definition. Iterative, so any depth the parser accepts is walked."""
    found = []
    for definition in module.blocks + module.networks:
        pending = [(stmt, 1) for stmt in reversed(definition.body)]
        while pending:
            stmt, depth = pending.pop()
            if depth > limit:
                message = f"statements nest more than {limit} deep (the limit; see --max-nesting)"
                found.append(Diagnostic(message, stmt.span, code="limit"))
                break
            for body in _bodies(stmt):
                pending.extend((inner, depth + 1) for inner in reversed(body))
    return found


def _bodies(stmt: S.Stmt):
    """The statement lists nested directly in `stmt`."""
    if isinstance(stmt, S.Repeat):
        return [stmt.body]
    if isinstance(stmt, S.If):
        return [body for _, body in stmt.branches] + ([stmt.orelse] if stmt.orelse is not None else [])
    return []
