"""``python -m model.evaluate --weights PATH [--limit N]``: test-set bits/dim of a weights file.

A conditional model is scored with each image's true label (``--marginal`` scores
log p(x) with the labels summed out instead). The last line printed is a JSON object with a
``bits_per_dim`` field, plus per-class figures.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from model.checkpoint import file_sha256, load
from model.data import Split, load_fashion_mnist
from model.inference.likelihood import SCORE_BATCH, per_class_means, score_split


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m model.evaluate", description=__doc__)
    p.add_argument("--weights", required=True)
    p.add_argument("--limit", type=int, default=None, help="only the first N test images")
    p.add_argument("--split", choices=("test", "validation"), default="test")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--batch-size", type=int, default=SCORE_BATCH)
    p.add_argument("--marginal", action="store_true", help="sum the labels out (conditional models)")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if args.batch_size < 1:  # before loading anything
        p.error("--batch-size must be at least 1")
    if args.limit is not None and args.limit < 1:
        p.error("--limit must be at least 1 (or left out for the whole split)")
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load(args.weights)
    data = load_fashion_mnist(args.split, args.data_dir, model.config.image_size)
    count = len(data) if args.limit is None else min(args.limit, len(data))
    conditional = model.config.num_classes is not None and not args.marginal
    started = time.perf_counter()
    subset = Split(data.images[:count], data.labels[:count])
    per_image = score_split(model, subset, with_labels=not args.marginal, batch_size=args.batch_size)
    per_class = per_class_means(per_image, subset.labels)
    result = {
        "weights": args.weights,
        "sha256": file_sha256(args.weights),
        "split": args.split,
        "images": count,
        "labels": "true" if conditional else "marginal" if model.config.num_classes else "none",
        "bits_per_dim": round(float(per_image.mean()), 5),
        "per_class": per_class,
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(f"{args.split}: {count} images, {result['bits_per_dim']:.4f} bits/dim")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
