"""``python -m bench.upscale``: super-resolution of test images, against Pillow.

The images are Fashion-MNIST's test set, or ``--data SOURCE``'s (any source ``model.train``
takes: a folder of images, an .npz file or IDX files), read at the model's size and in its
colours (grayscale or RGB). For each factor (``--factors``; by default the model's
``upscale_factors``: 2, 4, 7 at 28x28, small images of 14x14, 7x7 and 4x4 made with
``model.downscale``), on the first ``--limit`` test images (default 200; ``--split validation``
to choose settings without the test set): ``--samples`` results per image (default 8;
result s of image i uses seed ``i * samples + s``), ``--particles`` each, all of an image's
samples with one class (a conditional model; ``--labels``: by default the shipped classifier's
guess from the small image, enlarged nearest, where the classifier fits the model, see
``model.classifier.classifier_for``; else the model's most likely class for the bicubic
enlargement). It prints, per factor: the agreement rate (``downscale(result) == small`` in
every colour, must be 100%); PSNR (over all colours) and SSIM (the mean of the colours') against
the true image, averaged over images, for one sample, for the mean of the samples, and for
Pillow's bicubic and nearest enlargements of the same small image (RGB for colour); bits/dim
(per pixel and colour) under the model of one sample, of all samples, of the bicubic
enlargement and of the true image, all under the class the image's first sample used (and how
often that is the true label); and seconds per image (all its samples and particles). SSIM
needs images of at least 11x11 (NaN below). The last line is JSON.
``--picture`` saves rows of: small image, bicubic, four samples, truth. Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from model.checkpoint import DEFAULT_WEIGHTS, CheckpointError, load
from model.classifier import DEFAULT_CLASSIFIER, classifier_for
from model.data import DatasetError
from model.data.arrays import DEFAULT_VALIDATION_FRACTION
from model.data.sources import open_source
from model.inference.likelihood import log_likelihood
from model.inference.superres import downscale, upscale
from model.network.classifier import Classifier, guess_from_small
from model.network.pixelcnn import PixelCNN
from model.pictures import image_grid, upscale_factors
from model.training.run_data import with_class_names

SSIM_WINDOW = 11  # the side of SSIM's Gaussian window at sigma 1.5 (scikit-image truncates at 3.5 sigma)


def _per_image(metric: Callable[..., float], images: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """``metric(truth, image)`` of scikit-image for each pair of ``(N, C, H, W)`` images 0..255:
    ``(H, W)`` arrays for grayscale, ``(C, H, W)`` for colour."""
    pairs = zip(truth.double().numpy(), images.double().numpy(), strict=True)
    gray = truth.shape[1] == 1
    return torch.tensor(
        [float(metric(t[0] if gray else t, x[0] if gray else x, data_range=255.0)) for t, x in pairs],
        dtype=torch.float64,
    )


def psnr(images: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Per image ``(N,)``, in dB, for values 0..255, the squared error averaged over every pixel
    and colour (a perfect image counts as 100 dB)."""
    with np.errstate(divide="ignore"):  # a perfect image: infinite dB
        return _per_image(peak_signal_noise_ratio, images, truth).clamp(max=100)


def ssim(images: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Per image ``(N,)``: SSIM as Wang et al. 2004 define it (Gaussian window of sigma 1.5),
    for colour the mean of the colours'; NaN for images smaller than the window."""
    if min(truth.shape[-2:]) < SSIM_WINDOW:
        return torch.full((truth.shape[0],), math.nan, dtype=torch.float64)

    def wang(t: np.ndarray, x: np.ndarray, data_range: float) -> float:
        return float(
            structural_similarity(
                t,
                x,
                data_range=data_range,
                gaussian_weights=True,
                sigma=1.5,
                use_sample_covariance=False,
                channel_axis=0 if t.ndim == 3 else None,
            )
        )

    return _per_image(wang, images, truth)


def pillow_enlarge(small: torch.Tensor, size: int, method: Image.Resampling) -> torch.Tensor:
    """Small images ``(N, C, h, w)`` uint8 -> ``(N, C, size, size)`` uint8 by Pillow, each
    enlarged as one grayscale (C = 1) or RGB (C = 3) image."""
    if small.shape[1] == 1:
        out = [np.asarray(Image.fromarray(s[0].numpy()).resize((size, size), method)) for s in small]
        return torch.from_numpy(np.stack(out)).unsqueeze(1)
    rgb = small.permute(0, 2, 3, 1).contiguous().numpy()  # (N, h, w, 3)
    out = [np.asarray(Image.fromarray(s).resize((size, size), method)) for s in rgb]
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).contiguous()


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


def guessed_labels(
    model: PixelCNN, small: torch.Tensor, rule: str, classifier: Classifier | None
) -> torch.Tensor | None:
    """Per small image ``(N, C, h, w)``, the class to upscale it with ``(N,)``, or None to let
    ``upscale`` infer one per result (``infer``: each particle draws a label and resampling
    keeps those that fit, which needs several particles). ``classifier``: ``classifier``'s
    guess for the nearest enlargement. ``bicubic``: the class the model finds most likely for
    the bicubic enlargement (its class posterior, one pass per class).
    (``true``, the test set's label, is handled by the caller.)"""
    size = model.config.image_size
    if rule == "infer":
        return None
    if rule == "classifier":
        assert classifier is not None
        return guess_from_small(classifier, small, size // small.shape[-1])
    bicubic = pillow_enlarge(small, size, Image.Resampling.BICUBIC).long()
    posteriors = [log_likelihood(model, chunk).class_posterior for chunk in bicubic.split(25)]
    return torch.cat([p for p in posteriors if p is not None]).argmax(1)


def run_factor(
    model: PixelCNN,
    truth: torch.Tensor,
    labels: torch.Tensor | None,
    factor: int,
    args: argparse.Namespace,
    rule: str,
    classifier: Classifier | None,
) -> tuple[dict[str, Any], torch.Tensor]:
    """One factor's figures, and the samples ``(N, S, C, H, W)``. ``labels``: the true ones
    (None for an unconditional model); ``rule``: how to choose a class (``--labels``)."""
    n, s, size, c = truth.shape[0], args.samples, model.config.image_size, model.config.image_channels
    small = downscale(truth, factor)
    per_call = max(1, args.batch // (s * args.particles))  # images per upscale call
    samples, used = [], []
    started = time.perf_counter()
    guess = None
    if model.config.num_classes:
        guess = labels if rule == "true" else guessed_labels(model, small, rule, classifier)
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
        samples.append(images.view(-1, s, c, size, size))
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
        if scored_with is None or labels is None
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
    """Per image: small (nearest, full size), bicubic, four samples, truth -> ``(rows * 7, C, H, W)``."""
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
    p.add_argument(
        "--data",
        default=None,
        metavar="SOURCE",
        help="a folder of images, an .npz file or IDX files (default: Fashion-MNIST), read at the "
        "model's size and in its colours",
    )
    p.add_argument("--data-dir", default=None, help="without --data: where Fashion-MNIST's files are")
    p.add_argument(
        "--validation-fraction",
        type=float,
        default=DEFAULT_VALIDATION_FRACTION,
        help="for --split validation: the share of the training images held out (as the model trained)",
    )
    p.add_argument("--limit", type=int, default=200, help="the first N images of the split, per factor")
    p.add_argument(
        "--split",
        choices=["test", "validation"],
        default="test",
        help="the images: test (to report), or validation (to choose settings without the test set)",
    )
    p.add_argument(
        "--factors",
        type=int,
        nargs="+",
        default=None,
        help="enlargement factors (default: the model's upscale_factors, 2 4 7 at 28x28)",
    )
    p.add_argument("--samples", type=int, default=8, help="results per image (the mean is of these)")
    p.add_argument("--particles", type=int, default=8, help="particles per result (the library default)")
    p.add_argument(
        "--labels",
        choices=["classifier", "bicubic", "infer", "true"],
        default="classifier",
        help="the class of each image's samples (a conditional model): the classifier's guess from "
        "the small image (default; where the classifier does not fit the model, as bicubic), the "
        "model's most likely class for the bicubic enlargement, inferred by the particles, or the "
        "true label (an oracle)",
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
    try:
        model = load(args.weights)
        cfg = model.config
        if cfg.levels != 256:
            p.error(f"bench.upscale compares 8-bit images; this model codes {cfg.levels} levels, not 256")
        source = open_source(args.data, cfg.image_size, data_dir=args.data_dir, colours=cfg.image_channels)
        if cfg.num_classes is not None:
            with_class_names(cfg, source)  # the data's classes must be the model's
        split = source.part(args.split, args.validation_fraction)
        rule, classifier = args.labels, None
        if cfg.num_classes and rule == "classifier":
            classifier, why_not = classifier_for(model, args.classifier)
            if classifier is None:
                rule = "bicubic"
                print(f"note: labels by the model's most likely class for the bicubic enlargement: {why_not}")
    except (CheckpointError, DatasetError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    size = cfg.image_size
    factors = upscale_factors(size) if args.factors is None else tuple(args.factors)
    if not factors:
        p.error(f"a {size}x{size} model has no upscale factors; name one with --factors")
    if any(f < 2 or size % f for f in factors):
        p.error(f"--factors must divide the model's image size {size} and be at least 2, got {list(factors)}")
    truth = split.images[: args.limit]
    labels = split.labels[: args.limit] if cfg.num_classes else None
    if not len(truth):
        print(f"error: {source.name}: its {args.split} split has no images", file=sys.stderr)
        return 2
    of = "" if args.data is None else f" of {source.name}"
    print(
        f"{len(truth)} {args.split} images{of} per factor, {args.samples} samples each, "
        f"{args.particles} particle(s) per sample, temperature {args.temperature}, "
        f"{torch.get_num_threads()} threads"
    )
    results: list[dict[str, Any]] = []
    pictures = []
    for factor in factors:
        figures, samples = run_factor(model, truth, labels, factor, args, rule, classifier)
        results.append(figures)
        pictures.append(picture_rows(truth, downscale(truth, factor), samples, min(3, len(truth))))
    print(table(results))
    if args.picture:
        image_grid(torch.cat(pictures), 7, scale=3).save(args.picture)
        print(f"wrote {args.picture}: rows of small, bicubic, four samples, truth (factors {list(factors)})")
    settings = {**vars(args), "factors": list(factors), "labels_used": rule if cfg.num_classes else None}
    print(json.dumps({"settings": settings, "data": source.name, "results": results}, default=str))
    return 0 if all(math.isfinite(r["psnr_mean"]) for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
