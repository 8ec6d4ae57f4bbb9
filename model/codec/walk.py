"""The walk that encoder and decoder share: the cached model run over every dimension of a
batch of images in coding order (raster order, and in colour each pixel's red, green and blue in
turn), and the images laid out in that order.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from model.inference.caches import incremental
from model.network.pixelcnn import PixelCNN

Step = Callable[[int, torch.Tensor], torch.Tensor]  # (dimension index, logits) -> values


@torch.no_grad()
def walk(model: PixelCNN, labels: torch.Tensor | None, batch: int, step: Step) -> None:
    """Run ``batch`` images pixel by pixel in raster order through the cached model, and in
    colour each pixel's colours in turn (red, green, blue).

    ``step(d, logits)`` gets dimension ``d = (i * W + j) * K + k``'s logits ``(B, levels)``
    float32 for every image (colour k of pixel (i, j); K = 1 and d the pixel's index in
    grayscale) and returns its values ``(B,)`` int64: the known ones when encoding, the decoded
    ones when decoding.
    """
    size, colours = model.config.image_size, model.config.image_channels
    state = incremental(model, labels, batch)
    for i in range(size):
        state.begin_row(i)  # the part of every layer that sees only the rows above
        for j in range(size):
            for k in range(colours):
                d = (i * size + j) * colours + k
                state.write(i, j, step(d, state.logits(i, j, k)), k)  # input for what follows


def dimensions(images: torch.Tensor) -> torch.Tensor:
    """Images ``(B, K, H, W)`` -> ``(B, H * W * K)``, in coding order (a pixel's colours in turn)."""
    return images.permute(0, 2, 3, 1).reshape(len(images), -1)


def to_images(dims: np.ndarray, size: int, colours: int) -> torch.Tensor:
    """``dimensions``' inverse: ``(B, H * W * K)`` -> images ``(B, K, H, W)``, contiguous."""
    pixels = torch.from_numpy(dims).view(len(dims), size, size, colours)
    return pixels.permute(0, 3, 1, 2).contiguous()


def teacher_forced(model: PixelCNN, images: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    """The decoder's logits for known ``images`` ``(B, K, H, W)``: ``(H * W * K, B, levels)``
    float32, in coding order."""
    columns = dimensions(images).T.long().contiguous()  # (H * W * K, B)
    logits = torch.empty(len(columns), len(images), model.config.levels)

    def step(t: int, out: torch.Tensor) -> torch.Tensor:
        logits[t].copy_(out)
        return columns[t]

    walk(model, labels, len(images), step)
    return logits
