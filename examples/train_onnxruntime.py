"""Trains the residual MLP of residual_mlp.net with SGD using only onnxruntime and numpy.

netc derives the network's backward graph and emits it as an ONNX training model (the
network with cross-entropy attached: its inputs are the pixels, the labels and every
parameter; its outputs the loss and `grad.<parameter>` for each). Each step runs that
model on a batch and moves every parameter against its gradient. No torch anywhere.

The data: random 784-d inputs labeled into 10 classes by a fixed random teacher network.

    python examples/train_onnxruntime.py --steps 200 --batch 64 --lr 0.05 --seed 0
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

SPEC = Path(__file__).resolve().parent / "residual_mlp.net"
FEATURES, CLASSES = 784, 10


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="training steps (default 200)")
    parser.add_argument("--batch", type=int, default=64, help="batch size (default 64)")
    parser.add_argument("--lr", type=float, default=0.05, help="SGD learning rate (default 0.05)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data, batches and weights (default 0)")
    parser.add_argument("--samples", type=int, default=8192, help="size of the synthetic training set")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.batch < 1 or args.samples < 1 or not args.lr > 0:
        parser.error("--steps, --batch, --samples and --lr must be positive")
    return args


def synthetic_data(samples: int, seed: int):
    """Random inputs and the labels a fixed random teacher MLP gives them."""
    rng = np.random.default_rng(seed)
    inputs = rng.standard_normal((samples, FEATURES), dtype=np.float32)
    w1 = rng.standard_normal((FEATURES, 128), dtype=np.float32) / FEATURES**0.5
    w2 = rng.standard_normal((128, CLASSES), dtype=np.float32) / 128**0.5
    return inputs, (np.tanh(inputs @ w1) @ w2).argmax(axis=1).astype(np.int64)


def batches(samples: int, batch: int, steps: int, seed: int):
    rng = np.random.default_rng(seed + 1)
    return [rng.integers(0, samples, batch) for _ in range(steps)]


class Trainer:
    """SGD on the ONNX training model: parameters live here as numpy arrays."""

    def __init__(self, spec=SPEC, seed: int = 0, weights=None):
        import onnxruntime as ort
        from netc.compiler import compile_file

        compiled = compile_file(spec)
        self.parameters = compiled.weights(weights, seed)
        # input_grads=False: SGD moves the parameters only, so grad.pixels is not computed
        model = compiled.onnx(backward=True, loss="cross_entropy", input_grads=False)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 2
        self.session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.compiled = compiled

    def step(self, pixels: np.ndarray, labels: np.ndarray, lr: float) -> float:
        feeds = {"pixels": pixels, "logits_labels": labels}
        feeds.update({name: self.parameters[name] for name in self.input_names if name in self.parameters})
        results = dict(zip(self.output_names, self.session.run(None, feeds)))
        for name, gradient in results.items():
            if name.startswith("grad.") and name[5:] in self.parameters:
                self.parameters[name[5:]] = self.parameters[name[5:]] - lr * gradient
        return float(results["loss"])


def main(argv=None) -> int:
    args = parse_args(argv)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    trainer = Trainer(seed=args.seed)
    print(f"{trainer.compiled.name}: {trainer.compiled.parameters:,} parameters, trained through onnxruntime")
    inputs, labels = synthetic_data(args.samples, args.seed)
    losses = []
    columns = (TextColumn("[bold]training"), BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]}"))
    with Progress(*columns, TimeElapsedColumn()) as progress:
        task = progress.add_task("train", total=args.steps, loss="-")
        for index in batches(args.samples, args.batch, args.steps, args.seed):
            losses.append(trainer.step(inputs[index], labels[index], args.lr))
            progress.update(task, advance=1, loss=f"{losses[-1]:.4f}")
    print(f"first loss: {losses[0]:.6f}")
    print(f"last loss: {losses[-1]:.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
