"""The shipped full-context weights: every pixel before the last one reaches the last pixel's
logits, and the last pixel itself does not (the gated weights shipped before them never saw
rows 0-11 from there)."""

from __future__ import annotations

import torch

from model.checkpoint import load
from model.network.pixelcnn import PixelCNN
from tests.conftest import SHIPPED_WEIGHTS

CHUNK = 49


def last_pixel_shift_per_flip(model: PixelCNN) -> torch.Tensor:
    """Flip each pixel of a seeded image by 128 levels in turn: ``(H*W,)`` max change of the logits
    at the last pixel. The reference runs in batches of the same size, so rounding is the same."""
    size = model.config.image_size
    x = torch.randint(0, 256, (1, 1, size, size), generator=torch.Generator().manual_seed(0))
    labels = torch.full((CHUNK,), 3)
    flipped = x.repeat(size * size, 1, 1, 1)
    positions = torch.arange(size * size)
    flipped.view(size * size, -1)[positions, positions] += 128
    flipped %= 256
    with torch.no_grad():
        base = model(x.repeat(CHUNK, 1, 1, 1), labels)[:, :, -1, -1]
        shifts = [(model(chunk, labels)[:, :, -1, -1] - base).abs().amax(1) for chunk in flipped.split(CHUNK)]
    return torch.cat(shifts)


def test_the_shipped_weights_see_every_earlier_pixel_and_not_the_pixel_itself() -> None:
    model = load(SHIPPED_WEIGHTS)
    assert model.config.arch == "gated-attention"
    shifts = last_pixel_shift_per_flip(model)
    assert float(shifts[:-1].min()) >= 1e-5, f"pixel {int(shifts[:-1].argmin())} barely reaches the last one"
    assert float(shifts[-1]) == 0.0
    # The top rows, out of reach of the gated stacks alone, reach it through attention.
    assert float(shifts.view(28, 28)[:12].max()) > 1e-3
