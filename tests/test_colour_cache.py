"""The cached incremental inference of colour models: three steps a pixel (red, green, blue).

For every architecture the fast sampler must draw exactly the naive sampler's images from the
same noise, its bits must be the images' likelihood, the cache's teacher-forced logits must be
the forward pass's, and images dropped by the row hook must leave the others unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from model.inference.cached import cached_logits, cached_sample
from model.inference.caches import incremental
from model.inference.generation import generate
from model.inference.likelihood import log_likelihood
from model.inference.sampling import naive_sample, per_image_noise
from model.network.pixelcnn import ARCHITECTURES, PixelCNN
from tests.conftest import random_model, threads

SIZE, COLOURS, LEVELS = 6, 3, 16


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models run thousands of small ops: a second thread only adds contention (minutes
    instead of seconds on a busy 2-core machine). Leaves the caller's setting as it was."""
    with threads(1):
        yield


def colour_model(arch: str, num_classes: int | None, seed: int = 0) -> PixelCNN:
    # gated-attention: an attention block after each of the first two layers.
    return random_model(
        arch, num_classes, size=SIZE, levels=LEVELS, channels=12, layers=3, seed=seed, image_channels=COLOURS
    )


def some_labels(num_classes: int | None, batch: int) -> torch.Tensor | None:
    return None if num_classes is None else torch.arange(batch) % num_classes


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("num_classes", [3, None])
def test_fast_sampling_draws_the_naive_samplers_images_and_their_likelihood(
    arch: str, num_classes: int | None
) -> None:
    model = colour_model(arch, num_classes, seed=1)
    labels = some_labels(num_classes, 4)
    noise = per_image_noise([3, 4, 5, 6], SIZE * SIZE * COLOURS)
    temperature = torch.tensor([1.0, 0.8, 1.2, 1.0], dtype=torch.float64)
    fast, bits = cached_sample(model, noise, labels, temperature)
    assert fast.shape == (4, COLOURS, SIZE, SIZE) and fast.dtype == torch.uint8
    assert torch.equal(fast, naive_sample(model, noise, labels, temperature))  # type: ignore[arg-type]
    assert len({tuple(image.flatten().tolist()) for image in fast}) == 4  # the images differ
    assert len(set(fast[0, :, 2, 3].tolist())) > 1  # and so do a pixel's colours
    expected = log_likelihood(model, fast, labels).total_bits.double()
    assert bits.shape == (4,) and bits.dtype == torch.float64
    assert torch.allclose(bits, expected, rtol=0, atol=1e-3)


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("num_classes", [3, None])
def test_cached_logits_agree_with_the_full_forward_pass(arch: str, num_classes: int | None) -> None:
    model = colour_model(arch, num_classes, seed=2)
    x = torch.randint(0, LEVELS, (3, COLOURS, SIZE, SIZE), generator=torch.Generator().manual_seed(0))
    labels = some_labels(num_classes, 3)
    cached = cached_logits(model, x, labels)
    assert cached.shape == (3, LEVELS, COLOURS, SIZE, SIZE)
    with torch.no_grad():
        assert torch.allclose(cached, model(x, labels), atol=1e-4, rtol=0)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_dropped_images_leave_the_batch_and_the_rest_are_unchanged(arch: str) -> None:
    model = colour_model(arch, 3, seed=3)
    noise = per_image_noise([5, 6, 7, 8, 9], SIZE * SIZE * COLOURS)
    labels = torch.tensor([0, 1, 2, 0, 1])
    temperatures = torch.tensor([1.0, 0.9, 1.1, 1.0, 0.8], dtype=torch.float64)
    alone, alone_bits = cached_sample(model, noise, labels, temperatures)
    seen: list[tuple[int, int]] = []

    def on_row(rows: int, images: torch.Tensor) -> torch.Tensor | None:
        seen.append((rows, images.shape[0]))
        expected = alone if rows <= 2 else alone[[0, 2, 4]]
        assert images.shape[1:] == (COLOURS, SIZE, SIZE)
        assert torch.equal(images[:, :, :rows], expected[:, :, :rows])
        assert int(images[:, :, rows:].abs().sum()) == 0  # rows below are still zeros
        return torch.tensor([0, 2, 4]) if rows == 2 else None  # drop images 1 and 3

    kept, kept_bits = cached_sample(model, noise, labels, temperatures, on_row=on_row)
    assert seen == [(r, 5 if r <= 2 else 3) for r in range(1, SIZE + 1)]
    assert torch.equal(kept, alone[[0, 2, 4]])
    assert torch.allclose(kept_bits, alone_bits[[0, 2, 4]])


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_trial_values_looked_ahead_from_and_resampled_rows_leave_no_trace(arch: str) -> None:
    # Super-resolution writes a trial value and reads the next pixel's logits before writing
    # the chosen one; particles move batch rows with ``select``. Neither may leak into later steps.
    model = colour_model(arch, 3, seed=5)
    x = torch.randint(0, LEVELS, (3, COLOURS, SIZE, SIZE), generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([0, 1, 2])
    expected = cached_logits(model, x, labels)
    state = incremental(model, labels, 3)
    order = torch.tensor([2, 0, 1])
    got = torch.zeros_like(expected)
    with torch.no_grad():
        for i in range(SIZE):
            state.begin_row(i)
            for j in range(SIZE):
                for k in range(COLOURS):
                    got[:, :, k, i, j] = state.logits(i, j, k)
                    if j + 1 < SIZE:  # a trial value, and a look at the next pixel from it
                        state.write(i, j, (x[:, k, i, j] + 5) % LEVELS, k)
                        state.logits(i, j + 1, 0)
                    state.write(i, j, x[:, k, i, j], k)
                if (i, j) == (2, 3):  # rows swapped mid-image, then back
                    state.select(order)
                    state.select(torch.argsort(order))
    assert torch.allclose(got, expected, atol=1e-5, rtol=0)


def test_generate_samples_colour_with_the_cached_sampler() -> None:
    model = colour_model("gated-attention", 3, seed=4)
    fast = generate(model, 2, seeds=[1, 2], labels=[0, None])
    assert fast.shape == (2, COLOURS, SIZE, SIZE)
    assert torch.equal(fast, generate(model, 2, seeds=[1, 2], labels=[0, None], method="naive"))


def test_noise_of_the_wrong_length_is_refused() -> None:
    model = colour_model("gated", None)
    with pytest.raises(ValueError, match="noise must have shape"):
        cached_sample(model, per_image_noise([1], SIZE * SIZE), None, 1.0)
