"""The shipped weights: they load, they are the architecture the fast sampler serves, and the
fast and naive samplers agree on them exactly."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import torch

from model.checkpoint import file_sha256, read_metadata
from model.data import load_fashion_mnist
from model.inference.cached import cached_logits
from model.inference.generation import generate
from model.inference.likelihood import log_likelihood
from model.network.pixelcnn import PixelCNN
from model.ship import PINS_FILE
from tests.conftest import SHIPPED_WEIGHTS

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_weights_are_a_conditional_full_context_model_with_facts(shipped_model: PixelCNN) -> None:
    config = shipped_model.config
    assert config.arch == "gated-attention" and config.num_classes == 10 and config.image_size == 28
    assert SHIPPED_WEIGHTS.stat().st_size < 50 * 1024 * 1024
    meta = read_metadata(SHIPPED_WEIGHTS)
    for key in ("test_bits_per_dim", "validation_bits_per_dim", "epochs", "steps", "data"):
        assert key in meta, key
    assert 1.0 < float(meta["test_bits_per_dim"]) < 8.0


def test_cached_logits_equal_the_forward_pass_on_real_images(shipped_model: PixelCNN) -> None:
    test = load_fashion_mnist("test")
    x, y = test.images[:3].long(), test.labels[:3]
    # float32 sums in another order (attention over up to 784 positions, logits up to about 33):
    # measured at most 1.3e-4 apart; the samplers' exact agreement is the test below.
    assert torch.allclose(cached_logits(shipped_model, x, y), shipped_model(x, y), atol=5e-4, rtol=0)


def test_fast_and_naive_samplers_agree_on_the_shipped_weights(shipped_model: PixelCNN) -> None:
    fast = generate(shipped_model, 2, labels=[7, 0], seeds=[3, 4])
    naive = generate(shipped_model, 2, labels=[7, 0], seeds=[3, 4], method="naive")
    assert torch.equal(fast, naive)


def test_evaluate_prints_the_libraries_bits_per_dim(shipped_model: PixelCNN) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "model.evaluate", "--weights", str(SHIPPED_WEIGHTS), "--limit", "100"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout.strip().splitlines()[-1])
    test = load_fashion_mnist("test")
    direct = log_likelihood(shipped_model, test.images[:100].long(), test.labels[:100]).bits_per_dim.mean()
    assert abs(printed["bits_per_dim"] - float(direct)) < 1e-4
    assert printed["images"] == 100 and len(printed["per_class"]) == 10


def test_evaluate_refuses_bad_counts_with_a_clear_message() -> None:
    for flag, value in (("--limit", "-5"), ("--batch-size", "0")):
        result = subprocess.run(
            [sys.executable, "-m", "model.evaluate", "--weights", str(SHIPPED_WEIGHTS), flag, value],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 2 and f"{flag} must be at least 1" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr


def test_the_shipped_weights_give_the_pinned_images_for_the_same_seeds(shipped_model: PixelCNN) -> None:
    """``model.ship`` pins the images of fixed seeds when it ships a file: the samplers and the
    file still give them."""
    pins = json.loads((ROOT / PINS_FILE).read_text())
    assert pins["sha256"] == file_sha256(SHIPPED_WEIGHTS), "the shipped file changed without model.ship"
    images = generate(shipped_model, **pins["generate"])
    assert hashlib.sha256(images.numpy().tobytes()).hexdigest() == pins["images_sha256"]
    assert shipped_model.config.label_names[7] == "sneaker"
