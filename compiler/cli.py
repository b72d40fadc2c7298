"""The `netc` command line.

Exit codes, the same for every command: 0 success; 1 errors in the spec (each rendered);
2 usage errors; 4 an internal compiler fault (one line; the traceback only with --debug);
5 a missing optional extra (the message names the pip command that adds it).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading

from netc.dsl.diagnostics import InternalError, NetcError, SourceMap, render

from .api import MissingExtra

EXIT_OK, EXIT_SPEC, EXIT_USAGE, EXIT_INTERNAL, EXIT_EXTRA = 0, 1, 2, 4, 5
_STACK_BYTES = 512 * 1024 * 1024  # deep specs recurse; a big thread stack keeps that safe


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="netc", description="A compiler for neural-network specifications.")
    parser.add_argument("--debug", action="store_true", help="show Python tracebacks of internal errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    check = commands.add_parser("check", help="parse, elaborate and shape-check a spec; print a summary")
    check.add_argument("file", help="the .net file")
    check.add_argument("--network", help="the network to check, where the file defines several")
    check.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    check.add_argument("--dump-ir", action="store_true", help="print the graph IR instead of the summary")
    check.add_argument(
        "--max-nodes",
        type=_positive,
        default=1_000_000,
        help="cap on elaborated nodes (default 1000000)",
    )
    check.add_argument("--max-depth", type=_positive, default=64, help="cap on nested block calls (default 64)")
    check.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    return parser


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def main(argv=None) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help
        return int(exc.code or 0)
    if args.command is None:
        parser.print_usage(sys.stderr)
        print("netc: error: a command is required (check)", file=sys.stderr)
        return EXIT_USAGE
    result = {}

    def work():
        sys.setrecursionlimit(100_000)
        try:
            result["code"] = _dispatch(args)
        except BaseException as exc:  # reported on the main thread
            result["exc"] = exc

    threading.stack_size(_STACK_BYTES)
    thread = threading.Thread(target=work, name="netc")
    thread.start()
    thread.join()
    exc = result.get("exc")
    if exc is None:
        return result["code"]
    if isinstance(exc, MissingExtra):
        print(f"netc: {exc}", file=sys.stderr)
        return EXIT_EXTRA
    if isinstance(exc, KeyboardInterrupt):
        return 130
    if args.debug:
        import traceback

        traceback.print_exception(exc)
    kind = "internal invariant broken" if isinstance(exc, InternalError) else type(exc).__name__
    first = str(exc).splitlines()[0] if str(exc) else ""
    print(
        f"netc: internal error ({kind}): {first} (this is a bug in netc; rerun with --debug for details)",
        file=sys.stderr,
    )
    return EXIT_INTERNAL


def _dispatch(args) -> int:
    if args.command == "check":
        return _check(args)
    raise AssertionError(args.command)


def _check(args) -> int:
    from .api import compile_file

    try:
        compiled = compile_file(args.file, args.network, max_nodes=args.max_nodes, max_depth=args.max_depth)
    except NetcError as exc:
        return _report_errors(exc, args.json)
    except RecursionError:
        exc = NetcError(f"{args.file}: the spec nests too deeply to compile", code="limit")
        return _report_errors(exc, args.json)
    if args.json:
        print(json.dumps(compiled.summary()))
        return EXIT_OK
    for warning in compiled.warnings:
        print(render(warning, compiled.sources), file=sys.stderr)
    if args.dump_ir:
        from .printer import print_graph

        sys.stdout.write(print_graph(compiled.graph))
        return EXIT_OK
    _print_summary(compiled)
    return EXIT_OK


def _report_errors(exc: NetcError, as_json: bool) -> int:
    errors = [d for d in exc.diagnostics if d.severity == "error"]
    if as_json:
        print(json.dumps({"ok": False, "errors": [d.to_json() for d in errors]}))
    else:
        sources = getattr(exc, "sources", None) or SourceMap()
        for d in exc.diagnostics:
            print(render(d, sources) + "\n", file=sys.stderr)
        count = len(errors)
        print(f"{count} error{'s' * (count != 1)}", file=sys.stderr)
    return EXIT_SPEC


def _print_summary(compiled) -> None:
    from rich.console import Console
    from rich.table import Table

    from .printer import type_text

    g = compiled.graph
    table = Table(title=f"network {g.name}", title_justify="left", show_edge=False, pad_edge=False)
    table.add_column("Layer", no_wrap=True)
    table.add_column("Op")
    table.add_column("Output shape")
    table.add_column("Params", justify="right")
    for name in g.inputs:
        node = g.node(name)
        table.add_row(name, "input", type_text(node.outputs[0]), "")
    for node in compiled.layers():
        count = node.parameter_count
        table.add_row(
            node.name,
            node.op,
            ", ".join(type_text(t) for t in node.outputs),
            f"{count:,}" if count else "",
        )
    table.add_section()
    outputs = ", ".join(f"{name} {type_text(g.type_of(v))}" for name, v in g.outputs)
    table.add_row("Total", f"{len(compiled.layers())} layers", outputs, f"{compiled.parameters:,}")
    Console(highlight=False, soft_wrap=False, width=200 if not sys.stdout.isatty() else None).print(table)


if __name__ == "__main__":
    sys.exit(main())
