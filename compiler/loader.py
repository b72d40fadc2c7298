"""Files -> a Program: the main module, its imports, and one namespace of definitions.

Imports are relative to the importing file; a cycle is an error at the import that closes
it. Names of blocks, networks and constants are unique across a file and its imports.
Only the main file's networks are entry points.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from netc.dsl import syntax as S
from netc.dsl.diagnostics import Diagnostic, NetcError, SourceMap, Span
from netc.dsl.parser import parse

from .ops import CALLABLE


@dataclass
class Program:
    main: S.Module
    sources: SourceMap
    consts: dict[str, S.Const] = field(default_factory=dict)
    blocks: dict[str, S.Block] = field(default_factory=dict)
    networks: list[S.Network] = field(default_factory=list)


def load_string(text: str, file: str = "<string>", sources: SourceMap | None = None) -> Program:
    resolved = Path(file).resolve() if file != "<string>" else None
    return _Loader(sources).load(text, file, resolved)


def load_file(path: str | os.PathLike, sources: SourceMap | None = None) -> Program:
    path = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise NetcError(f"no such file: {path}", code="io")
    except IsADirectoryError:
        raise NetcError(f"{path} is a directory, not a .net file", code="io")
    except (OSError, UnicodeDecodeError) as exc:
        raise NetcError(f"cannot read {path}: {exc}", code="io")
    return _Loader(sources).load(text, path, Path(path).resolve())


class _Loader:
    def __init__(self, sources: SourceMap | None):
        self.sources = sources if sources is not None else SourceMap()
        self.modules: dict[Path, S.Module] = {}
        self.errors: list[Diagnostic] = []

    def load(self, text: str, display: str, resolved: Path | None) -> Program:
        self.sources.add(display, text)
        main = parse(text, display)  # a syntax error in the main file stops here
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
                if item.name in CALLABLE:
                    self.errors.append(
                        Diagnostic(
                            f"block `{item.name}` has the name of a built-in operator",
                            item.name_span,
                        )
                    )
                    continue
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
            base_dir = resolved.parent if resolved else Path.cwd()
            target = (base_dir / imp.path).resolve()
            shown = os.path.normpath(os.path.join(os.path.dirname(display), imp.path))
            if target in path:
                cycle = " -> ".join(p.name for p in path[path.index(target) :] + [target])
                self.errors.append(Diagnostic(f"import cycle: {cycle}", imp.span, code="import"))
                continue
            if target in self.modules:
                continue
            try:
                text = target.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                reasons = {FileNotFoundError: "no such file", IsADirectoryError: "it is a directory"}
                reason = reasons.get(type(exc), getattr(exc, "strerror", None) or str(exc))
                self.errors.append(Diagnostic(f'cannot import "{imp.path}": {reason}', imp.span, code="import"))
                continue
            self.sources.add(shown, text)
            try:
                child = parse(text, shown)
            except NetcError as exc:
                notes = (f"imported at {imp.span}",)
                self.errors += [Diagnostic(d.message, d.span, d.notes + notes, code=d.code) for d in exc.diagnostics]
                continue
            self.modules[target] = child
            path.append(target)
            stack.append((shown, target, iter(child.imports)))
