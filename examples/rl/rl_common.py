"""What dqn.py, ppo.py and sb3_ppo.py share: loading a spec, checking it against an
environment, greedy evaluation, saving and loading agents, the progress bar, exit codes.

Nothing here imports torch: `dqn.py --runtime onnxruntime` runs with numpy and onnxruntime.

Exit codes, as the `netc` command's: 0 done; 1 a spec, agent file or environment that does
not fit (a message, never a traceback, and nothing trained); 2 usage; 5 a missing extra
(the message names the pip command).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
EXIT_OK, EXIT_SPEC, EXIT_USAGE, EXIT_EXTRA = 0, 1, 2, 5
# Seeds of evaluation episodes: far from the training environments' seeds (0, 1, ...), and
# those of the checks during training apart from those of `--eval`.
EVAL_SEED, CHECK_SEED = 1_000_000, 2_000_000


class Unfit(Exception):
    """A spec, agent file or environment that cannot be used: the message says why (exit 1)."""


class MissingExtra(Exception):
    """An optional dependency is missing: the message names the pip command (exit 5)."""


def run(main: Callable[[argparse.Namespace], int], parser: argparse.ArgumentParser, argv=None) -> int:
    """Parses the arguments and runs `main`, turning the expected failures into a message on
    stderr and an exit code."""
    args = parser.parse_args(argv)
    prog = parser.prog
    try:
        return main(args)
    except Unfit as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return EXIT_SPEC
    except MissingExtra as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return EXIT_EXTRA
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


def require_gymnasium():
    """The gymnasium module, or MissingExtra with the pip command."""
    try:
        import gymnasium
    except ImportError as exc:
        raise MissingExtra("gymnasium is not installed: pip install 'netc[rl]'") from exc
    return gymnasium


def require_torch():
    try:
        import torch
    except ImportError as exc:
        raise MissingExtra(
            "PyTorch is not installed: pip install 'netc[torch]' (or use --runtime onnxruntime)"
        ) from exc
    return torch


def adam(torch, params, **options):
    """torch.optim.Adam, fused where this torch has a fused CPU kernel (2.4 and later): the
    same update, a third less time per step on small networks."""
    params = list(params)
    try:
        return torch.optim.Adam(params, fused=True, **options)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, **options)


def positive(kind: type) -> Callable[[str], int | float]:
    """An argparse type: a number > 0."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be positive: {text}")
        return value

    return parse


def common_arguments(parser: argparse.ArgumentParser, spec: Path, steps: int) -> None:
    parser.add_argument("--spec", type=Path, default=spec, help=f"the network's .net file (default {spec.name})")
    parser.add_argument("--network", help="the network to compile, where the file defines several")
    parser.add_argument("--env", default="CartPole-v1", help="a gymnasium environment id (default CartPole-v1)")
    parser.add_argument("--steps", type=positive(int), default=steps, help=f"environment steps at most ({steps:,})")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights, environments and sampling")
    parser.add_argument("-o", "--output", type=Path, help="save the trained state_dict here (.pt, .safetensors, .npz)")
    parser.add_argument("--eval", type=Path, metavar="AGENT", help="evaluate a saved agent greedily; train nothing")
    parser.add_argument("--episodes", type=positive(int), default=100, help="episodes of --eval (default 100)")
    parser.add_argument("--threads", type=positive(int), default=1, help="CPU threads (default 1: small networks)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


# ---------------------------------------------------------------- specs


def compile_spec(path: Path, network: str | None = None):
    """The compiled network of a spec; Unfit with the rendered errors when it does not compile."""
    from netc.compiler import compile_file
    from netc.dsl.diagnostics import NetcError, SourceMap, render

    try:
        return compile_file(path, network)
    except NetcError as exc:
        sources = getattr(exc, "sources", None) or SourceMap()
        shown = "\n".join(render(d, sources) for d in exc.diagnostics)
        raise Unfit(f"cannot compile {path}:\n{shown}") from None
    except RecursionError:
        raise Unfit(f"cannot compile {path}: the spec nests too deeply") from None


def count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' * (n != 1)}"


def shape_text(shape: Sequence) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


@dataclass
class Interface:
    """What an environment asks of a network: the observation shape after the batch axis,
    and the number of discrete actions."""

    env: str
    observation: tuple[int, ...]
    actions: int


def interface(env) -> Interface:
    """The observation shape and action count of a gymnasium environment; Unfit for spaces
    these scripts do not handle (they act in discrete action spaces, on array observations)."""
    name = env.spec.id if env.spec is not None else type(env.unwrapped).__name__
    return spaces_interface(name, env.observation_space, env.action_space)


def spaces_interface(name: str, obs, act) -> Interface:
    """`interface` of an observation space and an action space."""
    gym = require_gymnasium()
    if not isinstance(obs, gym.spaces.Box):
        raise Unfit(f"{name}: observations are {obs}; these agents read array observations (a Box space)")
    if not isinstance(act, gym.spaces.Discrete):
        raise Unfit(f"{name}: actions are {act}; these agents choose among discrete actions (a Discrete space)")
    return Interface(name, tuple(int(d) for d in obs.shape), int(act.n))


def _batched(shape, rest: Sequence[int]) -> bool:
    """`shape` is [N, *rest] with N a symbolic batch dimension."""
    return len(shape) == len(rest) + 1 and not isinstance(shape[0], int) and tuple(shape[1:]) == tuple(rest)


def _check_input(compiled, want: Interface, problems: list[str]) -> None:
    g = compiled.graph
    need = shape_text(("N", *want.observation))
    if len(g.inputs) != 1:
        names = ", ".join(f"`{n}`" for n in g.inputs)
        problems.append(f"it takes {count(len(g.inputs), 'input')} ({names}); the agent feeds one, observations {need}")
        return
    t = g.node(g.inputs[0]).outputs[0]
    if t.dtype not in ("float32", "float64"):
        problems.append(f"input `{g.inputs[0]}` is {t.dtype}; observations are floats")
    if not _batched(t.shape, want.observation):
        problems.append(
            f"input `{g.inputs[0]}` is {shape_text(t.shape)}; the observations of {want.env} need {need} "
            "(N a symbolic batch dimension)"
        )


def _fail(compiled, want: Interface, problems: list[str], role: str) -> None:
    if problems:
        lines = "\n".join(f"  - {p}" for p in problems)
        raise Unfit(f"{compiled.file} does not fit {want.env} as {role}:\n{lines}\nnothing was trained")


def check_q_network(compiled, want: Interface) -> None:
    """A Q-network: one input [N, *observation], one output [N, actions]."""
    problems: list[str] = []
    _check_input(compiled, want, problems)
    g = compiled.graph
    if len(g.outputs) != 1:
        names = ", ".join(f"`{n}`" for n, _ in g.outputs)
        problems.append(
            f"it returns {count(len(g.outputs), 'output')} ({names}); a Q-network returns one, [N, {want.actions}]"
        )
    else:
        name, value = g.outputs[0]
        shape = g.type_of(value).shape
        if not _batched(shape, (want.actions,)):
            problems.append(
                f"output `{name}` is {shape_text(shape)}; {want.env} has {want.actions} actions, "
                f"so the Q-values need [N, {want.actions}]"
            )
    _fail(compiled, want, problems, "a Q-network")


def check_actor_critic(compiled, want: Interface) -> tuple[int, int]:
    """An actor-critic: one input [N, *observation], two outputs, the policy's logits
    [N, actions] (log-probabilities do as well) and the value [N, 1] or [N]. Returns the
    positions of (logits, value) among the outputs: told apart by shape, else in that order."""
    problems: list[str] = []
    _check_input(compiled, want, problems)
    g = compiled.graph
    head = f"the policy's logits [N, {want.actions}] and the value [N, 1]"
    order = (0, 1)
    if len(g.outputs) != 2:
        names = ", ".join(f"`{n}`" for n, _ in g.outputs)
        problems.append(f"it returns {count(len(g.outputs), 'output')} ({names}); an actor-critic returns two, {head}")
    else:
        shapes = [g.type_of(v).shape for _, v in g.outputs]
        is_policy = [_batched(s, (want.actions,)) for s in shapes]
        is_value = [_batched(s, (1,)) or _batched(s, ()) for s in shapes]
        if is_policy[0] and is_value[1]:
            order = (0, 1)
        elif is_policy[1] and is_value[0]:
            order = (1, 0)
        else:
            found = ", ".join(f"`{n}` {shape_text(s)}" for (n, _), s in zip(g.outputs, shapes))
            problems.append(f"it returns {found}; {want.env} has {want.actions} actions, so it needs {head}")
    _fail(compiled, want, problems, "an actor-critic")
    return order


def check_features(compiled, want: Interface) -> int:
    """A feature extractor: one input [N, *observation], one output [N, F]; returns F."""
    problems: list[str] = []
    _check_input(compiled, want, problems)
    g = compiled.graph
    width = 0
    if len(g.outputs) != 1:
        problems.append(f"it returns {count(len(g.outputs), 'output')}; a feature extractor returns one, [N, F]")
    else:
        name, value = g.outputs[0]
        shape = g.type_of(value).shape
        if len(shape) != 2 or isinstance(shape[0], int) or not isinstance(shape[1], int):
            problems.append(f"output `{name}` is {shape_text(shape)}; features are [N, F], F a number")
        else:
            width = shape[1]
    _fail(compiled, want, problems, "a feature extractor")
    return width


# ---------------------------------------------------------------- environments


def make_env(env_id: str, **kwargs):
    """One gymnasium environment; Unfit for an id gymnasium does not know."""
    gym = require_gymnasium()
    try:
        return gym.make(env_id, **kwargs)
    except gym.error.Error as exc:
        raise Unfit(f"cannot make environment {env_id!r}: {exc}") from None
    except ImportError as exc:  # an environment whose own dependencies are missing (box2d, ale-py)
        raise MissingExtra(f"environment {env_id!r} needs a package that is not installed: {exc}") from None


def solved_threshold(env) -> float:
    """Return at which the environment counts as solved (CartPole-v1: 475)."""
    threshold = env.spec.reward_threshold if env.spec is not None else None
    return float("inf") if threshold is None else float(threshold)


def greedy_returns(act: Callable[[np.ndarray], np.ndarray], env_id: str, episodes: int, seed: int) -> np.ndarray:
    """The returns of `episodes` episodes, each in its own environment (reset with seed
    `seed + i`), all stepped in lockstep so that `act` sees one batch of observations per
    step and answers one action per row."""
    envs = [make_env(env_id) for _ in range(episodes)]
    obs = [env.reset(seed=seed + i)[0] for i, env in enumerate(envs)]
    returns = np.zeros(episodes)
    live = list(range(episodes))
    while live:
        actions = act(np.stack([obs[i] for i in live]))
        still = []
        for i, a in zip(live, actions):
            obs[i], reward, terminated, truncated, _ = envs[i].step(int(a))
            returns[i] += reward
            if not (terminated or truncated):
                still.append(i)
        live = still
    for env in envs:
        env.close()
    return returns


def report_evaluation(returns: np.ndarray) -> None:
    """The evaluation's summary; `mean return: X` is the last line on stdout."""
    print(f"episodes: {len(returns)}, min {returns.min():.1f}, max {returns.max():.1f}, std {returns.std():.1f}")
    print(f"mean return: {returns.mean():.2f}")


# ---------------------------------------------------------------- agents on disk


AGENT_SUFFIXES = (".pt", ".pth", ".safetensors", ".npz")


def check_output(path: Path) -> None:
    """Fails before training, not after, when the agent could not be saved at `path`."""
    if path.suffix.lower() not in AGENT_SUFFIXES:
        raise Unfit(f"cannot save {path}: give a .pt, .safetensors or .npz file")
    if path.suffix.lower() in (".pt", ".pth"):
        require_torch()
    if not path.parent.resolve().is_dir():
        raise Unfit(f"cannot save {path}: no such folder {path.parent}")
    if path.is_dir():
        raise Unfit(f"cannot save {path}: it is a folder")


def save_arrays(arrays: dict[str, np.ndarray], path: Path) -> None:
    """A state_dict, name -> array, as `.pt` (torch.save of tensors), `.safetensors` or `.npz`."""
    suffix = path.suffix.lower()
    tmp = path.with_name(path.name + ".tmp")
    try:
        if suffix in (".pt", ".pth"):
            torch = require_torch()
            torch.save({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}, tmp)
        elif suffix == ".safetensors":
            from safetensors.numpy import save_file

            save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(tmp))
        elif suffix == ".npz":
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)
        else:
            raise Unfit(f"cannot save {path}: give a .pt, .safetensors or .npz file")
        os.replace(tmp, path)
    except OSError as exc:
        raise Unfit(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        if tmp.exists():
            tmp.unlink()


def load_arrays(compiled, path: Path) -> dict[str, np.ndarray]:
    """A saved agent's state_dict as numpy arrays, checked against the spec's parameters
    (netc's loader: every name and shape must match; the message lists those that do not)."""
    from netc.dsl.diagnostics import NetcError

    if not path.is_file():
        raise Unfit(f"no such agent file: {path}")
    try:
        return compiled.weights(str(path))
    except NetcError as exc:
        raise Unfit(f"cannot load {path} into {compiled.file}: {exc}") from None
    except Exception as exc:  # a corrupt file: the readers raise their own types
        raise Unfit(f"cannot read {path}: {type(exc).__name__}: {exc}") from None


# ---------------------------------------------------------------- progress


class Progress:
    """A progress bar on stderr (rich), or nothing with `quiet`; `update` takes the step
    count and the fields shown after the bar."""

    def __init__(self, total: int, label: str, quiet: bool = False):
        self.started = time.perf_counter()
        self.bar = None
        if quiet:
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as Bar

        columns = (TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"))
        self.bar = Bar(*columns, TimeElapsedColumn(), console=Console(stderr=True))
        self.task = self.bar.add_task(label, total=total, info="")
        self.bar.start()

    def update(self, steps: int, **fields) -> None:
        if self.bar is not None:
            info = "  ".join(f"{k.replace('_', ' ')} {v}" for k, v in fields.items())
            self.bar.update(self.task, completed=steps, info=info)

    def close(self) -> float:
        """Stops the bar; the seconds since it started."""
        if self.bar is not None:
            self.bar.stop()
        return time.perf_counter() - self.started


def finish(summary: dict) -> None:
    """The training summary, one `key: value` line each, on stdout."""
    for key, value in summary.items():
        if isinstance(value, float):
            value = f"{value:.6g}"
        elif isinstance(value, int) and not isinstance(value, bool):
            value = f"{value:,}"
        print(f"{key.replace('_', ' ')}: {value}")
