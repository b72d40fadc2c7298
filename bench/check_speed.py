"""Time `netc check FILE` end to end, as a user runs it.

Each run is a fresh subprocess, so interpreter start-up and imports are included.
Specs timed:

* resnet50 -- examples/resnet50.net (skipped with a message if it is missing);
  target: median under 0.5 s.
* deep residual MLPs of 100, 1,000 and 10,000 blocks, generated into a temp dir in
  two variants: "repeat" (one `repeat BLOCKS` statement: a tiny file, so this measures
  elaboration) and "unrolled" (BLOCKS explicit `h = residual(h)` lines: parsing grows
  too). Target: 10,000 blocks within 12x the time of 1,000.

Every spec gets one untimed warm-up run (OS file cache, .pyc files), then --runs
timed runs; a non-zero exit aborts with netc's stderr.

    python bench/check_speed.py [--runs 5] [--netc PATH]
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESNET50 = ROOT / "examples" / "resnet50.net"
SIZES = (100, 1_000, 10_000)
RESNET_TARGET_S = 0.5
SCALING_TARGET = 12.0
NODES_PER_BLOCK = 5  # linear, relu, linear, add, relu

BLOCK = """\
width = 64

block residual(x) {
    h = x -> linear(width) -> relu -> linear(width)
    return relu(x + h)
}

network deep(x: [N, 64]) {
    h = x
"""


def deep_spec(blocks: int, variant: str) -> str:
    if variant == "repeat":
        body = f"    repeat {blocks} {{\n        h = residual(h)\n    }}\n"
    else:
        body = "    h = residual(h)\n" * blocks
    return BLOCK + body + "    return h -> linear(10)\n}\n"


def compile_bytecode() -> None:
    """Writes netc's bytecode, as installing it from a wheel does. This checkout is installed
    in editable mode, and where PYTHONDONTWRITEBYTECODE is set (this machine sets it) every
    run would otherwise compile netc's sources again, about 0.1 s, while the torch it is
    compared with comes compiled in site-packages."""
    import compileall

    for package in ("dsl", "compiler", "backends"):
        compileall.compile_dir(ROOT / package, quiet=1)


def find_netc(override: str | None) -> str:
    if override:
        return override
    beside = Path(sys.executable).parent / "netc"
    if beside.exists():
        return str(beside)
    found = shutil.which("netc")
    if not found:
        sys.exit("check_speed: no netc executable found; install the project or pass --netc")
    return found


def run_once(netc: str, spec: Path) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run([netc, "check", str(spec)], capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"check_speed: `netc check {spec}` exited {proc.returncode}:\n{proc.stderr or proc.stdout}")
    return elapsed, proc.stdout + proc.stderr


def time_spec(netc: str, spec: Path, runs: int) -> tuple[list[float], str]:
    _, output = run_once(netc, spec)  # warm-up, also gives the report text
    return [run_once(netc, spec)[0] for _ in range(runs)], output


def node_count(output: str, estimate: int | None) -> str:
    """The count netc's summary reports (`Total ... 1,234 layers`), else an estimate."""
    match = re.search(r"(\d[\d,]*)\s+(?:layers|nodes)\b", output)
    if match:
        return f"{int(match.group(1).replace(',', '')):,}"
    return f"~{estimate:,}" if estimate is not None else "?"


def mark(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs per spec (default 5)")
    parser.add_argument("--netc", help="netc executable (default: next to this Python, or PATH)")
    args = parser.parse_args()
    netc = find_netc(args.netc)
    compile_bytecode()

    rows = []  # spec, blocks/nodes, median, min, max, ratio, target
    print(f"netc: {netc}   runs per spec: {args.runs} (+1 warm-up)\n")

    if RESNET50.exists():
        times, out = time_spec(netc, RESNET50, args.runs)
        med = statistics.median(times)
        rows.append(
            [
                "resnet50",
                f"16 / {node_count(out, None)}",
                med,
                min(times),
                max(times),
                f"{med / RESNET_TARGET_S:.2f}x of 0.5 s",
                f"< {RESNET_TARGET_S} s {mark(med < RESNET_TARGET_S)}",
            ]
        )
    else:
        print(f"note: {RESNET50.relative_to(ROOT)} not found; skipping the resnet50 row\n")

    with tempfile.TemporaryDirectory(prefix="netc-bench-") as tmp:
        for variant in ("repeat", "unrolled"):
            medians: dict[int, float] = {}
            for blocks in SIZES:
                spec = Path(tmp) / f"deep_{variant}_{blocks}.net"
                spec.write_text(deep_spec(blocks, variant))
                times, out = time_spec(netc, spec, args.runs)
                med = medians[blocks] = statistics.median(times)
                ratio = target = ""
                if blocks // 10 in medians:
                    r = med / medians[blocks // 10]
                    ratio = f"{r:.2f}x vs {blocks // 10:,}"
                    if blocks == 10_000:
                        target = f"<= {SCALING_TARGET:.0f}x {mark(r <= SCALING_TARGET)}"
                estimate = NODES_PER_BLOCK * blocks + 2
                rows.append(
                    [
                        f"deep {variant} {blocks:,}",
                        f"{blocks:,} / {node_count(out, estimate)}",
                        med,
                        min(times),
                        max(times),
                        ratio,
                        target,
                    ]
                )

    header = ["spec", "blocks / nodes", "median s", "min s", "max s", "ratio", "target"]
    cells = [[c if isinstance(c, str) else f"{c:.3f}" for c in row] for row in rows]
    widths = [max(len(r[i]) for r in [header, *cells]) for i in range(len(header))]
    for i, row in enumerate([header, *cells]):
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |")
        if i == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")


if __name__ == "__main__":
    main()
