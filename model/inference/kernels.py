"""The compiled loops of the fast sampler's rows (numba; see ``model.inference.row_kernel``).

``sample_row`` runs a row's pixels (after ``vertical_kernel.vertical_row``): plain loops over
small float32 rows, matrix-vector products as ``affine_rows`` (each output summed over its
inputs in order, so an image's numbers never depend on the batch), the gates and the
attention's softmax with ``exp32``, the draw as ``draw``'s inverse CDF in float64.
``pixel_logits`` and ``write_pixel`` are its two halves, for callers that choose each pixel's
value themselves (particles, through ``RowKernel``'s step interface).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from model.inference.vector_ops import affine_rows, copy, exp32, exp64, gate, relu, total

Arrays = tuple[np.ndarray, ...]  # the groups of arrays the loops take, as their docstrings list


@njit(cache=True, nogil=True)
def _fill_rows(out: np.ndarray, row: np.ndarray) -> None:
    """Every row of ``out`` ``(B, N)`` set to ``row`` ``(N,)``."""
    for b in range(out.shape[0]):
        copy(row, out[b])


@njit(cache=True, nogil=True)
def _attend(
    block: int,
    t: int,
    stream: np.ndarray,
    previous: np.ndarray,
    weights: tuple[np.ndarray, ...],
    keys: np.ndarray,
    values: np.ndarray,
    scratch: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
) -> None:
    """One attention block at raster position ``t`` for every image of ``stream`` ``(B, C)``:
    adds the block's output to the stream in place and stores each image's key and value.
    ``previous`` ``(B,)``: each image's previous pixel value; ``keys`` ``(B, heads, d, H*W)``
    and ``values`` ``(B, heads, H*W, d)``: this block's caches for these images. ``scratch``:
    ``(B, C)``, ``(B, 3C)``, ``(B, heads, d)`` and ``(1, H*W)``."""
    norm, eps, position, previous_table, qkv_w, qkv_b, out_w, out_b = weights
    tokens, qkv, attended, scores = scratch
    count, c = stream.shape
    heads, d = keys.shape[1], keys.shape[2]
    for b in range(count):
        mean = np.float32(stream[b].mean())
        variance = np.float32(0.0)
        for e in range(c):
            variance += (stream[b, e] - mean) * (stream[b, e] - mean)
        inv = np.float32(1.0 / math.sqrt(variance / c + eps[0]))
        for e in range(c):
            token = (stream[b, e] - mean) * inv * norm[block, 0, e] + norm[block, 1, e]
            tokens[b, e] = token + position[block, t, e] + previous_table[block, previous[b], e]
    _fill_rows(qkv, qkv_b[block])
    affine_rows(tokens, 0, c, qkv_w[block], qkv, qkv, 3 * c)
    for b in range(count):
        for head in range(heads):
            head_keys, head_values = keys[b, head], values[b, head]  # (d, H*W) and (H*W, d)
            for e in range(d):
                head_keys[e, t] = qkv[b, c + head * d + e]
                head_values[t, e] = qkv[b, 2 * c + head * d + e]
            scores[0, : t + 1] = np.float32(0.0)
            # The query (scaled by 1/sqrt(d) in the weights) against every key so far.
            affine_rows(qkv[b : b + 1], head * d, d, head_keys, scores, scores, t + 1)
            top = scores[0, : t + 1].max()
            for p in range(t + 1):
                # Shares under e^-64 (1.6e-28, far below float32's resolution next to the top
                # share of 1) are zeros: their products with values could be subnormal, slow.
                shifted = scores[0, p] - top
                scores[0, p] = exp32(shifted) if shifted > np.float32(-64.0) else np.float32(0.0)
            inverse = np.float32(1.0) / total(scores[0], t + 1)
            for p in range(t + 1):
                scores[0, p] *= inverse
            out = attended[b, head : head + 1]  # (1, d)
            out[0] = np.float32(0.0)
            affine_rows(scores, 0, t + 1, head_values, out, out, d)
    _fill_rows(tokens, out_b[block])  # tokens is free again: the output projection's start
    affine_rows(attended.reshape(count, c), 0, c, out_w[block], tokens, tokens, c)
    for b in range(count):
        for e in range(c):
            stream[b, e] += tokens[b, e]


@njit(cache=True, nogil=True)
def _draw(logits: np.ndarray, t: int, lo: int, sampling: tuple[np.ndarray, ...], weights: np.ndarray) -> None:
    """The inverse-CDF draw of pixel ``t`` for images ``lo ..`` from logits ``(B, levels)``, in
    float64 as ``model.inference.sampling.draw``; adds each value's negative log-likelihood
    at temperature 1 (nats) and records the value."""
    noise, temperature, previous, drawn, nats = sampling
    levels = logits.shape[1]
    for b in range(logits.shape[0]):
        image = lo + b
        top = float(logits[b].max())
        total = 0.0
        for v in range(levels):
            weights[v] = exp64((float(logits[b, v]) - top) / temperature[image])
        for v in range(levels):
            total += weights[v]
        cdf = np.cumsum(weights / total)
        value = min(np.searchsorted(cdf, noise[image, t] * cdf[-1]), levels - 1)
        natural = total  # the softmax's denominator at temperature 1
        if temperature[image] != 1.0:
            natural = 0.0
            for v in range(levels):
                natural += exp64(float(logits[b, v]) - top)
        nats[image] -= float(logits[b, value]) - top - math.log(natural)
        drawn[image, t] = value
        previous[image] = value


@njit(cache=True, nogil=True)
def sample_row(
    i: int,
    inp: np.ndarray,
    stem: Arrays,
    layers: Arrays,
    attention: Arrays,
    head: Arrays,
    sampling: Arrays,
    images: tuple[int, int],
) -> None:
    """Draw row ``i`` of images ``images`` (after ``vertical_row(i)``).

    ``inp`` ``(B, H + k, W + 2k, 2)``: the padded input, written here. ``stem``: the
    horizontal stem's weight ``(k * 2, C)``, bias ``(C,)``, and the row's vertical term
    ``(B, W, C)``. ``layers``: horizontal weights ``(L, kw * C, 2C)``, the row's vertical term
    plus bias and label ``(L, B, W, 2C)``, residual weights ``(L, C, C)`` and biases ``(L, C)``,
    skip weights and biases likewise, and scratch rows ``(L + 1, B, (W + kw - 1) * C)``.
    ``attention``: per block, layer norm weight and bias ``(A, 2, C)``, its eps ``(1,)``,
    positions ``(A, H*W, C)``, previous-pixel table ``(A, levels + 1, C)``, qkv ``(A, C, 3C)``
    and ``(A, 3C)``, output ``(A, C, C)`` and ``(A, C)``, keys ``(A, B, heads, d, H*W)`` and
    values ``(A, B, heads, H*W, d)``, and the attention block after each layer ``(L,)`` (-1:
    none). ``head``: ``(C, Hc)``, ``(Hc,)``, ``(Hc, levels)``, ``(levels,)``, and the input
    table ``(levels, 2)``. ``sampling``:
    uniforms ``(B, H*W)`` float64, temperatures ``(B,)`` float64, the previous pixel's value
    ``(B,)`` int64, drawn values ``(B, H*W)`` int64 and negative log-likelihoods ``(B,)``
    float64 (both written here). ``images``: the batch rows to draw, ``(start, end)``; calls for
    other rows may run at the same time on other threads (the loop holds no GIL).
    """
    lo, hi = images
    size, levels = stem[2].shape[1], head[3].shape[0]
    logits = np.empty((hi - lo, levels), dtype=np.float32)
    weights = np.empty(levels, dtype=np.float64)
    for j in range(size):
        pixel_logits(i, j, inp, stem, layers, attention, head, sampling[2], logits, images)
        _draw(logits, i * size + j, lo, sampling, weights)
        write_pixel(i, j, inp, head[4], sampling[2], images)


@njit(cache=True, nogil=True)
def write_pixel(
    i: int, j: int, inp: np.ndarray, table: np.ndarray, previous: np.ndarray, images: tuple[int, int]
) -> None:
    """Pixel (i, j) of images ``images`` takes the values in ``previous``, encoded (``table``)."""
    k = inp.shape[2] - inp.shape[1]  # (W + 2k) - (H + k): the images are square
    for b in range(images[0], images[1]):
        value = previous[b]
        inp[b, i + k, j + k, 0] = table[value, 0]
        inp[b, i + k, j + k, 1] = table[value, 1]


@njit(cache=True, nogil=True)
def pixel_logits(
    i: int,
    j: int,
    inp: np.ndarray,
    stem: Arrays,
    layers: Arrays,
    attention: Arrays,
    head: Arrays,
    previous: np.ndarray,
    logits: np.ndarray,
    images: tuple[int, int],
) -> None:
    """The network at pixel (i, j) for images ``images`` ``(start, end)``: writes ``logits``
    ``(end - start, levels)``. ``previous`` ``(B,)``: each image's value at the pixel before."""
    stem_w, stem_b, stem_row = stem
    h_w, vh_row, res_w, res_b, skip_w, skip_b, rows = layers
    norm, eps, position, previous_table, qkv_w, qkv_b, out_w, out_b, keys, values, block_of = attention
    block_weights = (norm, eps, position, previous_table, qkv_w, qkv_b, out_w, out_b)
    w1, b1, w2, b2, _ = head
    k = (inp.shape[2] - stem_row.shape[1]) // 2
    size, c = stem_row.shape[1], stem_b.shape[0]
    n_layers, kw = h_w.shape[0], h_w.shape[1] // c
    levels, heads = b2.shape[0], keys.shape[2]
    lo, hi = images
    count = hi - lo
    pre = np.empty((count, 2 * c), dtype=np.float32)
    gated = np.empty((count, c), dtype=np.float32)
    skip = np.zeros((count, c), dtype=np.float32)
    hidden = np.empty((count, b1.shape[0]), dtype=np.float32)
    scratch = (
        np.empty((count, c), np.float32),
        np.empty((count, 3 * c), np.float32),
        np.empty((count, heads, c // heads), np.float32),
        np.empty((1, position.shape[1]), np.float32),
    )
    stream = np.empty((count, c), np.float32)  # the layer's output at this pixel, contiguous
    t = i * size + j
    at = (j + kw - 1) * c  # this pixel's place in the scratch rows (the ones before it: the
    # row's earlier pixels, or the left padding, zero since no pixel ever writes it)
    for b in range(count):  # the stem: a window of k pixels of (intensity, one)
        for e in range(c):
            stream[b, e] = stem_row[lo + b, j, e] + stem_b[e]
        for q in range(2 * k):
            value = inp[lo + b, i + k, j + q // 2, q % 2]
            if value != 0.0:
                for e in range(c):
                    stream[b, e] += value * stem_w[q, e]
    for b in range(count):
        copy(stream[b], rows[0, lo + b, at : at + c])
    for layer in range(n_layers):
        for b in range(count):
            copy(vh_row[layer, lo + b, j], pre[b])
        affine_rows(rows[layer, lo:hi], j * c, kw * c, h_w[layer], pre, pre, 2 * c)
        gate(pre, gated)
        for b in range(count):
            for e in range(c):
                stream[b, e] += res_b[layer, e]  # the residual stream and bias
                skip[b, e] += skip_b[layer, e]
        affine_rows(gated, 0, c, res_w[layer], stream, stream, c)
        affine_rows(gated, 0, c, skip_w[layer], skip, skip, c)
        block = block_of[layer]
        if block >= 0:
            _attend(
                block, t, stream, previous[lo:hi], block_weights,
                keys[block, lo:hi], values[block, lo:hi], scratch,
            )  # fmt: skip
        for b in range(count):
            copy(stream[b], rows[layer + 1, lo + b, at : at + c])
    relu(skip)
    _fill_rows(hidden, b1)
    affine_rows(skip, 0, c, w1, hidden, hidden, b1.shape[0])
    relu(hidden)
    _fill_rows(logits, b2)
    affine_rows(hidden, 0, b1.shape[0], w2, logits, logits, levels)
