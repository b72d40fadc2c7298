"""netc's ONNX export against torch.onnx.export, and the exported models in onnxruntime, on CPU.

Everything is measured in one run so that the ratios are comparable; candidates are
interleaved run by run (their order rotates, so drift in machine load falls on all alike),
each warmed up once, and the table gives the median over --runs runs. Cases:

* resnet50, whole process against whole process (fresh subprocesses: start-up, imports,
  model, export, write):
  netc `netc compile examples/resnet50.net --target onnx -o FILE` (optimized, weights drawn
  with numpy as torch.nn would) against a Python process that imports torch, builds
  `tests/torch_reference.resnet50()` in eval mode and calls `torch.onnx.export` on a
  [1, 3, 224, 224] dummy with a dynamic batch axis, opset 18: (b) the TorchScript exporter
  (`dynamo=False`), target netc >= 5x faster; (c) the dynamo exporter (`dynamo=True`, needs
  the onnxscript package), target netc >= 10x faster. A failing exporter puts its reason in
  the row instead of a time. The children's CPU time (user + sys) is printed below the
  table too: load from other processes disturbs it far less than the wall time.
* a width-16 residual MLP of 1,000 blocks (`linear -> relu -> linear`, residual add, relu;
  written with one `repeat`), in-process: netc from spec text to serialized bytes
  (`compile_string(text).onnx_model().to_bytes()`: compile, weights drawn, emit, serialize)
  against `torch.onnx.export(dynamo=False)` of the equivalent hand-written module (an
  nn.ModuleList of blocks) to a BytesIO, the module built beforehand (construction not
  timed). Target netc >= 20x faster. Also netc at 10,000 blocks, target 10,000 / 1,000 <= 12x
  (linear in depth).
* onnxruntime latency (CPUExecutionProvider, 2 intra-op threads, ORT_ENABLE_ALL) of netc's
  optimized resnet50 against the TorchScript-exported resnet50, both with the SAME weights
  (the hand-written model's, mapped into netc's names through the netc torch module and
  `torch_reference.copy_weights`), batch 1 and 8, same random input. The outputs are checked
  to agree (allclose, 1e-4) before timing. The two sessions alternate call by call within
  each run. Target netc / exported <= 1.0. A control row per batch times netc's model
  against a second session of the same model the same way: how far the ratio of two equal
  models strays here (no target).

The in-process cases run with the garbage collector on, as a user's program would (a
collection is forced before each timed call). Files go to a temporary directory, removed at
the end.

    .venv/bin/python bench/onnx_speed.py [--runs 5] [--threads 2] [--quick] [--no-dynamo] [--cases whole,mlp,ort]
"""

from __future__ import annotations

import argparse
import gc
import io
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
sys.path.insert(0, str(TESTS))

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402
import torch_reference as R  # noqa: E402
from check_speed import compile_bytecode  # noqa: E402
from netc.compiler import compile_file, compile_string  # noqa: E402
from torch import nn  # noqa: E402

RESNET50 = ROOT / "examples" / "resnet50.net"
WIDTH = 16
BLOCKS = (1_000, 10_000)
TS_TARGET = 5.0  # netc whole process at least this many times faster than the TorchScript exporter
DYNAMO_TARGET = 10.0  # ... than the dynamo exporter
MLP_TARGET = 20.0  # in-process residual MLP, netc vs TorchScript export
SCALING_TARGET = 12.0  # netc 10,000 blocks / 1,000 blocks
ORT_TARGET = 1.0  # netc / exported latency
TOLERANCE = 1e-4

# The exporter process: argv = tests dir, output path, "torchscript" | "dynamo".
EXPORT_SCRIPT = """\
import sys, warnings
warnings.filterwarnings("ignore")
sys.path.insert(0, sys.argv[1])
import torch
import torch_reference
model = torch_reference.resnet50().eval()
dummy = torch.randn(1, 3, 224, 224)
if sys.argv[3] == "dynamo":
    torch.onnx.export(model, (dummy,), sys.argv[2], dynamo=True, opset_version=18,
                      input_names=["image"], output_names=["logits"],
                      dynamic_shapes={"x": {0: torch.export.Dim("N")}}, verbose=False)
else:
    torch.onnx.export(model, (dummy,), sys.argv[2], dynamo=False, opset_version=18,
                      input_names=["image"], output_names=["logits"],
                      dynamic_axes={"image": {0: "N"}, "logits": {0: "N"}})
"""


def load() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def noise(samples: list[list[float]]) -> float:
    """The largest relative spread (max - min) / median among the candidates' runs."""
    return max((max(v) - min(v)) / statistics.median(v) for v in samples if v)


def find_netc() -> str:
    beside = Path(sys.executable).parent / "netc"
    if beside.exists():
        return str(beside)
    found = shutil.which("netc")
    if not found:
        sys.exit("onnx_speed: no netc executable found; install the project")
    return found


def interleave(candidates, runs: int, warmup: int = 1) -> list[list[float]]:
    """Runs every candidate (a function returning seconds) `runs` times, the order rotated
    each run; returns the samples per candidate. A candidate that raises is dropped: its
    slot holds the exception instead of samples."""
    samples: list = [[] for _ in candidates]
    alive = list(range(len(candidates)))

    def call(i):
        try:
            samples[i].append(candidates[i]())
        except Exception as exc:  # noqa: BLE001 -- reported in the table
            samples[i] = exc
            alive.remove(i)

    for _ in range(warmup):
        for i in list(alive):
            call(i)
            if isinstance(samples[i], list):
                samples[i].clear()
    for run in range(runs):
        order = list(alive)
        shift = run % max(1, len(order))
        order = order[shift:] + order[:shift]
        if (run // max(1, len(order))) % 2:
            order.reverse()
        for i in order:
            if i in alive:
                call(i)
    return samples


# ---------------------------------------------------------------- 1. whole process


class ProcessFailed(Exception):
    pass


def process(argv: list[str], out: Path, cwd: str, cpu: list[float]):
    """A candidate timing one subprocess (wall seconds); its CPU seconds (user + sys, all
    threads) go to `cpu`, a figure that machine load from elsewhere disturbs far less."""

    def fn() -> float:
        for stale in out.parent.glob(out.name + "*"):
            stale.unlink()
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        proc = subprocess.run(argv, capture_output=True, text=True, cwd=cwd)
        elapsed = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
        if proc.returncode != 0 or not out.exists():
            text = (proc.stderr or proc.stdout or "no output").strip().splitlines()
            last = text[-1] if text else "no output"
            raise ProcessFailed(f"exit {proc.returncode}: {last[:160]}")
        return elapsed

    return fn


def whole_process_case(tmp: Path, runs: int, dynamo: bool, warmup: int):
    netc = find_netc()
    outs = {k: tmp / f"{k}.onnx" for k in ("netc", "torchscript", "dynamo")}
    cpu: dict[str, list[float]] = {k: [] for k in outs}
    cands = [
        process(
            [netc, "compile", str(RESNET50), "--target", "onnx", "-o", str(outs["netc"])],
            outs["netc"],
            str(tmp),
            cpu["netc"],
        ),
        process(
            [sys.executable, "-c", EXPORT_SCRIPT, str(TESTS), str(outs["torchscript"]), "torchscript"],
            outs["torchscript"],
            str(tmp),
            cpu["torchscript"],
        ),
    ]
    if dynamo:
        cands.append(
            process(
                [sys.executable, "-c", EXPORT_SCRIPT, str(TESTS), str(outs["dynamo"]), "dynamo"],
                outs["dynamo"],
                str(tmp),
                cpu["dynamo"],
            )
        )
    samples = interleave(cands, runs, warmup)
    for key, sample in zip(cpu, samples):  # keep the timed runs' figures (no warm-up, no failure)
        cpu[key] = cpu[key][len(cpu[key]) - len(sample) :] if isinstance(sample, list) and sample else []
    sizes = {}
    for k, p in outs.items():
        files = list(tmp.glob(p.name + "*"))
        if files:
            sizes[k] = sum(f.stat().st_size for f in files)
        for f in files:
            f.unlink()
    return samples, sizes, cpu


# ---------------------------------------------------------------- 2. residual MLP


def mlp_spec(blocks: int) -> str:
    return f"""\
width = {WIDTH}

block residual(x) {{
    h = x -> linear(width) -> relu -> linear(width)
    return relu(x + h)
}}

network deep(x: [N, {WIDTH}]) {{
    h = x
    repeat {blocks} {{
        h = residual(h)
    }}
    return h -> linear(10)
}}
"""


class Block(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.fc1 = nn.Linear(width, width)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(width, width)

    def forward(self, x):
        return torch.relu(x + self.fc2(self.relu(self.fc1(x))))


class DeepMLP(nn.Module):
    def __init__(self, width: int, blocks: int, classes: int = 10):
        super().__init__()
        self.blocks = nn.ModuleList(Block(width) for _ in range(blocks))
        self.head = nn.Linear(width, classes)

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return self.head(x)


def torchscript_bytes(module, dummy, input_name: str) -> bytes:
    """`torch.onnx.export` with the TorchScript exporter to memory, opset 18, batch axis N."""
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (dummy,),
            buf,
            dynamo=False,
            opset_version=18,
            input_names=[input_name],
            output_names=["logits"],
            dynamic_axes={input_name: {0: "N"}, "logits": {0: "N"}},
        )
    return buf.getvalue()


def timed_once(fn) -> float:
    gc.collect()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def mlp_case(runs: int, warmup: int):
    texts = {b: mlp_spec(b) for b in BLOCKS}
    small = BLOCKS[0]
    model = DeepMLP(WIDTH, small).eval()
    dummy = torch.randn(1, WIDTH)
    sizes = {}

    def netc(blocks):
        def fn():
            data = compile_string(texts[blocks]).onnx_model().to_bytes()
            sizes[f"netc {blocks}"] = len(data)

        return lambda: timed_once(fn)

    def torchscript():
        sizes["torchscript"] = len(torchscript_bytes(model, dummy, "x"))

    samples = interleave([netc(small), lambda: timed_once(torchscript), netc(BLOCKS[1])], runs, warmup)
    return samples, sizes


# ---------------------------------------------------------------- 3. onnxruntime


def session(data: bytes, threads: int) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])


def ort_models(threads: int):
    """(netc session, exported session, a second netc session, reference module, node counts), all with the
    reference's weights."""
    reference = R.resnet50().eval()
    compiled = compile_file(RESNET50)
    netc_module = compiled.torch()
    R.copy_weights(reference, netc_module)
    weights = {k: v.detach().numpy() for k, v in netc_module.state_dict().items()}
    netc_bytes = compiled.onnx_model(weights=weights).to_bytes()
    exported = torchscript_bytes(reference, torch.randn(1, 3, 224, 224), "image")
    graphs = {}
    for key, data in (("netc", netc_bytes), ("exported", exported)):
        ops = [n.op_type for n in onnx.load_from_string(data).graph.node]
        graphs[key] = f"{len(ops)} nodes ({ops.count('Conv')} Conv, {ops.count('Identity')} Identity)"
    netc_sess, ref_sess = session(netc_bytes, threads), session(exported, threads)
    return netc_sess, ref_sess, session(netc_bytes, threads), reference, graphs


def ort_case(netc_sess, ref_sess, reference, batch: int, iters: int, runs: int):
    x = np.random.default_rng(batch).standard_normal((batch, 3, 224, 224), dtype=np.float32)
    feeds = [{s.get_inputs()[0].name: x} for s in (netc_sess, ref_sess)]
    a = netc_sess.run(None, feeds[0])[0]
    b = ref_sess.run(None, feeds[1])[0]
    with torch.inference_mode():
        t = reference(torch.from_numpy(x)).numpy()
    if not (np.allclose(a, b, rtol=TOLERANCE, atol=TOLERANCE) and np.allclose(a, t, rtol=TOLERANCE, atol=TOLERANCE)):
        sys.exit(
            f"onnx_speed: resnet50 batch {batch}: outputs differ: netc vs exported max |diff| "
            f"{np.abs(a - b).max():.3g}, netc vs torch {np.abs(a - t).max():.3g}"
        )
    diff = float(np.abs(a - b).max())

    # Within a run the two sessions alternate call by call (A B B A ...), so a burst of load
    # from elsewhere falls on both; a run's figure is each session's mean over its `iters` calls.
    sessions = [(netc_sess, feeds[0]), (ref_sess, feeds[1])]
    for sess, feed in sessions:  # warm-up
        sess.run(None, feed)
    samples: list[list[float]] = [[], []]
    for _ in range(runs):
        totals = [0.0, 0.0]
        gc.collect()
        gc.disable()
        try:
            for i in range(iters):
                for k in (0, 1) if i % 2 == 0 else (1, 0):
                    sess, feed = sessions[k]
                    start = time.perf_counter()
                    sess.run(None, feed)
                    totals[k] += time.perf_counter() - start
        finally:
            gc.enable()
        for k in (0, 1):
            samples[k].append(totals[k] / iters)
    return samples, diff


# ---------------------------------------------------------------- table


def mark(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def fmt_s(v: float) -> str:
    return f"{v:.3f} s"


def fmt_ms(v: float) -> str:
    return f"{v * 1e3:.1f} ms"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5, help="timed runs per case and candidate (median reported)")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads and onnxruntime intra-op threads")
    ap.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 1 run, no warm-up for the export cases, few onnxruntime iterations",
    )
    ap.add_argument("--no-dynamo", action="store_true", help="leave out the dynamo exporter (slowest candidate)")
    ap.add_argument("--cases", default="whole,mlp,ort", help="which cases, comma-separated: whole, mlp, ort")
    args = ap.parse_args(argv)
    cases = set(args.cases.split(","))
    if not cases <= {"whole", "mlp", "ort"}:
        ap.error(f"--cases: unknown {', '.join(sorted(cases - {'whole', 'mlp', 'ort'}))}")
    runs = 1 if args.quick else args.runs
    iters1, iters8 = (3, 1) if args.quick else (30, 10)
    torch.set_num_threads(args.threads)
    compile_bytecode()  # the whole-process case starts netc fresh: with bytecode, as installed
    started = time.perf_counter()
    print(
        f"torch {torch.__version__}, onnx {onnx.__version__}, onnxruntime {ort.__version__}; "
        f"{args.threads} CPU threads (torch, onnxruntime intra-op) on a {os.cpu_count()}-core machine; "
        f"{runs} runs; load average {load()}",
        flush=True,
    )

    # The onnxruntime sessions first: a weight-mapping problem shows at once, not minutes in.
    if "ort" in cases:
        netc_sess, ref_sess, control, reference, graphs = ort_models(args.threads)
    rows = []  # case, netc, peer, ratio, target, spread
    if "whole" in cases:
        sizes, cpu = whole_process_rows(rows, runs, args)
    if "mlp" in cases:
        mlp_sizes = mlp_rows(rows, runs, args)
    if "ort" in cases:
        diffs = ort_rows(rows, runs, netc_sess, ref_sess, control, reference, iters1, iters8)

    print()
    print("| case | netc | peer | netc vs peer | target | run spread |")
    print("| --- | ---: | ---: | ---: | :---: | ---: |")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()
    if "whole" in cases:
        mb = {k: f"{v / 1e6:.1f} MB" for k, v in sizes.items()}
        extra = " (dynamo: model + .data)" if "dynamo" in mb else ""
        print(f"resnet50 files written: {', '.join(f'{k} {v}' for k, v in mb.items())}{extra}")
        cpu_text = ", ".join(f"{k} {statistics.median(v):.2f} s" for k, v in cpu.items() if v)
        print(f"resnet50 whole process, CPU time (user + sys, median): {cpu_text}")
    if "mlp" in cases:
        print(
            f"residual MLP: netc's time includes compiling the spec and drawing the weights; the torch export's "
            f"excludes building the module. Serialized: netc {mlp_sizes.get(f'netc {BLOCKS[0]}', 0) / 1e3:.0f} kB, "
            f"torch {mlp_sizes.get('torchscript', 0) / 1e3:.0f} kB"
        )
    if "ort" in cases:
        print(
            f"onnxruntime: same weights (the hand-written model's), outputs agree (max |diff| batch 1 "
            f"{diffs[1]:.2g}, batch 8 {diffs[8]:.2g}); CPUExecutionProvider, {args.threads} intra-op threads, "
            f"ORT_ENABLE_ALL; graphs: netc {graphs['netc']}, exported {graphs['exported']}; the control rows time "
            "netc's model against a second session of the same model, the same way: the noise floor"
        )
    print(
        f"medians of {runs} runs, interleaved; run spread: (max - min) / median of the noisier candidate; "
        f"load average at end {load()}; total {time.perf_counter() - started:.0f} s"
    )
    return 0


def whole_process_rows(rows, runs, args):
    with tempfile.TemporaryDirectory(prefix="netc-onnx-bench-") as tmp:
        samples, sizes, cpu = whole_process_case(Path(tmp), runs, not args.no_dynamo, warmup=0 if args.quick else 1)
    netc_s = samples[0]
    if isinstance(netc_s, Exception):
        sys.exit(f"onnx_speed: netc compile failed: {netc_s}")
    netc_med = statistics.median(netc_s)
    peers = [("TorchScript exporter (dynamo=False)", samples[1], TS_TARGET)]
    if not args.no_dynamo:
        peers.append(("dynamo exporter (dynamo=True)", samples[2], DYNAMO_TARGET))
    for name, peer, target in peers:
        label = f"resnet50 whole process: `netc compile` vs {name}"
        if isinstance(peer, Exception):
            rows.append((label, fmt_s(netc_med), f"failed: {peer}", "", f"≥ {target:.0f}x faster: n/a", ""))
            continue
        med = statistics.median(peer)
        ratio = med / netc_med
        rows.append(
            (
                label,
                fmt_s(netc_med),
                fmt_s(med),
                f"{ratio:.2f}x faster",
                f"≥ {target:.0f}x faster {mark(ratio >= target)}",
                f"{noise([netc_s, peer]):.1%}",
            )
        )
    print("  resnet50 whole process done", flush=True)
    return sizes, cpu


def mlp_rows(rows, runs, args):
    samples, mlp_sizes = mlp_case(runs, warmup=0 if args.quick else 1)
    for s in samples:
        if isinstance(s, Exception):
            raise s
    n1, ts, n10 = (statistics.median(s) for s in samples)
    rows.append(
        (
            f"residual MLP w{WIDTH} x {BLOCKS[0]:,} blocks in-process: spec text -> bytes vs "
            "torch.onnx.export(dynamo=False) -> BytesIO",
            fmt_s(n1),
            fmt_s(ts),
            f"{ts / n1:.1f}x faster",
            f"≥ {MLP_TARGET:.0f}x faster {mark(ts / n1 >= MLP_TARGET)}",
            f"{noise(samples[:2]):.1%}",
        )
    )
    rows.append(
        (
            f"residual MLP netc {BLOCKS[1]:,} blocks (peer: netc {BLOCKS[0]:,})",
            fmt_s(n10),
            fmt_s(n1),
            f"{n10 / n1:.2f}x the time",
            f"≤ {SCALING_TARGET:.0f}x {mark(n10 / n1 <= SCALING_TARGET)}",
            f"{noise([samples[0], samples[2]]):.1%}",
        )
    )
    print("  residual MLP done", flush=True)
    return mlp_sizes


def ort_rows(rows, runs, netc_sess, ref_sess, control, reference, iters1, iters8):
    diffs = {}
    for batch, iters in ((1, iters1), (8, iters8)):
        samples, diffs[batch] = ort_case(netc_sess, ref_sess, reference, batch, iters, runs)
        a, b = (statistics.median(s) for s in samples)
        rows.append(
            (
                f"onnxruntime resnet50 batch {batch} ({iters} iters/run): netc optimized vs TorchScript-exported",
                fmt_ms(a),
                fmt_ms(b),
                f"{a / b:.3f}",
                f"≤ {ORT_TARGET:.1f} {mark(a / b <= ORT_TARGET)}",
                f"{noise(samples):.1%}",
            )
        )
        samples, _ = ort_case(netc_sess, control, reference, batch, iters, runs)
        a, b = (statistics.median(s) for s in samples)
        rows.append(
            (
                f"control, batch {batch}: netc's model vs a second session of it",
                fmt_ms(a),
                fmt_ms(b),
                f"{a / b:.3f}",
                "(noise floor)",
                f"{noise(samples):.1%}",
            )
        )
    print("  onnxruntime done", flush=True)
    return diffs


if __name__ == "__main__":
    sys.exit(main())
