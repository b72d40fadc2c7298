"""Reinforcement learning from specs (examples/rl/, docs/rl.md): the CartPole specs, DQN
through torch and through onnxruntime, PPO, and a compiled network inside SB3's PPO.

The default suite runs each script for a few thousand steps and checks that training runs,
the loss is finite and the saved agent reloads; the full solves are marked slow (minutes:
`pytest -m slow tests/test_rl.py`) and measured by bench/rl.py.
"""

import math
import re
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, expectations
from netc.compiler import compile_file, compile_string
from netc.compiler.verify import verify

RL = ROOT / "examples" / "rl"
sys.path.insert(0, str(RL))
SPECS = sorted(RL.glob("*.net"))

import rl_common as rl  # noqa: E402  (examples/rl on the path first; it imports no gymnasium nor torch)


@pytest.fixture(scope="module")
def gym():
    """gymnasium: the tests of specs alone run without it, those that step environments skip."""
    return pytest.importorskip("gymnasium", reason="pip install 'netc[rl]'")


def run_script(capsys, module, *argv) -> tuple[int, str, str]:
    """Runs a script's main in this process (no torch import per test): exit code, stdout, stderr."""
    code = rl.run(module.main, module.parser(), [*map(str, argv), "--quiet"])
    out, err = capsys.readouterr()
    return code, out, err


def summary(out: str) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)


def last_mean_return(out: str) -> float:
    last = out.strip().splitlines()[-1]
    assert last.startswith("mean return: "), out
    return float(last.removeprefix("mean return: "))


def without(module: str) -> str:
    """`python -c` code that runs the script of its first argument as `python SCRIPT ARGS`
    would, with `import MODULE` failing."""
    return (
        f"import os, sys, runpy; sys.modules[{module!r}] = None; sys.argv = sys.argv[1:]; "
        "sys.path.insert(0, os.path.dirname(sys.argv[0])); runpy.run_path(sys.argv[0], run_name='__main__')"
    )


def cartpole() -> rl.Interface:
    return rl.Interface("CartPole-v1", (4,), 2)


# ---------------------------------------------------------------- specs


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_rl_spec_compiles_as_its_header_says(path):
    compiled = compile_file(path)
    verify(compiled.graph)
    assert compiled.warnings == []
    summary = compiled.summary()
    outputs = {o["name"]: o["shape"] for o in summary["outputs"]}
    for kind, text in expectations(path):
        assert kind == "expect"
        words = text.split(maxsplit=2)
        if words[0] == "parameters":
            assert compiled.parameters == int(words[1])
        elif words[0] == "output":
            assert outputs[words[1]] == [int(d) if d.isdigit() else d for d in re.findall(r"\w+", words[2])]


def test_the_specs_in_docs_rl_compile():
    from test_docs import extract_blocks

    blocks = [b for b in extract_blocks(ROOT / "docs" / "rl.md") if b[1] == "net"]
    assert blocks
    for block_id, _, text in blocks:
        assert compile_string(text, file=block_id).graph.outputs


def test_the_loss_spec_shares_the_q_networks_parameter_names():
    from netc.compiler.weights import expected_tensors

    q = expected_tensors(compile_file(RL / "cartpole_q.net").graph)
    loss = expected_tensors(compile_file(RL / "cartpole_dqn_loss.net").graph)
    assert {k: t.shape for k, t in q.items()} == {k: t.shape for k, t in loss.items()}


def test_the_nature_dqn_and_ppo_actor_critic_still_fit_their_environments():
    """examples/dqn.net reads Atari's 4 stacked 84x84 frames and scores 18 actions;
    examples/actor_critic.net a 32-d observation and 6 actions."""
    rl.check_q_network(compile_file(ROOT / "examples" / "dqn.net"), rl.Interface("Atari", (4, 84, 84), 18))
    order = rl.check_actor_critic(compile_file(ROOT / "examples" / "actor_critic.net"), rl.Interface("E", (32,), 6))
    assert order == (0, 1)


def test_specs_that_do_not_fit_are_told_what_does_not():
    with pytest.raises(rl.Unfit) as info:
        rl.check_q_network(compile_file(ROOT / "examples" / "dqn.net"), cartpole())
    text = str(info.value)
    assert "input `frames` is [N, 4, 84, 84]; the observations of CartPole-v1 need [N, 4]" in text
    assert "output `q_values` is [N, 18]; CartPole-v1 has 2 actions" in text
    assert text.endswith("nothing was trained")
    with pytest.raises(rl.Unfit, match=r"it returns 2 outputs \(`logits`, `value`\); a Q-network returns one"):
        rl.check_q_network(compile_file(RL / "cartpole_actor_critic.net"), cartpole())
    with pytest.raises(rl.Unfit, match=r"it returns 1 output \(`q_values`\); an actor-critic returns two"):
        rl.check_actor_critic(compile_file(RL / "cartpole_q.net"), cartpole())


def test_an_actor_critic_that_returns_the_value_first_is_read_by_shape(tmp_path):
    spec = tmp_path / "swapped.net"
    spec.write_text(
        "network swapped(obs: [N, 4]) {\n  v = obs -> linear(1)\n  p = obs -> linear(2)\n  return v, p\n}\n"
    )
    assert rl.check_actor_critic(compile_file(spec), cartpole()) == (1, 0)


def test_environments_with_continuous_actions_are_refused(gym):
    env = gym.make("Pendulum-v1")
    with pytest.raises(rl.Unfit, match="discrete actions"):
        rl.interface(env)


# ---------------------------------------------------------------- DQN

SHORT_DQN = (
    "--steps",
    2000,
    "--learning-starts",
    1000,
    "--check-every",
    1000,
    "--train-freq",
    128,
    "--gradient-steps",
    32,
)


@pytest.fixture(scope="module")
def dqn(gym):
    pytest.importorskip("torch")
    import dqn

    return dqn


def test_dqn_trains_and_the_saved_agent_reloads(dqn, capsys, tmp_path):
    agent = tmp_path / "dqn.pt"
    code, out, err = run_script(capsys, dqn, *SHORT_DQN, "-o", agent)
    assert code == 0, err
    result = summary(out)
    assert result["steps"] == "2,000"
    assert math.isfinite(float(result["last loss"]))
    assert math.isfinite(float(result["best greedy check"]))  # the greedy check ran at step 1,000 and 2,000
    code, out, err = run_script(capsys, dqn, "--eval", agent, "--episodes", 5)
    assert code == 0, err
    assert last_mean_return(out) >= 8  # CartPole ends after at least 8 steps


def test_dqn_is_reproducible(dqn, capsys):
    """One seed, one run: the same losses and returns twice."""
    argv = ("--steps", 1200, "--learning-starts", 1000, "--train-freq", 100, "--gradient-steps", 8, "--seed", 3)
    first = summary(run_script(capsys, dqn, *argv)[1])
    second = summary(run_script(capsys, dqn, *argv)[1])
    first.pop("wall time s"), second.pop("wall time s")
    assert first == second


BATCHNORM_Q = """
block qnet(obs) {
    return obs -> linear(32, bias=false) -> batchnorm -> relu -> linear(2)  # a bias before batchnorm has no gradient: Adam would move it by noise
}
network q(obs: [N, 4]) { return qnet(obs) }
"""
BATCHNORM_LOSS = """
import "q.net"
network loss(obs: [N, 4], action_mask: [N, 2], target: [N]) {
    return mse_loss(sum(qnet(obs) * action_mask, 1), target)
}
"""


@pytest.mark.parametrize("specs", ["cartpole", "batchnorm"])
def test_one_onnxruntime_update_equals_one_torch_update(dqn, tmp_path, specs):
    """The gradient netc derives for the loss spec, clipped, through numpy Adam, moves the
    weights as torch's autograd, clip_grad_norm_ and Adam do, from the same weights (and a
    batchnorm's running statistics as torch's training forward does)."""
    import torch

    if specs == "cartpole":
        q_spec, loss_spec = compile_file(RL / "cartpole_q.net"), compile_file(RL / "cartpole_dqn_loss.net")
    else:
        (tmp_path / "q.net").write_text(BATCHNORM_Q)
        (tmp_path / "loss.net").write_text(BATCHNORM_LOSS)
        q_spec, loss_spec = compile_file(tmp_path / "q.net"), compile_file(tmp_path / "loss.net")
    onnx_q = dqn.OnnxQ(q_spec, loss_spec, seed=0, lr=1e-3, max_grad_norm=1.0)
    torch_q = dqn.TorchQ(q_spec.torch, seed=0, lr=1e-3, max_grad_norm=1.0)
    torch_q.load(onnx_q.state())
    rng = np.random.default_rng(0)
    for _ in range(3):
        obs = rng.standard_normal((32, 4)).astype(np.float32)
        actions = rng.integers(0, 2, 32)
        targets = (rng.standard_normal(32) * 5).astype(np.float32)  # large enough for the clip to act
        assert onnx_q.update(obs, actions, targets) == pytest.approx(torch_q.update(obs, actions, targets), rel=1e-4)
    for name, value in torch_q.state().items():
        np.testing.assert_allclose(onnx_q.state()[name], value, rtol=1e-4, atol=1e-6, err_msg=name)
    obs = rng.standard_normal((8, 4)).astype(np.float32)
    np.testing.assert_allclose(onnx_q.q_values(obs), torch_q.q_values(obs), rtol=1e-4, atol=1e-5)
    del torch


def test_dqn_through_onnxruntime_needs_no_torch(gym, tmp_path):
    """A fresh process where `import torch` fails: training and evaluation still run."""
    agent = tmp_path / "dqn.npz"
    run = without("torch")
    script = str(RL / "dqn.py")
    argv = [*map(str, SHORT_DQN), "--runtime", "onnxruntime", "--quiet", "-o", str(agent)]
    proc = subprocess.run([sys.executable, "-c", run, script, *argv], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "through onnxruntime" in proc.stdout
    assert math.isfinite(float(summary(proc.stdout)["last loss"]))
    evaluate = [sys.executable, "-c", run, script, "--runtime", "onnxruntime", "--eval", str(agent), "--episodes", "3"]
    proc = subprocess.run(evaluate, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert last_mean_return(proc.stdout) >= 8


def test_a_loss_spec_of_another_network_is_refused(dqn, capsys, tmp_path):
    loss = tmp_path / "loss.net"
    loss.write_text(
        "network l(obs: [N, 4], action_mask: [N, 2], target: [N]) {\n"
        "  q = obs -> linear(2)\n  return mse_loss(sum(q * action_mask, 1), target)\n}\n"
    )
    code, out, err = run_script(capsys, dqn, "--runtime", "onnxruntime", "--loss-spec", loss, "--steps", 10)
    assert code == 1
    assert "is not a Q-learning loss of" in err and "lacks the Q-network's parameters" in err
    assert "Traceback" not in err and out == ""


# ---------------------------------------------------------------- PPO


@pytest.fixture(scope="module")
def ppo(gym):
    pytest.importorskip("torch")
    import ppo

    return ppo


def test_ppo_trains_and_the_saved_agent_reloads(ppo, capsys, tmp_path):
    agent = tmp_path / "ppo.safetensors"
    code, out, err = run_script(capsys, ppo, "--steps", 2100, "-o", agent)  # 8 rollouts of 8 x 32 steps
    assert code == 0, err
    result = summary(out)
    assert result["steps"] == "2,048"
    for key in ("last loss", "last value loss", "last entropy"):
        assert math.isfinite(float(result[key])), key
    code, out, err = run_script(capsys, ppo, "--eval", agent, "--episodes", 5)
    assert code == 0, err
    assert last_mean_return(out) >= 8


@pytest.mark.parametrize("spec", ["cartpole_actor_critic_shared.net", "log_softmax"])
def test_ppo_trains_other_actor_critics(ppo, capsys, tmp_path, spec):
    """A shared trunk, and a policy head that gives log-probabilities (as examples/actor_critic.net)."""
    path = RL / spec
    if spec == "log_softmax":
        path = tmp_path / "ac.net"
        text = (ROOT / "examples" / "actor_critic.net").read_text()
        path.write_text(text.replace("observations = 32", "observations = 4").replace("actions = 6", "actions = 2"))
    code, out, err = run_script(capsys, ppo, "--spec", path, "--steps", 512, "--epochs", 2)
    assert code == 0, err
    assert math.isfinite(float(summary(out)["last loss"]))


def test_gae_matches_the_recursion_by_hand(ppo):
    import torch

    rewards = torch.tensor([[1.0], [1.0], [1.0]])
    values = torch.tensor([[0.5], [0.4], [0.3]])
    dones = torch.tensor([[0.0], [1.0], [0.0]])  # the episode ends at step 1; a new one starts at 2
    last = torch.tensor([0.2])
    gamma, lam = 0.9, 0.8
    d2 = 1 + gamma * 0.2 - 0.3
    d1 = 1 - 0.4  # terminal: no bootstrap
    d0 = 1 + gamma * 0.4 - 0.5
    want = [d0 + gamma * lam * d1, d1, d2]
    got = ppo.gae(rewards, values, dones, last, gamma, lam)[:, 0].tolist()
    assert got == pytest.approx(want)


# ---------------------------------------------------------------- what users get wrong


@pytest.mark.parametrize("script", ["dqn", "ppo"])
def test_bad_specs_and_files_exit_1_with_a_message(gym, script, capsys, tmp_path):
    pytest.importorskip("torch")
    module = __import__(script)
    broken = tmp_path / "broken.net"
    broken.write_text("network n(obs: [N, 4]) {\n  return obs -> linear(2) + undefined_name\n}\n")
    cases = [
        (("--spec", tmp_path / "missing.net"), "no such file"),
        (("--spec", broken), "broken.net:2"),
        (("--spec", ROOT / "examples" / "dqn.net"), "does not fit CartPole-v1"),
        (("--eval", tmp_path / "missing.pt"), "no such agent file"),
        (("-o", tmp_path / "agent.txt"), "give a .pt, .safetensors or .npz file"),
        (("--env", "NoSuchEnv-v0"), "cannot make environment 'NoSuchEnv-v0'"),
    ]
    for argv, message in cases:
        code, out, err = run_script(capsys, module, *argv, "--steps", 10)
        assert code == 1, (argv, err)
        assert message in err, (argv, err)
        assert "Traceback" not in err and "saved" not in out


def test_an_agent_of_another_network_is_refused(ppo, capsys, tmp_path):
    agent = tmp_path / "agent.npz"
    np.savez(agent, **{"linear_0.weight": np.zeros((3, 3), np.float32)})
    code, out, err = run_script(capsys, ppo, "--eval", agent)
    assert code == 1 and "cannot load" in err and "Traceback" not in err


def test_without_gymnasium_the_scripts_name_the_pip_command():
    run = without("gymnasium")
    for script in ("dqn.py", "ppo.py"):
        proc = subprocess.run(
            [sys.executable, "-c", run, str(RL / script)], capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 5, proc.stderr
        assert "pip install 'netc[rl]'" in proc.stderr and "Traceback" not in proc.stderr


# ---------------------------------------------------------------- Stable-Baselines3


def test_a_compiled_network_as_sb3_feature_extractor(gym, capsys, tmp_path):
    pytest.importorskip("stable_baselines3", reason="pip install 'netc[sb3]'")
    import sb3_ppo

    agent = tmp_path / "sb3.zip"
    code, out, err = run_script(capsys, sb3_ppo, "--steps", 1024, "-o", agent)
    assert code == 0, err
    assert summary(out)["steps"] == "1,024"
    code, out, err = run_script(capsys, sb3_ppo, "--eval", agent, "--episodes", 3)
    assert code == 0, err
    assert last_mean_return(out) >= 8
    code, out, err = run_script(capsys, sb3_ppo, "--spec", RL / "cartpole_q.net", "--steps", 10)
    assert code == 0, err  # any [N, F] output serves as features: the Q-network's 2 values here
    code, out, err = run_script(capsys, sb3_ppo, "--spec", RL / "cartpole_actor_critic.net", "--steps", 10)
    assert code == 1 and "a feature extractor returns one" in err


# ---------------------------------------------------------------- the full solves (slow)


@pytest.mark.slow
def test_ppo_solves_cartpole(ppo, capsys, tmp_path):
    agent = tmp_path / "ppo.pt"
    code, out, err = run_script(capsys, ppo, "--seed", 0, "-o", agent)
    assert code == 0, err
    assert summary(out)["solved"].startswith("yes"), out
    code, out, err = run_script(capsys, ppo, "--eval", agent)
    assert last_mean_return(out) >= 475


@pytest.mark.slow
@pytest.mark.parametrize("runtime", ["torch", "onnxruntime"])
def test_dqn_solves_cartpole(dqn, capsys, tmp_path, runtime):
    agent = tmp_path / "dqn.npz"
    code, out, err = run_script(capsys, dqn, "--seed", 0, "--runtime", runtime, "-o", agent)
    assert code == 0, err
    assert summary(out)["solved"].startswith("yes"), out
    code, out, err = run_script(capsys, dqn, "--runtime", runtime, "--eval", agent)
    assert last_mean_return(out) >= 475
