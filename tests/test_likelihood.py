"""Likelihoods: bits/dim by hand, per-pixel terms summing to totals, the exact marginal."""

from __future__ import annotations

import math

import pytest
import torch

from model.data import FASHION_CLASSES, Split, quantize
from model.inference.likelihood import (
    bits_per_dim_loss,
    log_likelihood,
    per_class_means,
    pixel_log2_probs,
    score_split,
)
from tests.conftest import random_model


def test_bits_per_dim_equals_a_hand_computation() -> None:
    # Two pixels, three levels. Pixel 0: logits (0, 0, ln 2) -> p = (1/4, 1/4, 1/2), value 2.
    # Pixel 1: logits (0, 0, 0) -> p = 1/3 each, value 0. Mean bits = (1 + log2 3) / 2.
    logits = torch.tensor([[0.0, 0.0], [0.0, 0.0], [math.log(2.0), 0.0]]).view(1, 3, 1, 2)
    x = torch.tensor([2, 0]).view(1, 1, 1, 2)
    expected = (1.0 + math.log2(3.0)) / 2
    assert float(bits_per_dim_loss(logits, x)) == pytest.approx(expected, abs=1e-6)
    assert pixel_log2_probs(logits, x).flatten().tolist() == pytest.approx([-1.0, -math.log2(3.0)], abs=1e-6)


@pytest.mark.parametrize("arch", ["gated", "pixelcnn", "gated-attention"])
def test_per_pixel_terms_sum_to_the_total(arch: str) -> None:
    model = random_model(arch)
    x = torch.randint(0, 16, (3, 1, 10, 10))
    result = log_likelihood(model, x, torch.tensor([0, 3, 9]))
    assert result.log2_probs.shape == (3, 10, 10)
    assert torch.allclose(-result.log2_probs.sum((1, 2)), result.total_bits, atol=1e-3)
    assert torch.allclose(result.bits_per_dim, result.total_bits / 100)
    assert result.class_posterior is None


def test_marginal_over_labels_equals_a_direct_computation() -> None:
    model = random_model("gated")
    x = torch.randint(0, 16, (2, 1, 10, 10))
    result = log_likelihood(model, x)
    per_label = torch.stack([log_likelihood(model, x, torch.full((2,), y)).total_bits for y in range(10)], 1)
    # log2 p(x) = log2 (1/10 * sum_y 2^(-bits_y))
    direct = -(torch.logsumexp(-per_label.double() * math.log(2), 1) - math.log(10)) / math.log(2)
    assert torch.allclose(result.total_bits.double(), direct, atol=1e-3)
    assert torch.allclose(-result.log2_probs.sum((1, 2)).double(), direct, atol=1e-3)
    posterior = result.class_posterior
    assert posterior is not None and posterior.shape == (2, 10)
    assert torch.allclose(posterior.sum(1), torch.ones(2))
    assert torch.equal(posterior.argmax(1), per_label.argmin(1))


def test_scoring_a_split_in_batches_equals_one_pass() -> None:
    model = random_model("gated")
    generator = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (7, 1, 10, 10), dtype=torch.uint8, generator=generator)
    labels = torch.tensor([0, 3, 3, 9, 1, 0, 3])
    split = Split(images, labels)
    x = quantize(images, model.config.levels)
    with_labels = score_split(model, split, batch_size=3)
    marginal = score_split(model, split, with_labels=False, batch_size=2)
    assert with_labels.shape == (7,) and with_labels.dtype == torch.float64
    assert torch.allclose(with_labels.float(), log_likelihood(model, x, labels).bits_per_dim, atol=1e-5)
    assert torch.allclose(marginal.float(), log_likelihood(model, x).bits_per_dim, atol=1e-5)
    means = per_class_means(with_labels, labels, FASHION_CLASSES)
    assert list(means) == ["t-shirt", "trouser", "dress", "ankle-boot"]
    assert means["dress"] == pytest.approx(float(with_labels[[1, 2, 6]].mean()), abs=1e-4)


def test_bad_images_raise_value_errors() -> None:
    model = random_model("gated")
    with pytest.raises(ValueError, match="shape"):
        log_likelihood(model, torch.zeros(1, 1, 5, 5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"0\.\.15"):
        log_likelihood(model, torch.full((1, 1, 10, 10), 16))
