"""The codec's label choice: the fewest-bits rule's labels, its passes side by side on threads of
one torch thread each, encoding with one or two threads writes the same bytes; and a
classifier's guesses instead."""

from __future__ import annotations

import threading
import time
from functools import partial

import pytest
import torch

from model.classifier import DEFAULT_CLASSIFIER, load_classifier
from model.codec import BATCH, CodecError, best_labels, compress, compress_with_stats, decompress
from model.codec.labels import rule_bits
from model.codec.threads import side_by_side
from model.data import load_fashion_mnist
from model.inference.threads import one_thread
from model.network.classifier import classifier_misfit, guess_labels
from model.network.pixelcnn import PixelCNN
from tests.conftest import random_model


def rule_labels(model: PixelCNN, images: torch.Tensor) -> torch.Tensor:
    """The rule, spelled out: every label's totals per chunk of BATCH on one thread, argmin."""
    k = model.config.num_classes or 1
    with one_thread():
        bits = [torch.cat([rule_bits(model, c, y) for c in images.split(BATCH)]) for y in range(k)]
    return torch.stack(bits, dim=1).argmin(dim=1)


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return load_fashion_mnist("test").images[200:240]  # a full chunk of the rule and 8 more


@pytest.mark.parametrize("threads", [1, 2])
def test_best_labels_are_the_rules(trained_model: PixelCNN, images: torch.Tensor, threads: int) -> None:
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        chosen = best_labels(trained_model, images)
        assert torch.get_num_threads() == threads  # the caller's setting is left alone
    finally:
        torch.set_num_threads(before)
    assert torch.equal(chosen, rule_labels(trained_model, images))


def test_exact_ties_go_to_the_lower_label() -> None:
    model = random_model("gated", 10, seed=2)
    with torch.no_grad():
        assert model.label_embedding is not None
        model.label_embedding.weight[4:] = model.label_embedding.weight[3]  # labels 3..9 alike
        model.label_embedding.weight[:3] += 5.0  # and 0..2 far off
    x = torch.randint(0, 16, (5, 1, 10, 10), generator=torch.Generator().manual_seed(2))
    exact = rule_labels(model, x)
    assert set(exact.tolist()) <= {0, 1, 2, 3}  # ties among 3..9 go to 3
    assert torch.equal(best_labels(model, x), exact)


def test_side_by_side_keeps_order_bounds_waiting_results_and_runs_one_torch_thread() -> None:
    seen: list[tuple[int, str, int]] = []
    lock = threading.Lock()

    def task(k: int) -> int:
        time.sleep(0.01 * (k % 3))  # finish out of order
        with lock:
            seen.append((k, threading.current_thread().name, torch.get_num_threads()))
        return k

    results = side_by_side([partial(task, k) for k in range(9)], workers=2)
    first = next(results)
    time.sleep(0.1)
    assert len(seen) <= 4  # the first taken, at most workers + 1 more waiting
    assert [first, *results] == list(range(9))
    assert {threads for _, _, threads in seen} == {1}
    assert all(name.startswith("codec") for _, name, _ in seen)


def test_encoding_on_one_or_two_threads_gives_the_same_bytes() -> None:
    model = random_model("gated", 10, size=6, channels=8, layers=2, seed=9)
    x = torch.randint(0, 16, (2 * BATCH + 5, 1, 6, 6), generator=torch.Generator().manual_seed(9))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        alone = compress(model, x)
        torch.set_num_threads(2)
        side = compress(model, x)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert alone == side


def test_a_classifier_labels_the_images_with_its_guesses(images: torch.Tensor) -> None:
    model = random_model("gated", 10, size=28, levels=256, channels=8, layers=2, seed=3)
    classifier = load_classifier(DEFAULT_CLASSIFIER)
    guesses = guess_labels(classifier, images)
    data, bits = compress_with_stats(model, images, classifier=classifier)
    assert (data, bits) == compress_with_stats(model, images, guesses)  # the same as giving them
    assert torch.equal(decompress(model, data), images)
    assert data != compress(model, images)  # the fewest-bits rule picks others for this model


def test_a_classifier_that_does_not_fit_the_model_is_refused() -> None:
    classifier = load_classifier(DEFAULT_CLASSIFIER)
    model = random_model("gated", 10)  # 10x10 images of 16 levels
    misfit = classifier_misfit(model, classifier)
    assert misfit is not None and "28x28 images of 256 levels" in misfit and "10x10" in misfit
    with pytest.raises(CodecError, match="16 levels"):
        compress(model, torch.zeros(1, 1, 10, 10, dtype=torch.uint8), classifier=classifier)
    fits = random_model("gated", 10, size=28, levels=256, channels=8, layers=2)
    assert classifier_misfit(fits, classifier) is None


def test_on_the_shipped_weights_the_guesses_cost_little_more_than_the_fewest_bits(
    shipped_model: PixelCNN,
) -> None:
    x = load_fashion_mnist("test").images[:12]
    classifier = load_classifier(DEFAULT_CLASSIFIER)
    guessed, guessed_bits = compress_with_stats(shipped_model, x, classifier=classifier)
    _, best_bits = compress_with_stats(shipped_model, x)
    assert best_bits <= guessed_bits < best_bits * 1.01
    assert torch.equal(decompress(shipped_model, guessed), x)
