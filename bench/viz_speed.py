"""Time `netc viz` and `netc paths` end to end, as a user runs them.

Each run is a fresh subprocess (start-up and imports included); one untimed warm-up run
per case, then --runs timed runs; the table gives the median, min and max. Targets:

* `netc viz examples/densenet121.net` to HTML and to SVG: under 3 s each;
* `netc paths` on a generated 10,000-block residual network (bench/check_speed.py's
  `repeat` spec: linear -> relu -> linear with a residual add, 50,001 nodes): under 2 s.

Informational rows: resnet50, --expand pictures, `netc paths --json`, `netc check` on the
same 10,000-block spec (the compile that `paths` starts with), and the in-process split
of `netc paths` into compile, analysis and printing.

    python bench/viz_speed.py [--runs 5] [--netc PATH]
"""

from __future__ import annotations

import argparse
import io
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_speed import ROOT, compile_bytecode, deep_spec, find_netc  # noqa: E402

VIZ_TARGET_S = 3.0
PATHS_TARGET_S = 2.0
BLOCKS = 10_000


def run_once(cmd: list[str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"viz_speed: `{' '.join(cmd)}` exited {proc.returncode}:\n{proc.stderr.decode(errors='replace')}")
    return elapsed


def timed(cmd: list[str], runs: int) -> list[float]:
    run_once(cmd)  # warm-up
    return [run_once(cmd) for _ in range(runs)]


def split(spec: Path) -> str:
    """Where the time of `netc paths` goes, in this process (imports excluded)."""
    import gc

    from netc.compiler import compile_file
    from netc.compiler.paths import analyze, print_report

    t0 = time.perf_counter()
    compiled = compile_file(spec)
    t1 = time.perf_counter()
    gc.disable()
    report = analyze(compiled.graph)
    t2 = time.perf_counter()
    print_report(report, io.StringIO())
    t3 = time.perf_counter()
    gc.enable()
    return f"compile {t1 - t0:.2f} s, analysis {t2 - t1:.2f} s, table {t3 - t2:.2f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs per case (default 5)")
    parser.add_argument("--netc", help="netc executable (default: next to this Python, or PATH)")
    args = parser.parse_args()
    netc = find_netc(args.netc)
    compile_bytecode()
    examples = ROOT / "examples"
    print(f"netc: {netc}   runs per case: {args.runs} (+1 warm-up)\n")
    rows = []
    with tempfile.TemporaryDirectory(prefix="netc-viz-bench-") as tmp:
        out = Path(tmp)
        deep = out / "deep_10000.net"
        deep.write_text(deep_spec(BLOCKS, "repeat"))
        cases = [
            (
                "viz densenet121 -> HTML",
                [netc, "viz", examples / "densenet121.net", "-o", out / "d.html"],
                VIZ_TARGET_S,
            ),
            ("viz densenet121 -> SVG", [netc, "viz", examples / "densenet121.net", "-o", out / "d.svg"], VIZ_TARGET_S),
            (
                "viz densenet121 --expand -> HTML",
                [netc, "viz", examples / "densenet121.net", "-o", out / "dx.html", "--expand"],
                None,
            ),
            (
                "viz densenet121 --expand -> SVG",
                [netc, "viz", examples / "densenet121.net", "-o", out / "dx.svg", "--expand"],
                None,
            ),
            ("viz resnet50 -> HTML", [netc, "viz", examples / "resnet50.net", "-o", out / "r.html"], None),
            (
                "viz resnet50 --expand --paths -> PNG",
                [netc, "viz", examples / "resnet50.net", "-o", out / "r.png", "--expand", "--paths"],
                None,
            ),
            (f"paths, {BLOCKS:,} blocks", [netc, "paths", deep], PATHS_TARGET_S),
            (f"paths --json, {BLOCKS:,} blocks", [netc, "paths", deep, "--json"], None),
            (f"check, {BLOCKS:,} blocks (the compile)", [netc, "check", deep], None),
            (f"viz {BLOCKS:,} blocks -> SVG", [netc, "viz", deep, "-o", out / "deep.svg"], None),
        ]
        for name, cmd, target in cases:
            times = timed([str(c) for c in cmd], args.runs)
            med = statistics.median(times)
            verdict = f"< {target:g} s {'PASS' if med < target else 'FAIL'}" if target else ""
            rows.append((name, f"{med:.3f}", f"{min(times):.3f}", f"{max(times):.3f}", verdict))
            print(f"  {name}: {med:.3f} s", file=sys.stderr)
        where = split(deep)
    header = ("case", "median s", "min s", "max s", "target")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    print(line(header))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print(line(r))
    print(f"\n`netc paths` on {BLOCKS:,} blocks, in process: {where}")


if __name__ == "__main__":
    main()
