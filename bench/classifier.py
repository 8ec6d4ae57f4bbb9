"""The judge of ``bench.quality``: ``model.classifier``'s small CNN, trained with fixed settings.

Trained once on the 55,000 training images (fixed seed) and cached as a safetensors file under
``runs/`` (which git ignores), keyed by its training settings. Its penultimate layer gives the
features of the Frechet distance; its predictions give class fidelity.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from model.classifier import TrainSettings, load_classifier, read_settings, save_classifier, train_classifier
from model.network.classifier import Classifier

JUDGE = TrainSettings()  # stored with the cached file: a change of any of them retrains
DEFAULT_PATH = Path("runs/quality-classifier.safetensors")


def load_or_train(path: Path = DEFAULT_PATH, data_dir: str | None = None) -> Classifier:
    """The cached classifier at ``path``, trained (about a minute or two) if missing or stale."""
    if path.is_file() and read_settings(path) == JUDGE.key():
        return load_classifier(path)
    started = time.monotonic()
    print("training the judge classifier (once; cached at", path, ")", flush=True)
    net = train_classifier(JUDGE, data_dir)
    save_classifier(net, path, JUDGE)
    print(f"trained in {time.monotonic() - started:.0f} s", flush=True)
    return net


@torch.no_grad()
def predict(
    net: Classifier, images: torch.Tensor, batch_size: int = 500
) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images ``(N, 1, 28, 28)`` -> predicted classes ``(N,)`` and features ``(N, 128)`` float64."""
    labels, features = [], []
    for start in range(0, len(images), batch_size):
        f = net.features(images[start : start + batch_size])
        features.append(f.double())
        labels.append(net.out(f).argmax(1))
    return torch.cat(labels), torch.cat(features)
