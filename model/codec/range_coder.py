"""Lossless image compression with the model: range coding with its per-pixel distributions.

An image costs about its negative log2-likelihood under the model, plus the container's
13 header bytes (see ``model.codec.container``), under a byte of range coder flush, and its
label. Pixels are coded in raster order with ``constriction``'s range coder, each with the
categorical distribution that the cached incremental model (``model.inference.caches``)
predicts from the pixels before it. Encoding and decoding run the same loop (``_walk``) on
the same batch shapes, fed the known pixels when encoding and the decoded ones when decoding.
A conditional model codes each image with the label that costs it the fewest bits; the
label goes into the stream first, uniformly coded (log2 of the number of classes, in bits).

Guarantee: data decodes bit-exactly with the same weights (checked by a hash in the header),
the same versions of torch, numpy and constriction, and the same CPU architecture. Change
one of those and floating point results may differ in the last bit; a single changed
probability makes the rest of the stream decode to other pixels, which the CRC-32 rejects.

``python -m model.codec compress IN.png OUT`` and ``... decompress IN OUT.png`` (with
``--weights PATH``) are the command line (``model/codec/__main__.py``).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import constriction
import numpy as np
import torch

from model.checkpoint import tensors_digest
from model.codec.container import HASH_BYTES, CodecError, Header, pack, padded, unpack
from model.inference.caches import incremental
from model.inference.likelihood import check_images, log_likelihood
from model.network.pixelcnn import PixelCNN

__all__ = ["BATCH", "CodecError", "best_labels", "compress", "compress_with_stats", "decompress"]

BATCH = 32  # images coded side by side; part of the format, since decoding repeats the shapes
LN2 = math.log(2.0)
_PIXEL = constriction.stream.model.Categorical(perfect=False)  # probabilities given per pixel
_LOCK = threading.Lock()
TRIM_MAX_IMAGES = BATCH  # up to this many images, the encoder keeps what it needs to trim the payload
MAX_TRIM = 8  # trailing payload bytes the encoder tries to drop


@contextmanager
def _one_thread() -> Iterator[None]:
    """Run torch on one CPU thread inside, restoring the caller's setting after.

    Encoder and decoder must compute bit-identical probabilities: the range coder rounds
    them to 24-bit integers, and a logit one ulp off can move one of those, after which the
    decoder reads other pixels. The same ops on the same shapes give the same bits on one
    thread, but with several a matrix or convolution library may split a sum differently
    depending on the thread count (here 1, 2 and 4 threads happened to agree; nothing
    promises it). So the codec runs single-threaded, the choice of label included: at
    batch 1 that costs next to nothing, and on a busy machine a multi-threaded op on tiny
    tensors can be many times slower than one thread. The lock keeps two codec calls from
    restoring each other's setting mid-stream.
    """
    with _LOCK:
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(before)


def weights_hash(model: PixelCNN) -> bytes:
    """The container's short hash of the weights: the first bytes of their sha256 digest."""
    tensors = {name: t.detach().cpu() for name, t in model.state_dict().items()}
    return bytes.fromhex(tensors_digest(tensors)[: 2 * HASH_BYTES])


@torch.no_grad()
def _walk(
    model: PixelCNN, labels: torch.Tensor | None, batch: int, code: Callable[[np.ndarray], np.ndarray]
) -> tuple[np.ndarray, float]:
    """Code ``batch`` images pixel by pixel in raster order, through the cached model.

    ``code(probs)`` entropy-codes one pixel of every image given its distribution ``probs``
    ``(B, levels)`` float64, and returns the pixel values ``(B,)`` int32: the known ones when
    encoding, the decoded ones when decoding. Returns the pixels ``(B, H, W)`` uint8 and
    their ideal cost ``-sum log2 p`` in bits under these probabilities.
    """
    size = model.config.image_size
    state = incremental(model, labels, batch)
    pixels = np.zeros((batch, size, size), dtype=np.uint8)
    rows = np.arange(batch)
    bits = 0.0
    for i in range(size):
        state.begin_row(i)  # the part of every layer that sees only the rows above
        for j in range(size):
            log_probs = torch.log_softmax(state.logits(i, j).double(), dim=1).numpy()
            values = code(np.exp(log_probs))  # float64 softmax: the same bits on both sides
            bits -= float(log_probs[rows, values].sum()) / LN2
            state.write(i, j, torch.from_numpy(values.astype(np.int64)))  # input for the next pixels
            pixels[:, i, j] = values
    return pixels, bits


def _check_model(model: PixelCNN) -> None:
    if any(p.device.type != "cpu" for p in model.parameters()):
        raise CodecError("the codec runs on the CPU: move the model there first")


def _check_images(model: PixelCNN, images: torch.Tensor) -> torch.Tensor:
    """Images as CPU uint8 ``(N, 1, H, W)``, or a CodecError."""
    if not isinstance(images, torch.Tensor) or images.is_floating_point() or images.is_complex():
        raise CodecError("images must be an integer tensor (N, 1, H, W) of model values")
    try:
        check_images(model, images)
    except ValueError as exc:
        raise CodecError(str(exc)) from exc
    return images.detach().cpu().to(torch.uint8)


@torch.no_grad()
def best_labels(model: PixelCNN, images: torch.Tensor) -> torch.Tensor:
    """Per image, the label with the fewest ideal bits: ``(N, 1, H, W)`` -> ``(N,)`` int64.

    One forward pass per label (``log_likelihood``); ties go to the lower label.
    """
    if not len(images) or not model.config.num_classes:
        return torch.zeros(len(images), dtype=torch.long)
    x = images.long()
    bits = [
        torch.cat([log_likelihood(model, c, torch.full((len(c),), y)).total_bits for c in x.split(BATCH)])
        for y in range(model.config.num_classes)
    ]
    return torch.stack(bits, dim=1).argmin(dim=1)


def _check_labels(
    model: PixelCNN, images: torch.Tensor, labels: int | Sequence[int] | torch.Tensor | None
) -> torch.Tensor | None:
    k, n = model.config.num_classes, len(images)
    if k is None:
        if labels is not None:
            raise CodecError("this model is unconditional: it takes no labels")
        return None
    if labels is None:
        return best_labels(model, images)
    try:
        out = torch.as_tensor(labels).reshape(-1)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise CodecError("labels must be integers: one, or one per image") from exc
    if out.is_floating_point() or out.is_complex() or out.dtype == torch.bool:
        raise CodecError("labels must be integers: one, or one per image")
    out = out.long().expand(n) if out.numel() == 1 else out.long()
    if out.shape != (n,):
        raise CodecError(f"got {out.numel()} labels for {n} images: pass one, or one per image")
    if n and (int(out.min()) < 0 or int(out.max()) >= k):
        raise CodecError(f"labels must be in 0..{k - 1}")
    return out.contiguous()


def _label_bytes(labels: torch.Tensor | None) -> bytes:
    return b"" if labels is None else labels.numpy().astype("<u4").tobytes()


def compress_with_stats(
    model: PixelCNN, images: torch.Tensor, labels: int | Sequence[int] | torch.Tensor | None = None
) -> tuple[bytes, float]:
    """Compress images ``(N, 1, H, W)`` of model values in ``[0, levels)``.

    ``labels`` (one, or ``(N,)``) are for a conditional model; without them each image gets
    the label that costs it the fewest bits. Returns the container and the ideal total cost
    in bits, ``-sum log2 p(x | label)`` under the coded probabilities (without the labels and
    the container), so ``8 * len(data) - bits`` is the overhead.
    """
    _check_model(model)
    images = _check_images(model, images)
    cfg, n = model.config, len(images)
    header = Header(weights_hash(model), cfg.image_size, cfg.levels, n)
    header.pack()  # refuses what the format cannot hold before the work starts
    encoder = constriction.stream.queue.RangeEncoder()
    bits = 0.0
    # Every (entropy model, parameters, symbols) coded, to replay while trimming the payload.
    coded: list[tuple[Any, np.ndarray | int, np.ndarray]] | None = [] if n <= TRIM_MAX_IMAGES else None
    with _one_thread():
        chosen = _check_labels(model, images, labels)
        if chosen is not None and (cfg.num_classes or 0) > 1 and n:
            uniform = constriction.stream.model.Uniform(cfg.num_classes)
            label_symbols = chosen.numpy().astype(np.int32)
            encoder.encode(label_symbols, uniform)
            if coded is not None:
                coded.append((uniform, n, label_symbols))
        for start in range(0, n, BATCH):
            x = images[start : start + BATCH]
            y = None if chosen is None else chosen[start : start + BATCH]
            columns = iter(np.ascontiguousarray(x.reshape(len(x), -1).T.numpy().astype(np.int32)))

            def code(probs: np.ndarray, columns: Iterator[np.ndarray] = columns) -> np.ndarray:
                values = next(columns)  # pixel (i, j) of every image in the batch
                encoder.encode(values, _PIXEL, probs)
                if coded is not None:
                    coded.append((_PIXEL, probs, values))
                return values

            bits += _walk(model, y, len(x), code)[1]
    payload = encoder.get_compressed().astype(">u4").tobytes()
    if coded is not None:
        payload = _trim(payload, coded)
    checksum = header.checksum(payload, _label_bytes(chosen), images.numpy().tobytes())
    return pack(header, checksum, payload), bits


def _decoder(payload: bytes) -> Any:
    """A range decoder reading ``payload`` (big-endian words, maybe trimmed; see ``model.container``)."""
    words = np.frombuffer(padded(payload), dtype=">u4").astype(np.uint32)
    return constriction.stream.queue.RangeDecoder(words)


def _trim(payload: bytes, coded: list[tuple[Any, np.ndarray | int, np.ndarray]]) -> bytes:
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
    model: PixelCNN, images: torch.Tensor, labels: int | Sequence[int] | torch.Tensor | None = None
) -> bytes:
    """Compress images ``(N, 1, H, W)`` of model values; see :func:`compress_with_stats`."""
    return compress_with_stats(model, images, labels)[0]


def decompress(model: PixelCNN, data: bytes) -> torch.Tensor:
    """The images ``(N, 1, H, W)`` uint8 that ``compress(model, ...)`` made ``data`` from.

    Raises ``CodecError`` for data that is truncated, corrupted, not ours, or made with
    other weights.
    """
    _check_model(model)
    if not isinstance(data, bytes | bytearray | memoryview):
        raise CodecError(f"compressed data must be bytes, not {type(data).__name__}")
    header, checksum, payload = unpack(bytes(data))
    cfg, n = model.config, header.count
    if (header.size, header.levels) != (cfg.image_size, cfg.levels):
        raise CodecError(
            f"the data holds {header.size}x{header.size} images with {header.levels} levels; "
            f"this model codes {cfg.image_size}x{cfg.image_size} with {cfg.levels}"
        )
    if header.weights != weights_hash(model):
        raise CodecError(
            f"the data was compressed with other weights (hash {header.weights.hex()}, "
            f"this model's is {weights_hash(model).hex()})"
        )
    decoder = _decoder(payload)

    def read(entropy_model: object, params: np.ndarray | int) -> np.ndarray:
        try:
            return decoder.decode(entropy_model, params)
        except Exception as exc:  # constriction's errors have no common type
            raise CodecError(f"corrupted data: the range decoder failed ({exc})") from exc

    labels: torch.Tensor | None = None
    batches = []
    with _one_thread():
        if cfg.num_classes is not None:
            labels = torch.zeros(n, dtype=torch.long)
            if cfg.num_classes > 1 and n:
                uniform = constriction.stream.model.Uniform(cfg.num_classes)
                labels = torch.from_numpy(read(uniform, n).astype(np.int64))
        for start in range(0, n, BATCH):
            b = min(BATCH, n - start)
            y = None if labels is None else labels[start : start + b]
            batches.append(_walk(model, y, b, lambda probs: read(_PIXEL, probs))[0])
    pixels = np.concatenate(batches) if batches else np.zeros((0, cfg.image_size, cfg.image_size), np.uint8)
    if header.checksum(payload, _label_bytes(labels), pixels.tobytes()) != checksum:
        raise CodecError("corrupted or truncated data: the images' checksum does not match")
    return torch.from_numpy(pixels).unsqueeze(1)
