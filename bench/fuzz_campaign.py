"""A mutation-fuzzing campaign against `netc check`, run as a user runs it.

Specs are the examples, the conformance cases and the hostile corpus (tests/hostile),
mutated as tests/test_fuzz.py mutates them (tokens replaced, deleted, inserted or
duplicated, numbers changed to 0, 1, 1000, 2**40, 10**30 ...), from a seed, so a campaign
is reproducible. Each spec goes through the CLI entry point (`netc.compiler.cli.main`) in a
child process forked from a parent that has already imported netc, so thousands run without
paying interpreter start-up each time; `--json` on every other spec. For every run the
parent measures the wall time and the child's peak resident memory (wait4's ru_maxrss),
and kills a run past --kill seconds.

A run fails the campaign when it exits outside {0, 1, 2, 4, 5}, exits 4 (an internal
error), prints a traceback, takes over --time-limit seconds or holds over --memory-limit
MiB. Failing specs are kept in --keep for triage (and become tests/hostile cases).

    python bench/fuzz_campaign.py [--specs 10000] [--seed 0] [--jobs 2] [--max-nodes N]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import re
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ALLOWED_EXITS = {0, 1, 2, 4, 5}
TOKENS = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\d+\.\d*|\d+|\"[^\"]*\"|->|\*\*|//|==|!=|<=|>=|\S")
VOCABULARY = [
    "(", ")", "[", "]", "{", "}", ",", "=", "->", "+", "-", "*", "/", "//", "%", "@", "**", ".", ":",
    "0", "1", "-1", "3", "7", "1e-5", "0.5", "1000000000", '"same"', '"x"', "true", "false",
    "relu", "linear", "conv2d", "concat", "split", "reshape", "x", "N", "shape", "repeat", "if",
    "else", "return", "block", "network", "import", "assert", "name", "_", "int64", "not", "and",
]  # fmt: skip
NUMBERS = [0, 1, 2, 3, 5, 1000, 2**40, 10**30]


COMMENT_OR_STRING = re.compile(r'"(?:[^"\\\n]|\\.)*"|#[^\n]*')


def sources() -> list[str]:
    """The seed specs, comments removed: mutated text is joined on one line, where a
    comment would swallow the rest of the file."""
    paths = sorted((ROOT / "examples").glob("*.net"))
    paths += sorted((ROOT / "tests" / "conformance").glob("*/*.net"))
    paths += sorted((ROOT / "tests" / "hostile").glob("*.net"))
    texts = [p.read_bytes().decode("utf-8", "replace") for p in paths]
    return [COMMENT_OR_STRING.sub(lambda m: m.group() if m.group().startswith('"') else "", t) for t in texts]


def mutate(text: str, rng: random.Random) -> str:
    """1 to 4 token mutations, as tests/test_fuzz.py's `mutated` strategy makes them."""
    tokens = TOKENS.findall(text)
    for _ in range(rng.randint(1, 4)):
        if not tokens:
            break
        i = rng.randrange(len(tokens))
        kind = rng.choice(["replace", "delete", "insert", "duplicate", "number"])
        if kind == "replace":
            tokens[i] = rng.choice(VOCABULARY)
        elif kind == "delete":
            del tokens[i : i + rng.randint(1, 5)]
        elif kind == "insert":
            tokens.insert(i, rng.choice(VOCABULARY))
        elif kind == "duplicate":
            j = min(len(tokens), i + rng.randint(1, 12))
            tokens[i:i] = tokens[i:j]
        else:
            numbers = [k for k, t in enumerate(tokens) if t.isdigit()]
            if numbers:
                tokens[rng.choice(numbers)] = str(rng.choice(NUMBERS))
    return " ".join(tokens)


@dataclass
class Result:
    index: int
    code: int
    seconds: float
    rss: int  # bytes
    traceback: bool
    args: list


@dataclass
class Report:
    results: list = field(default_factory=list)
    failures: list = field(default_factory=list)  # (Result, why)

    def add(self, result: Result, time_limit: float, memory_limit: int):
        self.results.append(result)
        why = []
        if result.code not in ALLOWED_EXITS:
            why.append(f"exit {result.code}")
        elif result.code == 4:
            why.append("internal error (exit 4)")
        if result.traceback:
            why.append("traceback")
        if result.seconds > time_limit:
            why.append(f"{result.seconds:.1f} s")
        if result.rss > memory_limit:
            why.append(f"{result.rss / 2**20:.0f} MiB")
        if why:
            self.failures.append((result, ", ".join(why)))


@dataclass
class Run:
    """One CLI run in a forked child."""

    code: int
    seconds: float
    rss: int  # the child's peak resident memory, bytes
    stdout: str
    stderr: str


def _child(argv: list, out: Path, err: Path) -> None:
    """In the forked child: the CLI on `argv`, its output to files; never returns."""
    try:
        os.dup2(os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), 1)
        os.dup2(os.open(err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), 2)
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        from netc.compiler.cli import main

        code = main(argv)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    except BaseException:  # noqa: BLE001 -- reported as a bad exit, with its traceback
        import traceback

        traceback.print_exc()
        sys.stderr.flush()
        os._exit(99)


def fork_runs(tasks, jobs: int, kill_after: float, done) -> None:
    """Runs the CLI on each (tag, argv) of `tasks`, up to `jobs` at once, each in a child
    forked from this process (netc imported once, here); calls done(tag, Run) as each ends.
    A run past `kill_after` seconds is killed (its exit code is then -9)."""
    import netc.compiler.api  # noqa: F401
    import netc.compiler.cli  # noqa: F401 -- imported once here, shared by every forked child

    work = Path(tempfile.mkdtemp(prefix="netc-fuzz-"))
    running: dict[int, tuple] = {}  # pid -> (tag, start, out, err)
    tasks, serials = iter(tasks), itertools.count()
    pending = True
    try:
        while pending or running:
            while pending and len(running) < jobs:
                task = next(tasks, None)
                if task is None:
                    pending = False
                    break
                tag, argv = task
                serial = next(serials)
                out, err = work / f"{serial}.out", work / f"{serial}.err"
                sys.stdout.flush()
                sys.stderr.flush()
                pid = os.fork()
                if pid == 0:
                    _child(argv, out, err)
                running[pid] = (tag, time.monotonic(), out, err)
            if not running:
                break
            pid, status, usage = os.wait4(-1, os.WNOHANG)
            if pid == 0:
                now = time.monotonic()
                for other, (_, start, *_rest) in list(running.items()):
                    if now - start > kill_after:
                        os.kill(other, signal.SIGKILL)
                time.sleep(0.002)
                continue
            tag, start, out, err = running.pop(pid)
            seconds = time.monotonic() - start
            texts = [path.read_text(errors="replace") for path in (out, err)]
            out.unlink()
            err.unlink()
            done(tag, Run(os.waitstatus_to_exitcode(status), seconds, usage.ru_maxrss * 1024, *texts))
    finally:
        for pid in running:
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(work, ignore_errors=True)


def run(
    count: int,
    seed: int = 0,
    jobs: int = 2,
    extra: tuple = (),
    time_limit: float = 5.0,
    memory_limit: int = 2**30,
    kill_after: float = 60.0,
    keep: Path | None = None,
    progress: bool = False,
) -> Report:
    """Runs `count` mutated specs; returns every result and the failures."""
    texts = sources()
    rng = random.Random(seed)
    report = Report()
    work = Path(tempfile.mkdtemp(prefix="netc-specs-"))

    def tasks():
        for index in range(count):
            spec = work / f"spec{index}.net"
            spec.write_text(mutate(rng.choice(texts), rng), errors="surrogateescape")
            yield index, ["check", *(["--json"] if index % 2 == 0 else []), *extra, str(spec)]

    def done(index, run: Run):
        spec = work / f"spec{index}.net"
        args = ["check", *(["--json"] if index % 2 == 0 else []), *extra]
        output = run.stdout + run.stderr
        result = Result(index, run.code, run.seconds, run.rss, "Traceback" in output, args)
        failures = len(report.failures)
        report.add(result, time_limit, memory_limit)
        if len(report.failures) > failures and keep is not None:
            keep.mkdir(parents=True, exist_ok=True)
            shutil.copy(spec, keep / f"fail{index}.net")
            (keep / f"fail{index}.txt").write_text(f"{report.failures[-1][1]}\n{' '.join(args)}\n{output}")
        spec.unlink()
        if progress and len(report.results) % 1000 == 0:
            print(f"{len(report.results)} specs, {len(report.failures)} failures", file=sys.stderr, flush=True)

    try:
        fork_runs(tasks(), jobs, kill_after, done)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return report


def run_commands(commands: list, jobs: int = 2, kill_after: float = 120.0) -> list[dict]:
    """Each CLI argv of `commands` run as `fork_runs` runs them: a list of their results."""
    results: list = [None] * len(commands)

    def done(i, run: Run):
        results[i] = run.__dict__

    fork_runs(enumerate(commands), jobs, kill_after, done)
    return results


def summary(report: Report) -> dict:
    results = report.results
    slowest = max(results, key=lambda r: r.seconds)
    largest = max(results, key=lambda r: r.rss)
    codes: dict[int, int] = {}
    for r in results:
        codes[r.code] = codes.get(r.code, 0) + 1
    return {
        "specs": len(results),
        "exit_codes": dict(sorted(codes.items())),
        "worst_seconds": round(slowest.seconds, 3),
        "worst_seconds_spec": slowest.index,
        "worst_rss_mib": round(largest.rss / 2**20, 1),
        "worst_rss_spec": largest.index,
        "failures": [{"spec": r.index, "why": why, "args": r.args} for r, why in report.failures],
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--specs", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--max-nodes", type=int, help="passed to netc check (default: netc's)")
    parser.add_argument("--time-limit", type=float, default=5.0, help="seconds a run may take")
    parser.add_argument("--memory-limit", type=int, default=1024, help="MiB a run may hold")
    parser.add_argument("--kill", type=float, default=60.0, help="seconds after which a run is killed")
    parser.add_argument("--keep", type=Path, default=ROOT / "bench" / "fuzz_failures", help="where failing specs go")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument(
        "--commands", type=Path, help="a JSON list of CLI argument lists: run them, print their results as JSON"
    )
    args = parser.parse_args(argv)
    if args.commands:
        commands = json.loads(args.commands.read_text())
        print(json.dumps(run_commands(commands, args.jobs, args.kill)))
        return 0
    extra = ("--max-nodes", str(args.max_nodes)) if args.max_nodes else ()
    started = time.monotonic()
    report = run(
        args.specs,
        args.seed,
        args.jobs,
        extra,
        args.time_limit,
        args.memory_limit * 2**20,
        args.kill,
        args.keep,
        progress=True,
    )
    result = summary(report)
    result["wall_seconds"] = round(time.monotonic() - started, 1)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"specs: {result['specs']}  exit codes: {result['exit_codes']}  wall: {result['wall_seconds']} s")
        print(f"worst time: {result['worst_seconds']} s (spec {result['worst_seconds_spec']})")
        print(f"worst memory: {result['worst_rss_mib']} MiB (spec {result['worst_rss_spec']})")
        print(f"failures: {len(result['failures'])}")
        for failure in result["failures"][:20]:
            print(f"  spec {failure['spec']}: {failure['why']}")
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
