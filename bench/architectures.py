"""``python -m bench.architectures``: candidate architectures compared at the same compute.

Trains each candidate from scratch for the same budget of CPU time (real training steps of
``Trainer.train_step`` on real Fashion-MNIST batches, the same data order for all), then scores
its EMA weights on the first validation images. Per unit of compute is what matters on a small
CPU: a bigger model that is better per step can still lose per minute. Prints a table, then one
JSON line. The budget is this process's CPU time (all its threads), not wall time, so that other
work on the machine does not shift it between candidates. Asserts nothing about time.

    python -m bench.architectures --cpu-minutes 7 --val-limit 1000
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time

import torch

from model.data import Split, quantize
from model.inference.likelihood import score_split
from model.network.pixelcnn import PixelCNNConfig
from model.training import Trainer, TrainSettings
from model.training.distributed import World, epoch_batches

BASE = PixelCNNConfig(arch="gated", channels=64, layers=12, num_classes=10)
CANDIDATES = {
    "gated (local)": BASE,
    "gated-attention, 1 block": dataclasses.replace(BASE, arch="gated-attention", attention_every=6),
    "gated-attention, 2 blocks": dataclasses.replace(BASE, arch="gated-attention", attention_every=4),
    "gated-attention, 3 blocks": dataclasses.replace(BASE, arch="gated-attention", attention_every=3),
}


def train_for(config: PixelCNNConfig, seconds: float, args: argparse.Namespace) -> dict[str, float]:
    settings = TrainSettings(
        model=config,
        run_dir=tempfile.mkdtemp(),
        batch_size=args.batch_size,
        lr=args.lr,
        warmup_steps=args.warmup_steps,
        epochs=1,
        val_limit=args.val_limit,
    )
    trainer = Trainer(settings)
    batches = epoch_batches(settings.seed, 0, len(trainer.train), settings.batch_size, World.current())
    started = time.process_time()
    while time.process_time() - started < seconds and trainer.step < len(batches):
        idx = batches[trainer.step]
        x = quantize(trainer.train.images[idx], 256)
        trainer.train_step(x, trainer.train.labels[idx])
    elapsed = time.process_time() - started
    val = Split(trainer.val.images, trainer.val.labels)
    return {
        "parameters": trainer.model.parameter_count(),
        "steps": trainer.step,
        "cpu_seconds_per_step": elapsed / max(1, trainer.step),
        "validation_bits_per_dim": float(score_split(trainer.ema, val).mean()),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(allow_abbrev=False, prog="python -m bench.architectures", description=__doc__)
    p.add_argument("--cpu-minutes", type=float, default=8.0, help="CPU-time budget per candidate")
    p.add_argument("--only", nargs="*", default=None, help="candidate names (default: all)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup-steps", type=int, default=20)
    p.add_argument("--val-limit", type=int, default=1000)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    names = args.only or list(CANDIDATES)
    unknown = set(names) - set(CANDIDATES)
    if unknown:
        p.error(f"unknown candidates {sorted(unknown)}; choose from {list(CANDIDATES)}")
    results = {}
    print(f"{'candidate':28} {'params':>10} {'steps':>6} {'cpu s/step':>10} {'val bits/dim':>13}")
    for name in names:
        r = train_for(CANDIDATES[name], 60 * args.cpu_minutes, args)
        results[name] = r
        print(
            f"{name:28} {r['parameters']:>10,} {r['steps']:>6} {r['cpu_seconds_per_step']:>10.2f} "
            f"{r['validation_bits_per_dim']:>13.4f}",
            flush=True,
        )
    print(json.dumps({"cpu_minutes": args.cpu_minutes, "batch_size": args.batch_size, "results": results}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
