"""Completion and super-resolution on colour models: known pixels come back exactly in all three
colours, every upscale agrees with its small image in every colour, and results are
reproducible per seed (small random models)."""

from __future__ import annotations

import pytest
import torch

from model.inference.completion import complete
from model.inference.likelihood import log_likelihood
from model.inference.superres import downscale, upscale
from model.network.pixelcnn import ARCHITECTURES
from tests.conftest import random_model

SIZE, LEVELS = 8, 16


def colour_image(seed: int) -> torch.Tensor:
    """``(3, SIZE, SIZE)`` model values: smooth colour ramps (something a model can agree with)."""
    rows = torch.arange(SIZE).view(SIZE, 1).expand(SIZE, SIZE)
    cols = torch.arange(SIZE).view(1, SIZE).expand(SIZE, SIZE)
    return torch.stack([(rows + seed) % LEVELS, (cols * 2) % LEVELS, (rows + cols) % LEVELS])


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("particles", [1, 4])
def test_completion_keeps_every_colour_of_known_pixels(arch: str, particles: int) -> None:
    model = random_model(arch, 10, size=SIZE, levels=LEVELS, channels=24, layers=2, image_channels=3)
    image = colour_image(1)
    mask = torch.zeros(SIZE, SIZE, dtype=torch.bool)
    mask[2:5, 1:6] = True
    images, bits, labels = complete(
        model, image, mask, 3, labels=[4, None, 2], seeds=[0, 1, 2], particles=particles
    )
    assert images.shape == (3, 3, SIZE, SIZE) and images.dtype == torch.uint8
    assert torch.equal(images[:, :, ~mask], image[:, ~mask].to(torch.uint8).expand(3, -1, -1))
    assert labels is not None and labels[0] == 4 and labels[2] == 2
    filled = images[:, :, mask]
    assert not torch.equal(filled[0], filled[1])  # the holes are sampled, not copied
    # bits are each completion's own likelihood under the label it was drawn with
    scored = log_likelihood(model, images.long(), labels).total_bits
    assert torch.allclose(bits.double(), scored.double(), rtol=1e-4, atol=1e-2)
    again, _, _ = complete(model, image, mask, 1, labels=[2], seeds=[2], particles=particles)
    assert torch.equal(again[0], images[2])  # a completion depends only on its seed and label


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("factor", [2, 4])
def test_every_colour_upscale_agrees_with_its_small_image(arch: str, factor: int) -> None:
    model = random_model(arch, None, size=SIZE, levels=LEVELS, channels=24, layers=2, image_channels=3)
    small = downscale(colour_image(3), factor)  # (3, SIZE / f, SIZE / f)
    images, bits, labels = upscale(model, small, factor, 3, seeds=[5, 6, 7], particles=4)
    assert images.shape == (3, 3, SIZE, SIZE) and labels is None
    assert torch.equal(downscale(images.long(), factor), small.expand(3, -1, -1, -1))
    assert len(set(map(bytes, images.flatten(1).numpy()))) == 3  # different seeds, different images
    scored = log_likelihood(model, images.long(), None).total_bits
    assert torch.allclose(bits.double(), scored.double(), rtol=1e-4, atol=1e-2)
    with pytest.raises(ValueError, match=r"shape \(3, 4, 4\)"):
        upscale(model, small[:1], 2, 1)
