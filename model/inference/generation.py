"""``generate``: sample new images with the fast cached sampler (or the naive reference)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

from model.inference.cached import cached_sample
from model.inference.sampling import (
    check_labels,
    check_seeds,
    check_temperature,
    naive_sample,
    per_image_noise,
)
from model.network.pixelcnn import PixelCNN

Method = Literal["fast", "naive"]


def generate(
    model: PixelCNN,
    n: int,
    *,
    labels: int | Sequence[int | None] | None = None,
    seeds: Sequence[int] | None = None,
    temperature: float = 1.0,
    progress: bool = False,
    method: Method = "fast",
) -> torch.Tensor:
    """Sample ``n`` images: a ``(n, K, H, W)`` uint8 tensor of model values in ``[0, levels)``,
    K = ``image_channels`` (1 for grayscale).

    ``labels``: None, one int, or one (int or None) per image; a conditional model draws a
    missing label from the image's seed. ``seeds``: one int in ``[0, 2**32)`` per image
    (random when None). ``temperature`` > 0 divides the logits. ``method="naive"`` runs the
    reference sampler (one full forward pass per pixel), for tests and benchmarks.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    temperature = check_temperature(temperature)
    seed_list = check_seeds(seeds, n)
    label_tensor = check_labels(model, labels, n, seed_list)
    noise = per_image_noise(seed_list, model.config.image_channels * model.config.image_size**2)
    if method == "naive":
        return naive_sample(model, noise, label_tensor, temperature, progress)
    if method != "fast":
        raise ValueError(f"method must be 'fast' or 'naive', got {method!r}")
    return cached_sample(model, noise, label_tensor, temperature, progress=progress)[0]
