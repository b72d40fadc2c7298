"""Trains the residual MLP of residual_mlp.net on synthetic data, compiled in memory by netc.

The data: random 784-d inputs labeled into 10 classes by a fixed random teacher network (a two-layer
MLP). The student is the network of residual_mlp.net, built with `compile_file(...).torch()`; it is
trained with cross-entropy and Adam. Runs from any directory; the same --seed gives the same losses.

    python examples/train_residual_mlp.py --steps 200 --batch 64 --seed 0
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

SPEC = Path(__file__).resolve().parent / "residual_mlp.net"
FEATURES = 784
CLASSES = 10


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="training steps (default 200)")
    parser.add_argument("--batch", type=int, default=64, help="batch size (default 64)")
    parser.add_argument("--seed", type=int, default=0, help="random seed for data and weights (default 0)")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    parser.add_argument("--samples", type=int, default=8192, help="size of the synthetic training set (default 8192)")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.batch < 1 or args.samples < 1:
        parser.error("--steps, --batch and --samples must be positive")
    return args


def synthetic_data(samples: int, generator):
    """Random inputs and the labels a fixed random teacher MLP gives them."""
    import torch

    inputs = torch.randn(samples, FEATURES, generator=generator)
    w1 = torch.randn(FEATURES, 128, generator=generator) / FEATURES**0.5
    w2 = torch.randn(128, CLASSES, generator=generator) / 128**0.5
    with torch.no_grad():
        labels = (torch.tanh(inputs @ w1) @ w2).argmax(dim=1)
    return inputs, labels


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        import torch
    except ImportError:
        print("PyTorch is not installed: pip install 'netc[torch]'", file=sys.stderr)
        return 1
    from netc.compiler import compile_file
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    torch.manual_seed(args.seed)
    compiled = compile_file(SPEC)
    model = compiled.torch()
    model.train()
    print(f"{compiled.class_name}: {compiled.parameters:,} parameters, from {SPEC.name}")

    generator = torch.Generator().manual_seed(args.seed)
    inputs, labels = synthetic_data(args.samples, generator)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    loss_fn = torch.nn.CrossEntropyLoss()

    first = last = None
    columns = (
        TextColumn("[bold]training"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns) as progress:
        task = progress.add_task("train", total=args.steps, loss="-")
        for _ in range(args.steps):
            index = torch.randint(0, args.samples, (args.batch,), generator=generator)
            loss = loss_fn(model(inputs[index]), labels[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            last = loss.item()
            if first is None:
                first = last
            progress.update(task, advance=1, loss=f"{last:.4f}")

    print(f"first loss: {first:.6f}")
    print(f"last loss: {last:.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
