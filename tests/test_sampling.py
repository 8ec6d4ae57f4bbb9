"""Sampling: the cached sampler equals the naive one, and every image is reproducible alone."""

from __future__ import annotations

import pytest
import torch

from model.inference import cached
from model.inference.cached import cached_logits, cached_sample
from model.inference.generation import generate
from model.inference.row_kernel import supports
from model.inference.sampling import check_labels, label_from_seed, per_image_noise
from tests.conftest import random_model


@pytest.mark.parametrize("arch", ["gated", "pixelcnn", "gated-attention"])
@pytest.mark.parametrize("num_classes", [10, None])
def test_fast_and_naive_samplers_return_identical_images(arch: str, num_classes: int | None) -> None:
    model = random_model(arch, num_classes, seed=5)
    seeds = [11, 12, 13, 14, 15]
    fast = generate(model, 5, seeds=seeds)
    naive = generate(model, 5, seeds=seeds, method="naive")
    assert torch.equal(fast, naive)
    assert fast.dtype == torch.uint8 and fast.shape == (5, 1, 10, 10)
    assert len(set(fast.view(5, -1).sum(1).tolist())) > 1  # the images differ


@pytest.mark.parametrize("arch", ["gated", "pixelcnn", "gated-attention"])
def test_cached_logits_agree_with_the_full_forward_pass(arch: str) -> None:
    model = random_model(arch, 10, seed=6)
    x = torch.randint(0, 16, (3, 1, 10, 10))
    y = torch.tensor([2, 5, 8])
    assert torch.allclose(cached_logits(model, x, y), model(x, y), atol=1e-4, rtol=0)


def test_cached_logits_agree_on_the_trained_model(trained_model) -> None:  # type: ignore[no-untyped-def]
    from model.data import load_fashion_mnist

    test = load_fashion_mnist("test")
    x, y = test.images[:4].long(), test.labels[:4]
    assert torch.allclose(cached_logits(trained_model, x, y), trained_model(x, y), atol=1e-4, rtol=0)


@pytest.mark.parametrize("arch", ["gated", "pixelcnn", "gated-attention"])
def test_an_image_does_not_depend_on_its_batch(arch: str) -> None:
    model = random_model(arch, 10, seed=7)
    batch = generate(model, 12, seeds=list(range(100, 112)), labels=[None] * 12, temperature=0.9)
    alone = generate(model, 1, seeds=[107], temperature=0.9)
    assert torch.equal(batch[7], alone[0])
    again = generate(model, 12, seeds=list(range(100, 112)), temperature=0.9)
    assert torch.equal(batch, again)


def test_a_drawn_label_gives_the_same_image_as_that_label_given() -> None:
    model = random_model("gated", 10, seed=8)
    drawn = label_from_seed(42, 10)
    assert torch.equal(generate(model, 1, seeds=[42]), generate(model, 1, seeds=[42], labels=drawn))
    labels = {label_from_seed(s, 10) for s in range(200)}
    assert labels == set(range(10))


def test_temperature_changes_the_samples() -> None:
    model = random_model("gated", 10, seed=9)
    cold = generate(model, 2, seeds=[1, 2], labels=3, temperature=0.3)
    hot = generate(model, 2, seeds=[1, 2], labels=3, temperature=3.0)
    assert not torch.equal(cold, hot)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n": 0}, "n must be at least 1"),
        ({"temperature": 0.0}, "temperature"),
        ({"temperature": -1.0}, "temperature"),
        ({"temperature": float("nan")}, "temperature"),
        ({"labels": 10}, "labels must be in 0..9"),
        ({"labels": -1}, "labels must be in 0..9"),
        ({"labels": [1, 2]}, "labels"),
        ({"seeds": [1]}, "seeds"),
        ({"seeds": [-1, 2, 3]}, "seeds must be in"),
        ({"seeds": [2**32, 2, 3]}, "seeds must be in"),
        ({"method": "magic"}, "method"),
    ],
)
def test_bad_arguments_raise_clear_value_errors(kwargs: dict, message: str) -> None:  # type: ignore[type-arg]
    model = random_model("gated", 10)
    args = {"n": 3, **kwargs}
    with pytest.raises(ValueError, match=message):
        generate(model, **args)


def test_an_unconditional_model_rejects_labels() -> None:
    with pytest.raises(ValueError, match="unconditional"):
        generate(random_model("gated", None), 1, labels=3)


@pytest.mark.parametrize("arch", ["gated", "gated-attention"])
@pytest.mark.parametrize("num_classes", [10, None])
def test_the_compiled_row_loop_draws_what_the_torch_step_draws(
    arch: str, num_classes: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The row kernel (numba) against the torch step it replaces in ``cached_sample``: the same
    images, and each image's bits to float rounding, at per-image temperatures (two batches of
    6 through the kernel, one of 12 through the torch step)."""
    model = random_model(arch, num_classes, seed=8, layers=4)
    seeds = list(range(20, 32))
    noise = per_image_noise(seeds, 100)
    labels = check_labels(model, None, 12, seeds)
    temperatures = torch.linspace(0.7, 1.3, 12, dtype=torch.float64)
    assert supports(model)
    halves = [
        cached_sample(model, noise[part], None if labels is None else labels[part], temperatures[part])
        for part in (slice(0, 6), slice(6, 12))
    ]
    compiled = torch.cat([images for images, _ in halves])
    compiled_bits = torch.cat([bits for _, bits in halves])
    monkeypatch.setattr(cached, "supports", lambda model: False)
    stepped, stepped_bits = cached_sample(model, noise, labels, temperatures)
    assert torch.equal(compiled, stepped)
    torch.testing.assert_close(compiled_bits, stepped_bits, rtol=1e-5, atol=1e-4)
    assert len(set(compiled.view(12, -1).sum(1).tolist())) > 1  # the images differ
