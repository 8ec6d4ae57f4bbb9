"""The fast sampler's rows as compiled loops (numba): a whole row of every image per call.

At small batches the torch step's time goes to dispatching its ops, not to arithmetic: a
pixel step of the shipped network is about 150 torch ops on vectors of 64 to 256 numbers, a
few microseconds each, where the arithmetic takes a few. ``vertical_row`` runs what
``GatedCache.begin_row`` computes (each layer's vertical stack at the row) and
``sample_row`` what ``GatedCache.logits`` computes, followed by the draw and the write, for
every pixel of the row: plain loops compiled once by numba, no op dispatched, every
matrix-vector product summed over its inputs in order (``model.inference.vector_ops``), so
that an image's numbers never depend on its batch. The weights are laid out once per network
(``model.inference.kernel_weights``).

The sums run in another order than torch's matrix library, so logits differ from the torch
step in the last bits (well inside the tolerance the tests hold the cached path to, against
the forward pass), and an image differs from the torch step's only where its uniform falls
within that distance of a boundary of the inverse CDF (``bench.sampling --compare`` counts
them). The codec, whose two sides must agree bit for bit with the files it wrote before,
keeps the torch step.

Completion and super-resolution choose each pixel's value themselves (their particles are
weighed and resampled between pixels): ``RowKernel.steps`` gives them the same loops a pixel
at a time, behind the caches' step interface (``begin_row``, ``logits``, ``write``,
``select``; ``model.inference.incremental``).

For grayscale ``gated`` and ``gated-attention`` networks; other ones run the torch step
(``supports``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from numpy.lib.stride_tricks import as_strided

from model.inference.kernel_weights import float32_array, kernel_weights
from model.inference.kernels import pixel_logits, sample_row, write_pixel
from model.inference.vertical_kernel import vertical_row
from model.network.layers import GatedLayer, GatedStem

if TYPE_CHECKING:
    from model.network.pixelcnn import PixelCNN

# Threads for the other parts of a batch: the loop releases the GIL, so they run side by side.
# One pool per process (a forked child has none of its parent's threads).
_POOLS: dict[int, ThreadPoolExecutor] = {}


def _pool() -> ThreadPoolExecutor:
    pid = os.getpid()
    if pid not in _POOLS:
        _POOLS[pid] = ThreadPoolExecutor(max(1, (os.cpu_count() or 1) - 1), thread_name_prefix="rows")
    return _POOLS[pid]


# Each per-image array of a ``RowKernel`` and its batch axis.
_PER_IMAGE = {
    "inp": 0,
    "keys": 1,
    "values": 1,
    "noise": 0,
    "temperature": 0,
    "previous": 0,
    "drawn": 0,
    "nats": 0,
    "rows": 1,
    "vertical_input": 2,
    "label_starts": 1,
    "label_terms": 1,
    "stem_row": 0,
    "vh_rows": 1,
}


def supports(model: PixelCNN) -> bool:
    """Whether ``cached_sample`` runs this network with the compiled loops: a grayscale
    ``gated`` or ``gated-attention`` network. At every batch size, so that an image's numbers
    never depend on the batch it was drawn in (the torch step's sums differ in the last bits,
    which would make a request's images depend, now and then, on what it was merged with)."""
    return model.config.arch in ("gated", "gated-attention") and model.config.image_channels == 1


class RowKernel:
    """The compiled loops' arrays for one network and one batch of noise ``(B, H*W)``.

    Holds the network's weights laid out for the loops (shared by every batch of it), the
    padded input ``inp`` ``(B, H + k, W + 2k, 2)`` (each pixel's encoded value and a constant
    one, as ``GatedCache.inp``; the loops read the rows above and write the drawn pixels),
    each layer's vertical input and its row's vertical terms, the attention blocks' keys and
    values, the draws so far (``drawn`` ``(B, H*W)`` int64) and each image's negative
    log-likelihood in nats (``nats``). Driven a pixel at a time (``steps``), its caller draws:
    the noise is zeros, and ``drawn`` and ``nats`` stay unused.
    """

    def __init__(
        self,
        model: PixelCNN,
        labels: torch.Tensor | None,
        noise: torch.Tensor,
        temperature: float | torch.Tensor,
    ) -> None:
        batch, cfg = len(noise), model.config
        levels, size, c = cfg.levels, cfg.image_size, cfg.channels
        positions = size * size
        self.size, self.levels = size, levels
        self.position = 0  # the raster position of the latest ``logits`` call
        self.threads = torch.get_num_threads()  # the parts a batch is split into (``_split``)
        self.weights = kernel_weights(model)
        blocks, heads = self.weights.attention[0].shape[0], self.weights.heads
        self.keys = np.zeros((blocks, batch, heads, c // heads, positions), np.float32)
        self.values = np.zeros((blocks, batch, heads, positions, c // heads), np.float32)
        self.noise = noise.to(torch.float64).contiguous().numpy()
        temperatures = (
            temperature if isinstance(temperature, torch.Tensor) else torch.tensor(float(temperature))
        )
        self.temperature = temperatures.to(torch.float64).expand(batch).contiguous().numpy()
        self.previous = np.full(batch, levels, dtype=np.int64)  # "no previous pixel" at first
        self.drawn = np.zeros((batch, positions), dtype=np.int64)
        self.nats = np.zeros(batch, dtype=np.float64)
        stem = model.stem
        assert isinstance(stem, GatedStem)
        layers = [layer for layer in model.blocks if isinstance(layer, GatedLayer)]
        self.inp = np.zeros((batch, size + stem.k, size + 2 * stem.k, 2), np.float32)
        self.rows = np.zeros((len(layers) + 1, batch, (size + layers[0].kw - 1) * c), np.float32)
        # Per layer and image: the start of the row's horizontal term (the vertical-to-horizontal
        # conv's bias, the label's term and the horizontal conv's bias) and the label's
        # vertical term, (L, B, 2C) each.
        starts, label_terms = [], []
        with torch.no_grad():
            for layer, cond in zip(layers, model.label_biases(labels, batch), strict=True):
                v2h_b, h_b = layer.vertical_to_horizontal.bias, layer.horizontal.bias
                assert v2h_b is not None and h_b is not None  # both convs have biases
                cond_v, cond_h = (torch.zeros(batch, 4 * c) if cond is None else cond.float()).chunk(2, dim=1)
                starts.append(v2h_b + cond_h + h_b)
                label_terms.append(cond_v.expand(batch, 2 * c))
        self.label_starts, self.label_terms = (
            float32_array(torch.stack(starts)),
            float32_array(torch.stack(label_terms)),
        )
        # Each layer's vertical input at the kh rows its conv reads, padded by (kv - 1) / 2
        # columns each side, (L, kh, B, (W + kv - 1) * C): a ring, padded row r in slot r % kh
        # (the first kh - 1 padded rows, above the image, are the zeros it starts with).
        kh, kv = layers[0].vertical.kernel_size
        self.vertical_input = np.zeros((len(layers), kh, batch, (size + kv - 1) * c), np.float32)
        self.stem_row = np.zeros((batch, size, c), np.float32)
        self.vh_rows = np.zeros((len(layers), batch, size, 2 * c), np.float32)

    def _windows(self) -> tuple[np.ndarray, np.ndarray]:
        """Overlapping views of the stem's padded input and of each layer's vertical input:
        at each column, the window its vertical conv reads, flat (no copy)."""
        inp, size = self.inp, self.size
        stem_windows = as_strided(
            inp,
            (*inp.shape[:2], size, (inp.shape[2] - size + 1) * inp.shape[3]),
            (*inp.strides[:3], inp.strides[3]),
        )
        buffer = self.vertical_input
        c = self.stem_row.shape[2]
        windows = as_strided(
            buffer,
            (*buffer.shape[:3], size, buffer.shape[3] - (size - 1) * c),
            (*buffer.strides[:3], c * buffer.itemsize, buffer.itemsize),
        )
        return stem_windows, windows

    def arguments(self, images: tuple[int, int]) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        """What ``vertical_row`` and ``sample_row`` take after the row number, for batch rows
        ``images`` ``(start, end)``."""
        weights = self.weights
        stem_windows, windows = self._windows()
        vertical = (
            stem_windows,
            weights.stem_vertical,
            windows,
            (*weights.vertical, self.label_starts, self.label_terms),
            (self.stem_row, self.vh_rows),
            images,
        )
        horizontal = (
            self.inp,
            (*weights.stem, self.stem_row),
            (weights.horizontal, self.vh_rows, *weights.pointwise, self.rows),
            (*weights.attention, self.keys, self.values, weights.block_of),
            weights.head,
            (self.noise, self.temperature, self.previous, self.drawn, self.nats),
            images,
        )
        return vertical, horizontal

    def row(self, i: int) -> None:
        """Draw row ``i`` of every image: its vertical stacks, then its pixels."""

        def part(images: tuple[int, int]) -> None:
            vertical, horizontal = self.arguments(images)
            vertical_row(i, *vertical)
            sample_row(i, *horizontal)

        self._split(part)

    def _split(self, part: Callable[[tuple[int, int]], None]) -> None:
        """``part(images)`` for the batch split into as many parts as the caller had torch
        threads when it made this kernel, each part on its own thread (the loops hold no GIL)."""
        batch = len(self.nats)
        parts = min(self.threads, batch)
        bounds = [batch * p // parts for p in range(parts + 1)]
        others = [_pool().submit(part, (bounds[p], bounds[p + 1])) for p in range(1, parts)]
        try:
            part((bounds[0], bounds[1]))
        finally:
            wait(others)  # no part goes on writing after another has failed
        for other in others:
            other.result()

    @classmethod
    def steps(cls, model: PixelCNN, labels: torch.Tensor | None, batch: int) -> RowKernel:
        """Loops for ``batch`` images driven a pixel at a time, as a cache is: ``begin_row(i)``,
        then per pixel ``logits`` and ``write`` (``IncrementalModel``'s order and rules;
        grayscale, so colour 0 only), and ``select`` to resample."""
        positions = model.config.image_size**2
        return cls(model, labels, torch.zeros(batch, positions, dtype=torch.float64), 1.0)

    def begin_row(self, i: int) -> None:
        """Row ``i``'s vertical stacks, for every image."""
        self._split(lambda images: vertical_row(i, *self.arguments(images)[0]))

    def _check_pixel(self, i: int, j: int, colour: int) -> None:
        # The loops check no bounds (numba): a step outside the image would write past its rows.
        if not (0 <= i < self.size and 0 <= j < self.size):
            raise IndexError(f"pixel ({i}, {j}) is outside the {self.size}x{self.size} image")
        if colour != 0:
            raise ValueError("the compiled loops run grayscale networks: colour 0 only")

    def logits(self, i: int, j: int, colour: int = 0) -> torch.Tensor:
        """The network at pixel (i, j) -> ``(B, levels)`` float32, a new tensor each call."""
        self._check_pixel(i, j, colour)
        out = np.empty((len(self.nats), self.levels), np.float32)

        def part(images: tuple[int, int]) -> None:
            inp, stem, layers, attention, head, _, _ = self.arguments(images)[1]
            rows = out[images[0] : images[1]]
            pixel_logits(i, j, inp, stem, layers, attention, head, self.previous, rows, images)

        self._split(part)
        self.position = i * self.size + j
        return torch.from_numpy(out)

    def write(self, i: int, j: int, values: torch.Tensor, colour: int = 0) -> None:
        """Pixel (i, j) takes ``values`` ``(B,)`` int64: the input of the pixels after it."""
        self._check_pixel(i, j, colour)
        if values.dtype != torch.long or tuple(values.shape) != self.previous.shape:
            raise ValueError(f"values must be {self.previous.shape[0]} int64 model values")
        if len(values) and not (int(values.min()) >= 0 and int(values.max()) < self.levels):
            raise ValueError(f"values must be in 0..{self.levels - 1}")
        self.previous[:] = values.numpy()
        write_pixel(i, j, self.inp, self.weights.head[4], self.previous, (0, len(self.previous)))

    def select(self, index: torch.Tensor) -> None:
        """Batch row b takes row ``index[b]``'s state (resampling particles), in place. Only
        the rows that move are copied, and of the attention caches only the positions so far."""
        rows = index.numpy()
        moved = np.flatnonzero(rows != np.arange(len(rows)))
        sources = rows[moved]
        live = self._live()
        # Past the batch axis, the attention caches' positions so far: keys (A, B, heads, d,
        # H*W), values (A, B, heads, H*W, d).
        positions = {"keys": (..., live), "values": (slice(None), live)}
        for name, axis in _PER_IMAGE.items():
            array, lead, tail = getattr(self, name), (slice(None),) * axis, positions.get(name, ())
            array[(*lead, moved, *tail)] = array[(*lead, sources, *tail)]  # the right side is read first

    def _live(self) -> slice:
        """The attention caches' positions that later steps read: those computed so far."""
        return slice(self.position + 1)

    def keep(self, index: torch.Tensor) -> None:
        """Only batch rows ``index`` go on, in that order (fewer of them: dropped images)."""
        rows = index.numpy()
        for name, axis in _PER_IMAGE.items():
            setattr(self, name, np.ascontiguousarray(np.take(getattr(self, name), rows, axis=axis)))
