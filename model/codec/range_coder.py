"""Lossless image compression with the model: range coding with its per-pixel distributions.

An image costs about its negative log2-likelihood under the model, plus the container's
13 header bytes (see ``model.codec.container``), under a byte of range coder flush, and its
label. Pixels are coded in raster order with ``constriction``'s range coder, each with the
categorical distribution that the cached incremental model (``model.inference.caches``)
predicts from the pixels before it. A colour model (``image_channels`` K = 3) codes each
pixel's red, green and blue in turn, on the cached model's colour steps: the coded dimensions
are ``d = t * K + k`` for colour k of pixel t, each predicted from the dimensions before it,
and bits/dim count ``H * W * K`` of them. Encoding and decoding run the same loop
(``model.codec.walk``) on the same batch shapes, fed the known pixels when encoding and the
decoded ones when decoding.
A conditional model codes each image with the label that costs it the fewest bits, or with a
classifier's guess of its class (``model.codec.labels``); the labels go into the stream first,
uniformly coded (log2 of the number of classes, in bits). The decoder reads them, whichever
rule chose them.

The decoder needs each pixel's distribution before it can read the pixel, so it computes and
reads them one at a time, one batch after the other (the stream is read in order). The
encoder knows every pixel: its loop only keeps the logits, the loops of its batches run side
by side on the caller's threads (each on one torch thread, so the same bits), and it turns
the logits into probabilities and codes them a row of pixels at a time, with the same
row-wise ops, so the same bits. Everything that feeds a coded probability is defined by one
torch thread (``model.codec.threads``): the decoder runs on the caller's threads, which gave
the same bits wherever we measured, and checks it with the container's checksum, decoding
again on one thread if not. Ranking the labels, when there is no classifier to guess them,
uses all of the caller's threads.

Guarantee: data decodes bit-exactly with the same weights (checked by a hash in the header),
the same versions of torch, numpy and constriction, and the same CPU architecture. Change
one of those and floating point results may differ in the last bit; a single changed
probability makes the rest of the stream decode to other pixels, which the CRC-32 rejects.

``python -m model.codec compress IN.png OUT`` and ``... decompress IN OUT.png`` (with
``--weights PATH``) are the command line (``model/codec/__main__.py``).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from functools import partial
from typing import Any

import constriction
import numpy as np
import torch

from model.checkpoint import tensors_digest
from model.codec.container import BATCH, HASH_BYTES, CodecError, Header, pack, padded, unpack
from model.codec.labels import best_labels, chosen_labels
from model.codec.threads import side_by_side
from model.codec.walk import dimensions, teacher_forced, to_images, walk
from model.inference.likelihood import check_images
from model.inference.threads import one_thread
from model.network.classifier import Classifier
from model.network.pixelcnn import PixelCNN

__all__ = ["BATCH", "CodecError", "best_labels", "compress", "compress_with_stats", "decompress"]

LN2 = math.log(2.0)
_PIXEL = constriction.stream.model.Categorical(perfect=False)  # probabilities given per pixel
TRIM_MAX_IMAGES = BATCH  # up to this many images, the encoder keeps what it needs to trim the payload
MAX_TRIM = 8  # trailing payload bytes the encoder tries to drop
Coded = list[tuple[Any, np.ndarray | int, np.ndarray]]  # (entropy model, parameters, symbols)


def weights_hash(model: PixelCNN) -> bytes:
    """The container's short hash of the weights: the first bytes of their sha256 digest."""
    tensors = {name: t.detach().cpu() for name, t in model.state_dict().items()}
    return bytes.fromhex(tensors_digest(tensors)[: 2 * HASH_BYTES])


def _probabilities(logits: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Logits ``(M, levels)`` float32 -> the coded probabilities and their logs, float64.

    Every row on its own, the same bits for one pixel of a batch as for a row of them: the
    softmax is float64 so that both sides see the same probabilities.
    """
    log_probs = torch.log_softmax(logits.double(), dim=1).numpy()
    return np.exp(log_probs), log_probs


def _check_model(model: PixelCNN) -> None:
    if any(p.device.type != "cpu" for p in model.parameters()):
        raise CodecError("the codec runs on the CPU: move the model there first")


def _check_images(model: PixelCNN, images: torch.Tensor) -> torch.Tensor:
    """Images as CPU uint8 ``(N, K, H, W)`` (K: the model's colours), or a CodecError."""
    if not isinstance(images, torch.Tensor) or images.is_floating_point() or images.is_complex():
        k = model.config.image_channels
        raise CodecError(f"images must be an integer tensor (N, {k}, H, W) of model values")
    try:
        check_images(model, images)
    except ValueError as exc:
        raise CodecError(str(exc)) from exc
    return images.detach().cpu().to(torch.uint8)


def _colours(channels: int) -> str:
    return "grayscale" if channels == 1 else f"colour ({channels}-channel RGB)"


def _label_bytes(labels: torch.Tensor | None) -> bytes:
    return b"" if labels is None else labels.numpy().astype("<u4").tobytes()


def compress_with_stats(
    model: PixelCNN,
    images: torch.Tensor,
    labels: int | Sequence[int] | torch.Tensor | None = None,
    *,
    classifier: Classifier | None = None,
) -> tuple[bytes, float]:
    """Compress images ``(N, K, H, W)`` of model values in ``[0, levels)`` (K: the model's
    ``image_channels``, 1 for grayscale, 3 for RGB).

    ``labels`` (one, or ``(N,)``) are for a conditional model; without them each image gets
    ``classifier``'s guess of its class when one is given (fast), else the label that costs it
    the fewest bits (a forward pass per class: most of the work). Returns the container and the
    ideal total cost in bits, ``-sum log2 p(x | label)`` under the coded probabilities (without
    the labels and the container), so ``8 * len(data) - bits`` is the overhead; per dimension,
    divide by ``N * H * W * K``. The labels' forward passes and the pixel loops of the batches
    of ``BATCH`` images run side by side on the caller's torch threads
    (``torch.get_num_threads()``), each on one.
    """
    _check_model(model)
    images = _check_images(model, images)
    cfg, n = model.config, len(images)
    header = Header(weights_hash(model), cfg.image_size, cfg.levels, n, cfg.image_channels)
    header.pack()  # refuses what the format cannot hold before the work starts
    chosen = chosen_labels(model, images, labels, classifier)
    encoder = constriction.stream.queue.RangeEncoder()
    coded: Coded | None = [] if n <= TRIM_MAX_IMAGES else None  # replayed while trimming

    if chosen is not None and (cfg.num_classes or 0) > 1 and n:
        uniform, label_symbols = constriction.stream.model.Uniform(cfg.num_classes), chosen.numpy()
        encoder.encode(label_symbols.astype(np.int32), uniform)
        if coded is not None:
            coded.append((uniform, n, label_symbols))
    bits = 0.0
    chunks = images.split(BATCH) if n else ()  # (splitting no images gives one empty chunk)
    workers = torch.get_num_threads()
    width = cfg.image_size * cfg.image_channels  # the coded dimensions of an image row
    walks = [  # independent: the chunks' logits are computed side by side, coded in order
        partial(teacher_forced, model, x, None if chosen is None else chosen[k * BATCH : (k + 1) * BATCH])
        for k, x in enumerate(chunks)
    ]
    with one_thread():
        for x, logits in zip(chunks, side_by_side(walks, workers), strict=True):
            symbols = dimensions(x).T.numpy().astype(np.int32)  # (H * W * K, B)
            for row in range(0, len(symbols), width):  # an image row of pixels at a time
                values = symbols[row : row + width].reshape(-1)
                probs, log_probs = _probabilities(logits[row : row + width].flatten(0, 1))
                encoder.encode(values, _PIXEL, probs)
                if coded is not None:
                    coded.append((_PIXEL, probs, values))
                bits -= float(log_probs[np.arange(len(values)), values].sum()) / LN2
    payload = encoder.get_compressed().astype(">u4").tobytes()
    if coded is not None:
        payload = _trim(payload, coded)
    checksum = header.checksum(payload, _label_bytes(chosen), images.numpy().tobytes())
    return pack(header, checksum, payload), bits


def _decoder(payload: bytes) -> Any:
    """A range decoder reading ``payload`` (big-endian words, maybe trimmed; see ``model.container``)."""
    words = np.frombuffer(padded(payload), dtype=">u4").astype(np.uint32)
    return constriction.stream.queue.RangeDecoder(words)


def _trim(payload: bytes, coded: Coded) -> bytes:
    """``payload`` less the trailing bytes (up to ``MAX_TRIM``) that decoding does without.

    The range coder's words end with a point inside its final interval, written in full;
    the decoder pads a shortened payload with 0xFF bytes, which often still lands inside.
    Each cut is kept only if a decoder fed the same probabilities returns every symbol, so a
    trimmed payload decodes exactly as the full one (saving 1.7 bytes an image on average).
    """
    best = payload
    for cut in range(1, min(MAX_TRIM, len(payload)) + 1):
        decoder = _decoder(payload[:-cut])
        try:
            exact = all(np.array_equal(decoder.decode(m, p), symbols) for m, p, symbols in coded)
        except Exception:  # constriction's errors have no common type
            exact = False
        if not exact:
            break  # padding only raises the point further: longer cuts fail too (almost always)
        best = payload[:-cut]
    return best


def compress(
    model: PixelCNN,
    images: torch.Tensor,
    labels: int | Sequence[int] | torch.Tensor | None = None,
    *,
    classifier: Classifier | None = None,
) -> bytes:
    """Compress images ``(N, C, H, W)`` of model values; see :func:`compress_with_stats`."""
    return compress_with_stats(model, images, labels, classifier=classifier)[0]


def decompress(model: PixelCNN, data: bytes) -> torch.Tensor:
    """The images ``(N, K, H, W)`` uint8 that ``compress(model, ...)`` made ``data`` from.

    Raises ``CodecError`` for data that is truncated, corrupted, not ours, or made with
    other weights (or for a model of other colours: grayscale data needs a grayscale model).
    """
    _check_model(model)
    if not isinstance(data, bytes | bytearray | memoryview):
        raise CodecError(f"compressed data must be bytes, not {type(data).__name__}")
    header, checksum, payload = unpack(bytes(data))
    cfg = model.config
    if (header.size, header.levels) != (cfg.image_size, cfg.levels):
        raise CodecError(
            f"the data holds {header.size}x{header.size} images with {header.levels} levels; "
            f"this model codes {cfg.image_size}x{cfg.image_size} with {cfg.levels}"
        )
    if header.channels != cfg.image_channels:
        raise CodecError(
            f"the data holds {_colours(header.channels)} images; this model codes "
            f"{_colours(cfg.image_channels)} ones: decompress with the model that compressed it"
        )
    if header.weights != weights_hash(model):
        raise CodecError(
            f"the data was compressed with other weights (hash {header.weights.hex()}, "
            f"this model's is {weights_hash(model).hex()})"
        )
    # The decoder reads one stream, one batch after the other, so it cannot run batches side by
    # side as the encoder does: it runs the network on the caller's threads instead. Where
    # that gives other bits than the encoder's one thread (none here, at 2 and 4 threads, but
    # nothing promises it), the checksum fails and the data is decoded again on one thread.
    threads = torch.get_num_threads() > 1

    def decoded(reference: bool) -> tuple[torch.Tensor, bool]:
        """The images, and whether the container's checksum holds for them and their labels."""
        labels, images = _decode(model, header, payload, reference)
        found = header.checksum(payload, _label_bytes(labels), images.numpy().tobytes())
        return images, found == checksum

    try:
        images, exact = decoded(reference=not threads)
    except CodecError:
        if not threads:
            raise
        exact = False
    if not exact and threads:  # perhaps the threads' bits: decode again the encoder's way
        images, exact = decoded(reference=True)
    if not exact:
        raise CodecError("corrupted or truncated data: the images' checksum does not match")
    return images


def _decode(
    model: PixelCNN, header: Header, payload: bytes, reference: bool
) -> tuple[torch.Tensor | None, torch.Tensor]:
    """Read the labels and the images ``(N, K, H, W)`` uint8 from ``payload`` (not checked).

    ``reference``: on one torch thread, as the encoder computes; else on the caller's threads.
    """
    cfg, n = model.config, header.count
    decoder = _decoder(payload)

    def read(entropy_model: object, params: np.ndarray | int) -> np.ndarray:
        try:
            return decoder.decode(entropy_model, params)
        except Exception as exc:  # constriction's errors have no common type
            raise CodecError(f"corrupted data: the range decoder failed ({exc})") from exc

    labels: torch.Tensor | None = None
    if cfg.num_classes is not None:
        labels = torch.zeros(n, dtype=torch.long)
        if cfg.num_classes > 1 and n:
            uniform = constriction.stream.model.Uniform(cfg.num_classes)
            labels = torch.from_numpy(read(uniform, n).astype(np.int64))
    pixels = np.zeros((n, cfg.image_size**2 * cfg.image_channels), dtype=np.uint8)  # coding order
    with one_thread() if reference else contextlib.nullcontext():
        for start in range(0, n, BATCH):
            b = min(BATCH, n - start)

            def step(d: int, logits: torch.Tensor, start: int = start) -> torch.Tensor:
                values = read(_PIXEL, _probabilities(logits)[0])  # dimension d of every image
                pixels[start : start + len(values), d] = values
                return torch.from_numpy(values.astype(np.int64))

            walk(model, None if labels is None else labels[start : start + b], b, step)
    return labels, to_images(pixels, cfg.image_size, cfg.image_channels)  # as the encoder's
