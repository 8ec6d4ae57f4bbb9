"""Inpainting: ``complete`` fills the masked pixels of an image, by sequential importance
resampling over particles when asked, on the fast cached sampler.

Plain raster-order sampling never looks at known pixels after a hole. With ``particles=K``,
each requested completion runs K particles; every known pixel multiplies a particle's weight
by the model's probability of that pixel, and when the effective sample size of a group
falls below K/2 the group is resampled (systematic resampling). The final completion is drawn
from its group by weight, so it agrees with the known pixels below and right of the hole.
``on_row(rows_done, images)`` watches it draw: after every row, the leading particle of each
completion (a hook stops the work by raising).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from model.inference.caches import incremental
from model.inference.sampling import check_seeds, check_temperature, draw, label_from_seed
from model.network.pixelcnn import PixelCNN

LN2 = math.log(2.0)


def _check_inputs(
    model: PixelCNN, image: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    size, levels = model.config.image_size, model.config.levels
    if image.dim() == 2:
        image = image.unsqueeze(0)
    if tuple(image.shape) != (1, size, size):
        raise ValueError(f"image must have shape (1, {size}, {size}), got {tuple(image.shape)}")
    if tuple(mask.shape) != (size, size):
        raise ValueError(f"mask must have shape ({size}, {size}), got {tuple(mask.shape)}")
    if int(image.min()) < 0 or int(image.max()) >= levels:
        raise ValueError(f"image values must be in 0..{levels - 1}")
    return image.long(), mask.bool()


def _particle_labels(
    model: PixelCNN, labels: int | Sequence[int | None] | None, seeds: list[int], particles: int
) -> torch.Tensor | None:
    """``(n * K,)`` labels: the given one per completion, else one drawn per particle."""
    k = model.config.num_classes
    if k is None:
        if labels is not None:
            raise ValueError("this model is unconditional: it takes no labels")
        return None
    per_completion = [labels] * len(seeds) if labels is None or isinstance(labels, int) else list(labels)
    if len(per_completion) != len(seeds):
        raise ValueError(f"got {len(per_completion)} labels for {len(seeds)} completions")
    out = []
    for seed, y in zip(seeds, per_completion, strict=True):
        if y is not None and not 0 <= int(y) < k:
            raise ValueError(f"labels must be in 0..{k - 1}")
        for p in range(particles):
            out.append(int(y) if y is not None else label_from_seed(seed + p * 7919, k))
    return torch.tensor(out, dtype=torch.long)


def _systematic(weights: torch.Tensor, u: float) -> torch.Tensor:
    """Systematic resampling: K normalised weights, one uniform -> K ancestor indices."""
    k = weights.shape[0]
    positions = (torch.arange(k, dtype=torch.float64) + u) / k
    return torch.searchsorted(weights.double().cumsum(0), positions).clamp_(max=k - 1)


@torch.no_grad()
def complete(
    model: PixelCNN,
    image: torch.Tensor,
    mask: torch.Tensor,
    n: int,
    *,
    labels: int | Sequence[int | None] | None = None,
    seeds: Sequence[int] | None = None,
    temperature: float = 1.0,
    particles: int = 1,
    on_row: Callable[[int, torch.Tensor], object] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Fill the pixels where ``mask`` is True; known pixels come back bit-identical.

    ``image``: ``(1, H, W)`` model values; ``mask``: ``(H, W)`` bool, True = unknown.
    ``labels``: None, one int, or one (int or None) per completion; a conditional model infers
    a missing one (each particle draws a label, and resampling keeps those that fit).
    Returns ``(images, bits, labels)``: ``(n, 1, H, W)`` uint8 completions, ``(n,)`` float,
    each completion's total negative log2-likelihood (all pixels, under its label), and the
    ``(n,)`` int64 label each completion was drawn with (given or inferred; None for an
    unconditional model). Completion c depends only on the model, the inputs, ``seeds[c]``
    and its label.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if particles < 1:
        raise ValueError(f"particles must be at least 1, got {particles}")
    temperature = check_temperature(temperature)
    image, mask = _check_inputs(model, image, mask)
    seed_list = check_seeds(seeds, n)
    size, k = model.config.image_size, particles
    pixels = size * size
    batch = n * k
    label_tensor = _particle_labels(model, labels, seed_list, k)
    gens = [torch.Generator().manual_seed(s) for s in seed_list]
    noise = torch.cat([torch.rand(k, pixels, generator=g, dtype=torch.float64) for g in gens])
    state = incremental(model, label_tensor, batch)
    known = image.view(-1)
    unknown = mask.view(-1)
    out = known.view(1, pixels).repeat(batch, 1)
    log_weight = torch.zeros(n, k, dtype=torch.float64)  # natural log
    bits = torch.zeros(batch, dtype=torch.float64)
    for t in range(pixels):
        i, j = divmod(t, size)
        if j == 0:
            state.begin_row(i)
        logits = state.logits(i, j)
        log_probs = torch.log_softmax(logits.double(), dim=1)
        if unknown[t]:
            values = draw(logits, noise[:, t], temperature)
        else:
            values = known[t].expand(batch)
            if k > 1:
                log_weight += log_probs[:, known[t]].view(n, k)
        bits -= log_probs.gather(1, values.view(-1, 1)).squeeze(1) / LN2
        out[:, t] = values
        state.write(i, j, values)
        if k > 1 and not unknown[t] and t < pixels - 1:
            normalised = torch.softmax(log_weight, dim=1)
            ess = 1.0 / (normalised**2).sum(1)
            groups = [c for c in range(n) if ess[c] < k / 2]
            if groups:
                index = torch.arange(batch)
                for c in groups:
                    u = float(torch.rand(1, generator=gens[c], dtype=torch.float64))
                    index[c * k : (c + 1) * k] = c * k + _systematic(normalised[c], u)
                    log_weight[c] = 0.0
                state.select(index)
                # The noise stays with its slot, so duplicated particles diverge again.
                out, bits = out[index], bits[index]
                if label_tensor is not None:
                    label_tensor = label_tensor[index]  # a particle keeps its label
        if on_row is not None and j == size - 1:  # the leading particle of each completion so far
            leading = out.view(n, k, pixels)[torch.arange(n), log_weight.argmax(1)]
            on_row(i + 1, leading.view(n, 1, size, size).to(torch.uint8))
    # One particle per completion, drawn by its final weight.
    chosen = []
    for c in range(n):
        u = float(torch.rand(1, generator=gens[c], dtype=torch.float64))
        cdf = torch.softmax(log_weight[c], 0).cumsum(0)
        chosen.append(c * k + min(k - 1, int(torch.searchsorted(cdf, torch.tensor([u * float(cdf[-1])])))))
    picked = torch.tensor(chosen)
    images = out[picked].view(n, 1, size, size).to(torch.uint8)
    return images, bits[picked].float(), None if label_tensor is None else label_tensor[picked]
