"""DQN whose Q-network is a `.net` spec compiled by netc, on a gymnasium environment.

Standard DQN (Mnih et al. 2015): a replay buffer, a target network, epsilon-greedy
exploration and the mean squared TD error, with RL zoo's CartPole-v1 settings. Training
stops early once solved: every `--check-every` steps the greedy policy plays 10 episodes
and, when they reach the environment's threshold (CartPole-v1: 475), 100 more; their mean
at or over it is solved. Those episodes are not training steps.

    python examples/rl/dqn.py --spec examples/rl/cartpole_q.net --seed 0 -o dqn.pt
    python examples/rl/dqn.py --eval dqn.pt                  # 100 greedy episodes
    python examples/rl/dqn.py --runtime onnxruntime -o dqn.npz

`--runtime torch` trains netc's PyTorch module with torch's autograd and Adam.
`--runtime onnxruntime` needs no torch: acting and targets run the spec's ONNX model, and
the gradient comes from netc's backward graph of the loss spec (`--loss-spec`, whose
network calls the Q-network's block: cartpole_dqn_loss.net), with Adam in numpy.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections import deque
from collections.abc import Callable
from pathlib import Path

import numpy as np
import rl_common as rl

SPEC = rl.HERE / "cartpole_q.net"
LOSS_SPEC = rl.HERE / "cartpole_dqn_loss.net"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dqn.py", description=__doc__.splitlines()[0])
    rl.common_arguments(p, SPEC, steps=150_000)
    p.add_argument("--runtime", choices=("torch", "onnxruntime"), default="torch", help="what trains (default torch)")
    p.add_argument("--loss-spec", type=Path, help=f"onnxruntime: the loss network (default {LOSS_SPEC.name})")
    hp = p.add_argument_group("hyperparameters (RL zoo's DQN for CartPole-v1)")
    hp.add_argument("--lr", type=rl.positive(float), default=2.3e-3, help="Adam's learning rate")
    hp.add_argument("--batch", type=rl.positive(int), default=64, help="minibatch size")
    hp.add_argument("--buffer", type=rl.positive(int), default=100_000, help="replay buffer size")
    hp.add_argument("--learning-starts", type=int, default=1_000, help="steps of experience before the first update")
    hp.add_argument("--gamma", type=float, default=0.99, help="discount")
    hp.add_argument("--train-freq", type=rl.positive(int), default=256, help="steps between bursts of updates")
    hp.add_argument("--gradient-steps", type=rl.positive(int), default=128, help="updates per burst")
    hp.add_argument("--target-update", type=rl.positive(int), default=10, help="steps between target syncs")
    hp.add_argument("--exploration-steps", type=rl.positive(int), default=8_000, help="steps epsilon decays over")
    hp.add_argument("--eps-start", type=float, default=1.0, help="epsilon at first")
    hp.add_argument("--eps-end", type=float, default=0.04, help="epsilon after the decay")
    hp.add_argument("--max-grad-norm", type=rl.positive(float), default=10.0, help="gradient norm clip")
    hp.add_argument("--check-every", type=rl.positive(int), default=5_000, help="steps between greedy checks")
    return p


# ---------------------------------------------------------------- the two runtimes


class TorchQ:
    """The Q-network and its target as torch modules, trained with autograd and Adam."""

    def __init__(self, make_model: Callable, seed: int, lr: float, max_grad_norm: float, threads: int = 1):
        torch = rl.require_torch()
        torch.set_num_threads(threads)
        torch.manual_seed(seed)  # the weights: torch.nn's initialization, from this seed
        self.torch = torch
        self.online, self.target = make_model(), make_model()
        self.target.load_state_dict(self.online.state_dict())
        self.online.eval(), self.target.eval()  # acting and targets use the inference forward
        self.optimizer = rl.adam(torch, self.online.parameters(), lr=lr)
        self.max_grad_norm = max_grad_norm

    def q_values(self, obs: np.ndarray) -> np.ndarray:
        with self.torch.no_grad():
            return self.online(self.torch.as_tensor(obs, dtype=self.torch.float32)).numpy()

    def target_max(self, obs: np.ndarray) -> np.ndarray:
        """max_a Q_target(obs, a)."""
        with self.torch.no_grad():
            return self.target(self.torch.as_tensor(obs, dtype=self.torch.float32)).amax(1).numpy()

    def sync(self) -> None:
        self.target.load_state_dict(self.online.state_dict())

    def update(self, obs: np.ndarray, actions: np.ndarray, targets: np.ndarray) -> float:
        """One Adam step on the mean squared TD error; the loss before the step."""
        torch = self.torch
        self.online.train()
        q = self.online(torch.as_tensor(obs, dtype=torch.float32))
        q_a = q.gather(1, torch.as_tensor(actions, dtype=torch.int64)[:, None])[:, 0]
        loss = torch.nn.functional.mse_loss(q_a, torch.as_tensor(targets, dtype=torch.float32))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.online.parameters(), self.max_grad_norm)
        self.optimizer.step()
        self.online.eval()
        return loss.item()

    def state(self) -> dict[str, np.ndarray]:
        return {k: v.detach().cpu().numpy().copy() for k, v in self.online.state_dict().items()}

    def load(self, arrays: dict[str, np.ndarray]) -> None:
        torch = self.torch
        self.online.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in arrays.items()}, strict=False)
        self.sync()


class Adam:
    """torch.optim.Adam's update (same bias correction and epsilon placement), in numpy."""

    def __init__(self, lr: float, betas=(0.9, 0.999), eps: float = 1e-8):
        self.lr, (self.b1, self.b2), self.eps = lr, betas, eps
        self.t, self.m, self.v = 0, {}, {}

    def step(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> None:
        self.t += 1
        step_size = self.lr / (1 - self.b1**self.t)
        root_bias2 = math.sqrt(1 - self.b2**self.t)
        for name, g in grads.items():
            m = self.m[name] = self.b1 * self.m.get(name, 0) + (1 - self.b1) * g
            v = self.v[name] = self.b2 * self.v.get(name, 0) + (1 - self.b2) * g * g
            params[name] = params[name] - step_size * m / (np.sqrt(v) / root_bias2 + self.eps)


def clip_grad_norm(grads: dict[str, np.ndarray], max_norm: float) -> None:
    """torch.nn.utils.clip_grad_norm_: scale every gradient by max_norm / total norm when over."""
    total = math.sqrt(sum(float(np.sum(g.astype(np.float64) ** 2)) for g in grads.values()))
    coef = max_norm / (total + 1e-6)
    if coef < 1:
        for name in grads:
            grads[name] = grads[name] * np.float32(coef)


def forward_model(compiled):
    """The spec's ONNX inference model with its weights as inputs (named as the state_dict),
    so that the online and the target network are one session fed two sets of weights."""
    from onnx import helper

    model = compiled.onnx_model(optimize=False)
    proto = model.proto
    for name, array in model.weights.items():
        elem = helper.np_dtype_to_tensor_dtype(array.dtype)
        proto.graph.input.append(helper.make_tensor_value_info(name, elem, array.shape))
    return proto


class OnnxQ:
    """The same DQN through onnxruntime, numpy only: the Q-network's inference model acts and
    computes targets; the loss spec's training model (netc's backward graph) gives the loss
    and `grad.<parameter>`; Adam and the gradient clip run in numpy."""

    def __init__(self, compiled, loss_compiled, seed: int, lr: float, max_grad_norm: float, threads: int = 1):
        """`loss_compiled` None makes a Q-function that acts but does not train (for --eval)."""
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = lambda proto: ort.InferenceSession(
            proto.SerializeToString(), options, providers=["CPUExecutionProvider"]
        )
        self.forward = self.session(forward_model(compiled))
        self.obs_name = compiled.graph.inputs[0]
        self.weight_names = [i.name for i in self.forward.get_inputs()][1:]
        self.online = compiled.weights(seed=seed)  # torch.nn's initial distributions, drawn in numpy
        self.target = dict(self.online)
        self.actions = compiled.graph.type_of(compiled.graph.outputs[0][1]).shape[1]
        self.adam = Adam(lr)
        self.max_grad_norm = max_grad_norm
        if loss_compiled is not None:
            _check_loss(compiled, loss_compiled)
            self._training_model(loss_compiled)

    def _training_model(self, loss_compiled) -> None:
        self.training = self.session(loss_compiled.onnx(backward=True))
        inputs = [i.name for i in self.training.get_inputs()]
        outputs = {o.name for o in self.training.get_outputs()}
        self.data_names = inputs[:3]  # observations, action mask, target
        self.state_names = [n for n in inputs[3:] if n in self.online]  # parameters and buffers
        masks = [n for n in inputs[3:] if n not in self.online]
        if masks:
            raise rl.Unfit(f"{loss_compiled.file}: dropout ({', '.join(masks)}) is not trained here; leave it out")
        # the training model's outputs: the loss, every parameter's gradient, and the next
        # running statistics of each batchnorm (`<buffer>.next`)
        self.param_names = [n for n in self.state_names if f"grad.{n}" in outputs]
        self.buffer_names = [n for n in self.state_names if f"{n}.next" in outputs]
        self.counters = [n for n in self.online if n.endswith(".num_batches_tracked")]
        self.fetch = [loss_compiled.graph.outputs[0][0]]
        self.fetch += [f"grad.{n}" for n in self.param_names] + [f"{n}.next" for n in self.buffer_names]

    def _run(self, weights: dict, obs: np.ndarray) -> np.ndarray:
        feeds = {self.obs_name: np.asarray(obs, dtype=np.float32)}
        feeds.update((n, weights[n]) for n in self.weight_names)
        return self.forward.run(None, feeds)[0]

    def q_values(self, obs: np.ndarray) -> np.ndarray:
        return self._run(self.online, obs)

    def target_max(self, obs: np.ndarray) -> np.ndarray:
        return self._run(self.target, obs).max(1)

    def sync(self) -> None:
        self.target = dict(self.online)  # arrays are replaced, never changed in place

    def update(self, obs: np.ndarray, actions: np.ndarray, targets: np.ndarray) -> float:
        mask = np.zeros((len(actions), self.actions), dtype=np.float32)
        mask[np.arange(len(actions)), actions] = 1
        feeds = dict(zip(self.data_names, (obs.astype(np.float32), mask, targets.astype(np.float32))))
        feeds.update((n, self.online[n]) for n in self.state_names)
        loss, *results = self.training.run(self.fetch, feeds)
        grads = dict(zip(self.param_names, results))
        clip_grad_norm(grads, self.max_grad_norm)
        self.adam.step(self.online, grads)
        self.online.update(zip(self.buffer_names, results[len(grads) :]))
        for name in self.counters:  # torch counts batchnorm's training batches; nothing reads it
            self.online[name] = self.online[name] + 1
        return float(loss)

    def state(self) -> dict[str, np.ndarray]:
        return dict(self.online)

    def load(self, arrays: dict[str, np.ndarray]) -> None:
        self.online = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
        self.sync()


def _check_loss(compiled, loss_compiled) -> None:
    """The loss network must take (observations, action mask [N, actions], target [N]),
    return a scalar, and have exactly the Q-network's parameters, by name and shape."""
    from netc.compiler.weights import expected_tensors

    g, q = loss_compiled.graph, compiled.graph
    problems = []
    obs_type = q.node(q.inputs[0]).outputs[0]
    actions = q.type_of(q.outputs[0][1]).shape[1]
    want = [("observations", obs_type.shape[1:]), ("action mask", (actions,)), ("target", ())]
    if len(g.inputs) != 3:
        problems.append(f"it takes {len(g.inputs)} inputs; the loss takes observations, action mask and target")
    else:
        for name, (role, rest) in zip(g.inputs, want):
            shape = g.node(name).outputs[0].shape
            if tuple(shape[1:]) != tuple(rest) or isinstance(shape[0], int):
                problems.append(f"input `{name}` ({role}) is {rl.shape_text(shape)}, not {rl.shape_text(('N', *rest))}")
    if len(g.outputs) != 1 or g.type_of(g.outputs[0][1]).shape != ():
        problems.append("it must return one scalar, the loss")
    ours = {k: tuple(t.shape) for k, t in expected_tensors(g).items()}
    theirs = {k: tuple(t.shape) for k, t in expected_tensors(q).items()}
    if ours != theirs:
        missing, extra = sorted(set(theirs) - set(ours)), sorted(set(ours) - set(theirs))
        differ = sorted(k for k in set(ours) & set(theirs) if ours[k] != theirs[k])
        for label, names in (("lacks", missing), ("adds", extra), ("has other shapes for", differ)):
            if names:
                problems.append(f"it {label} the Q-network's parameters {', '.join(names[:5])}")
        problems.append("its network should call the Q-network's block, as cartpole_dqn_loss.net calls qnet")
    if problems:
        lines = "\n".join(f"  - {p}" for p in problems)
        raise rl.Unfit(
            f"{loss_compiled.file} is not a Q-learning loss of {compiled.file}:\n{lines}\nnothing was trained"
        )


# ---------------------------------------------------------------- DQN


class ReplayBuffer:
    """The last `size` transitions, in preallocated numpy arrays (a ring)."""

    def __init__(self, size: int, obs_shape: tuple[int, ...]):
        self.obs = np.zeros((size, *obs_shape), dtype=np.float32)
        self.next_obs = np.zeros((size, *obs_shape), dtype=np.float32)
        self.actions = np.zeros(size, dtype=np.int64)
        self.rewards = np.zeros(size, dtype=np.float32)
        self.terminated = np.zeros(size, dtype=np.float32)  # 1 where the episode ended (not truncated)
        self.size, self.count = size, 0

    def add(self, obs, action: int, reward: float, next_obs, terminated: bool) -> None:
        i = self.count % self.size
        self.obs[i], self.actions[i], self.rewards[i] = obs, action, reward
        self.next_obs[i], self.terminated[i] = next_obs, terminated
        self.count += 1


def greedy(q) -> Callable[[np.ndarray], np.ndarray]:
    return lambda obs: q.q_values(obs).argmax(1)


def train(q, args: argparse.Namespace) -> dict:
    """Trains `q` (TorchQ or OnnxQ) for at most `args.steps` environment steps; the summary."""
    env = rl.make_env(args.env)
    want = rl.interface(env)
    threshold = rl.solved_threshold(env)
    rng = np.random.default_rng(args.seed)  # exploration and minibatches
    buffer = ReplayBuffer(args.buffer, want.observation)
    obs, _ = env.reset(seed=args.seed)
    episode_return, returns, losses = 0.0, deque(maxlen=100), deque(maxlen=args.gradient_steps)
    episodes, solved_at, best_check = 0, None, None
    progress = rl.Progress(args.steps, "DQN", args.quiet)
    step = 0
    try:
        for step in range(1, args.steps + 1):
            fraction = min(1.0, (step - 1) / args.exploration_steps)
            epsilon = args.eps_start + fraction * (args.eps_end - args.eps_start)
            if rng.random() < epsilon:
                action = int(rng.integers(want.actions))
            else:
                action = int(q.q_values(obs[None])[0].argmax())
            next_obs, reward, terminated, truncated, _ = env.step(action)
            buffer.add(obs, action, reward, next_obs, terminated)
            obs, episode_return = next_obs, episode_return + reward
            if terminated or truncated:
                returns.append(episode_return)
                episodes, episode_return = episodes + 1, 0.0
                obs, _ = env.reset()
            if step % args.target_update == 0:
                q.sync()
            if step >= args.learning_starts and step % args.train_freq == 0:
                # The target network stays fixed through a burst: one forward gives every target.
                batches = rng.integers(0, min(buffer.count, buffer.size), (args.gradient_steps, args.batch))
                flat = batches.reshape(-1)
                next_max = q.target_max(buffer.next_obs[flat]).reshape(batches.shape)
                targets = buffer.rewards[batches] + args.gamma * (1 - buffer.terminated[batches]) * next_max
                for i, b in enumerate(batches):
                    losses.append(q.update(buffer.obs[b], buffer.actions[b], targets[i]))
                if not np.isfinite(losses).all():
                    raise rl.Unfit(f"the loss is {losses[-1]} at step {step:,}: training diverged (try a lower --lr)")
            if step >= args.learning_starts and step % args.check_every == 0:
                check = _solved_check(q, args, threshold)
                best_check = check if best_check is None else max(best_check, check)
                if check >= threshold:
                    solved_at = step
                    break
            if step % 500 == 0:
                mean = f"{np.mean(returns):.1f}" if returns else "-"
                loss = f"{losses[-1]:.4f}" if losses else "-"
                progress.update(step, eps=f"{epsilon:.2f}", return_100=mean, loss=loss)
        progress.update(step)
    finally:
        seconds = progress.close()
    return {
        "env": want.env,
        "steps": step,
        "episodes": episodes,
        "solved": f"yes, at step {solved_at:,}" if solved_at else "no",
        "last 100 training returns": float(np.mean(returns)) if returns else float("nan"),
        "best greedy check": best_check if best_check is not None else float("nan"),
        "last loss": float(losses[-1]) if losses else float("nan"),
        "wall time s": seconds,
    }


def _solved_check(q, args, threshold: float) -> float:
    """The greedy policy's mean return over 10 episodes; when that reaches `threshold`, over
    100 (solved when that does too)."""
    seed = rl.CHECK_SEED + 1000 * args.seed
    mean = float(rl.greedy_returns(greedy(q), args.env, 10, seed).mean())
    if mean >= threshold:
        mean = float(rl.greedy_returns(greedy(q), args.env, 100, seed + 100).mean())
    return mean


# ---------------------------------------------------------------- the command


def build(args: argparse.Namespace, make_model: Callable | None = None):
    """The Q-function the arguments ask for; its spec checked against the environment.
    `make_model` (torch only) builds another torch module in place of the spec's."""
    compiled = rl.compile_spec(args.spec, args.network)
    env = rl.make_env(args.env)
    rl.check_q_network(compiled, rl.interface(env))
    env.close()
    if args.runtime == "onnxruntime":
        loss = args.loss_spec
        if loss is None and args.spec.resolve() == SPEC:
            loss = LOSS_SPEC
        if loss is None and args.eval is None:  # evaluating needs only the Q-network
            raise rl.Unfit(f"--runtime onnxruntime trains through a loss spec: give --loss-spec for {args.spec}")
        loss = loss and rl.compile_spec(loss)
        return compiled, OnnxQ(compiled, loss, args.seed, args.lr, args.max_grad_norm, args.threads)
    if args.loss_spec is not None:
        raise rl.Unfit("--loss-spec goes with --runtime onnxruntime (torch computes the loss itself)")
    make = make_model or compiled.torch
    return compiled, TorchQ(make, args.seed, args.lr, args.max_grad_norm, args.threads)


def main(args: argparse.Namespace) -> int:
    rl.require_gymnasium()
    if args.output is not None:
        rl.check_output(args.output)
    compiled, q = build(args)
    if args.eval is not None:
        q.load(rl.load_arrays(compiled, args.eval))
        rl.report_evaluation(rl.greedy_returns(greedy(q), args.env, args.episodes, rl.EVAL_SEED + 1000 * args.seed))
        return rl.EXIT_OK
    print(f"{compiled.name}: {compiled.parameters:,} parameters, DQN on {args.env} through {args.runtime}")
    summary = train(q, args)
    if args.output is not None:
        rl.save_arrays(q.state(), args.output)
        summary["saved"] = str(args.output)
    rl.finish(summary)
    return rl.EXIT_OK


if __name__ == "__main__":
    sys.exit(rl.run(main, parser()))
