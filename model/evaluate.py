"""``python -m model.evaluate --weights PATH [--data SOURCE] [--limit N]``: test-set bits/dim.

Without ``--data`` the Fashion-MNIST test set is scored; ``--data`` takes any source that
``model.train`` takes (its test split; ``--split validation`` for the held-out images), read
at the model's image size.

A conditional model is scored with each image's true label (``--marginal`` scores
log p(x) with the labels summed out instead). The last line printed is a JSON object with a
``bits_per_dim`` field, plus per-class figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from model.checkpoint import CheckpointError, file_sha256, load
from model.data import DatasetError
from model.data.arrays import DEFAULT_VALIDATION_FRACTION
from model.data.sources import open_source
from model.inference.likelihood import SCORE_BATCH, per_class_means, score_split
from model.training.run_data import with_class_names


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m model.evaluate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    p.add_argument("--weights", required=True)
    p.add_argument("--limit", type=int, default=None, help="only the first N test images")
    p.add_argument("--split", choices=("test", "validation"), default="test")
    p.add_argument(
        "--data", default=None, metavar="SOURCE", help="a folder of images, an .npz file or IDX files"
    )
    p.add_argument("--data-dir", default=None, help="without --data: where Fashion-MNIST's files are")
    p.add_argument("--validation-fraction", type=float, default=DEFAULT_VALIDATION_FRACTION)
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
    try:
        model = load(args.weights)
        source = open_source(
            args.data, model.config.image_size, data_dir=args.data_dir, colours=model.config.image_channels
        )
        if model.config.num_classes is not None and not args.marginal:
            with_class_names(model.config, source)  # the data's classes must be the model's
        data = source.part(args.split, args.validation_fraction)
    except (CheckpointError, DatasetError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    subset = data.first(args.limit)
    count = len(subset)
    conditional = model.config.num_classes is not None and not args.marginal
    started = time.perf_counter()
    per_image = score_split(
        model, subset, with_labels=not args.marginal, batch_size=args.batch_size, progress=args.split
    )
    per_class = per_class_means(per_image, subset.labels, model.config.label_names)
    result = {
        "weights": args.weights,
        "sha256": file_sha256(args.weights),
        "data": source.name,
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
