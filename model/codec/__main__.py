"""``python -m model.codec compress IN.png OUT`` / ``decompress IN OUT.png``, with ``--weights``.

Compresses one image of the model's size losslessly (PNG, JPEG, WebP, BMP or GIF, any mode,
read as the service reads uploads: made grayscale, or RGB for a colour model, transparent pixels
black), or decompresses a container into a PNG, grayscale or RGB (several images: one PNG each,
numbered). Bits/dim count every colour of every pixel (``H * W * 3`` dimensions for colour).
The coding is ``model.codec.range_coder``. A conditional model's label is the shipped
classifier's guess (``--classifier``), or with ``--fewest-bits`` (or a model the classifier
does not fit, such as a colour one) the label that costs the fewest bits (a forward pass per
class).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from PIL import Image

from model.checkpoint import DEFAULT_WEIGHTS, CheckpointError, load
from model.classifier import DEFAULT_CLASSIFIER, classifier_for
from model.codec.container import CodecError
from model.codec.range_coder import compress_with_stats, decompress
from model.data import dequantize
from model.network.pixelcnn import PixelCNN
from model.pictures import DEFAULT_MAX_PIXELS, ImageError, open_image, read_image, to_model_values


def read_png(path: str | Path, model: PixelCNN) -> torch.Tensor:
    """An image file as model values ``(1, C, H, W)`` (C: the model's colours); it must be the model's size.
    It is read as the service reads uploads (any accepted format and mode)."""
    size = model.config.image_size
    try:
        data = Path(path).read_bytes()
        width, height = open_image(data, str(path), DEFAULT_MAX_PIXELS).size
        if (width, height) != (size, size):
            raise CodecError(f"{path}: the model codes {size}x{size} images, this one is {width}x{height}")
        pixels = read_image(
            data, str(path), size, DEFAULT_MAX_PIXELS, colours=model.config.image_channels
        ).pixels
    except ImageError as exc:
        raise CodecError(str(exc)) from exc
    return to_model_values(pixels, model.config.levels).unsqueeze(0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        allow_abbrev=False,
        prog="python -m model.codec",
        description="Lossless image compression with a PixelCNN.",
    )
    p.add_argument("command", choices=("compress", "decompress"))
    p.add_argument(
        "src", help="compress: a PNG, JPEG, WebP, BMP or GIF of the model's size; decompress: data"
    )
    p.add_argument("dst", help="compress: the compressed file; decompress: a PNG")
    p.add_argument("--weights", default=DEFAULT_WEIGHTS)
    p.add_argument("--classifier", default=DEFAULT_CLASSIFIER, help="guesses a conditional model's label")
    p.add_argument("--fewest-bits", action="store_true", help="search every label for the cheapest instead")
    args = p.parse_args(argv)
    try:
        model = load(args.weights)
        levels, dims = model.config.levels, model.config.image_size**2 * model.config.image_channels
        if args.command == "compress":
            classifier, why_not = (None, None) if args.fewest_bits else classifier_for(model, args.classifier)
            if why_not and model.config.num_classes:
                print(f"note: labels by the fewest-bits search, since {why_not}")
            data, bits = compress_with_stats(model, read_png(args.src, model), classifier=classifier)
            Path(args.dst).write_bytes(data)
            print(
                f"{args.src} -> {args.dst}: {len(data)} bytes, {8 * len(data) / dims:.3f} bits/dim "
                f"(the model's ideal: {bits / dims:.3f})"
            )
            if levels < 256:
                print(f"note: quantized to {levels} levels; decompressing gives the bin centres")
            return 0
        images = dequantize(decompress(model, Path(args.src).read_bytes()), levels)
        dst = Path(args.dst)
        for k, image in enumerate(images):
            out = dst if len(images) == 1 else dst.with_name(f"{dst.stem}-{k:04d}{dst.suffix}")
            Image.fromarray(image[0].numpy() if len(image) == 1 else image.permute(1, 2, 0).numpy()).save(out)
        print(f"{args.src} -> {dst}: {len(images)} image(s)")
        return 0
    except (CodecError, CheckpointError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
