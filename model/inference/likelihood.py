"""Per-pixel likelihoods, bits per dimension and the class posterior.

Images here are model values: integer tensors ``(B, C, H, W)`` in ``[0, levels)``, C = 1 for
grayscale and 3 for RGB (for the default 256 levels these are the 8-bit intensities
themselves); bits/dim divide by H * W * C.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tqdm import tqdm

from model.data import Split, quantize
from model.network.pixelcnn import PixelCNN

LN2 = math.log(2.0)
# Images per forward pass when scoring a data set. Small batches are faster here: at 25 the
# activations stay in cache; on this project's 2-core CPU, 25 scores 10,000 test images about
# 2.8x faster than 250 (bench: python -m model.evaluate --batch-size N --limit 500).
SCORE_BATCH = 25


def _targets(logits: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """Images ``(B, K, H, W)`` as the class targets of ``logits``: ``(B, H, W)`` for grayscale
    logits ``(B, L, H, W)``, ``(B, K, H, W)`` for colour logits ``(B, L, K, H, W)``."""
    return images.long() if logits.dim() == 5 else images[:, 0].long()


def pixel_log2_probs(logits: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """log2 p(x_ij | x_<ij): logits ``(B, L, H, W)``, images ``(B, 1, H, W)`` -> ``(B, H, W)``;
    for colour, logits ``(B, L, K, H, W)`` and images ``(B, K, H, W)`` -> ``(B, K, H, W)``."""
    log_probs = F.log_softmax(logits.float(), dim=1)
    return log_probs.gather(1, _targets(logits, images).unsqueeze(1)).squeeze(1) / LN2


def bits_per_dim_loss(logits: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """Mean negative log2-likelihood per dimension (pixel, or pixel and colour) over the batch:
    the training loss, in bits/dim."""
    return F.cross_entropy(logits.float(), _targets(logits, images)) / LN2


@dataclass(frozen=True)
class Likelihood:
    log2_probs: torch.Tensor  # (B, H, W) log2 p(x_ij | x_<ij), (B, C, H, W) for colour; sums to -total_bits
    total_bits: torch.Tensor  # (B,) negative log2-likelihood of each image
    bits_per_dim: torch.Tensor  # (B,) total_bits / (H * W * C)
    class_posterior: torch.Tensor | None  # (B, K) p(y | x) when a conditional model got no label


def check_images(model: PixelCNN, images: torch.Tensor) -> None:
    size, levels, colours = model.config.image_size, model.config.levels, model.config.image_channels
    if images.dim() != 4 or tuple(images.shape[1:]) != (colours, size, size):
        raise ValueError(f"images must have shape (B, {colours}, {size}, {size}), got {tuple(images.shape)}")
    if images.numel() and (int(images.min()) < 0 or int(images.max()) >= levels):
        raise ValueError(f"image values must be in 0..{levels - 1}")


@torch.no_grad()
def log_likelihood(model: PixelCNN, images: torch.Tensor, labels: torch.Tensor | None = None) -> Likelihood:
    """Per-pixel log2-probabilities from one forward pass per label.

    For a class-conditional model called without ``labels``, the result is the marginal over
    classes with a uniform prior. Its per-pixel terms are the predictive
    ``log2 p(x_t | x_<t) = log2 sum_y p(y | x_<t) p(x_t | x_<t, y)``, which sum exactly to the
    marginal ``log2 p(x)``; ``class_posterior`` is ``p(y | x)`` by Bayes' rule.
    """
    check_images(model, images)
    batch = images.shape[0]
    num_classes = model.config.num_classes
    if labels is not None or num_classes is None:
        if labels is not None:
            labels = torch.as_tensor(labels, dtype=torch.long, device=images.device).reshape(-1).expand(batch)
        log2p = pixel_log2_probs(model(images, labels), images)
        total = -log2p.flatten(1).sum(1)
        return Likelihood(log2p, total, total / log2p[0].numel(), None)

    # Conditional model, no label: one pass per class, then the exact marginal.
    def with_label(y: int) -> torch.Tensor:
        return torch.full((batch,), y, dtype=torch.long, device=images.device)

    per_class = torch.stack(
        [pixel_log2_probs(model(images, with_label(y)), images) for y in range(num_classes)], dim=1
    )  # (B, K, H, W), log2
    # Raster order, and within a pixel its colours (a colour model's (B, K, C, H, W) -> (B, K, H, W, C)).
    ordered = per_class if per_class.dim() == 4 else per_class.movedim(2, -1)
    flat = ordered.flatten(2).double() * LN2  # natural log, (B, K, T), float64 for long sums
    prior = -math.log(num_classes)
    cumulative = torch.cat([torch.zeros_like(flat[:, :, :1]), flat.cumsum(2)], dim=2) + prior
    evidence = torch.logsumexp(cumulative, dim=1)  # (B, T + 1): log p(x_<t), log p(x_<0) = 0
    per_pixel = (evidence[:, 1:] - evidence[:, :-1]) / LN2
    log2p = per_pixel.reshape(ordered[:, 0].shape).float()
    if per_class.dim() == 5:
        log2p = log2p.movedim(-1, 1)  # back to (B, C, H, W)
    posterior = torch.softmax(cumulative[:, :, -1], dim=1).float()
    total = -(evidence[:, -1] / LN2).float()
    return Likelihood(log2p, total, total / log2p[0].numel(), posterior)


def score_split(
    model: PixelCNN,
    split: Split,
    with_labels: bool = True,
    batch_size: int = SCORE_BATCH,
    progress: str | None = None,
) -> torch.Tensor:
    """Bits/dim of every image of ``split``: ``(N,)`` float64 on the CPU, in float32 arithmetic.

    A conditional model is scored with each image's true label, or with the labels summed out
    (``with_labels=False``); an unconditional model ignores the labels. ``progress``: a title
    for a progress bar (none when None).
    """
    conditional = model.config.num_classes is not None and with_labels
    device = next(model.parameters()).device  # a model in training may sit on a GPU
    bits = []
    starts = range(0, len(split), batch_size)
    for start in tqdm(starts, desc=progress, disable=progress is None, unit="batch", leave=False):
        x = quantize(split.images[start : start + batch_size], model.config.levels).to(device)
        y = split.labels[start : start + batch_size].to(device) if conditional else None
        bits.append(log_likelihood(model, x, y).bits_per_dim.cpu())
    return torch.cat(bits).double() if bits else torch.zeros(0, dtype=torch.float64)


def per_class_means(
    bits_per_dim: torch.Tensor, labels: torch.Tensor, names: tuple[str, ...]
) -> dict[str, float]:
    """Mean of ``bits_per_dim`` ``(N,)`` per class name (``names[label]``), over the classes
    that ``labels`` hold; empty for a model without classes (``names`` empty)."""
    return {
        name: round(float(bits_per_dim[labels == c].mean()), 4)
        for c, name in enumerate(names)
        if bool((labels == c).any())
    }
