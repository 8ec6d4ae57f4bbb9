"""Small vector operations for the compiled row loops, written so that LLVM vectorises them (numba).

Every function here gives each output the same sequence of rounded operations whatever the
other rows of its batch are, so an image's numbers never depend on what it is drawn with:

- ``affine_rows`` sums ``start + x[k] * w[k]`` over k in order, one fused multiply-add per
  term (``fma``), eight inputs per pass over the output row so that the output is loaded and
  stored once per eight terms rather than once per term. Nothing here uses fastmath (see
  ``model.inference.tiles``): every operation is IEEE, whatever the compiler makes of it.
- ``exp32`` and ``exp64`` are the exponential as a polynomial and a power of two: a loop over
  them runs 8 or 4 lanes at a time, where a call into the C library's ``exp`` runs one
  (glibc's ``expf`` took 5 ns an element here, ``exp32`` 0.4). Relative error: about one unit
  in the last place (1.2e-7 for float32, 2e-16 for float64), inputs clamped to the range where
  the result is a normal number (``exp32(-100)`` is ``exp32(-80)``, 1.8e-35).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from model.inference.tiles import WIDTH, fma, tile_1, tile_4

_LOG2E = 1.4426950408889634
_LN2_HI = 0.693359375  # ln 2 split in two (Cody and Waite): n * _LN2_HI is exact for |n| < 2^11
_LN2_LO = -2.1219444005469057e-4


@njit(cache=True, nogil=True, inline="always")
def exp32(value: np.float32) -> np.float32:
    """``e ** value`` in float32, for ``value`` in [-80, 88] (clamped outside it: no result is
    subnormal, as arithmetic on subnormals takes a hundred times longer)."""
    v = np.float32(-80.0) if value < np.float32(-80.0) else value
    v = np.float32(88.0) if v > np.float32(88.0) else v
    n = np.floor(v * np.float32(_LOG2E) + np.float32(0.5))
    r = fma(-n, np.float32(_LN2_LO), fma(-n, np.float32(_LN2_HI), v))  # |r| <= ln(2) / 2
    p = np.float32(1.0 / 5040.0)  # Taylor to r^7: truncation under 1e-8 on that range
    p = fma(p, r, np.float32(1.0 / 720.0))
    p = fma(p, r, np.float32(1.0 / 120.0))
    p = fma(p, r, np.float32(1.0 / 24.0))
    p = fma(p, r, np.float32(1.0 / 6.0))
    p = fma(p, r, np.float32(0.5))
    p = fma(p, r, np.float32(1.0))
    p = fma(p, r, np.float32(1.0))
    return p * np.int32((np.int32(n) + np.int32(127)) << np.int32(23)).view(np.float32)


@njit(cache=True, nogil=True, inline="always")
def exp64(value: float) -> float:
    """``e ** value`` in float64, for ``value`` in [-700, 709] (clamped outside it)."""
    v = -700.0 if value < -700.0 else value
    v = 709.0 if v > 709.0 else v
    n = np.floor(v * _LOG2E + 0.5)
    r = fma(-n, 1.9082149292705877e-10, fma(-n, 0.6931471803691238, v))  # ln 2, split in two
    p = 1.0 / 6227020800.0  # Taylor to r^13: truncation under 1e-17 on that range
    p = fma(p, r, 1.0 / 479001600.0)
    p = fma(p, r, 1.0 / 39916800.0)
    p = fma(p, r, 1.0 / 3628800.0)
    p = fma(p, r, 1.0 / 362880.0)
    p = fma(p, r, 1.0 / 40320.0)
    p = fma(p, r, 1.0 / 5040.0)
    p = fma(p, r, 1.0 / 720.0)
    p = fma(p, r, 1.0 / 120.0)
    p = fma(p, r, 1.0 / 24.0)
    p = fma(p, r, 1.0 / 6.0)
    p = fma(p, r, 0.5)
    p = fma(p, r, 1.0)
    p = fma(p, r, 1.0)
    return p * np.int64((np.int64(n) + np.int64(1023)) << np.int64(52)).view(np.float64)


@njit(cache=True, nogil=True)
def affine_rows(
    x: np.ndarray,
    x_at: int,
    inputs: int,
    weight: np.ndarray,
    start: np.ndarray,
    out: np.ndarray,
    outputs: int,
) -> None:
    """``out[b, :N] = start[b, :N] + x[b, x_at : x_at + K] @ weight[:K, :N]`` for every row b of
    ``out``, K = ``inputs``, N = ``outputs``: x ``(B, >= x_at + K)``, weight ``(>= K, >= N)``,
    start and out ``(B, >= N)`` (``start`` may be ``out``). Each output is summed over k in
    order. When N is a multiple of 32, rows go through ``model.inference.tiles`` (sums kept in
    registers) four at a time; otherwise each block of eight weight rows is read once for all
    B rows. Both give the same bits.

    Pass C-contiguous arrays (numba's layout "C": whole arrays, or views that index leading
    axes and slice the last one): rows of such arrays are known to be contiguous, so the
    loops over outputs run 8 lanes at a time (a strided view would run one)."""
    rows = out.shape[0]
    if outputs % WIDTH == 0:
        first = 0
        while first + 4 <= rows:
            tile_4(x, x_at, inputs, weight, start, out, outputs, first)
            first += 4
        while first < rows:
            tile_1(x, x_at, inputs, weight, start, out, outputs, first)
            first += 1
        return
    for b in range(rows):
        for o in range(outputs):  # a loop: slice assignment would copy ``start`` first, in case it is ``out``
            out[b, o] = start[b, o]
    full = inputs - inputs % 8
    for k in range(0, full, 8):
        w0, w1, w2, w3 = (
            weight[k, :outputs],
            weight[k + 1, :outputs],
            weight[k + 2, :outputs],
            weight[k + 3, :outputs],
        )
        w4, w5, w6, w7 = (
            weight[k + 4, :outputs],
            weight[k + 5, :outputs],
            weight[k + 6, :outputs],
            weight[k + 7, :outputs],
        )
        for b in range(rows):
            xb, ob = x[b, x_at + k : x_at + k + 8], out[b, :outputs]
            x0, x1, x2, x3, x4, x5, x6, x7 = xb[0], xb[1], xb[2], xb[3], xb[4], xb[5], xb[6], xb[7]
            for o in range(outputs):
                # Inside out: the same fused multiply-adds, in the same order, as one k at a time.
                ob[o] = fma(x7, w7[o], fma(x6, w6[o], fma(x5, w5[o], fma(x4, w4[o], fma(
                    x3, w3[o], fma(x2, w2[o], fma(x1, w1[o], fma(x0, w0[o], ob[o]))))))))  # fmt: skip
    for k in range(full, inputs):
        w = weight[k, :outputs]
        for b in range(rows):
            xk, ob = x[b, x_at + k], out[b, :outputs]
            for o in range(outputs):
                ob[o] = fma(xk, w[o], ob[o])


@njit(cache=True, nogil=True)
def total(values: np.ndarray, n: int) -> np.float32:
    """``values[:n].sum()`` (a 1-D float32 row) as eight interleaved partial sums added in a
    fixed tree: vectorised, and always the same order for the same n (a compiler free to
    reorder the sum could order it differently from one compilation to the next)."""
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = np.float32(0.0)
    full = n - n % 8
    for p in range(0, full, 8):
        s0 += values[p]
        s1 += values[p + 1]
        s2 += values[p + 2]
        s3 += values[p + 3]
        s4 += values[p + 4]
        s5 += values[p + 5]
        s6 += values[p + 6]
        s7 += values[p + 7]
    for p in range(full, n):
        s0 += values[p]
    return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))


@njit(cache=True, nogil=True)
def copy(source: np.ndarray, target: np.ndarray) -> None:
    """``target[:] = source`` for 1-D rows, as a loop (slice assignment would first copy
    ``source`` aside, in case the two overlap)."""
    for e in range(target.shape[0]):
        target[e] = source[e]


@njit(cache=True, nogil=True)
def gate(pre: np.ndarray, out: np.ndarray) -> None:
    """The gated activation ``tanh(a) * sigmoid(g)``: pre ``(B, 2C)`` holds a then g, out ``(B, C)``.
    tanh(a) is ``1 - 2 / (1 + e^2a)``: absolute error under 2e-7."""
    rows, c = out.shape
    for b in range(rows):
        for e in range(c):
            a, g = pre[b, e], pre[b, c + e]
            tanh = np.float32(1.0) - np.float32(2.0) / (np.float32(1.0) + exp32(np.float32(2.0) * a))
            out[b, e] = tanh / (np.float32(1.0) + exp32(-g))


@njit(cache=True, nogil=True)
def relu(values: np.ndarray) -> None:
    """``max(values, 0)`` in place, ``(B, N)``."""
    rows, n = values.shape
    for b in range(rows):
        for o in range(n):
            values[b, o] = values[b, o] if values[b, o] > np.float32(0.0) else np.float32(0.0)
