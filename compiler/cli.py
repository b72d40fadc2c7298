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
from collections.abc import Callable
from dataclasses import dataclass

from netc.dsl.diagnostics import InternalError, NetcError, SourceMap, render

from .api import MissingExtra
from .files import atomic_write

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
    _limit_flags(check, shown=True)
    check.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    compile_ = commands.add_parser("compile", help="compile a spec to PyTorch source or an ONNX model")
    compile_.add_argument("file", help="the .net file")
    compile_.add_argument("--target", choices=list(TARGETS), required=True, help="the backend")
    compile_.add_argument("-o", "--output", help="the file to write (default: standard output)")
    compile_.add_argument("--network", help="the network to compile, where the file defines several")
    onnx_options = compile_.add_argument_group("ONNX options (--target onnx)")
    onnx_options.add_argument("--opset", type=int, help="the ONNX opset (default 18; 17 up to the newest supported)")
    onnx_options.add_argument("--weights", help="a state_dict (.pt), .safetensors or .npz file of the weights")
    onnx_options.add_argument("--seed", type=int, help="the seed of the initial weights when --weights is not given")
    onnx_options.add_argument("--no-optimize", action="store_true", help="skip batchnorm folding and constant folding")
    compile_.add_argument(
        "--backward",
        action="store_true",
        help="emit the training model: outputs and every gradient (ONNX), or a `backward` function (torch)",
    )
    compile_.add_argument(
        "--loss",
        choices=["cross_entropy", "mse"],
        help="with --backward: attach this loss to the outputs (labels or targets become inputs)",
    )
    compile_.add_argument(
        "--no-input-grads",
        action="store_true",
        help="with --backward: the parameters' gradients only, as an SGD step needs (no grad.<input>)",
    )
    compile_.add_argument("--max-nodes", type=_positive, default=1_000_000, help=argparse.SUPPRESS)
    compile_.add_argument("--max-depth", type=_positive, default=64, help=argparse.SUPPRESS)
    _limit_flags(compile_)
    compile_.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    _grad_parser(commands)
    _viz_parsers(commands)
    return parser


_LIMIT_HELP = {  # the limits beyond --max-nodes and --max-depth (compiler/limits.py)
    "max_nesting": "cap on statements nested in repeat and if bodies",
    "max_source_bytes": "cap on the bytes of one file and of all files read",
    "max_imports": "cap on the files imported",
    "max_dim_terms": "cap on the terms of a derived dimension's expression",
    "max_dim_degree": "cap on the degree of a derived dimension's expression",
}


def _limit_flags(command, shown: bool = False) -> None:
    from .limits import Limits, flag

    for name, text in _LIMIT_HELP.items():
        default = getattr(Limits, name)
        help_text = f"{text} (default {default})" if shown else argparse.SUPPRESS
        command.add_argument(flag(name), type=_positive, default=default, help=help_text)


def limits(args) -> dict:
    """The limits a command line sets, as keywords of compile_file."""
    from .limits import LIMIT_NAMES

    return {name: getattr(args, name) for name in LIMIT_NAMES if hasattr(args, name)}


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
        print("netc: error: a command is required (check, compile)", file=sys.stderr)
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
    if isinstance(exc, BrokenPipeError):  # the reader stopped early (`netc check --json | head`)
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return EXIT_OK
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


def _grad_parser(commands) -> None:
    grad = commands.add_parser("grad", help="derive the backward graph of a spec; summarize it")
    grad.add_argument("file", help="the .net file")
    grad.add_argument("--network", help="the network, where the file defines several")
    grad.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    grad.add_argument("--dump-ir", action="store_true", help="print the backward graph's IR with spec lines")
    grad.add_argument("--max-nodes", type=_positive, default=1_000_000, help=argparse.SUPPRESS)
    grad.add_argument("--max-depth", type=_positive, default=64, help=argparse.SUPPRESS)
    _limit_flags(grad)
    grad.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)


def _grad(args) -> int:
    from .api import compile_file
    from .grad_report import grad_report, print_report

    try:
        compiled = compile_file(args.file, args.network, **limits(args))
        report, backward = grad_report(compiled.graph)
    except NetcError as exc:
        return _report_errors(exc, args.json)
    if args.json:
        print(json.dumps(report))
    elif args.dump_ir:
        from .printer import print_graph

        sys.stdout.write(print_graph(backward))
    else:
        sys.stdout.write(print_report(report))
    return EXIT_OK


def _viz_parsers(commands) -> None:
    """`viz` and `paths`; their work is in backends/viz.py and compiler/paths.py."""
    viz = commands.add_parser("viz", help="draw a network: SVG, PNG, DOT or an interactive HTML page")
    viz.add_argument("file", help="the .net file")
    viz.add_argument(
        "-o", "--output", required=True, help="the picture; its suffix is the format: .svg .html .dot .png"
    )
    viz.add_argument("--network", help="the network to draw, where the file defines several")
    viz.add_argument("--expand", action="store_true", help="open every block (default: one box per block instance)")
    viz.add_argument("--paths", action="store_true", help="colour each edge by the number of gradient paths through it")
    viz.add_argument("--backward", action="store_true", help="draw the derived backward graph beside the forward")
    viz.add_argument("--gradflow", action="store_true", help="colour each layer by its gradient norm at initialization")
    _measure_flags(viz, "with --gradflow: ")
    paths = commands.add_parser("paths", help="count and measure the gradient paths to every layer")
    paths.add_argument("file", help="the .net file")
    paths.add_argument("--network", help="the network, where the file defines several")
    paths.add_argument(
        "--from", dest="start", metavar="OUTPUT", help="the output the paths start from (default: the losses, else all)"
    )
    paths.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    gradflow = commands.add_parser("gradflow", help="measure the gradient norm reaching each layer at initialization")
    gradflow.add_argument("file", help="the .net file")
    gradflow.add_argument("--network", help="the network, where the file defines several")
    _measure_flags(gradflow, "")
    gradflow.add_argument("-o", "--output", help="plot the norms against depth: .png, .svg or .pdf (needs matplotlib)")
    gradflow.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    for command in (viz, paths, gradflow):
        command.add_argument("--max-nodes", type=_positive, default=1_000_000, help=argparse.SUPPRESS)
        command.add_argument("--max-depth", type=_positive, default=64, help=argparse.SUPPRESS)
        _limit_flags(command)
        command.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)


def _measure_flags(command, prefix: str) -> None:
    """The options of a gradient measurement (compiler/gradflow.py)."""
    command.add_argument("--batch", type=_positive, default=8, help=prefix + "the batch size (default 8)")
    command.add_argument("--seed", type=int, default=0, help=prefix + "the seed of inputs and weights (default 0)")
    command.add_argument("--weights", help=prefix + "a .pt, .safetensors or .npz file of the weights")
    command.add_argument(
        "--dim", action="append", metavar="NAME=SIZE", help=prefix + "the size of another symbolic dimension"
    )
    command.add_argument(
        "--eval", action="store_true", help=prefix + "measure the inference forward (batchnorm's running statistics)"
    )


def _dispatch(args) -> int:
    if args.command == "grad":
        return _grad(args)
    if args.command == "check":
        return _check(args)
    if args.command == "compile":
        return _compile(args)
    if args.command == "viz":
        from netc.backends.viz import command

        return command(args)
    if args.command == "paths":
        from .paths import command

        return command(args)
    if args.command == "gradflow":
        from .gradflow import command

        return command(args)
    raise AssertionError(args.command)


class UsageError(Exception):
    """A command line that cannot be carried out as asked (exit 2)."""


@dataclass(frozen=True)
class Target:
    """A backend of `netc compile`: what it makes of a compiled network, and its options."""

    build: Callable  # (compiled, args) -> the artifact
    write: Callable  # (artifact, path) -> the files written
    dump: Callable  # (artifact) -> bytes for standard output, or raises UsageError
    binary: bool
    options: tuple[str, ...] = ()  # the flags only this target takes
    describe: Callable = lambda compiled: ""  # said after writing a file


def _onnx_model(compiled, args):
    # An opset the backend refuses is a usage error; onnx_model checks it (and imports the backend).
    opset = {} if args.opset is None else {"opset": args.opset}
    if args.backward and (args.weights is not None or args.seed is not None):
        raise UsageError("a training model (--backward) takes its weights as inputs: drop --weights and --seed")
    try:
        if args.backward:
            return compiled.onnx_model(**opset, backward=True, loss=args.loss, input_grads=not args.no_input_grads)
        return compiled.onnx_model(**opset, weights=args.weights, seed=args.seed or 0, optimize=not args.no_optimize)
    except ValueError as exc:
        from netc.backends.onnx import OpsetError

        if isinstance(exc, OpsetError):
            raise UsageError(str(exc)) from None
        raise


def _torch_source(compiled, args) -> str:
    if args.backward:
        from netc.backends.torch_backward import torch_source_with_backward

        graph = compiled.graph
        if args.loss:
            from .autodiff import attach_loss

            graph = attach_loss(graph, args.loss)
        return torch_source_with_backward(graph, compiled.file, inputs=not args.no_input_grads)
    return compiled.torch_source()


def _onnx_dump(model) -> bytes:
    from netc.backends.onnx import EXTERNAL_DATA_BYTES

    if model.nbytes > EXTERNAL_DATA_BYTES:
        raise UsageError("the model's weights exceed 2 GiB, which go to a file beside the model: give -o FILE")
    return model.to_bytes()


TARGETS = {
    "torch": Target(
        build=_torch_source,
        write=lambda source, path: [atomic_write(path, source.encode())],
        dump=lambda source: source.encode(),
        binary=False,
        describe=lambda compiled: f"class {compiled.class_name}, ",
    ),
    "onnx": Target(
        _onnx_model, lambda model, path: model.save(path), _onnx_dump, True, ("opset", "weights", "seed", "no_optimize")
    ),
}


def _compile(args) -> int:
    from .api import compile_file

    target = TARGETS[args.target]
    for other in sorted({o for t in TARGETS.values() for o in t.options} - set(target.options)):
        if getattr(args, other) not in (None, False):
            flag = "--" + other.replace("_", "-")
            print(f"netc: error: {flag} does not apply to --target {args.target}", file=sys.stderr)
            return EXIT_USAGE
    for flag, given in (("--loss", args.loss), ("--no-input-grads", args.no_input_grads)):
        if given and not args.backward:
            print(f"netc: error: {flag} goes with --backward", file=sys.stderr)
            return EXIT_USAGE
    if target.binary and args.output is None and sys.stdout.isatty():
        print(f"netc: error: --target {args.target} makes a binary file: give -o FILE", file=sys.stderr)
        return EXIT_USAGE
    try:
        compiled = compile_file(args.file, args.network, **limits(args))
        artifact = target.build(compiled, args)
        data = target.dump(artifact) if args.output is None else None
    except NetcError as exc:
        return _report_errors(exc, False)
    except UsageError as exc:
        print(f"netc: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    for warning in compiled.warnings:
        print(render(warning, compiled.sources), file=sys.stderr)
    if data is not None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return EXIT_OK
    try:
        written = target.write(artifact, args.output)
    except OSError as exc:
        print(f"netc: cannot write {args.output}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_SPEC
    extra = "".join(f" and {p}" for p in written[1:])
    print(f"wrote {args.output}{extra}: {target.describe(compiled)}{compiled.parameters:,} parameters", file=sys.stderr)
    return EXIT_OK


def _check(args) -> int:
    from .api import compile_file

    try:
        compiled = compile_file(args.file, args.network, **limits(args))
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


_RICH_ROWS = 1000  # rich draws about a millisecond a row; larger tables print as plain columns


def _print_summary(compiled) -> None:
    from .ir import param_owner
    from .printer import type_text

    g = compiled.graph
    rows = [(name, "input", type_text(g.node(name).outputs[0]), "") for name in g.inputs]
    for node in compiled.layers():
        count = node.parameter_count
        shapes = ", ".join(type_text(t) for t in node.outputs)
        owners = sorted({param_owner(full, local) for local, full in node.shared.items()})
        params = f"{count:,}" if count else ("shares " + ", ".join(owners) if owners else "")
        rows.append((node.name, node.op, shapes, params))
    outputs = ", ".join(f"{name} {type_text(g.type_of(v))}" for name, v in g.outputs)
    total = ("Total", f"{len(compiled.layers())} layers", outputs, f"{compiled.parameters:,}")
    header = ("Layer", "Op", "Output shape", "Params")
    if len(rows) > _RICH_ROWS:
        widths = [max(len(r[i]) for r in [header, total, *rows]) for i in range(4)]
        line = lambda r: "  ".join(c.rjust(w) if i == 3 else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
        rule = "  ".join("-" * w for w in widths)
        text = "\n".join([f"network {g.name}", line(header), rule, *map(line, rows), rule, line(total)])
        sys.stdout.write(text + "\n")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"network {g.name}", title_justify="left", show_edge=False, pad_edge=False)
    for name in header:
        table.add_column(name, no_wrap=name == "Layer", justify="right" if name == "Params" else "left")
    for row in rows:
        table.add_row(*row)
    table.add_section()
    table.add_row(*total)
    console = Console(highlight=False, soft_wrap=False, width=200 if not sys.stdout.isatty() else None)
    # rich answers a closed pipe with SystemExit(1); netc's answer is main's, exit 0 (`| head`).
    console.on_broken_pipe = _raise_broken_pipe
    console.print(table)


def _raise_broken_pipe() -> None:
    raise BrokenPipeError


def run() -> None:
    """The `netc` console script: `main()` for this process's arguments, then an exit that
    leaves the heap to the operating system.

    Two costs of a short-lived compiler process are skipped, as clang's driver skips them
    with `-disable-free`:
    - Interpreter teardown frees every object one by one (the graph, the grammar, the
      modules): 0.1 to 0.15 s after compiling resnet50 here, a fifth of the whole run. The
      output is complete by then (written, closed and renamed into place), so exit handlers
      run and the standard streams are flushed, and then `os._exit` ends the process.
    - OpenBLAS starts a thread per core when numpy is imported, and each spins for about
      0.1 s waiting for work that never comes (netc calls no BLAS routine): on a 2-core
      machine that is a core taken from the compiler. One BLAS thread is the default here
      unless the environment sets a count (OPENBLAS_, GOTO_ or OMP_NUM_THREADS).
    """
    import atexit
    import os

    if not any(os.environ.get(name) for name in ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS")):
        os.environ["OPENBLAS_NUM_THREADS"] = "1"
    code = main()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        if stream is None:  # started with the descriptor closed (`netc ... >&-`)
            continue
        try:
            stream.flush()
        except (BrokenPipeError, ValueError):  # the reader went away, or the stream was closed
            pass
        except OSError:
            code = code or EXIT_INTERNAL
    os._exit(code)


if __name__ == "__main__":
    run()
