"""``python -m bench.training_speed``: training images per second, bf16 autocast on and off.

Times real training steps (``Trainer.train_step``: forward, loss, backward, clipping, Adam,
EMA) of the default gated model on real Fashion-MNIST batches, alternating bf16 on and off
so that both see the same machine load; prints medians. Asserts nothing about time.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from model.data import quantize
from model.network.pixelcnn import PixelCNNConfig
from model.training import Trainer, TrainSettings


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        allow_abbrev=False, prog="python -m bench.training_speed", description=__doc__
    )
    p.add_argument("--channels", type=int, default=64)
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=6, help="timed steps per setting (after 1 warm-up)")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    config = PixelCNNConfig(arch="gated", channels=args.channels, layers=args.layers, num_classes=10)
    trainers = {}
    for bf16 in (True, False):
        settings = TrainSettings(
            model=config,
            run_dir=tempfile.mkdtemp(),
            batch_size=args.batch_size,
            bf16=bf16,
            train_limit=args.batch_size * (args.steps + 1),
            val_limit=10,
        )
        trainers[bf16] = Trainer(settings)
    times: dict[bool, list[float]] = {True: [], False: []}
    data = trainers[True].train
    for step in range(args.steps + 1):
        idx = slice(step * args.batch_size, (step + 1) * args.batch_size)
        x, y = quantize(data.images[idx], 256), data.labels[idx]
        for bf16, trainer in trainers.items():
            started = time.perf_counter()
            trainer.train_step(x, y)
            if step > 0:  # the first step of each is a warm-up
                times[bf16].append(time.perf_counter() - started)
    print(
        f"gated {args.channels}x{args.layers}, batch {args.batch_size}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}"
    )
    rates = {bf16: args.batch_size / statistics.median(t) for bf16, t in times.items()}
    for bf16, rate in rates.items():
        print(f"  bf16 {'on ' if bf16 else 'off'}: {rate:6.1f} images/s (median of {args.steps} steps)")
    print(f"  bf16 speed-up: {rates[True] / rates[False]:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
