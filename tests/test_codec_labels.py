"""The codec's label choice: the rule's labels, its passes side by side on threads of one torch
thread each; and encoding with one or two threads writes the same bytes."""

from __future__ import annotations

import threading
import time
from functools import partial

import pytest
import torch

from model.codec import BATCH, best_labels, compress
from model.codec.labels import rule_bits
from model.codec.threads import one_thread, side_by_side
from model.data import load_fashion_mnist
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
