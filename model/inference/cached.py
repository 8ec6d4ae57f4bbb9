"""The fast sampler and teacher-forced logits, both on the cached incremental models.

``cached_sample`` draws whole images one pixel at a time, each step costing the network at one
position (see ``model.inference.caches``); ``cached_logits`` feeds known images through the
same steps, so tests can check the cache against the forward pass pixel by pixel. A colour
model (K = ``image_channels`` = 3) takes K such steps per pixel: red, then green, then blue.
For a grayscale gated network, ``cached_sample`` runs each row as compiled loops (its vertical
stacks, then its pixels: ``model.inference.row_kernel``); otherwise, and for
``cached_logits``, the torch step.

A caller can watch the sampler draw: ``on_row(rows_done, images)`` runs after every row with
the images so far (rows below ``rows_done`` are zeros), and may answer with the batch rows to
keep: the others leave the batch at once (a service drops the images whose client left).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from tqdm import tqdm

from model.inference.caches import incremental
from model.inference.incremental import IncrementalModel
from model.inference.row_kernel import RowKernel, supports
from model.inference.sampling import draw
from model.network.pixelcnn import PixelCNN, PixelCNNConfig

# (rows done, images so far (B, K, H, W) uint8) -> the batch rows to keep, or None for all.
RowCallback = Callable[[int, torch.Tensor], torch.Tensor | None]


def keep_rows(state: IncrementalModel, labels: torch.Tensor | None, index: torch.Tensor) -> IncrementalModel:
    """A cache of ``len(index)`` images holding rows ``index`` of ``state`` (a smaller batch).

    The caches keep views into their state, so a batch cannot shrink in place: a new cache of
    the new size takes a copy of the kept rows of every per-image tensor.
    """
    smaller = incremental(state.model, None if labels is None else labels[index], len(index))
    for name in state.STATE:
        old, new = getattr(state, name), getattr(smaller, name)
        pairs = zip(old, new, strict=True) if isinstance(old, list) else [(old, new)]
        for source, target in pairs:
            if source is not None:
                target.copy_(source[index])
    return smaller


@torch.no_grad()
def cached_sample(
    model: PixelCNN,
    noise: torch.Tensor,
    labels: torch.Tensor | None,
    temperature: float | torch.Tensor,
    progress: bool = False,
    on_row: RowCallback | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fast sampler: ``noise`` ``(B, H*W*K)`` uniforms -> images ``(B, K, H, W)`` uint8 and bits,
    K = ``image_channels`` (1 for grayscale).

    Same images as the naive sampler for the same noise: colour k of pixel t (raster order)
    uses ``noise[:, t * K + k]``. ``temperature`` is one float or one per image ``(B,)``.
    ``bits`` ``(B,)`` is each image's negative log2-likelihood (all pixels and colours) under
    the model itself (temperature 1), float64. ``on_row`` (see the module's docstring) may drop
    images; then only the kept ones come back, in their order, each exactly as it would have
    been without the others (its noise and label travel with it).
    """
    size, colours = model.config.image_size, model.config.image_channels
    batch = noise.shape[0]
    if noise.dim() != 2 or noise.shape[1] != size * size * colours:
        raise ValueError(f"noise must have shape (B, {size * size * colours}), got {tuple(noise.shape)}")
    if isinstance(temperature, torch.Tensor) and bool((temperature == 1.0).all()):
        temperature = 1.0  # the same draws, without dividing by ones at every pixel
    if supports(model):  # the compiled row loops
        return _sample_rows(RowKernel(model, labels, noise, temperature), size, progress, on_row)
    state = incremental(model, labels, batch)
    out = torch.zeros(batch, colours, size, size, dtype=torch.uint8)
    nats = torch.zeros(batch, dtype=torch.float64)
    # Per dimension (a row each, coding order): its uniforms and the values drawn, as rows so
    # that a pixel's step indexes once; ``out`` is filled from them a row of pixels at a time.
    columns = noise.t().unsqueeze(2)  # (D, B, 1)
    drawn = torch.zeros(size * size * colours, batch, dtype=torch.long)
    for i in tqdm(range(size), disable=not progress, desc="sampling (rows)"):
        state.begin_row(i)  # the part of every layer that sees only the rows above
        for j in range(size):
            for k in range(colours):
                d = (i * size + j) * colours + k
                logits = state.logits(i, j, k)  # the network at pixel (i, j) alone, colour k
                values, log_p = draw_and_score(logits, columns[d], temperature)
                nats -= log_p
                state.write(i, j, values, k)  # input for the next colours and pixels
                drawn[d] = values
        row = drawn[i * size * colours : (i + 1) * size * colours].view(size, colours, -1)
        out[:, :, i] = row.permute(2, 1, 0).to(torch.uint8)
        keep = None if on_row is None else on_row(i + 1, out)
        if keep is not None and i + 1 < size:  # the dropped images cost nothing from here on
            state = keep_rows(state, labels, keep)
            out, nats, columns, drawn = out[keep], nats[keep], columns[:, keep], drawn[:, keep]
            if labels is not None:
                labels = labels[keep]
            if isinstance(temperature, torch.Tensor) and temperature.dim() > 0:
                temperature = temperature[keep]
        elif keep is not None:
            out, nats = out[keep], nats[keep]
    return out, nats / math.log(2.0)


def _sample_rows(
    kernel: RowKernel, size: int, progress: bool, on_row: RowCallback | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``cached_sample`` with the compiled row loops (a grayscale gated network)."""
    out = torch.zeros(len(kernel.nats), 1, size, size, dtype=torch.uint8)
    for i in tqdm(range(size), disable=not progress, desc="sampling (rows)"):
        kernel.row(i)  # the whole row, its vertical stacks included
        out[:, 0, i] = torch.from_numpy(kernel.drawn[:, i * size : (i + 1) * size])
        keep = None if on_row is None else on_row(i + 1, out)
        if keep is not None:  # the dropped images cost nothing from here on
            kernel.keep(keep)
            out = out[keep]
    return out, torch.from_numpy(kernel.nats) / math.log(2.0)


def draw_and_score(
    logits: torch.Tensor, uniforms: torch.Tensor, temperature: float | torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``draw`` and the drawn values' log-probabilities at temperature 1: logits ``(B, L)``,
    uniforms ``(B, 1)`` -> values ``(B,)`` int64 and natural-log probabilities ``(B,)`` float64.

    The same values as ``draw``, bit for bit: at temperature 1 its shifted softmax is the plain
    one (softmax subtracts the maximum itself), so the shift is left out.
    """
    scores = logits.double()
    if isinstance(temperature, float) and temperature == 1.0:
        cdf = torch.softmax(scores, dim=1).cumsum(1)
        values = torch.searchsorted(cdf, uniforms * cdf[:, -1:])
        values.clamp_(max=logits.shape[1] - 1)
    else:
        values = draw(logits, uniforms.squeeze(1), temperature).unsqueeze(1)
    return values.squeeze(1), torch.log_softmax(scores, dim=1).gather(1, values).squeeze(1)


@torch.no_grad()
def cached_logits(model: PixelCNN, images: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    """Teacher-forced logits from the cache: images ``(B, 1, H, W)`` -> ``(B, levels, H, W)``;
    for colour, images ``(B, K, H, W)`` -> ``(B, levels, K, H, W)`` (the forward pass's shapes).

    Equal (to float rounding) to ``model(images, labels)``; exists so tests can check the
    cached path pixel by pixel, and so the codec can share the sampler's step.
    """
    size, colours = model.config.image_size, model.config.image_channels
    batch = images.shape[0]
    state = incremental(model, labels, batch)
    out = torch.zeros(batch, model.config.levels, colours, size, size)
    for i in range(size):
        state.begin_row(i)
        for j in range(size):
            for k in range(colours):
                out[:, :, k, i, j] = state.logits(i, j, k)
                state.write(i, j, images[:, k, i, j].long(), k)
    return out if colours > 1 else out[:, :, 0]


def warm_up() -> None:
    """Compile the row loops now (or load them from numba's cache) rather than in the first
    request: one image of a tiny network, by rows and a pixel at a time (the loops' types do
    not depend on the network)."""
    config = PixelCNNConfig(
        arch="gated-attention",
        channels=4,
        layers=2,
        levels=4,
        image_size=2,
        attention_every=1,
        head_channels=4,
    )
    model = PixelCNN(config).eval()
    cached_sample(model, torch.rand(1, 4, dtype=torch.float64), None, 1.0)
    steps = RowKernel.steps(model, None, 1)  # and a pixel at a time, as particles run them
    steps.begin_row(0)
    steps.write(0, 0, steps.logits(0, 0).argmax(1))
