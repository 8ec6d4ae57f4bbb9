"""Super-resolution: ``upscale`` samples full-size images whose ``downscale`` is a given small one.

``downscale(image, f)`` maps each f x f block to its mean rounded half up, in integers:
``(2 * block_sum + f*f) // (2 * f*f)``. An upscaled image *agrees* with the small one when
its ``downscale`` equals it exactly; every image ``upscale`` returns agrees.

The constraint: a block whose small value is v must reach a block sum S in ``[lo(v), hi(v)]``
(the sums that round to v). In raster order, pixel x of a block with partial sum P and r
pixels of the block still to come after it may take only the values that keep the block able
to get there: ``max(0, lo - P - r*M) <= x <= min(M, hi - P)``, M = levels - 1. This interval
is never empty: ``lo <= f*f*v <= hi``, so ``P <= hi`` and ``P + (r+1)*M >= lo`` hold before a
block's first pixel (P = 0); when they hold before a pixel its interval is not empty, and
every value in it keeps them for the next pixel; at the block's last pixel (r = 0) the
interval puts S in [lo, hi]. So every image agrees, whatever the small image and the model.

Sampling: each pixel's distribution is restricted to its interval and renormalised, and each
particle's weight is multiplied by the probability mass it kept, then particles are
resampled (``model.inference.particles``), so that the results follow the model's posterior
given the small image. Masking alone is a poor proposal: a block's pixels are drawn over f
image rows and the model knows nothing of the block's mean until its last pixels are forced
to make up for its first ones. Two things make the proposal better (twisted sequential Monte
Carlo); neither changes the target, since the weights divide by whatever they add:

- A guide: the small image's bicubic enlargement, shifted per block so that each block sums
  to exactly ``f*f*v``. A value is weighted by ``exp(-d**2 / (2 * r * s**2))``, the chance
  that r more pixels, each off the guide by about s, make up for d, the block's drift from
  the guide with that value; s = ``SPREAD * M``. The weight divides by the twist before the
  pixel, so the twists cancel once a block is full.
- A lookahead at the pixel before each block's last (the last is then all but forced). First
  one model step with this pixel at a reference value (half of what the two still need) gives
  the last pixel's distribution; the mass it puts on the values that would complete the block
  twists every value of this pixel (``_last_pixel_twist``). Then ``LOOKAHEAD`` candidate values
  are drawn from that proposal (stratified, from the pixel's one uniform), the model is run one
  pixel ahead for each, and one candidate is kept in proportion to its weight times the mass
  the model really gives the last pixel's allowed values. The weight is their mean
  (random-weight importance sampling), so the last pixel no longer pays for a choice made
  blind. It costs ``LOOKAHEAD + 1`` extra model steps per block.

Values are model values, so a model of fewer than 256 levels works in its own range
0..levels-1.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from model.inference.particles import Labels, Particles, Steps
from model.inference.sampling import check_seeds, check_temperature, draw
from model.network.pixelcnn import PixelCNN

# The twist's guess of how far pixels stray from the guide, as a fraction of the top value (38
# of 255). Any positive value gives the same limit; this one gave the best evidence estimates
# (fewest particles wasted) on Fashion-MNIST validation images at factors 2, 4 and 7.
SPREAD = 0.15
# Candidates tried at the pixel before each block's last, after one reference step (0: neither,
# the pixel is drawn like the others). Two did as well as four on validation images at a
# factor of 2, for two model steps less.
LOOKAHEAD = 2


def downscale(image: torch.Tensor, factor: int) -> torch.Tensor:
    """Integer images ``(..., H, W)`` -> ``(..., H/f, W/f)``, each f x f block's mean rounded
    half up, ``(2 * sum + f*f) // (2 * f*f)``, in the input's dtype."""
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
        raise ValueError(f"factor must be a positive integer, got {factor!r}")
    if image.is_floating_point() or image.is_complex() or image.dtype == torch.bool:
        raise ValueError(f"downscale takes integer images, got {image.dtype}")
    if image.dim() < 2:
        raise ValueError(f"downscale takes images (..., H, W), got shape {tuple(image.shape)}")
    *lead, h, w = image.shape
    if h % factor or w % factor:
        raise ValueError(f"a {h}x{w} image cannot be cut into {factor}x{factor} blocks")
    blocks = image.long().reshape(*lead, h // factor, factor, w // factor, factor).sum((-3, -1))
    area = factor * factor
    return ((2 * blocks + area) // (2 * area)).to(image.dtype)


def block_sums(small: torch.Tensor, factor: int, top: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The block sums that ``downscale`` rounds to ``small``: ``lo``, ``hi`` inclusive, each
    clipped to what ``factor * factor`` pixels of values 0..top can reach."""
    area = factor * factor
    v = small.long()
    lo = torch.div(2 * area * v - area + 1, 2, rounding_mode="floor").clamp(min=0)
    hi = torch.div(2 * area * v + area - 1, 2, rounding_mode="floor").clamp(max=area * top)
    return lo, hi


def _check_small(model: PixelCNN, low: torch.Tensor, factor: int, n: int) -> torch.Tensor:
    """``low`` as ``(n, C * h * w)`` int64 (colour-major): one small image per result."""
    size, levels, c = model.config.image_size, model.config.levels, model.config.image_channels
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1 or size % factor:
        raise ValueError(f"factor must divide the image size {size}, got {factor!r}")
    h = size // factor
    if low.is_floating_point() or low.is_complex() or low.dtype == torch.bool:
        raise ValueError(f"the small image must hold integers, got {low.dtype}")
    if low.dim() == 2 and c == 1:
        low = low.unsqueeze(0)
    if low.dim() == 3 and tuple(low.shape) == (c, h, h):
        low = low.expand(n, c, h, h)
    if tuple(low.shape) != (n, c, h, h):
        raise ValueError(
            f"the small image must have shape ({c}, {h}, {h}) for factor {factor} "
            f"(or ({n}, {c}, {h}, {h}), one per result), got {tuple(low.shape)}"
        )
    if int(low.min()) < 0 or int(low.max()) >= levels:
        raise ValueError(f"small image values must be in 0..{levels - 1} (the model's levels)")
    return low.reshape(n, c * h * h).long()


def enlarge_to_sums(small: torch.Tensor, factor: int, top: int) -> torch.Tensor:
    """The guide: small images ``(n, h*h)`` -> ``(n, H*W)`` float64, their bicubic enlargement
    clipped to 0..top, then shifted per block so that each block sums to ``f*f*v`` exactly."""
    n, h = small.shape[0], round(small.shape[1] ** 0.5)
    values = small.view(n, 1, h, h).double()
    big = F.interpolate(values, scale_factor=factor, mode="bicubic", align_corners=False).clamp(0, top)
    blocks = big.view(n, h, factor, h, factor)
    shift = values.view(n, h, 1, h, 1) - blocks.mean((2, 4), keepdim=True)
    return (blocks + shift).reshape(n, h * factor * h * factor)


def _last_pixel_twist(
    state: Steps,
    t: int,
    need: tuple[torch.Tensor, torch.Tensor],
    interval: tuple[torch.Tensor, torch.Tensor],
    levels: int,
    temperature: float,
) -> torch.Tensor:
    """Pixel ``t``, the one before a block's last: per row and value v of this pixel, the log
    mass the model gives the last pixel's values that complete the block (``need`` ``lo``,
    ``hi`` ``(B,)``: the sums the two pixels may still add up to; ``interval``: this pixel's
    allowed values ``(B,)``). The model is run once, with this pixel at the value that leaves
    half of the need to the last pixel, and its distribution there stands in for every v (a
    guess: the lookahead scores the candidates with their own step). -> ``(B, levels)``."""
    i, j = divmod(t, state.size)
    low, high = need
    reference = torch.div(low + high, 4, rounding_mode="floor")
    state.write(i, j, torch.minimum(torch.maximum(reference, interval[0]), interval[1]))
    last = torch.log_softmax(state.logits(i, j + 1).double() / temperature, 1)  # (B, levels)
    values = torch.arange(levels).view(1, -1, 1)
    width = int((high - low).max()) + 1
    completing = low.view(-1, 1, 1) - values + torch.arange(width).view(1, 1, -1)  # (B, levels, width)
    valid = (completing >= 0) & (completing < levels) & (completing <= high.view(-1, 1, 1) - values)
    mass = last.unsqueeze(1).expand(-1, levels, -1).gather(2, completing.clamp(0, levels - 1))
    return torch.logsumexp(mass.masked_fill(~valid, float("-inf")), 2)


def _look_ahead(
    group: Particles,
    t: int,
    block: int,
    proposal: torch.Tensor,
    tempered: torch.Tensor,
    kept: torch.Tensor,
    sums: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    interval: tuple[torch.Tensor, torch.Tensor],
    temperature: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pixel ``t``, the one before block ``block``'s last: ``LOOKAHEAD`` candidates from the
    twisted ``proposal`` ``(n*K, levels)`` (log, masked to the allowed values; ``tempered``:
    the model's log-probabilities before the twist and mask), each scored by the model's mass
    on the allowed values of the pixel after it. ``kept``: the pixel's weight with this proposal.
    ``sums``: ``lo``, ``hi`` ``(n*K, blocks)`` and the block's sum so far ``(n*K,)``;
    ``interval``: the pixel's allowed values, ``least`` and ``most`` ``(n*K,)``.
    Returns the chosen values ``(n*K,)``, their weight (the candidates' mean, natural log) and
    the log mass of the last pixel's allowed values, the twist the last pixel divides by.
    """
    state, size = group.state, group.state.size
    i, j = divmod(t, size)
    lo, hi, so_far = sums
    least, most = interval
    levels = torch.arange(proposal.shape[1])
    values, log_mass, log_weight = [], [], []
    for m in range(LOOKAHEAD):
        # Stratified: candidate m uses the m-th shift of the pixel's uniform, so each is a draw.
        uniforms = (group.noise[:, t] + m / LOOKAHEAD) % 1.0
        value = torch.minimum(torch.maximum(draw(proposal, uniforms, 1.0), least), most).view(-1, 1)
        state.write(i, j, value.view(-1))  # a trial: record() writes the chosen value
        ahead = state.logits(i, j + 1).double() / temperature
        need = torch.stack([lo[:, block], hi[:, block]], 1) - so_far.view(-1, 1) - value
        last = (levels >= need[:, :1]) & (levels <= need[:, 1:])
        mass = torch.logsumexp(ahead.masked_fill(~last, float("-inf")), 1) - torch.logsumexp(ahead, 1)
        twist = proposal.gather(1, value) - tempered.gather(1, value)  # log twist of this value
        values.append(value.view(-1))
        log_mass.append(mass)
        log_weight.append(kept + mass - twist.view(-1))
    weights = torch.stack(log_weight, 1)  # (n*K, LOOKAHEAD)
    choice = draw(weights, group.extra_noise[:, block], 1.0).view(-1, 1)
    chosen = torch.stack(values, 1).gather(1, choice).view(-1)
    mean = torch.logsumexp(weights, 1) - math.log(LOOKAHEAD)
    return chosen, mean, torch.stack(log_mass, 1).gather(1, choice).view(-1)


@torch.no_grad()
def upscale(
    model: PixelCNN,
    low: torch.Tensor,
    factor: int,
    n: int,
    *,
    labels: Labels = None,
    seeds: Sequence[int] | None = None,
    temperature: float = 1.0,
    particles: int = 8,
    on_row: Callable[[int, torch.Tensor], None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``n`` full-size images whose ``downscale(image, factor)`` is exactly ``low``.

    ``low``: ``(C, H/f, W/f)`` model values, C = ``image_channels`` (``(n, C, H/f, W/f)``:
    one small image per result); each colour's blocks are constrained on their own.
    ``labels``: None, one int, or one (int or None) per result; a conditional model infers a
    missing one (each particle draws a label, resampling keeps those that fit).
    ``particles``: K per result, for sequential importance resampling (1: masked sampling).
    Returns ``(images, bits, labels)`` as ``complete`` does: ``(n, C, H, W)`` uint8, each
    image's total negative log2-likelihood ``(n,)`` under its label, and the ``(n,)`` int64
    labels used (None for an unconditional model). Result c depends only on the model, its
    small image, ``seeds[c]``, its label, the temperature and the number of particles.
    ``on_row(rows_done, images)`` watches it draw: after every row, the leading particle of
    each result ``(n, C, H, W)`` uint8 (a hook stops the work by raising).

    A colour model draws the colours of a pixel in turn, each in its own colour's block. It
    runs without the lookahead (the pixel after the one before a block's last is, in colour,
    the next colour of the same pixel, not that block's last pixel): the guide's twist alone.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if particles < 1:
        raise ValueError(f"particles must be at least 1, got {particles}")
    temperature = check_temperature(temperature)
    small = _check_small(model, low, factor, n)
    seed_list = check_seeds(seeds, n)
    size, k, top = model.config.image_size, particles, model.config.levels - 1
    colours = model.config.image_channels
    pixels, per_row = size * size, size // factor
    area, blocks = factor * factor, per_row * per_row
    lookahead = LOOKAHEAD if colours == 1 else 0
    # Per small pixel and colour (block b = colour * blocks + block) its allowed block sums, and
    # per pixel and colour the guide; a row per particle.
    lo, hi = (bound.repeat_interleave(k, dim=0) for bound in block_sums(small, factor, top))
    planes = enlarge_to_sums(small.reshape(n * colours, blocks), factor, top)  # (n*C, H*W)
    guide = planes.view(n, colours, pixels).repeat_interleave(k, dim=0)  # (n*K, C, H*W)
    partial = torch.zeros(n * k, colours * blocks, dtype=torch.long)  # each block's sum so far
    expected = torch.zeros(n * k, colours * blocks, dtype=torch.float64)  # the guide's, so far
    looked = torch.zeros(n * k, dtype=torch.float64)  # log mass of the last pixel, chosen ahead
    levels = torch.arange(top + 1)
    spread = 2 * (SPREAD * top) ** 2
    group = Particles(model, labels, seed_list, k, extra_noise=blocks)
    with group.own_ops():
        for d in range(pixels * colours):
            t, colour = divmod(d, colours)
            i, j = divmod(t, size)
            if j == 0 and colour == 0:
                group.state.begin_row(i)
            block = colour * blocks + (i // factor) * per_row + j // factor
            after = area - 1 - ((i % factor) * factor + j % factor)  # block pixels still to come
            so_far = partial[:, block]
            least = (lo[:, block] - so_far - after * top).clamp(min=0)  # (n*K,)
            most = (hi[:, block] - so_far).clamp(max=top)
            logits = group.state.logits(i, j, colour).double()
            tempered = logits / temperature
            allowed = (levels >= least.unsqueeze(1)) & (levels <= most.unsqueeze(1))
            proposal = tempered.masked_fill(~allowed, float("-inf"))
            # The twist before this pixel, and after each value it may take (none once the block is full).
            drift = so_far.double() - expected[:, block]
            twist_before = looked if after == 0 and lookahead > 0 else -(drift**2) / (spread * (after + 1))
            if after == 1 and lookahead > 0:
                need = (lo[:, block] - so_far, hi[:, block] - so_far)
                proposal += _last_pixel_twist(group.state, t, need, (least, most), top + 1, temperature)
            elif after > 0:
                off_guide = drift.unsqueeze(1) + (levels - guide[:, colour, t : t + 1])
                proposal -= off_guide**2 / (spread * after)
            # The importance weight: the mass the twisted proposal kept, over the twist before.
            kept = torch.logsumexp(proposal, 1) - torch.logsumexp(tempered, 1) - twist_before
            if after == 1 and lookahead > 0:
                sums, interval = (lo, hi, so_far), (least, most)
                chosen = _look_ahead(group, t, block, proposal, tempered, kept, sums, interval, temperature)
                values, kept, looked = chosen
            else:
                values = draw(proposal, group.noise[:, d], 1.0)
                values = torch.minimum(torch.maximum(values, least), most)  # a uniform of exactly 0
            group.log_weight += kept.view(n, k)
            group.record(d, values, torch.log_softmax(logits, dim=1))
            partial[:, block] += values
            expected[:, block] += guide[:, colour, t]
            if d < pixels * colours - 1:
                index = group.resample()
                if index is not None:
                    partial, looked = partial[index], looked[index]
            if on_row is not None and j == size - 1 and colour == colours - 1:
                on_row(i + 1, group.leading())
    return group.pick()
