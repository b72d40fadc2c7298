"""Stable-Baselines3's PPO with a network compiled by netc as the policy's feature extractor.

For those who already train with SB3: `NetcFeatures` wraps the module netc builds from a
spec as an SB3 `BaseFeaturesExtractor`, given through `policy_kwargs`. SB3 puts its policy
and value heads on the spec's features (`--net-arch 64,64` adds hidden layers between) and
trains everything. RL zoo's CartPole-v1 settings, as ppo.py; training stops once the last
100 episodes' mean return reaches the environment's threshold.

    python examples/rl/sb3_ppo.py --spec examples/rl/cartpole_features.net --seed 0 -o sb3_ppo.zip
    python examples/rl/sb3_ppo.py --eval sb3_ppo.zip         # 100 greedy episodes

The spec's network takes the observations [N, ...] and returns features [N, F].

In your own code, the whole of it is:

    policy_kwargs = dict(features_extractor_class=NetcFeatures,
                         features_extractor_kwargs=dict(spec="cartpole_features.net"))
    model = PPO("MlpPolicy", "CartPole-v1", policy_kwargs=policy_kwargs)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import rl_common as rl

try:
    from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
except ImportError:  # the module still imports without SB3; main() names the pip command
    BaseFeaturesExtractor = object

SPEC = rl.HERE / "cartpole_features.net"
# RL zoo's hyperparameters for PPO on CartPole-v1 (ppo.py's defaults)
ZOO = dict(n_steps=32, batch_size=256, gae_lambda=0.8, gamma=0.98, n_epochs=20, ent_coef=0.0)
ENVS, LR, CLIP = 8, 1e-3, 0.2


def require_sb3():
    try:
        import stable_baselines3
    except ImportError as exc:
        raise rl.MissingExtra("Stable-Baselines3 is not installed: pip install 'netc[sb3]'") from exc
    return stable_baselines3


class NetcFeatures(BaseFeaturesExtractor):
    """The network of a `.net` spec as SB3's feature extractor: observations [N, ...] in,
    features [N, F] out; F comes from the spec."""

    def __init__(self, observation_space, spec: str, network: str | None = None):
        compiled = rl.compile_spec(Path(spec), network)
        width = check_extractor(compiled, observation_space)
        super().__init__(observation_space, features_dim=width)
        self.net = compiled.torch()

    def forward(self, observations):
        return self.net(observations)


def check_extractor(compiled, observation_space, name: str = "this policy") -> int:
    """The features' width, after checking the spec against the observation space."""
    want = rl.Interface(name, tuple(int(d) for d in observation_space.shape), 0)
    return rl.check_features(compiled, want)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sb3_ppo.py", description=__doc__.splitlines()[0])
    rl.common_arguments(p, SPEC, steps=100_000)
    p.add_argument("--net-arch", default="", help="SB3's hidden layers after the features, e.g. 64,64 (default none)")
    return p


class SolvedCallback:
    """Stops training once the last 100 episodes' mean return reaches `threshold`; shows
    progress. Built on first use as an SB3 `BaseCallback`."""

    @staticmethod
    def make(threshold: float, progress: rl.Progress):
        from stable_baselines3.common.callbacks import BaseCallback

        class Solved(BaseCallback):
            solved_at = None

            def _on_step(self) -> bool:
                episodes = self.model.ep_info_buffer
                mean = float(np.mean([e["r"] for e in episodes])) if episodes else float("nan")
                if self.n_calls % 4 == 0:
                    progress.update(self.num_timesteps, return_100=f"{mean:.1f}")
                if len(episodes) == episodes.maxlen and mean >= threshold:
                    self.solved_at = self.num_timesteps
                    return False
                return True

        return Solved()


def train(args: argparse.Namespace, policy_kwargs: dict | None) -> tuple[object, dict]:
    """SB3's PPO with RL zoo's settings on `args.env`, at most `args.steps` steps (whole
    rollouts); `policy_kwargs` None is SB3's default MlpPolicy. The model and the summary."""
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    torch.set_num_threads(args.threads)
    probe = rl.make_env(args.env)
    threshold = rl.solved_threshold(probe)
    name = rl.interface(probe).env
    probe.close()
    envs = make_vec_env(args.env, n_envs=ENVS, seed=args.seed)
    rollout = ENVS * ZOO["n_steps"]
    budget = args.steps // rollout * rollout  # whole rollouts, as ppo.py

    model = PPO(
        "MlpPolicy",
        envs,
        learning_rate=lambda remaining: LR * remaining,
        clip_range=lambda remaining: CLIP * remaining,
        policy_kwargs=policy_kwargs,
        seed=args.seed,
        device="cpu",
        **ZOO,
    )
    progress = rl.Progress(budget, "SB3 PPO", args.quiet)
    callback = SolvedCallback.make(threshold, progress)
    try:
        model.learn(total_timesteps=budget, callback=callback)
    finally:
        seconds = progress.close()
    episodes = model.ep_info_buffer
    return model, {
        "env": name,
        "steps": model.num_timesteps,
        "solved": f"yes, at step {callback.solved_at:,}" if callback.solved_at else "no",
        "last 100 training returns": float(np.mean([e["r"] for e in episodes])) if episodes else float("nan"),
        "wall time s": seconds,
    }


def greedy(model):
    return lambda obs: model.predict(obs, deterministic=True)[0]


def main(args: argparse.Namespace) -> int:
    rl.require_gymnasium()
    require_sb3()
    if args.output is not None and args.output.suffix.lower() != ".zip":
        raise rl.Unfit(f"cannot save {args.output}: SB3 saves a .zip file")
    if args.eval is not None:
        from stable_baselines3 import PPO

        if not args.eval.is_file():
            raise rl.Unfit(f"no such agent file: {args.eval}")
        try:
            model = PPO.load(args.eval, device="cpu")
        except rl.Unfit:  # the spec the agent names no longer compiles, or no longer fits
            raise
        except Exception as exc:
            raise rl.Unfit(f"cannot load {args.eval}: {type(exc).__name__}: {exc}") from None
        rl.report_evaluation(rl.greedy_returns(greedy(model), args.env, args.episodes, rl.EVAL_SEED + 1000 * args.seed))
        return rl.EXIT_OK
    compiled = rl.compile_spec(args.spec, args.network)
    env = rl.make_env(args.env)
    check_extractor(compiled, env.observation_space, args.env)
    rl.interface(env)  # PPO here, as ppo.py, for discrete actions
    env.close()
    try:
        arch = [int(w) for w in args.net_arch.split(",") if w.strip()]
    except ValueError:
        raise rl.Unfit(f"--net-arch takes layer widths separated by commas, not {args.net_arch!r}") from None
    policy_kwargs = dict(
        features_extractor_class=NetcFeatures,
        # an absolute path: the saved agent names the spec, to rebuild its network on load
        features_extractor_kwargs=dict(spec=str(args.spec.resolve()), network=args.network),
        net_arch=arch,
    )
    print(f"{compiled.name}: {compiled.parameters:,} parameters as the feature extractor of SB3's PPO on {args.env}")
    model, summary = train(args, policy_kwargs)
    if args.output is not None:
        try:
            model.save(args.output)
        except OSError as exc:
            raise rl.Unfit(f"cannot write {args.output}: {exc.strerror or exc}") from None
        summary["saved"] = str(args.output)
    rl.finish(summary)
    return rl.EXIT_OK


if __name__ == "__main__":
    sys.exit(rl.run(main, parser()))
