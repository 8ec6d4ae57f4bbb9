"""``python -m model.sample --weights PATH``: write a PNG grid of samples.

``--per-class`` gives a conditional model's grid one row per class; otherwise ``--n``
images, with ``--label`` fixing the class.

``python -m model.sample upscale small.png --factor 4 --n 8 --out big.png``: super-resolution,
a grid of ``--n`` full-size images whose f x f block means are exactly the small image
(``model.upscale``). The image is read as the service reads uploads: a small image of
exactly size/f is used as it is (its size gives the factor when ``--factor`` is left out); a
larger one is resized to the model's size and shrunk with ``model.downscale``. Without ``--label`` a
conditional model uses the shipped classifier's guess of the class, as the service does.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from PIL import Image

from model.checkpoint import DEFAULT_WEIGHTS, CheckpointError, load
from model.classifier import DEFAULT_CLASSIFIER, classifier_for
from model.data import class_index, dequantize
from model.inference.generation import generate
from model.inference.superres import upscale
from model.network.classifier import guess_from_small
from model.network.pixelcnn import PixelCNN
from model.pictures import DEFAULT_MAX_PIXELS, ImageError, image_grid, read_small_image


def _label(p: argparse.ArgumentParser, text: str | None, model: PixelCNN) -> int | None:
    """``--label``: None, an index or one of the model's class names, read as the service reads them."""
    if text is None:
        return None
    names = model.config.label_names
    if not names:
        p.error("--label: this model is unconditional; leave --label out")
    if (index := class_index(text, names)) is None:
        p.error(f"--label {text!r} is not a class: use an index or one of {', '.join(names)}")
    return index


def _writable(p: argparse.ArgumentParser, out: str) -> None:
    """Fail before the sampling, not after it, when ``out`` cannot be written as a picture."""
    path = Path(out)
    if path.is_dir() or path.suffix.lower() not in Image.registered_extensions():
        p.error(f"--out {out!r} must be a file name ending in a picture's extension, such as .png")
    if not path.parent.is_dir():
        p.error(f"--out {out}: its directory does not exist")


def _model(p: argparse.ArgumentParser, weights: str) -> PixelCNN:
    try:
        return load(weights)
    except CheckpointError as exc:
        p.error(str(exc))


def upscale_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="python -m model.sample upscale", description=__doc__, allow_abbrev=False
    )
    p.add_argument(
        "small",
        help="the small image: PNG, JPEG, WebP, BMP or GIF, any mode (read as the model's grayscale or RGB)",
    )
    p.add_argument(
        "--factor", type=int, default=None, help="2, 4 or 7 for 28x28 models; default: the image's size says"
    )
    p.add_argument("--invert", action="store_true", help="the image is dark on light")
    p.add_argument("--weights", default=DEFAULT_WEIGHTS)
    p.add_argument("--out", default="upscaled.png")
    p.add_argument("--n", type=int, default=8)
    p.add_argument("--particles", type=int, default=8)
    p.add_argument(
        "--label",
        default=None,
        help="class index or name; default: the classifier's guess from the small image, or inferred "
        "by the particles for a model it does not fit",
    )
    p.add_argument(
        "--classifier", default=DEFAULT_CLASSIFIER, help="guesses the class when --label is not given"
    )
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0, help="image i uses seed + i")
    p.add_argument("--scale", type=int, default=3)
    args = p.parse_args(argv)
    if args.scale < 1:
        p.error("--scale must be at least 1")
    _writable(p, args.out)
    model = _model(p, args.weights)
    label = _label(p, args.label, model)
    size, levels = model.config.image_size, model.config.levels
    try:
        data = Path(args.small).read_bytes()
        small, factor = read_small_image(
            data,
            args.small,
            size,
            levels,
            args.factor,
            DEFAULT_MAX_PIXELS,
            args.invert,
            model.config.image_channels,
        )
    except (OSError, ImageError) as exc:
        p.error(str(exc))
    seeds = [args.seed + i for i in range(args.n)]
    classifier = None if label is not None else classifier_for(model, args.classifier)[0]
    if classifier is not None:
        label = int(guess_from_small(classifier, small.unsqueeze(0), factor)[0])
    try:
        images, bits, labels = upscale(
            model,
            small,
            factor,
            args.n,
            labels=label,
            seeds=seeds,
            temperature=args.temperature,
            particles=args.particles,
        )
    except ValueError as exc:  # a bad label, count, seed or temperature
        p.error(str(exc))
    image_grid(dequantize(images, levels), int(args.n**0.5 + 0.999), scale=args.scale).save(args.out)
    per_dim = ", ".join(f"{float(b) / (size**2 * model.config.image_channels):.3f}" for b in bits)
    used = "" if labels is None else f"; labels {', '.join(model.config.label_names[int(y)] for y in labels)}"
    print(f"wrote {args.out} ({args.n} images, factor {factor}; bits/dim {per_dim}{used})")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["upscale"]:
        return upscale_main(argv[1:])
    p = argparse.ArgumentParser(prog="python -m model.sample", description=__doc__, allow_abbrev=False)
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
    if args.scale < 1:
        p.error("--scale must be at least 1")
    _writable(p, args.out)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = _model(p, args.weights)
    k = model.config.num_classes
    if args.per_class:
        if k is None:
            p.error("--per-class needs a class-conditional model")
        labels: list[int | None] = [c for c in range(k) for _ in range(args.n)]
        columns = args.n
    else:
        labels = [_label(p, args.label, model)] * args.n
        columns = int(args.n**0.5 + 0.999)
    seeds = [args.seed + i for i in range(len(labels))]
    try:
        images = generate(
            model,
            len(labels),
            labels=labels if k else None,
            seeds=seeds,
            temperature=args.temperature,
            progress=True,
            method=args.method,
        )
    except ValueError as exc:  # a bad label, count, seed or temperature
        p.error(str(exc))
    image_grid(dequantize(images, model.config.levels), columns, scale=args.scale).save(args.out)
    print(f"wrote {args.out} ({len(labels)} images)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
