"""``python -m bench.compression --weights PATH --limit N``: our codec's size and speed, and PNG, WebP, xz.

On the first N test images (default 1,000) of Fashion-MNIST or of ``--data SOURCE`` (any source
``model.train`` takes, read at the model's size): the codec (``model.codec``, container
included) beside the model's ideal bits, PNG (Pillow, ``optimize=True``), WebP lossless (method
6), and JPEG XL lossless when an installed package can encode it, one file per image; gzip and
xz over the whole raw set for reference. The codec codes the images in containers of each of
``--sizes`` images (default 1, 32 and 64: ``/compress`` makes one container per request, of 1
up to 64 images), a conditional model's labels being the shipped classifier's guesses
(``--fewest-bits``: the labels that cost the fewest bits, a forward pass per class), and for
each size it reports bits/dim, images per second encoding (``compress_with_stats``) and
decoding (``decompress``) after one untimed warm-up container, the median seconds per container
each way, and how many images came back bit-exact; then ``generate`` of as many images as the
largest container holds, on the same threads, for the decoder's pace against sampling's. It
prints tables (the last line is JSON) and
asserts nothing about time. Every method codes the same model values (for 256 levels, the 8-bit
images themselves): for a colour model (``image_channels`` 3) and colour data, the same RGB
images, as RGB PNG, WebP and JPEG XL files and as interleaved RGB bytes for gzip and xz, and
bits/dim count ``H * W * 3`` dimensions an image.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import io
import json
import lzma
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from model.checkpoint import DEFAULT_WEIGHTS, file_sha256, load
from model.classifier import DEFAULT_CLASSIFIER, classifier_for
from model.codec import compress_with_stats, decompress
from model.data import DatasetError, quantize
from model.data.arrays import channels_last
from model.data.sources import open_source
from model.inference.generation import generate
from model.network.classifier import Classifier
from model.network.pixelcnn import PixelCNN

Encoder = Callable[[np.ndarray], bytes]


def _pillow(fmt: str, **options: object) -> Encoder:
    def encode(pixels: np.ndarray) -> bytes:
        out = io.BytesIO()
        Image.fromarray(pixels).save(out, format=fmt, **options)
        return out.getvalue()

    return encode


def jpeg_xl_encoder() -> tuple[Encoder | None, str]:
    """An installed JPEG XL lossless encoder, or None and why not. Installs nothing."""
    with contextlib.suppress(ImportError):
        import pillow_jxl  # noqa: F401  (registers its plugin with Pillow)
    if "JXL" in Image.SAVE:
        return _pillow("JXL", lossless=True, effort=9), "Pillow JXL plugin"
    try:
        import imagecodecs

        return (lambda p: bytes(imagecodecs.jpegxl_encode(p, lossless=True, effort=9))), "imagecodecs"
    except (ImportError, AttributeError):
        pass
    return None, "no encoder installed (Pillow here has no JXL codec; no pillow-jxl-plugin or imagecodecs)"


@dataclass
class Containers:
    """The codec on a set of images cut into containers of ``size``: totals over all of them."""

    size: int
    images: int = 0
    bytes: int = 0
    ideal_bits: float = 0.0
    exact: int = 0
    encode_s: list[float] = field(default_factory=list)  # one per container
    decode_s: list[float] = field(default_factory=list)

    def speed(self) -> dict[str, float]:
        return {
            "encode_images_per_s": round(self.images / sum(self.encode_s), 2),
            "decode_images_per_s": round(self.images / sum(self.decode_s), 2),
            "encode_s_median": round(statistics.median(self.encode_s), 4),
            "decode_s_median": round(statistics.median(self.decode_s), 4),
        }


def code_in_containers(
    model: PixelCNN, values: torch.Tensor, size: int, classifier: Classifier | None
) -> Containers:
    """Compress and decompress ``values`` ``size`` images at a time, timing each call; the
    labels are ``classifier``'s guesses, or the fewest-bits ones without it."""
    decompress(model, compress_with_stats(model, values[:size], classifier=classifier)[0])  # warm-up
    out = Containers(size)
    for start in tqdm(range(0, len(values), size), desc=f"codec, {size} per container"):
        x = values[start : start + size]
        started = time.perf_counter()
        data, bits = compress_with_stats(model, x, classifier=classifier)
        out.encode_s.append(time.perf_counter() - started)
        started = time.perf_counter()
        back = decompress(model, data)
        out.decode_s.append(time.perf_counter() - started)
        out.images += len(x)
        out.bytes += len(data)
        out.ideal_bits += bits
        out.exact += int((back == x).flatten(1).all(1).sum())
    return out


def sampling_rate(model: PixelCNN, n: int) -> float:
    """Images per second of ``generate(n)`` (median of 3 after a warm-up): the pace the decoder,
    which runs the same network step, is compared with."""
    seeds = list(range(n))
    generate(model, n, seeds=seeds)
    times = []
    for _ in range(3):
        started = time.perf_counter()
        generate(model, n, seeds=seeds)
        times.append(time.perf_counter() - started)
    return n / statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        allow_abbrev=False, prog="python -m bench.compression", description=__doc__.split("\n")[0]
    )
    p.add_argument("--weights", default=DEFAULT_WEIGHTS)
    p.add_argument("--limit", type=int, default=1000, help="the first N test images")
    p.add_argument("--sizes", default="1,32,64", help="images per container, comma-separated")
    p.add_argument("--data", default=None, metavar="SOURCE", help="a folder of images, an .npz or IDX files")
    p.add_argument("--data-dir", default=None, help="without --data: where Fashion-MNIST's files are")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    p.add_argument("--classifier", default=DEFAULT_CLASSIFIER, help="guesses a conditional model's labels")
    p.add_argument("--fewest-bits", action="store_true", help="search every label for the cheapest instead")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = [int(s) for s in args.sizes.split(",")]
    model = load(args.weights)
    cfg = model.config
    try:
        source = open_source(args.data, cfg.image_size, data_dir=args.data_dir, colours=cfg.image_channels)
        data = source.part("test")
    except DatasetError as exc:
        p.error(str(exc))
    n = min(args.limit, len(data))
    values = quantize(data.images[:n], cfg.levels).to(torch.uint8)  # (n, K, H, W) model values
    dims = cfg.image_size**2 * cfg.image_channels  # every colour of every pixel
    classifier, why_not = (None, None) if args.fewest_bits else classifier_for(model, args.classifier)
    if why_not and cfg.num_classes:
        print(f"note: labels by the fewest-bits search, since {why_not}")
    rule = "fewest bits" if classifier is None else "the classifier's guesses"
    runs = [code_in_containers(model, values, size, classifier) for size in sizes]

    pixels = channels_last(values)
    jxl, jxl_note = jpeg_xl_encoder()
    per_image: dict[str, tuple[Encoder | None, str]] = {
        "PNG (Pillow, optimize)": (_pillow("PNG", optimize=True), "one file per image"),
        "WebP lossless (method 6)": (
            _pillow("WEBP", lossless=True, quality=100, method=6),
            "one file per image",
        ),
        "JPEG XL lossless": (jxl, jxl_note if jxl is None else f"{jxl_note}, one file per image"),
    }
    ideal = runs[0].ideal_bits / 8 / n
    rows: list[tuple[str, float | None, str]] = [
        ("model ideal, -log2 p(x | label)", ideal, "what the model's probabilities cost"),
    ]
    for run in runs:
        per = "one container per image" if run.size == 1 else f"containers of {run.size}"
        overhead = f"{per}: +{run.bytes / n - ideal:.1f} B"
        rows.append((f"ours, {run.size} per container", run.bytes / n, overhead))
    for name, (encode, note) in per_image.items():
        rows.append((name, None if encode is None else sum(len(encode(im)) for im in pixels) / n, note))
    raw = pixels.tobytes()
    rows.append(("gzip -9, whole raw set", len(gzip.compress(raw, 9, mtime=0)) / n, "one stream for all"))
    xz = len(lzma.compress(raw, preset=9 | lzma.PRESET_EXTREME)) / n
    rows.append(("xz -9e, whole raw set", xz, "one stream for all"))

    colours = "grayscale" if cfg.image_channels == 1 else "RGB"
    print(
        f"first {n} {source.name} test images, {cfg.image_size}x{cfg.image_size} {colours}, "
        f"{cfg.levels} levels, {dims} dims an image"
    )
    print(f"weights {args.weights} ({cfg.arch}, {cfg.channels} channels, {cfg.layers} layers)")
    if cfg.num_classes:
        print(f"labels: {rule}")
    print(f"{'method':34} {'bytes/image':>11} {'bits/dim':>9}  notes")
    for name, size, note in rows:
        figures = f"{'n/a':>11} {'n/a':>9}" if size is None else f"{size:11.1f} {8 * size / dims:9.3f}"
        print(f"{name:34} {figures}  {note}")
    threads = torch.get_num_threads()
    print(f"\ncodec speed, {threads} torch threads (images/s; median seconds per container)")
    columns = ("encode", "decode", "enc s", "dec s")
    print(f"{'per container':>13} {' '.join(f'{c:>8}' for c in columns)} {'bits/dim':>9} {'exact':>11}")
    for run in runs:
        s = run.speed()
        print(
            f"{run.size:13d} {s['encode_images_per_s']:8.2f} {s['decode_images_per_s']:8.2f} "
            f"{s['encode_s_median']:8.3f} {s['decode_s_median']:8.3f} "
            f"{8 * run.bytes / n / dims:9.4f} {f'{run.exact}/{n}':>11}"
        )
    largest = max(runs, key=lambda run: run.size)
    generate_rate = sampling_rate(model, largest.size)
    decode_rate = largest.speed()["decode_images_per_s"]
    print(
        f"generate({largest.size}) on the same threads: {generate_rate:.2f} images/s (median of 3); "
        f"containers of {largest.size} decode at {decode_rate / generate_rate:.2f}x that"
    )
    summary = {
        "weights": args.weights,
        "sha256": file_sha256(args.weights),
        "images": n,
        "colours": cfg.image_channels,
        "dims_per_image": dims,
        "threads": threads,
        "labels": rule if cfg.num_classes else None,
        "bytes_per_image": {name: None if s is None else round(s, 2) for name, s, _ in rows},
        "bits_per_dim": {name: None if s is None else round(8 * s / dims, 4) for name, s, _ in rows},
        "speed": {str(run.size): run.speed() for run in runs},
        "exact": {str(run.size): run.exact for run in runs},
        "generate_images_per_s": {str(largest.size): round(generate_rate, 2)},
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
