"""A small CNN that tells a Fashion-MNIST image's class (trained by ``python -m model.classifier``).

The codec uses its guess as a conditional PixelCNN's label (``model.codec.labels``), and so
does super-resolution without a label (from the small image, ``guess_from_small``);
``bench.quality`` uses the same network, trained with its own settings, as its judge.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from model.data import FASHION_CLASSES
from model.network.pixelcnn import PixelCNN

FEATURES = 128
IMAGE_SIZE = 28
CLASSES = FASHION_CLASSES  # what the shipped classifier tells apart


def _stage(inputs: int, channels: int) -> list[nn.Module]:
    """Two 3x3 convolutions with batch norm and ReLU, then a 2x2 max pool (half the size)."""
    return [
        nn.Conv2d(inputs, channels, 3, padding=1),
        nn.BatchNorm2d(channels),
        nn.ReLU(),
        nn.Conv2d(channels, channels, 3, padding=1),
        nn.BatchNorm2d(channels),
        nn.ReLU(),
        nn.MaxPool2d(2),
    ]


class Classifier(nn.Module):
    """uint8 images ``(B, 1, 28, 28)`` -> class logits ``(B, 10)``; ``features`` gives ``(B, 128)``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Sequential(*_stage(1, 32), *_stage(32, 64))  # 28x28 -> 14x14 -> 7x7
        self.hidden = nn.Linear(64 * 7 * 7, FEATURES)
        self.out = nn.Linear(FEATURES, len(CLASSES))

    def features(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float() / 127.5 - 1.0
        return F.relu(self.hidden(self.conv(x).flatten(1)))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.out(self.features(images))


@torch.no_grad()
def guess_labels(net: Classifier, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """uint8 images ``(N, 1, 28, 28)`` -> the most likely class of each ``(N,)`` int64."""
    if images.shape[1:] != (1, IMAGE_SIZE, IMAGE_SIZE):
        raise ValueError(f"the classifier takes images (N, 1, 28, 28), got {tuple(images.shape)}")
    parts = [net(chunk).argmax(1) for chunk in images.split(batch_size)]
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long)


def classifier_misfit(model: PixelCNN, classifier: Classifier) -> str | None:
    """Why ``classifier`` cannot guess labels for ``model``'s images, or None when it can.

    The classifier reads 8-bit 28x28 images of its classes (Fashion-MNIST's ten): a model fits
    it when it codes such images and its labels are those classes, by name.
    """
    cfg, k = model.config, classifier.out.out_features
    fits = (cfg.image_size, cfg.levels, cfg.num_classes, cfg.image_channels) == (IMAGE_SIZE, 256, k, 1)
    if fits and cfg.label_names == CLASSES:
        return None
    colour = " colour" if cfg.image_channels > 1 else ""
    return (
        f"the classifier guesses labels of grayscale {IMAGE_SIZE}x{IMAGE_SIZE} images of 256 levels "
        f"in its {k} classes ({', '.join(CLASSES)}); this model codes "
        f"{cfg.image_size}x{cfg.image_size}{colour} images of "
        f"{cfg.levels} levels in {cfg.num_classes or 'no'} classes ({', '.join(cfg.label_names) or 'none'})"
    )


def enlarge(small: torch.Tensor, factor: int) -> torch.Tensor:
    """Images ``(..., h, w)`` -> ``(..., h * factor, w * factor)``, each pixel a block (nearest)."""
    return small.repeat_interleave(factor, -2).repeat_interleave(factor, -1)


def guess_from_small(classifier: Classifier, small: torch.Tensor, factor: int) -> torch.Tensor:
    """Small uint8 images ``(N, 1, 28/f, 28/f)`` -> the class of each ``(N,)`` int64, guessed
    from their nearest enlargement (the shipped classifier was trained on such images too)."""
    return guess_labels(classifier, enlarge(small, factor))
