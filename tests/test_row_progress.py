"""The sampler's row hook: it sees every row as it is drawn, and images it drops leave the batch
without changing the images that stay."""

from __future__ import annotations

import pytest
import torch

from model.inference.cached import cached_sample
from model.inference.sampling import per_image_noise
from tests.conftest import random_model


@pytest.mark.parametrize("arch", ["gated", "pixelcnn", "gated-attention"])
def test_dropped_images_leave_the_batch_and_the_rest_are_unchanged(arch: str) -> None:
    model = random_model(arch, 10, seed=3)
    seeds = [5, 6, 7, 8, 9]
    noise = per_image_noise(seeds, 100)
    labels = torch.tensor([1, 2, 3, 4, 5])
    temperatures = torch.tensor([1.0, 0.9, 1.1, 1.0, 0.8], dtype=torch.float64)
    alone, alone_bits = cached_sample(model, noise, labels, temperatures)

    seen: list[tuple[int, int]] = []

    def on_row(rows: int, images: torch.Tensor) -> torch.Tensor | None:
        seen.append((rows, images.shape[0]))
        expected = alone if rows <= 4 else alone[[0, 2, 4]]
        # Rows up to `rows - 1` are drawn, the rows below are still zeros.
        assert torch.equal(images[:, :, :rows], expected[:, :, :rows])
        assert int(images[:, :, rows:].abs().sum()) == 0
        return torch.tensor([0, 2, 4]) if rows == 4 else None  # drop images 1 and 3

    kept, kept_bits = cached_sample(model, noise, labels, temperatures, on_row=on_row)
    assert seen == [(r, 5 if r <= 4 else 3) for r in range(1, 11)]
    assert torch.equal(kept, alone[[0, 2, 4]])
    assert torch.allclose(kept_bits, alone_bits[[0, 2, 4]])


def test_a_hook_that_raises_stops_the_sampler() -> None:
    model = random_model("gated", None, seed=1)

    class Stop(Exception):
        pass

    def on_row(rows: int, images: torch.Tensor) -> None:
        if rows == 2:
            raise Stop

    with pytest.raises(Stop):
        cached_sample(model, per_image_noise([1, 2], 100), None, 1.0, on_row=on_row)
