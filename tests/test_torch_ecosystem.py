"""The generated PyTorch modules in the wider torch ecosystem: torch.compile, torch.save, DDP, a training script."""

import importlib.util
import io
import os
import re
import socket
import subprocess
import sys
import textwrap

import pytest
from conftest import ROOT
from netc.compiler import compile_file

torch = pytest.importorskip("torch")

RESIDUAL_MLP = ROOT / "examples" / "residual_mlp.net"
DQN = ROOT / "examples" / "dqn.net"


def fresh(spec, seed=0):
    """A fresh module of a spec, in eval mode, with seeded weights."""
    torch.manual_seed(seed)
    return compile_file(spec).torch().eval()


def import_file(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def generated_file(tmp_path):
    """The residual MLP's generated source written to tmp_path/model.py and imported from there."""
    compiled = compile_file(RESIDUAL_MLP)
    path = tmp_path / "model.py"
    path.write_text(compiled.torch_source())
    name = f"netc_ecosystem_model_{os.getpid()}_{abs(hash(str(tmp_path)))}"
    module = import_file(path, name)
    yield getattr(module, compiled.class_name), path
    sys.modules.pop(name, None)


# torch.compile


@pytest.mark.parametrize("backend", ["eager", "aot_eager"])
@pytest.mark.parametrize("spec,shape", [(RESIDUAL_MLP, (4, 784)), (DQN, (2, 4, 84, 84))], ids=["residual_mlp", "dqn"])
def test_torch_compile_traces_with_dynamo(spec, shape, backend):
    torch._dynamo.reset()
    model = fresh(spec)
    x = torch.randn(*shape)
    with torch.no_grad():
        expected = model(x)
        compiled = torch.compile(model, backend=backend, fullgraph=True)
        got = compiled(x)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_torch_compile_traces_the_backward_pass():
    torch._dynamo.reset()
    eager = fresh(RESIDUAL_MLP).train()
    traced = fresh(RESIDUAL_MLP).train()
    x = torch.randn(8, 784)
    torch.compile(traced, backend="aot_eager", fullgraph=True)(x).square().mean().backward()
    eager(x).square().mean().backward()
    for (name, a), (_, b) in zip(eager.named_parameters(), traced.named_parameters()):
        torch.testing.assert_close(b.grad, a.grad, atol=1e-5, rtol=1e-5, msg=name)


@pytest.mark.slow
@pytest.mark.parametrize("spec,shape", [(RESIDUAL_MLP, (4, 784)), (DQN, (2, 4, 84, 84))], ids=["residual_mlp", "dqn"])
def test_torch_compile_inductor_matches_eager(spec, shape):
    torch._dynamo.reset()
    model = fresh(spec)
    x = torch.randn(*shape)
    with torch.no_grad():
        expected = model(x)
        got = torch.compile(model, fullgraph=True)(x)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


# torch.save / torch.load


def test_state_dict_round_trip_into_a_fresh_module(tmp_path):
    source = fresh(RESIDUAL_MLP, seed=1)
    torch.save(source.state_dict(), tmp_path / "weights.pt")
    target = fresh(RESIDUAL_MLP, seed=2)
    x = torch.randn(4, 784)
    with torch.no_grad():
        assert not torch.equal(target(x), source(x))
        target.load_state_dict(torch.load(tmp_path / "weights.pt", weights_only=True))
        assert torch.equal(target(x), source(x))


def test_state_dict_round_trip_with_buffers(tmp_path):
    """A spec with batchnorm: the running statistics travel in the state_dict too."""
    from netc.compiler import compile_string

    spec = textwrap.dedent(
        """
        network bn_net(x: [N, 3, 8, 8]) {
            y = x -> conv2d(4, kernel=3, padding=1) -> batchnorm -> relu -> flatten -> linear(5)
            return y
        }
        """
    )
    torch.manual_seed(0)
    source = compile_string(spec).torch().train()
    with torch.no_grad():
        source(torch.randn(16, 3, 8, 8) * 3 + 1)  # moves the running statistics
    source.eval()
    torch.save(source.state_dict(), tmp_path / "weights.pt")
    state = torch.load(tmp_path / "weights.pt", weights_only=True)
    assert any(k.endswith("running_mean") for k in state)
    torch.manual_seed(1)
    target = compile_string(spec).torch().eval()
    target.load_state_dict(state)
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(target(x), source(x))


def test_whole_module_pickle_from_the_generated_file(tmp_path, generated_file):
    cls, _ = generated_file
    torch.manual_seed(3)
    model = cls().eval()
    torch.save(model, tmp_path / "whole.pt")
    loaded = torch.load(tmp_path / "whole.pt", weights_only=False)
    assert type(loaded) is cls
    x = torch.randn(4, 784)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_whole_module_pickle_of_the_in_memory_module():
    """compile_file(...).torch() registers its generated module in sys.modules, so pickling works in-process."""
    model = fresh(RESIDUAL_MLP, seed=4)
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    assert type(loaded) is type(model)
    x = torch.randn(4, 784)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_whole_module_loads_in_a_new_process(tmp_path, generated_file):
    """A module saved whole loads in another process that can import the generated file."""
    cls, path = generated_file
    torch.manual_seed(5)
    model = cls().eval()
    x = torch.randn(3, 784)
    with torch.no_grad():
        torch.save({"x": x, "y": model(x)}, tmp_path / "io.pt")
    # Pickle under the importable module name `model`: the file's own name.
    saved = import_file(path, "model")
    try:
        torch.manual_seed(5)
        torch.save(getattr(saved, cls.__name__)().eval(), tmp_path / "whole.pt")
    finally:
        sys.modules.pop("model", None)
    script = textwrap.dedent(
        """
        import sys, torch
        sys.path.insert(0, sys.argv[1])
        model = torch.load(sys.argv[1] + "/whole.pt", weights_only=False)
        data = torch.load(sys.argv[1] + "/io.pt", weights_only=True)
        with torch.no_grad():
            assert torch.equal(model(data["x"]), data["y"]), "outputs differ"
        print("ok", type(model).__name__)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"ok {cls.__name__}"


# DistributedDataParallel

DDP_WORKER = """
import os, sys, torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

out = sys.argv[1]
sys.path.insert(0, out)
from model import {class_name} as Net

rank = int(os.environ["RANK"])
torch.set_num_threads(1)
dist.init_process_group("gloo", rank=rank, world_size=int(os.environ["WORLD_SIZE"]))
torch.manual_seed(100 + rank)  # different initial weights per rank: DDP must broadcast rank 0's
model = DDP(Net())
torch.save(model.module.state_dict(), f"{{out}}/initial_{{rank}}.pt")
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
generator = torch.Generator().manual_seed(1000 + rank)  # different data per rank
for step in range(5):
    x = torch.randn(16, 784, generator=generator)
    y = torch.randint(0, 10, (16,), generator=generator)
    loss = torch.nn.functional.cross_entropy(model(x), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
torch.save(model.module.state_dict(), f"{{out}}/final_{{rank}}.pt")
dist.barrier()
dist.destroy_process_group()
print("rank", rank, "done", loss.item())
"""


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_distributed_data_parallel_keeps_ranks_in_sync(tmp_path):
    compiled = compile_file(RESIDUAL_MLP)
    (tmp_path / "model.py").write_text(compiled.torch_source())
    worker = tmp_path / "worker.py"
    worker.write_text(DDP_WORKER.format(class_name=compiled.class_name))
    world = 2
    base = {k: v for k, v in os.environ.items() if not k.startswith(("RANK", "WORLD_SIZE", "MASTER_", "LOCAL_"))}
    base.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()), WORLD_SIZE=str(world), OMP_NUM_THREADS="1")
    procs = [
        subprocess.Popen(
            [sys.executable, str(worker), str(tmp_path)],
            env={**base, "RANK": str(rank), "LOCAL_RANK": str(rank)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in range(world)
    ]
    outputs = []
    try:
        for proc in procs:
            outputs.append(proc.communicate(timeout=120))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    for rank, (proc, (out, err)) in enumerate(zip(procs, outputs)):
        assert proc.returncode == 0, f"rank {rank} failed:\n{out}\n{err}"

    initial = [torch.load(tmp_path / f"initial_{r}.pt", weights_only=True) for r in range(world)]
    final = [torch.load(tmp_path / f"final_{r}.pt", weights_only=True) for r in range(world)]
    assert set(final[0]) == set(final[1]) == set(dict(compile_file(RESIDUAL_MLP).torch().named_parameters()))
    for name in final[0]:
        # DDP broadcast rank 0's weights at construction, and averaged the gradients after.
        assert torch.equal(initial[0][name], initial[1][name]), name
        assert torch.equal(final[0][name], final[1][name]), name
        assert not torch.equal(final[0][name], initial[0][name]), name


# the training example


def test_training_example_lowers_the_loss(tmp_path):
    script = ROOT / "examples" / "train_residual_mlp.py"
    result = subprocess.run(
        [sys.executable, str(script), "--steps", "30", "--seed", "0"],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,  # runs from any directory
    )
    assert result.returncode == 0, result.stderr
    first = float(re.search(r"^first loss: ([0-9.eE+-]+)$", result.stdout, re.M).group(1))
    last = float(re.search(r"^last loss: ([0-9.eE+-]+)$", result.stdout, re.M).group(1))
    assert last < first, result.stdout
