"""``python -m bench.upscale``: super-resolution of Fashion-MNIST test images, against Pillow.

For each factor (2, 4, 7: 14x14, 7x7 and 4x4 small images made with ``model.downscale``), on
the first ``--limit`` test images (default 200; ``--split validation`` to choose settings
without the test set): ``--samples`` results per image (default 8;
result s of image i uses seed ``i * samples + s``), ``--particles`` each, all of an image's
samples with one class (``--labels``: by default the shipped classifier's guess from the small
image, enlarged nearest; it was trained on such images too). It prints, per factor: the
agreement rate (``downscale(result) == small``, must be 100%); PSNR and SSIM against the true
image, averaged over images, for one sample, for the mean of the samples, and for Pillow's
bicubic and nearest enlargements of the same small image; bits/dim under the model of one
sample, of all samples, of the bicubic enlargement and of the true image, all under the class
the image's first sample used (and how often that is the true label); and seconds per image (all its
samples and particles). The last line is JSON.
``--picture`` saves rows of: small image, bicubic, four samples, truth. Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from model.checkpoint import DEFAULT_WEIGHTS, load
from model.classifier import DEFAULT_CLASSIFIER, load_classifier
from model.data import load_fashion_mnist
from model.inference.likelihood import log_likelihood
from model.inference.superres import downscale, upscale
from model.network.classifier import guess_from_small
from model.network.pixelcnn import PixelCNN
from model.pictures import image_grid


def _per_image(metric: Callable[..., float], images: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """``metric(truth, image)`` of scikit-image for each pair of ``(N, 1, H, W)`` images 0..255."""
    pairs = zip(truth.double().numpy(), images.double().numpy(), strict=True)
    return torch.tensor([float(metric(t[0], x[0], data_range=255.0)) for t, x in pairs], dtype=torch.float64)


def psnr(images: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Per image ``(N,)``, in dB, for values 0..255 (a perfect image counts as 100 dB)."""
    with np.errstate(divide="ignore"):  # a perfect image: infinite dB
        return _per_image(peak_signal_noise_ratio, images, truth).clamp(max=100)


def ssim(images: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Per image ``(N,)``: SSIM as Wang et al. 2004 define it (Gaussian window of sigma 1.5)."""

    def wang(t: np.ndarray, x: np.ndarray, data_range: float) -> float:
        return float(
            structural_similarity(
                t, x, data_range=data_range, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
            )
        )

    return _per_image(wang, images, truth)


def pillow_enlarge(small: torch.Tensor, size: int, method: Image.Resampling) -> torch.Tensor:
    """Small images ``(N, 1, h, w)`` uint8 -> ``(N, 1, size, size)`` uint8 by Pillow."""
    out = [np.asarray(Image.fromarray(s[0].numpy()).resize((size, size), method)) for s in small]
    return torch.from_numpy(np.stack(out)).unsqueeze(1)


def bits_per_dim(model: PixelCNN, images: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    batch = 25  # scores fastest on a CPU (see model.evaluate)
    parts = [
        log_likelihood(
            model, images[k : k + batch].long(), None if labels is None else labels[k : k + batch]
        ).bits_per_dim
        for k in range(0, images.shape[0], batch)
    ]
    return torch.cat(parts).double()


def repeat(labels: torch.Tensor | None, times: int) -> torch.Tensor | None:
    """Each label ``times`` times in a row, for an image's samples flattened ``(N * S,)``."""
    return None if labels is None else labels.repeat_interleave(times)


def guessed_labels(model: PixelCNN, small: torch.Tensor, args: argparse.Namespace) -> torch.Tensor | None:
    """Per small image ``(N, 1, h, w)``, the class to upscale it with ``(N,)``, or None to let
    ``upscale`` infer one per result (``--labels infer``: each particle draws a label and
    resampling keeps those that fit, which needs several particles). ``classifier``: the
    classifier's guess for the nearest enlargement. ``bicubic``: the class the model finds
    most likely for the bicubic enlargement (its class posterior, one pass per class).
    (``true``, the test set's label, is handled by the caller.)"""
    size = model.config.image_size
    if args.labels == "infer":
        return None
    if args.labels == "classifier":
        return guess_from_small(load_classifier(args.classifier), small, size // small.shape[-1])
    bicubic = pillow_enlarge(small, size, Image.Resampling.BICUBIC).long()
    posteriors = [log_likelihood(model, chunk).class_posterior for chunk in bicubic.split(25)]
    return torch.cat([p for p in posteriors if p is not None]).argmax(1)


def run_factor(
    model: PixelCNN, truth: torch.Tensor, labels: torch.Tensor, factor: int, args: argparse.Namespace
) -> tuple[dict[str, Any], torch.Tensor]:
    """One factor's figures, and the samples ``(N, S, 1, H, W)``."""
    n, s, size = truth.shape[0], args.samples, model.config.image_size
    small = downscale(truth, factor)
    per_call = max(1, args.batch // (s * args.particles))  # images per upscale call
    samples, used = [], []
    started = time.perf_counter()
    guess = None
    if model.config.num_classes:
        guess = labels if args.labels == "true" else guessed_labels(model, small, args)
    for first in range(0, n, per_call):
        lows = small[first : first + per_call].repeat_interleave(s, dim=0)  # one small image per result
        seeds = [i * s + k for i in range(first, first + lows.shape[0] // s) for k in range(s)]
        rows = range(first * s, first * s + len(seeds))
        given = None if guess is None else [int(guess[i // s]) for i in rows]
        images, _, inferred = upscale(
            model,
            lows,
            factor,
            len(seeds),
            labels=given,
            seeds=seeds,
            particles=args.particles,
            temperature=args.temperature,
        )
        samples.append(images.view(-1, s, 1, size, size))
        if inferred is not None:
            used.append(inferred.view(-1, s)[:, 0])
    seconds = (time.perf_counter() - started) / n
    print(f"  factor {factor}: {n} images, {seconds:.2f} s each")
    out = torch.cat(samples)
    agree = (downscale(out, factor) == small.unsqueeze(1)).flatten(2).all(2)
    bicubic = pillow_enlarge(small, size, Image.Resampling.BICUBIC)
    nearest = pillow_enlarge(small, size, Image.Resampling.NEAREST)
    mean = out.double().mean(1)
    # One label per image for all three scores: the one its first sample inferred.
    scored_with = torch.cat(used) if used else None
    figures = {
        "factor": factor,
        "small": f"{size // factor}x{size // factor}",
        "agreement_pct": 100.0 * float(agree.double().mean()),
        "psnr_sample": float(psnr(out[:, 0], truth).mean()),
        "psnr_mean": float(psnr(mean, truth).mean()),
        "psnr_bicubic": float(psnr(bicubic, truth).mean()),
        "psnr_nearest": float(psnr(nearest, truth).mean()),
        "ssim_sample": float(ssim(out[:, 0], truth).mean()),
        "ssim_mean": float(ssim(mean, truth).mean()),
        "ssim_bicubic": float(ssim(bicubic, truth).mean()),
        "ssim_nearest": float(ssim(nearest, truth).mean()),
        "bpd_sample": float(bits_per_dim(model, out[:, 0], scored_with).mean()),
        "bpd_samples": float(bits_per_dim(model, out.flatten(0, 1), repeat(scored_with, s)).mean()),
        "bpd_bicubic": float(bits_per_dim(model, bicubic, scored_with).mean()),
        "bpd_truth": float(bits_per_dim(model, truth, scored_with).mean()),
        "label_accuracy_pct": float("nan")
        if scored_with is None
        else 100.0 * float((scored_with == labels).double().mean()),
        "s_per_image": seconds,
    }
    return figures, out


COLUMNS = (  # header, key, format; "1" is one sample, "mean" the mean of the samples
    ("factor", "factor", "d"),
    ("small", "small", "s"),
    ("agree %", "agreement_pct", ".1f"),
    ("PSNR 1", "psnr_sample", ".2f"),
    ("PSNR mean", "psnr_mean", ".2f"),
    ("PSNR bicubic", "psnr_bicubic", ".2f"),
    ("PSNR nearest", "psnr_nearest", ".2f"),
    ("SSIM 1", "ssim_sample", ".3f"),
    ("SSIM mean", "ssim_mean", ".3f"),
    ("SSIM bicubic", "ssim_bicubic", ".3f"),
    ("SSIM nearest", "ssim_nearest", ".3f"),
    ("bits/dim 1", "bpd_sample", ".3f"),
    ("bits/dim all", "bpd_samples", ".3f"),
    ("bits/dim bicubic", "bpd_bicubic", ".3f"),
    ("bits/dim truth", "bpd_truth", ".3f"),
    ("label ok %", "label_accuracy_pct", ".1f"),
    ("s/image", "s_per_image", ".2f"),
)


def table(results: list[dict[str, Any]]) -> str:
    lines = ["  ".join(header for header, _, _ in COLUMNS)]
    for r in results:
        lines.append("  ".join(f"{r[key]:>{len(header)}{fmt}}" for header, key, fmt in COLUMNS))
    return "\n".join(lines)


def picture_rows(truth: torch.Tensor, small: torch.Tensor, samples: torch.Tensor, rows: int) -> torch.Tensor:
    """Per image: small (nearest, full size), bicubic, four samples, truth -> ``(rows * 7, 1, H, W)``."""
    size = truth.shape[-1]
    cells = []
    for i in range(rows):
        cells += [
            pillow_enlarge(small[i : i + 1], size, Image.Resampling.NEAREST),
            pillow_enlarge(small[i : i + 1], size, Image.Resampling.BICUBIC),
            samples[i, :4],
            truth[i : i + 1],
        ]
    return torch.cat(cells)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(allow_abbrev=False, prog="python -m bench.upscale", description=__doc__)
    p.add_argument("--weights", default=DEFAULT_WEIGHTS)
    p.add_argument("--limit", type=int, default=200, help="the first N images of the split, per factor")
    p.add_argument(
        "--split",
        choices=["test", "validation"],
        default="test",
        help="the images: test (to report), or validation (to choose settings without the test set)",
    )
    p.add_argument("--factors", type=int, nargs="+", default=[2, 4, 7])
    p.add_argument("--samples", type=int, default=8, help="results per image (the mean is of these)")
    p.add_argument("--particles", type=int, default=8, help="particles per result (the library default)")
    p.add_argument(
        "--labels",
        choices=["classifier", "bicubic", "infer", "true"],
        default="classifier",
        help="the class of each image's samples: the classifier's guess from the small image "
        "(default), the model's most likely class for the bicubic enlargement, inferred by the "
        "particles, or the true label (an oracle)",
    )
    p.add_argument("--classifier", default=DEFAULT_CLASSIFIER, help="for --labels classifier")
    p.add_argument("--temperature", type=float, default=1.0, help="of every pixel's distribution")
    p.add_argument("--batch", type=int, default=128, help="results x particles per upscale call")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--picture", default=None, help="save example rows here, e.g. docs/upscale.png")
    args = p.parse_args(argv)
    if args.limit < 1 or args.samples < 4 or args.particles < 1 or args.batch < 1 or args.temperature <= 0:
        p.error(
            "--limit, --particles and --batch must be at least 1, --samples at least 4, --temperature > 0"
        )
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load(args.weights)
    split = load_fashion_mnist(args.split)
    truth, labels = split.images[: args.limit], split.labels[: args.limit]
    print(
        f"{args.limit} {args.split} images per factor, {args.samples} samples each, "
        f"{args.particles} particle(s) per sample, temperature {args.temperature}, "
        f"{torch.get_num_threads()} threads"
    )
    results: list[dict[str, Any]] = []
    pictures = []
    for factor in args.factors:
        figures, samples = run_factor(model, truth, labels, factor, args)
        results.append(figures)
        pictures.append(picture_rows(truth, downscale(truth, factor), samples, min(3, args.limit)))
    print(table(results))
    if args.picture:
        image_grid(torch.cat(pictures), 7, scale=3).save(args.picture)
        print(f"wrote {args.picture}: rows of small, bicubic, four samples, truth (factors {args.factors})")
    print(json.dumps({"settings": vars(args), "results": results}, default=str))
    return 0 if all(math.isfinite(r["psnr_mean"]) for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
