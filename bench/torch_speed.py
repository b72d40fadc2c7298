"""The netc-compiled PyTorch module against a hand-written torch.nn reference, on CPU.

Both candidates are timed in one process, interleaved run by run (the order alternates,
A B then B A, so drift in machine load falls on both alike), with equal weights (copied
from the reference into the netc module by name). Cases:

* resnet50 forward, batch 1 and 8 (eval, torch.inference_mode)
* resnet18 forward, batch 1 and 8 (eval, torch.inference_mode)
* resnet18 training step, batch 8: forward, cross entropy on random labels, backward,
  SGD step
* spec -> in-memory module for resnet50 (`compile_file(...).torch()`), against building
  the hand-written module (`torch_reference.resnet50()`)
* a pre-norm transformer block (width 256, 8 heads, MLP 1024, batch 8, 128 tokens, eval)
  whose spec uses `attention` (lowered to F.scaled_dot_product_attention), against the same
  block written by hand with `@` and `softmax` (`torch_reference.TransformerBlock`)

Each case is warmed up first; a run is several iterations (enough for about --target
seconds), its time per iteration recorded; the table gives the median over --runs runs and
the ratio netc / hand-written, PASS where the ratio is at most 1.03.

The reference models live in tests/torch_reference.py.

    .venv/bin/python bench/torch_speed.py [--runs 7] [--threads 2] [--target 1.0] [--only attention]
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import torch_reference as R  # noqa: E402
from netc.compiler import compile_file, compile_string  # noqa: E402

THRESHOLD = 1.03


def load() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def timed(fn, iters: int) -> float:
    """Seconds per iteration of `iters` calls."""
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        for _ in range(iters):
            fn()
        return (time.perf_counter() - start) / iters
    finally:
        gc.enable()


def compare(netc_fn, ref_fn, runs: int, target: float, warmup: int = 2):
    """Medians (seconds per iteration) of netc_fn and ref_fn, interleaved."""
    for _ in range(warmup):
        netc_fn()
        ref_fn()
    once = max(timed(netc_fn, 1), timed(ref_fn, 1))
    iters = max(1, min(1000, round(target / max(once, 1e-6))))
    samples = {"netc": [], "ref": []}
    for run in range(runs):
        order = [("netc", netc_fn), ("ref", ref_fn)]
        if run % 2:
            order.reverse()
        for key, fn in order:
            samples[key].append(timed(fn, iters))
    return statistics.median(samples["netc"]), statistics.median(samples["ref"]), iters, noise(samples)


def noise(samples) -> float:
    """The larger relative spread (max - min) / median of the two candidates' runs."""
    return max((max(v) - min(v)) / statistics.median(v) for v in samples.values())


def models(name: str):
    compiled = compile_file(ROOT / "examples" / f"{name}.net").torch()
    reference = R.MODELS[name]()
    R.copy_weights(reference, compiled)
    return compiled, reference


def inference(model, x):
    """One eval forward of `model` on `x`, as a timed case runs it."""

    def fn():
        with torch.inference_mode():
            model(x)

    return fn


def forward_case(name: str, batch: int):
    compiled, reference = models(name)
    compiled.eval()
    reference.eval()
    x = torch.randn(batch, 3, 224, 224, generator=torch.Generator().manual_seed(0))

    return inference(compiled, x), inference(reference, x)


def train_case(name: str, batch: int):
    compiled, reference = models(name)
    compiled.train()
    reference.train()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, 224, 224, generator=g)
    labels = torch.randint(0, 1000, (batch,), generator=g)

    def run(model):
        opt = torch.optim.SGD(model.parameters(), lr=1e-3)

        def fn():
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x), labels)
            loss.backward()
            opt.step()

        return fn

    return run(compiled), run(reference)


ATTENTION_BLOCK = """
block self_attention(x, heads) {
    n = x.shape[0]
    t = x.shape[1]
    d = x.shape[2]
    q = x -> linear(d) -> reshape((n, t, heads, d // heads)) -> permute((0, 2, 1, 3))
    k = x -> linear(d) -> reshape((n, t, heads, d // heads)) -> permute((0, 2, 1, 3))
    v = x -> linear(d) -> reshape((n, t, heads, d // heads)) -> permute((0, 2, 1, 3))
    mixed = attention(q, k, v) -> permute((0, 2, 1, 3)) -> reshape((n, t, d))
    return mixed -> linear(d)
}

network transformer_block(x: [B, T, 256]) {
    x = x + (x -> layernorm -> self_attention(8))
    y = x + (x -> layernorm -> linear(1024) -> gelu -> linear(256))
    return y
}
"""


def attention_case(batch: int, tokens: int):
    """The block with `attention` against R.TransformerBlock, whose attention is written out
    with `@`, a scale and softmax; the same layers in the same order, so weights copy by order."""
    compiled = compile_string(ATTENTION_BLOCK).torch().eval()
    reference = R.TransformerBlock(256, 8, 1024).eval()
    R.copy_weights(reference, compiled)
    x = torch.randn(batch, tokens, 256, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        diff = (compiled(x) - reference(x)).abs().max().item()
    assert diff < 1e-4, f"the two transformer blocks differ by {diff}"

    return inference(compiled, x), inference(reference, x)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=7, help="timed runs per case and candidate (median reported)")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    ap.add_argument("--target", type=float, default=1.0, help="seconds per run (sets the iterations per run)")
    ap.add_argument("--only", default="", help="run only the cases whose label contains this text")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.runs} runs, load average {load()}")

    rows = []
    cases = [
        ("resnet50 forward, batch 1 (eval)", lambda: forward_case("resnet50", 1)),
        ("resnet50 forward, batch 8 (eval)", lambda: forward_case("resnet50", 8)),
        ("resnet18 forward, batch 1 (eval)", lambda: forward_case("resnet18", 1)),
        ("resnet18 forward, batch 8 (eval)", lambda: forward_case("resnet18", 8)),
        ("resnet18 train step, batch 8 (SGD)", lambda: train_case("resnet18", 8)),
        ("transformer block, attention vs @ and softmax, batch 8 x 128 tokens (eval)", lambda: attention_case(8, 128)),
    ]
    for label, make in cases:
        if args.only not in label:
            continue
        netc_fn, ref_fn = make()
        netc_s, ref_s, iters, spread = compare(netc_fn, ref_fn, args.runs, args.target)
        rows.append((label, netc_s, ref_s, iters, spread, True))
        del netc_fn, ref_fn
        print(f"  {label}: {netc_s * 1e3:.1f} ms vs {ref_s * 1e3:.1f} ms", flush=True)

    spec = ROOT / "examples" / "resnet50.net"
    build = "resnet50 build: spec -> module vs hand-written constructor"
    only_s = None
    if args.only in build:
        netc_s, ref_s, iters, spread = compare(
            lambda: compile_file(spec).torch(), lambda: R.resnet50(), args.runs, args.target, warmup=1
        )
        rows.append((build, netc_s, ref_s, iters, spread, False))
        only_s = statistics.median(timed(lambda: compile_file(spec), 1) for _ in range(args.runs))

    print()
    print("| case | netc (ms) | hand-written (ms) | netc / hand-written | ≤ 1.03 | iters/run | run spread |")
    print("| --- | ---: | ---: | ---: | :---: | ---: | ---: |")
    for label, n, r, iters, spread, graded in rows:
        ratio = n / r
        mark = ("PASS" if ratio <= THRESHOLD else "FAIL") if graded else "(info)"
        print(f"| {label} | {n * 1e3:.1f} | {r * 1e3:.1f} | {ratio:.3f} | {mark} | {iters} | {spread:.1%} |")
    print()
    if only_s is not None:
        print(
            f"resnet50 spec -> module: compile_file {only_s * 1e3:.0f} ms of the {rows[-1][1] * 1e3:.0f} ms; "
            "the hand-written constructor includes torchvision's kaiming init, netc's module the default nn init."
        )
    print(
        f"medians of {args.runs} runs, interleaved; run spread: (max - min) / median of the noisier candidate; "
        f"load average at end {load()}; total {time.perf_counter() - started:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
