"""``python -m bench.quality``: how good are the samples? Class fidelity, FID and bits/dim.

A small CNN classifier trained on the 55,000 training images (``bench.classifier``, cached under
``runs/``) judges class-conditional samples:

- class fidelity: the share of samples drawn for class y that it classifies as y;
- FID: the Frechet distance between Gaussians fitted to its 128 penultimate features of the
  samples and of the 10,000 test images (the Frechet Inception Distance, with this data set's
  own classifier in place of Inception); "real" rows score the same number of real validation
  images against the test images, the floor that sampling noise alone gives;
- the samples' own bits/dim under the model (low at low temperature: the mode is dull).

Samples are drawn with ``generate``'s defaults except the label and temperature; sample k of
class y uses seed ``y * per_class + k``. Prints a table, then one JSON line.

    python -m bench.quality --weights weights/pixelcnn-gated-fmnist.safetensors
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import scipy.linalg
import torch

from bench.classifier import DEFAULT_PATH, load_or_train, predict
from model.checkpoint import load
from model.data import FASHION_CLASSES, dequantize, load_fashion_mnist
from model.inference.generation import generate
from model.inference.likelihood import log_likelihood

DEFAULT_WEIGHTS = "weights/pixelcnn-gated-fmnist.safetensors"


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Frechet distance between Gaussian fits of feature sets ``(N, D)`` and ``(M, D)``."""
    mu_a, mu_b = a.mean(0).numpy(), b.mean(0).numpy()
    # Features after a ReLU include units that never fire, so a covariance can be singular:
    # a tiny ridge keeps the matrix square root well defined and moves the distance negligibly.
    ridge = 1e-6 * np.eye(a.shape[1])
    cov_a, cov_b = np.cov(a.numpy(), rowvar=False) + ridge, np.cov(b.numpy(), rowvar=False) + ridge
    root = np.real(scipy.linalg.sqrtm(cov_a @ cov_b))  # rounding leaves a negligible imaginary part
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root))


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
    judge = load_or_train(args.classifier, args.data_dir)
    test = load_fashion_mnist("test", args.data_dir)
    test_pred, test_features = predict(judge, test.images)
    accuracy = float((test_pred == test.labels).double().mean())
    print(f"judge classifier: test accuracy {accuracy:.4f}")

    model = load(args.weights)
    k = model.config.num_classes
    if k is None:
        p.error("class fidelity needs a class-conditional model")
    n = args.per_class * k
    real = load_fashion_mnist("validation", args.data_dir)
    real_pred, real_features = predict(judge, real.images[:n])
    rows: dict[str, dict[str, object]] = {
        "real": {
            "fidelity": float((real_pred == real.labels[:n]).double().mean()),
            "fid": frechet_distance(real_features, test_features),
            "bits_per_dim": None,
            "per_class": None,
            "seconds": 0.0,
        }
    }
    labels = torch.arange(k).repeat_interleave(args.per_class)
    for temperature in args.temperatures:
        started = time.monotonic()
        batches = [
            generate(
                model,
                len(chunk),
                labels=chunk.tolist(),
                seeds=list(range(s, s + len(chunk))),
                temperature=temperature,
            )
            for s in range(0, n, args.batch_size)
            for chunk in [labels[s : s + args.batch_size]]
        ]
        values = torch.cat(batches)
        seconds = time.monotonic() - started
        images = dequantize(values, model.config.levels)
        pred, features = predict(judge, images)
        hit = (pred == labels).double()
        bits = log_likelihood(model, values.long(), labels).bits_per_dim
        rows[f"T={temperature:g}"] = {
            "fidelity": float(hit.mean()),
            "fid": frechet_distance(features, test_features),
            "bits_per_dim": float(bits.mean()),
            "per_class": {FASHION_CLASSES[c]: round(float(hit[labels == c].mean()), 3) for c in range(k)},
            "seconds": round(seconds, 1),
        }

    print(
        f"weights {args.weights}: {model.config.arch}, {model.parameter_count():,} parameters; "
        f"{args.per_class} samples per class"
    )
    print(f"{'samples':10} {'fidelity':>9} {'FID':>9} {'bits/dim':>9} {'sample s':>9}")
    for name, r in rows.items():
        bpd = "" if r["bits_per_dim"] is None else f"{r['bits_per_dim']:.3f}"
        print(f"{name:10} {r['fidelity']:>9.3f} {r['fid']:>9.2f} {bpd:>9} {r['seconds']:>9}")
    short = [name[:7] for name in FASHION_CLASSES]
    print("per-class fidelity: " + " ".join(f"{s:>8}" for s in short))
    for name, r in rows.items():
        if isinstance(r["per_class"], dict):
            print(f"{name:19} " + " ".join(f"{v:>8.2f}" for v in r["per_class"].values()))
    print(
        json.dumps(
            {
                "weights": args.weights,
                "per_class": args.per_class,
                "judge_test_accuracy": accuracy,
                "results": rows,
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
