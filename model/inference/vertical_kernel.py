"""The compiled loop of the fast sampler's vertical stacks (numba; see ``model.inference.row_kernel``).

``vertical_row`` computes what ``GatedCache.begin_row`` does: at the start of row i, the
part of every layer that sees only the rows above it, as matrix products of the row's W
columns (``affine_rows``, each output summed over its inputs in order).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from model.inference.vector_ops import affine_rows, gate


@njit(cache=True, nogil=True)
def vertical_row(
    i: int,
    stem_windows: np.ndarray,
    stem: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    windows: np.ndarray,
    layers: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    outputs: tuple[np.ndarray, np.ndarray],
    images: tuple[int, int],
) -> None:
    """The vertical stacks at row ``i`` (the parts of every layer that see only rows above it),
    for images ``images`` ``(start, end)``: what ``GatedCache.begin_row`` computes, each
    layer's row as a few matrix products of W rows (one per column).

    ``stem_windows`` ``(B, H + k, W, (2k + 1) * 2)``: the padded input's window at each
    column (an overlapping view). ``stem``: the stem's vertical weight ``(k, (2k + 1) * 2, C)``
    (one block per window row) and bias ``(C,)``, its vertical-to-horizontal weight ``(C, C)``
    and bias ``(C,)``. ``windows`` ``(L, kh, B, W, kv * C)``: each layer's vertical input at
    the last kh rows, as windows of kv columns (an overlapping view of a buffer the loop
    writes); padded row r (image row r - kh + 1, zeros above the image) in slot r % kh.
    ``layers``: vertical weights ``(L, kh, kv * C, 2C)`` and biases ``(L, 2C)``,
    vertical-to-horizontal weights ``(L, 2C, 2C)``, per image the start of the row's
    horizontal term (that conv's bias, the label's and the horizontal conv's bias)
    ``(L, B, 2C)`` and the label's vertical term ``(L, B, 2C)``. ``outputs``: the stem's horizontal term
    ``(B, W, C)`` and each layer's ``(L, B, W, 2C)``, written here and read by ``sample_row``.
    """
    stem_w, stem_b, stem_v2h_w, stem_v2h_b = stem
    v_w, v_b, v2h_w, vh_start, v_cond = layers
    stem_row, vh_rows = outputs
    n_layers, kh = v_w.shape[0], v_w.shape[1]
    size, c = stem_row.shape[1], stem_row.shape[2]
    pad = (windows.shape[4] // c - 1) // 2
    top = (i + kh - 1) % kh  # the slot of the padded row that holds image row i
    lo, hi = images
    v = np.empty((size, c), np.float32)  # the stem's vertical output, then each layer's
    layer_pre = np.empty((size, 2 * c), np.float32)
    for b in range(lo, hi):
        for w in range(size):
            for e in range(c):
                v[w, e] = stem_b[e]
        for dr in range(stem_w.shape[0]):
            affine_rows(stem_windows[b, i + dr], 0, stem_w.shape[1], stem_w[dr], v, v, c)
        for w in range(size):
            for e in range(c):
                stem_row[b, w, e] = stem_v2h_b[e]
        affine_rows(v, 0, c, stem_v2h_w, stem_row[b], stem_row[b], c)
        for layer in range(n_layers):
            source = windows[layer, top, b]  # (W, kv * C); column w's own input at pad + w
            for w in range(size):
                for e in range(c):
                    source[w, pad * c + e] = v[w, e]  # writes the buffer behind every window
            for w in range(size):
                for e in range(2 * c):
                    layer_pre[w, e] = v_b[layer, e]
            for dr in range(kh):
                affine_rows(
                    windows[layer, (i + dr) % kh, b],
                    0,
                    v_w.shape[2],
                    v_w[layer, dr],
                    layer_pre,
                    layer_pre,
                    2 * c,
                )
            for w in range(size):
                for e in range(2 * c):
                    vh_rows[layer, b, w, e] = vh_start[layer, b, e]
            affine_rows(layer_pre, 0, 2 * c, v2h_w[layer], vh_rows[layer, b], vh_rows[layer, b], 2 * c)
            if layer + 1 < n_layers:
                for w in range(size):
                    for e in range(2 * c):
                        layer_pre[w, e] += v_cond[layer, b, e]
                gate(layer_pre, v)
