"""Inpainting: ``complete`` fills the masked pixels of an image, by sequential importance
resampling over particles when asked, on the network a pixel at a time (as the sampler runs it).

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
    model: PixelCNN, image: torch.Tensor, mask: torch.Tensor, n: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``image`` as ``(n, C, H, W)`` int64 and ``mask`` as ``(n, H, W)`` bool: one per result."""
    size, levels, colours = model.config.image_size, model.config.levels, model.config.image_channels
    if image.dim() == 2:
        image = image.unsqueeze(0)
    if image.dim() == 3:
        image = image.unsqueeze(0).expand(n, -1, -1, -1)
    if tuple(image.shape) != (n, colours, size, size):
        raise ValueError(
            f"image must have shape ({colours}, {size}, {size}) (or ({n}, {colours}, {size}, {size}), "
            f"one per result), got {tuple(image.shape)}"
        )
    if mask.dim() == 2:
        mask = mask.unsqueeze(0).expand(n, -1, -1)
    if tuple(mask.shape) != (n, size, size):
        raise ValueError(
            f"mask must have shape ({size}, {size}) (or ({n}, {size}, {size}), one per result), "
            f"got {tuple(mask.shape)}"
        )
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
    True = unknown (every colour of a masked pixel). Either may also hold one per result,
    ``(n, C, H, W)`` and ``(n, H, W)``: a service merges requests for different images.
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
    image, mask = _check_inputs(model, image, mask, n)
    seed_list = check_seeds(seeds, n)
    size, colours, k = model.config.image_size, model.config.image_channels, particles
    pixels = size * size
    group = Particles(model, labels, seed_list, k)
    # A row per particle: dimension d is colour d % C of pixel d // C; True where it is drawn.
    known = image.permute(0, 2, 3, 1).reshape(n, -1).repeat_interleave(k, dim=0)  # (n*K, D)
    unknown = mask.reshape(n, pixels).repeat_interleave(k, dim=0)  # (n*K, H*W)
    drawn_by_all, drawn_by_none = unknown.all(0).tolist(), (~unknown).all(0).tolist()
    group.out = known.clone()
    with group.own_ops():
        for t in range(pixels):
            i, j = divmod(t, size)
            if j == 0:
                group.state.begin_row(i)
            for colour in range(colours):
                d = t * colours + colour
                logits = group.state.logits(i, j, colour)
                log_probs = torch.log_softmax(logits.double(), dim=1)
                if drawn_by_all[t]:
                    values = draw(logits, group.noise[:, d], temperature)
                else:
                    values = known[:, d]
                    if not drawn_by_none[t]:  # results whose masks differ here (merged requests)
                        drawn = draw(logits, group.noise[:, d], temperature)
                        values = torch.where(unknown[:, t], drawn, values)
                    if k > 1:  # the evidence: how likely this particle made the known value
                        evidence = log_probs.gather(1, values.view(-1, 1)).view(n, k)
                        group.log_weight += evidence.masked_fill(unknown[:, t].view(n, k), 0.0)
                group.record(d, values, log_probs)
            # After all of a known pixel's colours. A result that drew this pixel has the weights
            # it had at its last check, so resampling leaves it as it is.
            if k > 1 and not drawn_by_all[t] and t < pixels - 1:
                group.resample()
            if on_row is not None and j == size - 1:  # the leading particle of each completion so far
                on_row(i + 1, group.leading())
    return group.pick()  # one particle per completion, drawn by its final weight
