"""The shipped Fashion-MNIST classifier (the codec's label guess): its file, its accuracy on
real test images, sharp and shrunk-and-enlarged, and its files' errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from model.checkpoint import DEFAULT_WEIGHTS, CheckpointError
from model.classifier import (
    BLUR_FACTORS,
    DEFAULT_CLASSIFIER,
    FORMAT,
    TrainSettings,
    blur,
    load_classifier,
    read_settings,
    save_classifier,
)
from model.data import load_fashion_mnist
from model.inference.superres import downscale
from model.network.classifier import Classifier, enlarge, guess_labels


@pytest.fixture(scope="module")
def shipped() -> Classifier:
    return load_classifier(DEFAULT_CLASSIFIER)


def test_the_shipped_file_states_its_settings_and_accuracies_truly(shipped: Classifier) -> None:
    with safe_open(DEFAULT_CLASSIFIER, "pt") as f:
        metadata = f.metadata()
    assert metadata["format"] == FORMAT
    assert read_settings(DEFAULT_CLASSIFIER) == TrainSettings(blurred=True).key()
    test = load_fashion_mnist("test")
    accuracy = float((guess_labels(shipped, test.images) == test.labels).double().mean())
    assert accuracy == pytest.approx(float(metadata["test_accuracy"]), abs=1e-6)
    assert accuracy > 0.88
    for factor, least in zip(BLUR_FACTORS, (0.88, 0.83, 0.55), strict=True):
        guessed = guess_labels(shipped, blur(test.images, factor))
        blurred = float((guessed == test.labels).double().mean())
        assert blurred == pytest.approx(float(metadata[f"test_accuracy_blur{factor}"]), abs=1e-6)
        assert blurred > least, factor


def test_blur_is_downscale_then_nearest_enlargement() -> None:
    images = load_fashion_mnist("test").images[:4]
    for factor in BLUR_FACTORS:
        blurred = blur(images, factor)
        assert blurred.shape == images.shape and blurred.dtype == torch.uint8
        assert torch.equal(downscale(blurred, factor), downscale(images, factor))  # agrees
        assert torch.equal(
            enlarge(downscale(images, factor), factor)[..., ::factor, ::factor], downscale(images, factor)
        )


def test_a_saved_classifier_loads_back_and_guesses_the_same(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = Classifier().eval()
    path = tmp_path / "c.safetensors"
    save_classifier(net, path, TrainSettings(epochs=1), test_accuracy=0.5)
    back = load_classifier(path)
    images = load_fashion_mnist("test").images[:16]
    assert torch.equal(guess_labels(back, images), guess_labels(net, images))
    assert read_settings(path) == TrainSettings(epochs=1).key()
    with pytest.raises(ValueError, match=r"\(N, 1, 28, 28\)"):
        guess_labels(back, images[:, :, :14, :14])


def test_files_that_are_not_classifiers_are_refused_clearly(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="cannot load the classifier"):
        load_classifier(tmp_path / "missing.safetensors")
    with pytest.raises(CheckpointError, match="not a classifier file"):
        load_classifier(DEFAULT_WEIGHTS)  # the PixelCNN's weights
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(Path(DEFAULT_CLASSIFIER).read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="cannot load the classifier"):
        load_classifier(broken)
