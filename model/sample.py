"""``python -m model.sample --weights PATH``: write a PNG grid of samples.

``--per-class`` gives a conditional model's grid one row per class; otherwise ``--n``
images, with ``--label`` fixing the class.
"""

from __future__ import annotations

import argparse

import torch

from model.checkpoint import load
from model.data import CLASS_NAMES, dequantize
from model.inference.generation import generate
from model.pictures import image_grid


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m model.sample", description=__doc__)
    p.add_argument("--weights", required=True)
    p.add_argument("--out", default="samples.png")
    p.add_argument("--n", type=int, default=16, help="images (per class with --per-class)")
    p.add_argument("--per-class", action="store_true")
    p.add_argument("--label", default=None, help="class index or name")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0, help="image i uses seed + i")
    p.add_argument("--scale", type=int, default=3)
    p.add_argument("--method", choices=("fast", "naive"), default="fast")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load(args.weights)
    k = model.config.num_classes
    if args.per_class:
        if k is None:
            p.error("--per-class needs a class-conditional model")
        labels: list[int | None] = [c for c in range(k) for _ in range(args.n)]
        columns = args.n
    else:
        label = None
        if args.label is not None:
            label = CLASS_NAMES.index(args.label) if args.label in CLASS_NAMES else int(args.label)
        labels = [label] * args.n
        columns = int(args.n**0.5 + 0.999)
    seeds = [args.seed + i for i in range(len(labels))]
    images = generate(
        model,
        len(labels),
        labels=labels if k else None,
        seeds=seeds,
        temperature=args.temperature,
        progress=True,
        method=args.method,
    )
    image_grid(dequantize(images, model.config.levels), columns, scale=args.scale).save(args.out)
    print(f"wrote {args.out} ({len(labels)} images)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
