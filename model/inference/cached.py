"""The fast sampler and teacher-forced logits, both on the cached incremental models.

``cached_sample`` draws whole images one pixel at a time, each step costing the network at one
position (see ``model.inference.caches``); ``cached_logits`` feeds known images through the
same steps, so tests can check the cache against the forward pass pixel by pixel.
"""

from __future__ import annotations

import math

import torch
from tqdm import tqdm

from model.inference.caches import incremental
from model.inference.sampling import draw
from model.network.pixelcnn import PixelCNN


@torch.no_grad()
def cached_sample(
    model: PixelCNN,
    noise: torch.Tensor,
    labels: torch.Tensor | None,
    temperature: float | torch.Tensor,
    progress: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fast sampler: ``noise`` ``(B, H*W)`` uniforms -> images ``(B, 1, H, W)`` uint8 and bits.

    Same images as the naive sampler for the same noise. ``temperature`` is one float or one
    per image ``(B,)``. ``bits`` ``(B,)`` is each image's negative log2-likelihood under the
    model itself (temperature 1), float64.
    """
    size = model.config.image_size
    batch = noise.shape[0]
    state = incremental(model, labels, batch)
    out = torch.zeros(batch, 1, size, size, dtype=torch.uint8)
    nats = torch.zeros(batch, dtype=torch.float64)
    rows = torch.arange(batch)
    for i in tqdm(range(size), disable=not progress, desc="sampling (rows)"):
        state.begin_row(i)  # the part of every layer that sees only the rows above
        for j in range(size):
            logits = state.logits(i, j)  # the network at pixel (i, j) alone
            values = draw(logits, noise[:, i * size + j], temperature)
            nats -= torch.log_softmax(logits.double(), dim=1)[rows, values]
            state.write(i, j, values)  # the new pixel becomes input for the next ones
            out[:, 0, i, j] = values.to(torch.uint8)
    return out, nats / math.log(2.0)


@torch.no_grad()
def cached_logits(model: PixelCNN, images: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    """Teacher-forced logits from the cache: images ``(B, 1, H, W)`` -> ``(B, levels, H, W)``.

    Equal (to float rounding) to ``model(images, labels)``; exists so tests can check the
    cached path pixel by pixel, and so the codec can share the sampler's step.
    """
    size = model.config.image_size
    batch = images.shape[0]
    state = incremental(model, labels, batch)
    out = torch.zeros(batch, model.config.levels, size, size)
    for i in range(size):
        state.begin_row(i)
        for j in range(size):
            out[:, :, i, j] = state.logits(i, j)
            state.write(i, j, images[:, 0, i, j].long())
    return out
