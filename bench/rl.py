"""Reinforcement learning from specs on CartPole-v1: steps and wall time to solve, three seeds.

Cases, each run in a fresh process (one at a time, interleaved seed by seed so that drift
in machine load falls on all of them alike), then a greedy evaluation of 100 episodes:

* ppo netc: examples/rl/ppo.py training the module netc compiles from
  cartpole_actor_critic.net, at most 100,000 steps; solved once the last 100 training
  episodes' mean return is at least 475.
* ppo hand-written: the same PPO on a hand-written torch.nn module of the same
  architecture, built in the same order after the same seed, so its initial weights equal
  the compiled module's (checked) and the two runs should follow one trajectory: their
  wall-time ratio is the cost of the compiled module.
* ppo SB3: Stable-Baselines3's PPO with its default MlpPolicy (separate 64-64 tanh actor
  and critic, as the spec), the same RL zoo settings, budget and stopping rule.
* dqn netc, dqn hand-written, dqn onnxruntime: examples/rl/dqn.py at most 150,000 steps,
  solved once a greedy check of 100 episodes reaches 475; the onnxruntime case trains
  through netc's ONNX gradient model of cartpole_dqn_loss.net, no torch.

The table gives medians over the seeds (and the range), and checks the issue's targets.

    .venv/bin/python bench/rl.py [--seeds 0 1 2] [--cases ppo-netc,ppo-torch,...] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RL = ROOT / "examples" / "rl"
CASES = ("ppo-netc", "ppo-torch", "ppo-sb3", "dqn-netc", "dqn-torch", "dqn-onnxruntime")
TIMED = ("ppo-netc", "ppo-torch", "dqn-netc", "dqn-torch")  # the pairs whose wall-time ratio is checked
PPO_STEPS, DQN_STEPS, SOLVED = 100_000, 150_000, 475.0


# ---------------------------------------------------------------- the hand-written networks


def hand_written(case: str):
    """torch.nn modules of the specs' architectures, layers made in the specs' order (so
    that one seed gives both the same initial weights)."""
    from torch import nn

    def mlp(out: int, act):
        return nn.Sequential(nn.Linear(4, 64), act(), nn.Linear(64, 64), act(), nn.Linear(64, out))

    class ActorCritic(nn.Module):
        def __init__(self):
            super().__init__()
            self.actor, self.critic = mlp(2, nn.Tanh), mlp(1, nn.Tanh)

        def forward(self, obs):
            return self.actor(obs), self.critic(obs)

    class QNetwork(nn.Module):
        def __init__(self):
            super().__init__()
            self.q = mlp(2, nn.ReLU)

        def forward(self, obs):
            return self.q(obs)

    return ActorCritic if case.startswith("ppo") else QNetwork


def same_start(compiled, make, seed: int) -> bool:
    """Whether the compiled module and `make()` draw the same initial weights from `seed`."""
    import torch

    torch.manual_seed(seed)
    ours = list(compiled.torch().parameters())
    torch.manual_seed(seed)
    theirs = list(make().parameters())
    return len(ours) == len(theirs) and all(torch.equal(a, b) for a, b in zip(ours, theirs))


# ---------------------------------------------------------------- one run (a worker process)


def worker(case: str, seed: int, steps: int) -> dict:
    sys.path.insert(0, str(RL))
    import numpy as np
    import rl_common as rl

    result: dict = {"case": case, "seed": seed}
    if case.startswith("ppo-") and case != "ppo-sb3":
        import ppo

        args = ppo.parser().parse_args(["--seed", str(seed), "--steps", str(steps), "--quiet"])
        make = hand_written(case) if case == "ppo-torch" else None
        if make is not None:
            result["same initial weights"] = same_start(rl.compile_spec(args.spec), make, seed)
        compiled, net = ppo.build(args, make)  # seeds torch again
        summary = ppo.train(net, args)
        act = ppo.greedy(net)
    elif case == "ppo-sb3":
        import sb3_ppo

        args = sb3_ppo.parser().parse_args(["--seed", str(seed), "--steps", str(steps), "--quiet"])
        model, summary = sb3_ppo.train(args, policy_kwargs=None)
        act = sb3_ppo.greedy(model)
    else:
        import dqn

        runtime = "onnxruntime" if case == "dqn-onnxruntime" else "torch"
        argv = ["--seed", str(seed), "--steps", str(steps), "--runtime", runtime, "--quiet"]
        args = dqn.parser().parse_args(argv)
        make = hand_written(case) if case == "dqn-torch" else None
        if make is not None:
            result["same initial weights"] = same_start(rl.compile_spec(args.spec), make, seed)
        compiled, q = dqn.build(args, make)  # seeds torch again
        summary = dqn.train(q, args)
        act = dqn.greedy(q)
    result.update(
        steps=summary["steps"],
        solved=summary["solved"].startswith("yes"),
        seconds=summary["wall time s"],
        training_return=summary["last 100 training returns"],
    )
    returns = rl.greedy_returns(act, "CartPole-v1", 100, rl.EVAL_SEED + 1000 * seed)
    result["greedy"] = float(np.mean(returns))
    return result


def run_worker(case: str, seed: int, steps: int, timeout: float) -> dict:
    argv = [sys.executable, __file__, "--worker", case, "--seed", str(seed), "--steps", str(steps)]
    started = time.perf_counter()
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"case": case, "seed": seed, "error": f"no result in {timeout:.0f} s"}
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"case": case, "seed": seed, "error": f"exit {proc.returncode}: {tail}"}
    result = json.loads(lines[-1])
    result["process seconds"] = time.perf_counter() - started
    return result


# ---------------------------------------------------------------- the table


def median_range(values, fmt: str) -> str:
    if not values:
        return "-"
    middle = statistics.median(values)
    text = format(round(middle) if fmt == "," else middle, fmt)  # a median of two steps counts is a half
    if len(values) > 1:
        text += f" ({format(min(values), fmt)}-{format(max(values), fmt)})"
    return text


def collapse(results: list[dict]) -> list[dict]:
    """One result per case and seed: the first run's, with the fastest repeat's wall time
    (machine load only ever adds time) and whether every repeat took the same steps."""
    out: dict[tuple, dict] = {}
    for r in results:
        key = (r["case"], r["seed"])
        if key not in out:
            out[key] = dict(r, runs=1)
        elif "error" not in r and "error" not in out[key]:
            first = out[key]
            first["runs"] += 1
            first["seconds"] = min(first["seconds"], r["seconds"])
            first["repeatable"] = first.get("repeatable", True) and r["steps"] == first["steps"]
    return list(out.values())


def table(results: list[dict], seeds: list[int]) -> str:
    by_case: dict[str, list[dict]] = {}
    for r in results:
        by_case.setdefault(r["case"], []).append(r)
    rows = [
        "| case | solved | steps to solve | wall s | greedy return (100 ep.) |",
        "| --- | :---: | ---: | ---: | ---: |",
    ]
    for case in CASES:
        runs = [r for r in by_case.get(case, []) if "error" not in r]
        if case not in by_case:
            continue
        solved = [r for r in runs if r["solved"]]
        steps = [r["steps"] for r in solved]
        rows.append(
            f"| {case} | {len(solved)}/{len(by_case[case])} | {median_range(steps, ',')} | "
            f"{median_range([r['seconds'] for r in runs], '.1f')} | {median_range([r['greedy'] for r in runs], '.1f')} |"
        )
    return "\n".join(rows)


def checks(results: list[dict]) -> list[str]:
    """The issue's targets, each PASS, FAIL or n/a."""
    runs = {}
    for r in results:
        if "error" not in r:
            runs.setdefault(r["case"], []).append(r)
    out = []

    def verdict(ok) -> str:
        return "n/a" if ok is None else ("PASS" if ok else "FAIL")

    ppo = runs.get("ppo-netc", [])
    ok = None
    if ppo:
        med_steps = statistics.median(r["steps"] if r["solved"] else float("inf") for r in ppo)
        ok = med_steps <= PPO_STEPS and statistics.median(r["greedy"] for r in ppo) >= SOLVED
    out.append(f"PPO (netc) solves in <= {PPO_STEPS:,} steps, greedy >= {SOLVED:.0f} (medians): {verdict(ok)}")
    dqn = runs.get("dqn-netc", [])
    good = sum(r["greedy"] >= SOLVED for r in dqn)
    out.append(
        f"DQN (netc) greedy >= {SOLVED:.0f} within {DQN_STEPS:,} steps, 2 of 3 seeds: "
        f"{verdict(None if not dqn else good >= min(2, len(dqn)))} ({good}/{len(dqn)})"
    )
    ort = runs.get("dqn-onnxruntime", [])
    if ort and dqn:
        spread = [r["greedy"] for r in dqn]
        median = statistics.median(r["greedy"] for r in ort)
        out.append(
            f"DQN onnxruntime greedy median {median:.1f}, torch seeds {min(spread):.1f}-{max(spread):.1f} "
            f"(at least the torch spread's low end: {verdict(median >= min(spread))})"
        )
    for algo in ("ppo", "dqn"):
        ours = {r["seed"]: r for r in runs.get(f"{algo}-netc", [])}
        theirs = {r["seed"]: r for r in runs.get(f"{algo}-torch", [])}
        seeds = sorted(set(ours) & set(theirs))
        if seeds:
            # seed by seed: one trajectory (same weights, same steps), two modules
            ratios = [ours[k]["seconds"] / theirs[k]["seconds"] for k in seeds]
            same = all(theirs[k].get("same initial weights") and ours[k]["steps"] == theirs[k]["steps"] for k in seeds)
            same = same and all(r.get("repeatable", True) for k in seeds for r in (ours[k], theirs[k]))
            ratio = statistics.median(ratios)
            out.append(
                f"{algo.upper()} netc / hand-written wall time, median of the seeds' ratios: {ratio:.3f} "
                f"({min(ratios):.3f}-{max(ratios):.3f}; <= 1.1: {verdict(ratio <= 1.1)}); "
                f"same initial weights and steps in every run: {same}"
            )
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--cases", default=",".join(CASES), help="comma-separated, of: " + ", ".join(CASES))
    p.add_argument("--json", type=Path, help="also write every run's result here")
    p.add_argument("--timeout", type=float, default=1800, help="seconds a run may take")
    p.add_argument("--repeats", type=int, default=2, help="runs of the netc and hand-written cases (fastest kept)")
    p.add_argument("--ppo-steps", type=int, default=PPO_STEPS, help=f"PPO's budget ({PPO_STEPS:,})")
    p.add_argument("--dqn-steps", type=int, default=DQN_STEPS, help=f"DQN's budget ({DQN_STEPS:,})")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    p.add_argument("--steps", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.seed, args.steps)))
        return 0
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = sorted(set(cases) - set(CASES))
    if unknown:
        p.error(f"unknown cases: {', '.join(unknown)}")
    started = time.perf_counter()
    results = []
    for seed in args.seeds:
        for repeat in range(args.repeats):
            # the compiled and hand-written runs again, in the other order: each keeps its fastest
            todo = cases if repeat == 0 else [c for c in cases if c in TIMED]
            for case in todo if repeat % 2 == 0 else todo[::-1]:
                steps = args.ppo_steps if case.startswith("ppo") else args.dqn_steps
                result = run_worker(case, seed, steps, args.timeout)
                result["repeat"] = repeat
                results.append(result)
                print(json.dumps(result), file=sys.stderr, flush=True)
                if args.json:
                    args.json.write_text(json.dumps(results, indent=1))
    results = collapse(results)
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"CartPole-v1, seeds {', '.join(map(str, args.seeds))}; medians (range); load average at the end {load}; ")
    print(f"the whole run took {time.perf_counter() - started:.0f} s\n")
    print(table(results, args.seeds))
    print()
    for line in checks(results):
        print(f"- {line}")
    errors = [r for r in results if "error" in r]
    for r in errors:
        print(f"- {r['case']} seed {r['seed']}: {r['error']}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
