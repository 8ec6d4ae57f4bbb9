"""The fast sampler's horizontal pass as one compiled loop (numba): a whole row of pixels per call.

At small batches the torch step's time goes to dispatching its ops, not to arithmetic: a
pixel step of the shipped network is about 150 torch ops on vectors of 64 to 256 numbers, a
few microseconds each, where the arithmetic takes a few. ``sample_row`` runs the same
computation as ``GatedCache.logits`` followed by the draw and the write, for every pixel of
a row and every image, as plain loops compiled once by numba: no op is dispatched, and a
matrix-vector product is a loop over the input (each output summed in order), which skips
zeros (padding, ReLU) and does not depend on the batch. The vertical stacks (``begin_row``,
a few large convolutions per row) stay in torch; both sides share the cache's buffers.

The sums run in another order than torch's matrix library, so logits differ from the torch
step in the last bits (well inside the tolerance the tests hold the cached path to, against
the forward pass), and an image differs from the torch step's only where its uniform falls
within that distance of a boundary of the inverse CDF (one image in 16 or so of the shipped
network). Each image's sums are the same whatever its batch, so an image never depends on
what it was drawn with. The codec, whose two sides must agree bit for bit with the files it
wrote before, keeps the torch step, as do completion and super-resolution (their particles
are resampled between pixels).

For grayscale ``gated`` and ``gated-attention`` networks; other ones run the torch step
(``supports``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np
import torch

from model.inference.kernels import sample_row

if TYPE_CHECKING:
    from model.inference.attention_cache import AttentionCache
    from model.inference.caches import GatedCache
    from model.network.pixelcnn import PixelCNN

# Threads for the other parts of a batch: the loop releases the GIL, so they run side by side.
# One pool per process (a forked child has none of its parent's threads).
_POOLS: dict[int, ThreadPoolExecutor] = {}


def _pool() -> ThreadPoolExecutor:
    pid = os.getpid()
    if pid not in _POOLS:
        _POOLS[pid] = ThreadPoolExecutor(max(1, (os.cpu_count() or 1) - 1), thread_name_prefix="rows")
    return _POOLS[pid]


def supports(model: PixelCNN) -> bool:
    """Whether ``cached_sample`` runs this network with ``sample_row``: a grayscale ``gated``
    or ``gated-attention`` network. At every batch size, so that an image's numbers never
    depend on the batch it was drawn in (the torch step is faster from about 32 images: 64
    took 4.5 s against the loop's 5.6 on a 2-core CPU, but its sums differ in the last bits,
    which would make a request's images depend, now and then, on what it was merged with)."""
    return model.config.arch in ("gated", "gated-attention") and model.config.image_channels == 1


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    """A contiguous float32 copy of a (weight) tensor, for the kernel."""
    return tensor.detach().to(torch.float32).contiguous().numpy()


class RowKernel:
    """``sample_row``'s arrays for one ``GatedCache`` and one batch of noise.

    Shares the cache's input, its rows' vertical terms and its stem's (torch writes them in
    ``begin_row``, the kernel reads them and writes the drawn pixels into the input); holds the
    weights laid out for the kernel, the attention blocks' keys and values, the draws so far
    (``drawn`` ``(B, H*W)`` int64) and each image's negative log-likelihood in nats (``nats``).
    """

    def __init__(self, state: GatedCache, noise: torch.Tensor, temperature: float | torch.Tensor) -> None:
        batch, levels, size = state.batch, state.levels, state.size
        positions = size * size
        c = state.model.config.channels
        assert state.stem_h_b is not None  # the gated stem's horizontal conv has a bias
        self.weights = (
            _numpy(state.stem_h_wt),
            _numpy(state.stem_h_b),
            _numpy(torch.stack(state.h_wt)),
        )
        res_w, skip_w = torch.stack(state.res_w), state.skip_w  # (L, C + 1, C): the bias last
        self.pointwise = (
            _numpy(res_w[:, :-1]),
            _numpy(res_w[:, -1]),
            _numpy(skip_w[:, :-1]),
            _numpy(skip_w[:, -1]),
        )
        blocks = sorted(state.attention.items())
        block_of = np.full(len(state.layers), -1, dtype=np.int64)
        for number, (layer, _) in enumerate(blocks):
            block_of[layer] = number
        caches = [cache for _, cache in blocks]
        heads = caches[0].heads if caches else 1

        def stacked(part: Callable[[AttentionCache], torch.Tensor], shape: tuple[int, ...]) -> np.ndarray:
            """One weight of every block, stacked ``(A, ...)`` (empty without attention)."""
            return (
                _numpy(torch.stack([part(cache) for cache in caches]))
                if caches
                else np.zeros(shape, np.float32)
            )

        self.attention_weights = (
            stacked(lambda cache: torch.stack(cache.norm[:2]), (0, 2, c)),
            np.array([caches[0].norm[2] if caches else 1e-5], dtype=np.float64),
            stacked(lambda cache: torch.stack(cache.position_at), (0, positions, c)),
            stacked(lambda cache: cache.previous_table, (0, levels + 1, c)),
            stacked(lambda cache: cache.qkv[1], (0, c, 3 * c)),
            stacked(lambda cache: cache.qkv[0], (0, 3 * c)),
            stacked(lambda cache: cache.out[0], (0, c, c)),
            stacked(lambda cache: cache.out[1], (0, c)),
        )
        self.block_of = block_of
        (w1, b1), (w2, b2) = state.head_hidden, state.head_logits[0]
        assert b1 is not None and b2 is not None  # the head's 1x1 convs have biases
        self.head = (_numpy(w1), _numpy(b1), _numpy(w2), _numpy(b2), _numpy(state.input_table))
        self.keys = np.zeros((len(caches), batch, heads, c // heads, positions), np.float32)
        self.values = np.zeros((len(caches), batch, heads, positions, c // heads), np.float32)
        self.noise = noise.to(torch.float64).contiguous().numpy()
        temperatures = (
            temperature if isinstance(temperature, torch.Tensor) else torch.tensor(float(temperature))
        )
        self.temperature = temperatures.to(torch.float64).expand(batch).contiguous().numpy()
        self.previous = np.full(batch, levels, dtype=np.int64)  # "no previous pixel" at first
        self.drawn = np.zeros((batch, positions), dtype=np.int64)
        self.nats = np.zeros(batch, dtype=np.float64)
        self.rows = np.zeros((len(state.layers) + 1, batch, size + state.kw - 1, c), np.float32)
        self.state = state

    def row(self, i: int) -> None:
        """Draw row ``i`` of every image (after ``self.state.begin_row(i)``): the images split
        between the caller's torch threads, each part's loop on its own thread."""
        state = self.state
        arrays = (
            state.inp.numpy(),
            (self.weights[0], self.weights[1], state.stem_row.numpy()),
            (self.weights[2], state.vh_rows.numpy(), *self.pointwise, self.rows),
            (*self.attention_weights, self.keys, self.values, self.block_of),
            self.head,
            (self.noise, self.temperature, self.previous, self.drawn, self.nats),
        )
        batch = len(self.nats)
        parts = min(torch.get_num_threads(), batch)
        bounds = [batch * p // parts for p in range(parts + 1)]
        if parts == 1:
            sample_row(i, *arrays, (0, batch))
            return
        others = [_pool().submit(sample_row, i, *arrays, (bounds[p], bounds[p + 1])) for p in range(1, parts)]
        sample_row(i, *arrays, (bounds[0], bounds[1]))
        for other in others:
            other.result()

    def keep(self, state: GatedCache, index: torch.Tensor) -> None:
        """Only batch rows ``index`` go on, on ``state`` (the cache of the smaller batch)."""
        rows = index.numpy()
        self.state = state
        self.keys, self.values = self.keys[:, rows], self.values[:, rows]
        self.noise, self.temperature = self.noise[rows], self.temperature[rows]
        self.previous, self.drawn, self.nats = self.previous[rows], self.drawn[rows], self.nats[rows]
        self.rows = np.ascontiguousarray(self.rows[:, rows])
