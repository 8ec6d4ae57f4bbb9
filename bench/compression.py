"""``python -m bench.compression --weights PATH --limit N``: our codec against PNG, WebP, gzip, xz.

On the first N Fashion-MNIST test images, one file per image: the codec (``model.codec``,
container included) beside the model's ideal bits, PNG (Pillow, ``optimize=True``), WebP
lossless (method 6), and JPEG XL lossless when an installed package can encode it; gzip and
xz over the whole raw set for reference. Also the median encode and decode time per image
and how many round trips came back bit-exact. It prints a table (the last line is JSON) and
asserts nothing about time. Every method codes the same model values (for 256 levels, the
8-bit images themselves).
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

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from model.checkpoint import DEFAULT_WEIGHTS, file_sha256, load
from model.codec import compress_with_stats, decompress
from model.data import load_fashion_mnist, quantize

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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.compression", description=__doc__.split("\n")[0])
    p.add_argument("--weights", default=DEFAULT_WEIGHTS)
    p.add_argument("--limit", type=int, default=200, help="the first N test images")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--threads", type=int, default=None, help="torch threads (the codec itself uses 1)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load(args.weights)
    cfg = model.config
    data = load_fashion_mnist("test", args.data_dir, cfg.image_size)
    n = min(args.limit, len(data))
    values = quantize(data.images[:n], cfg.levels).to(torch.uint8)  # (n, 1, H, W) model values
    dims = cfg.image_size**2

    ours, ideal, enc_s, dec_s, exact = [], [], [], [], 0
    for k in tqdm(range(n), desc="codec (images)"):
        x = values[k : k + 1]
        started = time.perf_counter()
        blob, bits = compress_with_stats(model, x)
        enc_s.append(time.perf_counter() - started)
        started = time.perf_counter()
        exact += int(torch.equal(decompress(model, blob), x))
        dec_s.append(time.perf_counter() - started)
        ours.append(len(blob))
        ideal.append(bits / 8)

    pixels = values[:, 0].numpy()
    jxl, jxl_note = jpeg_xl_encoder()
    per_image: dict[str, tuple[Encoder | None, str]] = {
        "PNG (Pillow, optimize)": (_pillow("PNG", optimize=True), "one file per image"),
        "WebP lossless (method 6)": (
            _pillow("WEBP", lossless=True, quality=100, method=6),
            "one file per image",
        ),
        "JPEG XL lossless": (jxl, jxl_note if jxl is None else f"{jxl_note}, one file per image"),
    }
    rows: list[tuple[str, float | None, str]] = [
        ("model ideal, -log2 p(x | label)", sum(ideal) / n, "what the model's probabilities cost"),
        (
            "ours (model.codec)",
            sum(ours) / n,
            f"one container per image: +{(sum(ours) - sum(ideal)) / n:.1f} B",
        ),
    ]
    for name, (encode, note) in per_image.items():
        rows.append((name, None if encode is None else sum(len(encode(im)) for im in pixels) / n, note))
    raw = pixels.tobytes()
    rows.append(("gzip -9, whole raw set", len(gzip.compress(raw, 9, mtime=0)) / n, "one stream for all"))
    xz = len(lzma.compress(raw, preset=9 | lzma.PRESET_EXTREME)) / n
    rows.append(("xz -9e, whole raw set", xz, "one stream for all"))

    print(f"first {n} Fashion-MNIST test images, {cfg.image_size}x{cfg.image_size}, {cfg.levels} levels")
    print(f"weights {args.weights} ({cfg.arch}, {cfg.channels} channels, {cfg.layers} layers)")
    print(f"{'method':34} {'bytes/image':>11} {'bits/dim':>9}  notes")
    for name, size, note in rows:
        figures = f"{'n/a':>11} {'n/a':>9}" if size is None else f"{size:11.1f} {8 * size / dims:9.3f}"
        print(f"{name:34} {figures}  {note}")
    encode_ms, decode_ms = 1000 * statistics.median(enc_s), 1000 * statistics.median(dec_s)
    print(f"median per image: encode {encode_ms:.0f} ms, decode {decode_ms:.0f} ms")
    print(f"bit-exact round trips: {exact}/{n}")
    summary = {
        "weights": args.weights,
        "sha256": file_sha256(args.weights),
        "images": n,
        "bytes_per_image": {name: None if s is None else round(s, 2) for name, s, _ in rows},
        "bits_per_dim": {name: None if s is None else round(8 * s / dims, 4) for name, s, _ in rows},
        "encode_ms_median": round(encode_ms, 1),
        "decode_ms_median": round(decode_ms, 1),
        "exact": exact,
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
