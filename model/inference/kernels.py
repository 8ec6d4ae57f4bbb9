"""The compiled loops of the fast sampler's row kernel (numba; see ``model.inference.row_kernel``).

Plain loops over small float32 vectors: a matrix-vector product is a loop over the input that
adds each nonzero input times its weight row to the output (each output summed in order, so an
image's numbers never depend on the batch), and the draw is ``draw``'s inverse CDF in float64.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def _affine(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, out: np.ndarray) -> None:
    """``out = bias + x @ weight``: x ``(K,)``, weight ``(K, N)``, summed over k in order."""
    n = out.shape[0]
    for o in range(n):
        out[o] = bias[o]
    for k in range(x.shape[0]):
        xk = x[k]
        if xk != 0.0:
            for o in range(n):
                out[o] += xk * weight[k, o]


@njit(cache=True, nogil=True)
def _affine_rows(x: np.ndarray, weight: np.ndarray, start: np.ndarray, out: np.ndarray, relu: bool) -> None:
    """``out[b] = start[b] + x[b] @ weight`` for every row b (``max(x, 0)`` with ``relu``):
    x ``(B, K)``, weight ``(K, N)``, start ``(B, N)``. Each weight row is read once for all
    rows; each output is summed over k in order, whatever B is."""
    rows, n = out.shape
    for b in range(rows):
        for o in range(n):
            out[b, o] = start[b, o]
    for k in range(x.shape[1]):
        w = weight[k]
        for b in range(rows):
            xk = x[b, k]
            if xk > 0.0 or (xk != 0.0 and not relu):
                for o in range(n):
                    out[b, o] += xk * w[o]


@njit(cache=True, nogil=True)
def _affine_windows(x: np.ndarray, weight: np.ndarray, start: np.ndarray, out: np.ndarray) -> None:
    """``_affine_rows`` of windows ``(B, kw, C)``, each flattened row by row, not copied."""
    rows, n = out.shape
    width = x.shape[2]
    for b in range(rows):
        for o in range(n):
            out[b, o] = start[b, o]
    for q in range(x.shape[1]):
        for e in range(width):
            w = weight[q * width + e]
            for b in range(rows):
                xk = x[b, q, e]
                if xk != 0.0:
                    for o in range(n):
                        out[b, o] += xk * w[o]


@njit(cache=True, nogil=True)
def _attend(
    block: int,
    b: int,
    t: int,
    h: np.ndarray,
    previous: int,
    norm: np.ndarray,
    eps: float,
    position: np.ndarray,
    previous_table: np.ndarray,
    qkv_w: np.ndarray,
    qkv_b: np.ndarray,
    out_w: np.ndarray,
    out_b: np.ndarray,
    keys: np.ndarray,
    values: np.ndarray,
    scratch: np.ndarray,
) -> None:
    """One attention block at raster position ``t`` of image ``b``: adds its output to the
    stream ``h`` ``(C,)`` in place, and stores the position's key and value."""
    c = h.shape[0]
    heads, d = keys.shape[2], keys.shape[3]
    mean = h.mean()
    centred = h - mean
    inv = 1.0 / math.sqrt((centred * centred).mean() + eps)
    tokens = centred * np.float32(inv) * norm[block, 0] + norm[block, 1]
    tokens += position[block, t]
    tokens += previous_table[block, previous]
    qkv = scratch[: 3 * c]
    _affine(tokens, qkv_w[block], qkv_b[block], qkv)
    attended = scratch[3 * c : 4 * c]
    weights = scratch[4 * c : 4 * c + t + 1]
    for head in range(heads):
        query = qkv[head * d : (head + 1) * d]  # scaled by 1/sqrt(d) in the weights
        head_keys = keys[block, b, head]  # (d, N): a query's scores are a row-vector product
        for e in range(d):
            head_keys[e, t] = qkv[c + head * d + e]
        values[block, b, head, t] = qkv[2 * c + head * d : 2 * c + (head + 1) * d]
        weights[:] = 0.0
        for e in range(d):
            qe = query[e]
            key_row = head_keys[e]
            for p in range(t + 1):
                weights[p] += qe * key_row[p]
        top = weights.max()
        total = np.float32(0.0)
        for p in range(t + 1):
            weights[p] = math.exp(weights[p] - top)
            total += weights[p]
        out = attended[head * d : (head + 1) * d]
        out[:] = 0.0
        head_values = values[block, b, head]
        for p in range(t + 1):
            share = weights[p] / total
            value_row = head_values[p]
            for e in range(d):
                out[e] += share * value_row[e]
    result = scratch[4 * c + t + 1 : 5 * c + t + 1]
    _affine(attended, out_w[block], out_b[block], result)
    h += result


@njit(cache=True, nogil=True)
def sample_row(
    i: int,
    inp: np.ndarray,
    stem: tuple[np.ndarray, np.ndarray, np.ndarray],
    layers: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    attention: tuple[np.ndarray, ...],
    head: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    sampling: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    images: tuple[int, int],
) -> None:
    """Draw row ``i`` of images ``images`` (after the cache's ``begin_row(i)``).

    ``inp`` ``(B, H + k, W + 2k, 2)``: the cache's padded input, written here. ``stem``: the
    horizontal stem's weight ``(k * 2, C)``, bias ``(C,)``, and the row's vertical term
    ``(B, W, C)``. ``layers``: horizontal weights ``(L, kw * C, 2C)``, the row's vertical term
    plus bias and label ``(L, B, W, 2C)``, residual weights ``(L, C, C)`` and biases ``(L, C)``,
    skip weights and biases likewise, and scratch rows ``(L + 1, B, W + kw - 1, C)``.
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
    stem_w, stem_b, stem_row = stem
    h_w, vh_row, res_w, res_b, skip_w, skip_b, rows = layers
    norm, eps, position, previous_table, qkv_w, qkv_b, out_w, out_b, keys, values, block_of = attention
    w1, b1, w2, b2, table = head
    noise, temperature, previous, drawn, nats = sampling
    k = (inp.shape[2] - stem_row.shape[1]) // 2
    size, c = stem_row.shape[1], stem_b.shape[0]
    n_layers, kw = h_w.shape[0], h_w.shape[1] // c
    levels = b2.shape[0]
    lo, hi = images
    count = hi - lo
    pre = np.empty((count, 2 * c), dtype=np.float32)
    gated = np.empty((count, c), dtype=np.float32)
    term = np.empty((count, c), dtype=np.float32)
    skip = np.empty((count, c), dtype=np.float32)
    hidden = np.empty((count, b1.shape[0]), dtype=np.float32)
    logits = np.empty((count, levels), dtype=np.float32)
    weights = np.empty(levels, dtype=np.float64)
    scratch = np.empty(5 * c + noise.shape[1], dtype=np.float32)  # the attention's
    head_start = (np.empty((count, b1.shape[0]), np.float32), np.empty((count, levels), np.float32))
    skip_start = np.empty((count, c), np.float32)
    stream = np.empty((count, c), np.float32)  # the layer's output at this pixel, contiguous
    for b in range(count):
        head_start[0][b] = b1
        head_start[1][b] = b2
    rows[:, lo:hi] = 0.0
    for j in range(size):
        t = i * size + j
        at = j + kw - 1  # this pixel's place in the scratch rows
        _affine_windows(inp[lo:hi, i + k, j : j + k], stem_w, stem_row[lo:hi, j], stream)
        for b in range(count):
            for e in range(c):
                stream[b, e] += stem_b[e]
        rows[0, lo:hi, at] = stream
        skip[:] = 0.0
        for layer in range(n_layers):
            _affine_windows(rows[layer, lo:hi, j : j + kw], h_w[layer], vh_row[layer, lo:hi, j], pre)
            for b in range(count):
                for e in range(c):
                    gated[b, e] = math.tanh(pre[b, e]) / (1.0 + math.exp(-pre[b, c + e]))
            for b in range(count):
                term[b] = stream[b] + res_b[layer]  # the residual stream and bias
                skip_start[b] = skip[b] + skip_b[layer]
            _affine_rows(gated, res_w[layer], term, stream, False)
            _affine_rows(gated, skip_w[layer], skip_start, skip, False)
            block = block_of[layer]
            if block >= 0:
                for b in range(count):
                    _attend(
                        block, lo + b, t, stream[b], previous[lo + b], norm, eps[0], position, previous_table,
                        qkv_w, qkv_b, out_w, out_b, keys, values, scratch,
                    )  # fmt: skip
            rows[layer + 1, lo:hi, at] = stream
        _affine_rows(skip, w1, head_start[0], hidden, True)
        _affine_rows(hidden, w2, head_start[1], logits, True)
        for b in range(count):
            image = lo + b
            # The inverse-CDF draw in float64, as ``model.inference.sampling.draw``.
            top = logits[b].max()
            for v in range(levels):
                weights[v] = math.exp((float(logits[b, v]) - top) / temperature[image])
            cdf = np.cumsum(weights / weights.sum())
            value = min(np.searchsorted(cdf, noise[image, t] * cdf[-1]), levels - 1)
            natural = 0.0  # the value's log-probability at temperature 1
            for v in range(levels):
                natural += math.exp(float(logits[b, v]) - top)
            nats[image] -= float(logits[b, value]) - top - math.log(natural)
            drawn[image, t] = value
            previous[image] = value
            inp[image, i + k, j + k, 0] = table[value, 0]
            inp[image, i + k, j + k, 1] = table[value, 1]
