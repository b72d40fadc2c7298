"""PPO whose actor-critic is a `.net` spec compiled by netc, on vectorized gymnasium environments.

PPO (Schulman et al. 2017) as Stable-Baselines3 implements it: rollouts from several
environments at once, GAE, the clipped surrogate objective, a value loss and an entropy
bonus, several epochs of minibatches per rollout, a gradient norm clip. The defaults are RL
zoo's CartPole-v1 settings: 8 environments x 32 steps, 20 epochs, minibatch 256, learning
rate 1e-3 and clip 0.2 both decaying linearly to 0 over `--steps`, gamma 0.98, lambda 0.8.
Training stops once solved: the last 100 training episodes' mean return at or over the
environment's threshold (CartPole-v1: 475).

    python examples/rl/ppo.py --spec examples/rl/cartpole_actor_critic.net --seed 0 -o ppo.pt
    python examples/rl/ppo.py --eval ppo.pt                  # 100 greedy episodes

The spec's network takes the observations [N, ...] and returns the policy's logits
[N, actions] (log-probabilities, as log_softmax gives, do as well) and the value [N, 1];
whether the two heads share a trunk is the spec's choice.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections import deque
from collections.abc import Callable

import numpy as np
import rl_common as rl

SPEC = rl.HERE / "cartpole_actor_critic.net"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ppo.py", description=__doc__.splitlines()[0])
    rl.common_arguments(p, SPEC, steps=100_000)
    hp = p.add_argument_group("hyperparameters (RL zoo's PPO for CartPole-v1)")
    hp.add_argument("--envs", type=rl.positive(int), default=8, help="environments stepped together")
    hp.add_argument("--rollout", type=rl.positive(int), default=32, help="steps of each environment per rollout")
    hp.add_argument("--epochs", type=rl.positive(int), default=20, help="passes over each rollout")
    hp.add_argument("--minibatch", type=rl.positive(int), default=256, help="minibatch size")
    hp.add_argument("--lr", type=rl.positive(float), default=1e-3, help="Adam's learning rate, decaying linearly")
    hp.add_argument("--clip", type=rl.positive(float), default=0.2, help="the ratio clip, decaying linearly")
    hp.add_argument("--gamma", type=float, default=0.98, help="discount")
    hp.add_argument("--gae-lambda", type=float, default=0.8, help="GAE's lambda")
    hp.add_argument("--ent-coef", type=float, default=0.0, help="weight of the entropy bonus")
    hp.add_argument("--vf-coef", type=float, default=0.5, help="weight of the value loss")
    hp.add_argument("--max-grad-norm", type=rl.positive(float), default=0.5, help="gradient norm clip")
    hp.add_argument("--constant", action="store_true", help="keep the learning rate and clip constant")
    return p


class ActorCritic:
    """A module returning (logits, value) in the order `order` gives, read as a policy."""

    def __init__(self, module, order: tuple[int, int]):
        self.module, self.order = module, order

    def __call__(self, obs):
        out = self.module(obs)
        return out[self.order[0]], out[self.order[1]].reshape(-1)


def make_vector_env(env_id: str, count: int):
    """`count` environments stepped together; one that ends is reset in the same step, its
    last observation in `info["final_obs"]` (gymnasium's SAME_STEP autoreset)."""
    gym = rl.require_gymnasium()
    rl.make_env(env_id).close()  # a bad id fails here, with rl.make_env's message
    return gym.vector.SyncVectorEnv(
        [lambda: gym.make(env_id) for _ in range(count)], autoreset_mode=gym.vector.AutoresetMode.SAME_STEP
    )


def train(net: ActorCritic, args: argparse.Namespace) -> dict:
    """Trains `net` for at most `args.steps` environment steps (whole rollouts); the summary."""
    import torch
    from torch.distributions import Categorical

    probe = rl.make_env(args.env)
    threshold = rl.solved_threshold(probe)
    want = rl.interface(probe)
    probe.close()
    envs = make_vector_env(args.env, args.envs)
    params = list(net.module.parameters())
    optimizer = rl.adam(torch, params, lr=args.lr, eps=1e-5)
    rng = np.random.default_rng(args.seed)  # minibatch order; actions come from torch's generator
    E, T = args.envs, args.rollout
    batch = E * T
    updates = args.steps // batch
    obs_buf = torch.zeros((T, E, *want.observation))
    act_buf = torch.zeros((T, E), dtype=torch.int64)
    logp_buf, val_buf, rew_buf, done_buf = (torch.zeros((T, E)) for _ in range(4))

    obs = torch.as_tensor(envs.reset(seed=args.seed)[0], dtype=torch.float32)
    episode_returns, returns = np.zeros(E), deque(maxlen=100)
    episodes, steps, solved_at, losses = 0, 0, None, {}
    progress = rl.Progress(updates * batch, "PPO", args.quiet)
    try:
        for update in range(updates):
            net.module.eval()
            for t in range(T):
                with torch.no_grad():
                    logits, value = net(obs)
                    dist = Categorical(logits=logits, validate_args=False)
                    action = dist.sample()
                next_obs, reward, terminated, truncated, info = envs.step(action.numpy())
                episode_returns += reward  # the environment's rewards, before any bootstrap
                reward = reward.astype(np.float32)
                cut = truncated & ~terminated
                if cut.any():  # a time limit is not a terminal state: bootstrap from the last observation
                    final = torch.as_tensor(np.stack(info["final_obs"][cut]), dtype=torch.float32)
                    with torch.no_grad():
                        reward[cut] += args.gamma * net(final)[1].numpy()
                obs_buf[t], act_buf[t], logp_buf[t], val_buf[t] = obs, action, dist.log_prob(action), value
                rew_buf[t] = torch.as_tensor(reward)
                done = terminated | truncated
                done_buf[t] = torch.as_tensor(done, dtype=torch.float32)
                for i in np.flatnonzero(done):
                    returns.append(episode_returns[i])
                    episode_returns[i], episodes = 0.0, episodes + 1
                obs = torch.as_tensor(next_obs, dtype=torch.float32)
            steps += batch
            with torch.no_grad():
                last_value = net(obs)[1]
            advantages = gae(rew_buf, val_buf, done_buf, last_value, args.gamma, args.gae_lambda)
            # SB3's schedule: what remains of the budget after this rollout
            remaining = 1.0 if args.constant else 1 - steps / (updates * batch)
            for group in optimizer.param_groups:
                group["lr"] = args.lr * remaining
            rollout = (obs_buf, act_buf, logp_buf, advantages, advantages + val_buf)  # returns: A + V
            losses = optimize(net, optimizer, params, rng, args, args.clip * remaining, rollout)
            if not math.isfinite(losses["loss"]):
                raise rl.Unfit(f"the loss is {losses['loss']} at step {steps:,}: training diverged (try a lower --lr)")
            mean = float(np.mean(returns)) if returns else float("nan")
            progress.update(steps, return_100=f"{mean:.1f}", loss=f"{losses['loss']:.4f}")
            if len(returns) == returns.maxlen and mean >= threshold:
                solved_at = steps
                break
    finally:
        seconds = progress.close()
        envs.close()
    return {
        "env": want.env,
        "steps": steps,
        "episodes": episodes,
        "solved": f"yes, at step {solved_at:,}" if solved_at else "no",
        "last 100 training returns": float(np.mean(returns)) if returns else float("nan"),
        "last loss": losses.get("loss", float("nan")),
        "last value loss": losses.get("value_loss", float("nan")),
        "last entropy": losses.get("entropy", float("nan")),
        "wall time s": seconds,
    }


def gae(rewards, values, dones, last_value, gamma: float, lam: float):
    """Generalized advantage estimates [T, E]; `dones[t]` marks an episode that ended at step t."""
    import torch

    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(last_value)
    for t in reversed(range(len(rewards))):
        next_value = last_value if t == len(rewards) - 1 else values[t + 1]
        alive = 1.0 - dones[t]
        delta = rewards[t] + gamma * next_value * alive - values[t]
        running = delta + gamma * lam * alive * running
        advantages[t] = running
    return advantages


def optimize(net, optimizer, params, rng, args, clip: float, rollout) -> dict:
    """`args.epochs` passes of minibatches over the rollout (observations, actions, their
    log-probabilities, advantages, returns: each [T, E, ...]); the last minibatch's losses."""
    import torch
    from torch.distributions import Categorical

    obs, actions, old_logp, advantages, returns = (x.flatten(0, 1) for x in rollout)
    net.module.train()
    size = len(actions)
    for _ in range(args.epochs):
        order = torch.as_tensor(rng.permutation(size))
        for start in range(0, size, args.minibatch):
            i = order[start : start + args.minibatch]
            logits, value = net(obs[i])
            dist = Categorical(logits=logits, validate_args=False)
            logp = dist.log_prob(actions[i])
            adv = advantages[i]
            if len(i) > 1:
                adv = (adv - adv.mean()) / (adv.std() + 1e-8)
            ratio = torch.exp(logp - old_logp[i])
            policy_loss = -torch.min(ratio * adv, ratio.clamp(1 - clip, 1 + clip) * adv).mean()
            value_loss = torch.nn.functional.mse_loss(value, returns[i])
            entropy = dist.entropy().mean()
            loss = policy_loss + args.vf_coef * value_loss - args.ent_coef * entropy
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, args.max_grad_norm)
            optimizer.step()
    net.module.eval()
    return {"loss": loss.item(), "value_loss": value_loss.item(), "entropy": entropy.item()}


def greedy(net: ActorCritic) -> Callable[[np.ndarray], np.ndarray]:
    """The most likely action of each observation."""
    import torch

    def act(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return net(torch.as_tensor(obs, dtype=torch.float32))[0].argmax(1).numpy()

    return act


def build(args: argparse.Namespace, make_model: Callable | None = None):
    """The compiled spec, checked against the environment, and the actor-critic to train.
    `make_model` builds another torch module in place of the spec's (one of the same outputs)."""
    compiled = rl.compile_spec(args.spec, args.network)
    env = rl.make_env(args.env)
    order = rl.check_actor_critic(compiled, rl.interface(env))
    env.close()
    torch = rl.require_torch()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)  # the weights (torch.nn's initialization) and the sampled actions
    module = (make_model or compiled.torch)()
    return compiled, ActorCritic(module, order)


def main(args: argparse.Namespace) -> int:
    rl.require_gymnasium()
    if args.output is not None:
        rl.check_output(args.output)
    compiled, net = build(args)
    if args.eval is not None:
        import torch

        arrays = rl.load_arrays(compiled, args.eval)
        net.module.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in arrays.items()}, strict=False)
        net.module.eval()
        rl.report_evaluation(rl.greedy_returns(greedy(net), args.env, args.episodes, rl.EVAL_SEED + 1000 * args.seed))
        return rl.EXIT_OK
    print(f"{compiled.name}: {compiled.parameters:,} parameters, PPO on {args.env}, {args.envs} environments")
    summary = train(net, args)
    if args.output is not None:
        state = {k: v.detach().cpu().numpy().copy() for k, v in net.module.state_dict().items()}
        rl.save_arrays(state, args.output)
        summary["saved"] = str(args.output)
    rl.finish(summary)
    return rl.EXIT_OK


if __name__ == "__main__":
    sys.exit(rl.run(main, parser()))
