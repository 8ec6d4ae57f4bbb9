"""Inpainting: ``complete`` fills the masked pixels of an image, by sequential importance
resampling over particles when asked, on the fast cached sampler.

Plain raster-order sampling never looks at known pixels after a hole. With ``particles=K``,
each requested completion runs K particles; every known pixel multiplies a particle's weight
by the model's probability of that pixel, and when the effective sample size of a group
falls below K/2 the group is resampled (systematic resampling). The final completion is drawn
from its group by weight, so it agrees with the known pixels below and right of the hole.
The particle machinery is shared with super-resolution (``model.inference.particles``).
``on_row(rows_done, images)`` watches it draw: after every row, the leading particle of each
completion (a hook stops the work by raising).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from model.inference.particles import Labels, Particles
from model.inference.sampling import check_seeds, check_temperature, draw
from model.network.pixelcnn import PixelCNN


def _check_inputs(
    model: PixelCNN, image: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    size, levels, colours = model.config.image_size, model.config.levels, model.config.image_channels
    if image.dim() == 2:
        image = image.unsqueeze(0)
    if tuple(image.shape) != (colours, size, size):
        raise ValueError(f"image must have shape ({colours}, {size}, {size}), got {tuple(image.shape)}")
    if tuple(mask.shape) != (size, size):
        raise ValueError(f"mask must have shape ({size}, {size}), got {tuple(mask.shape)}")
    if int(image.min()) < 0 or int(image.max()) >= levels:
        raise ValueError(f"image values must be in 0..{levels - 1}")
    return image.long(), mask.bool()


@torch.no_grad()
def complete(
    model: PixelCNN,
    image: torch.Tensor,
    mask: torch.Tensor,
    n: int,
    *,
    labels: Labels = None,
    seeds: Sequence[int] | None = None,
    temperature: float = 1.0,
    particles: int = 1,
    on_row: Callable[[int, torch.Tensor], object] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Fill the pixels where ``mask`` is True; known pixels come back bit-identical.

    ``image``: ``(C, H, W)`` model values (C = ``image_channels``); ``mask``: ``(H, W)`` bool,
    True = unknown (every colour of a masked pixel).
    ``labels``: None, one int, or one (int or None) per completion; a conditional model infers
    a missing one (each particle draws a label, and resampling keeps those that fit).
    Returns ``(images, bits, labels)``: ``(n, C, H, W)`` uint8 completions, ``(n,)`` float,
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
    size, colours, k = model.config.image_size, model.config.image_channels, particles
    pixels = size * size
    group = Particles(model, labels, seed_list, k)
    known = image.permute(1, 2, 0).reshape(-1)  # dimension d = colour d % C of pixel d // C
    unknown = mask.view(-1)
    group.out = known.view(1, -1).repeat(n * k, 1)
    for t in range(pixels):
        i, j = divmod(t, size)
        if j == 0:
            group.state.begin_row(i)
        for colour in range(colours):
            d = t * colours + colour
            logits = group.state.logits(i, j, colour)
            log_probs = torch.log_softmax(logits.double(), dim=1)
            if unknown[t]:
                values = draw(logits, group.noise[:, d], temperature)
            else:
                values = known[d].expand(n * k)
                if k > 1:  # the evidence: how likely this particle made the known value
                    group.log_weight += log_probs[:, known[d]].view(n, k)
            group.record(d, values, log_probs)
        if k > 1 and not unknown[t] and t < pixels - 1:  # after all of a known pixel's colours
            group.resample()
        if on_row is not None and j == size - 1:  # the leading particle of each completion so far
            on_row(i + 1, group.leading())
    return group.pick()  # one particle per completion, drawn by its final weight
