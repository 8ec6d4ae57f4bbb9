"""``python -m bench.quality``: how good are the samples? Class fidelity, FID and bits/dim.

A small CNN classifier trained on the 55,000 training images (``model.shipping.quality``'s judge, cached
under ``runs/``) judges class-conditional samples: class fidelity (the share of samples drawn for
class y that it classifies as y), FID (the Frechet distance between its features of the samples
and of the 10,000 test images) and the samples' own bits/dim under the model (low at low
temperature: the mode is dull). The "real" row scores the same number of real validation images
against the test images, the floor that sampling noise alone gives.

Samples are drawn with ``generate``'s defaults except the label and temperature; sample k of
class y uses seed ``y * per_class + k``. Prints a table, then one JSON line.

    python -m bench.quality --weights weights/pixelcnn-gated-fmnist.safetensors
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from model.checkpoint import DEFAULT_WEIGHTS, load
from model.data import load_fashion_mnist
from model.shipping.quality import DEFAULT_PATH, Judge, sample_quality


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        allow_abbrev=False,
        prog="python -m bench.quality",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--weights", default=DEFAULT_WEIGHTS)
    p.add_argument("--per-class", type=int, default=100, help="samples per class")
    p.add_argument("--temperatures", type=float, nargs="+", default=[1.0, 0.9])
    p.add_argument("--batch-size", type=int, default=100, help="images per generate call")
    p.add_argument("--classifier", type=Path, default=DEFAULT_PATH)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if args.per_class < 2:
        p.error("--per-class must be at least 2 (a covariance needs two samples)")
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load(args.weights)
    k = model.config.num_classes
    if k is None:
        p.error("class fidelity needs a class-conditional model")
    judge = Judge.ready(args.classifier, args.data_dir)
    print(f"judge classifier: test accuracy {judge.test_accuracy:.4f}")

    n = args.per_class * k
    real = load_fashion_mnist("validation", args.data_dir)
    fidelity, fid, _ = judge.score(real.images[:n], real.labels[:n])
    rows: dict[str, dict[str, object]] = {
        "real": {"fidelity": fidelity, "fid": fid, "bits_per_dim": None, "per_class": None, "seconds": 0.0}
    }
    for temperature in args.temperatures:
        rows[f"T={temperature:g}"] = sample_quality(
            model, judge, args.per_class, temperature, args.batch_size
        )

    print(
        f"weights {args.weights}: {model.config.arch}, {model.parameter_count():,} parameters; "
        f"{args.per_class} samples per class"
    )
    print(f"{'samples':10} {'fidelity':>9} {'FID':>9} {'bits/dim':>9} {'sample s':>9}")
    for name, r in rows.items():
        bpd = "" if r["bits_per_dim"] is None else f"{r['bits_per_dim']:.3f}"
        print(f"{name:10} {r['fidelity']:>9.3f} {r['fid']:>9.2f} {bpd:>9} {r['seconds']:>9}")
    short = [name[:7] for name in model.config.label_names]
    print("per-class fidelity: " + " ".join(f"{s:>8}" for s in short))
    for name, r in rows.items():
        if isinstance(r["per_class"], dict):
            print(f"{name:19} " + " ".join(f"{v:>8.2f}" for v in r["per_class"].values()))
    print(
        json.dumps(
            {
                "weights": args.weights,
                "per_class": args.per_class,
                "judge_test_accuracy": judge.test_accuracy,
                "results": rows,
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
