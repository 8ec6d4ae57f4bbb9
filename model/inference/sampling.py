"""Sampling new images: ``generate`` and the pieces shared with completion and the codec.

Reproducibility is per image: image i draws its noise from its own ``torch.Generator``
seeded with ``seeds[i]`` (one uniform per pixel, in raster order, drawn up front), and
each pixel is sampled by inverse CDF. So an image depends only on the model, its seed, its
label and the temperature, never on the rest of the batch.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import torch
from tqdm import tqdm

from model.network.pixelcnn import PixelCNN

SEED_LIMIT = 2**32


def per_image_noise(seeds: Sequence[int], pixels: int) -> torch.Tensor:
    """One uniform in [0, 1) per pixel for each seed: ``(len(seeds), pixels)`` float64."""
    return torch.stack(
        [torch.rand(pixels, generator=torch.Generator().manual_seed(s), dtype=torch.float64) for s in seeds]
    )


def label_from_seed(seed: int, num_classes: int) -> int:
    """The label drawn for an image that was given none (uniform over classes, seeded)."""
    # A separate stream from the pixel noise, so the pixels do not depend on whether the label
    # was drawn or given: generate(seed=s) equals generate(seed=s, label=<the drawn label>).
    gen = torch.Generator().manual_seed(seed ^ 0x5EED_1ABE1)
    return int(torch.randint(num_classes, (1,), generator=gen))


def check_seeds(seeds: Sequence[int] | None, n: int) -> list[int]:
    if seeds is None:
        return [random.randrange(SEED_LIMIT) for _ in range(n)]
    seeds = [int(s) for s in seeds]
    if len(seeds) != n:
        raise ValueError(f"got {len(seeds)} seeds for {n} images: pass one seed per image")
    if any(not 0 <= s < SEED_LIMIT for s in seeds):
        raise ValueError(f"seeds must be in 0..{SEED_LIMIT - 1}")
    return seeds


def check_labels(
    model: PixelCNN, labels: int | Sequence[int | None] | None, n: int, seeds: Sequence[int]
) -> torch.Tensor | None:
    """Labels ``(n,)`` int64 for a conditional model (missing ones drawn from the seed), else None."""
    k = model.config.num_classes
    if k is None:
        if labels is not None and not (isinstance(labels, Sequence) and all(v is None for v in labels)):
            raise ValueError("this model is unconditional: it takes no labels")
        return None
    if labels is None or isinstance(labels, int):
        labels = [labels] * n
    labels = list(labels)
    if len(labels) != n:
        raise ValueError(f"got {len(labels)} labels for {n} images: pass one, or one per image")
    chosen = [label_from_seed(s, k) if y is None else int(y) for y, s in zip(labels, seeds, strict=True)]
    if any(not 0 <= y < k for y in chosen):
        raise ValueError(f"labels must be in 0..{k - 1}")
    return torch.tensor(chosen, dtype=torch.long)


def check_temperature(temperature: float) -> float:
    temperature = float(temperature)
    if not temperature > 0 or temperature == float("inf"):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature}")
    return temperature


def draw(logits: torch.Tensor, uniforms: torch.Tensor, temperature: float | torch.Tensor) -> torch.Tensor:
    """Inverse-CDF sample: logits ``(B, L)``, uniforms ``(B,)`` in [0, 1) -> values ``(B,)`` int64.

    ``temperature`` is one float or one per row, ``(B,)``.
    """
    if isinstance(temperature, torch.Tensor):
        temperature = temperature.view(-1, 1).double()
    logits = logits.double()
    # Shift by the max first: at tiny temperatures logits / T would overflow to inf - inf.
    probs = torch.softmax((logits - logits.max(dim=1, keepdim=True).values) / temperature, dim=1)
    cdf = probs.cumsum(1)
    values = torch.searchsorted(cdf, (uniforms * cdf[:, -1]).unsqueeze(1)).squeeze(1)
    return values.clamp_(max=logits.shape[1] - 1)


@torch.no_grad()
def naive_sample(
    model: PixelCNN,
    noise: torch.Tensor,
    labels: torch.Tensor | None,
    temperature: float,
    progress: bool = False,
) -> torch.Tensor:
    """Reference sampler: one full forward pass per pixel and colour.

    ``noise`` ``(B, H*W*K)`` -> images ``(B, K, H, W)``, K = ``image_channels``; colour k of
    pixel t (raster order) uses ``noise[:, t * K + k]``: red, then green, then blue.
    """
    size, colours = model.config.image_size, model.config.image_channels
    x = torch.zeros(noise.shape[0], colours, size, size, dtype=torch.long)
    for t in tqdm(range(size * size), disable=not progress, desc="sampling (naive)"):
        i, j = divmod(t, size)
        for k in range(colours):
            logits = model(x, labels)
            at = logits[:, :, i, j] if colours == 1 else logits[:, :, k, i, j]
            x[:, k, i, j] = draw(at, noise[:, t * colours + k], temperature)
    return x.to(torch.uint8)
