"""Sample quality of a Fashion-MNIST model: class fidelity and FID, by a fixed judge classifier.

The judge is ``model.classifier``'s small CNN trained with fixed settings (``JUDGE``) on the
55,000 training images, cached as a safetensors file under ``runs/`` (which git ignores) and
retrained when missing or when its settings change. Its penultimate layer gives the features of
the Frechet distance; its predictions give class fidelity:

- class fidelity: the share of samples drawn for class y that it classifies as y;
- FID: the Frechet distance between Gaussians fitted to its 128 features of the samples and of
  the 10,000 test images (the Frechet Inception Distance, with this data set's own classifier
  in place of Inception).

``bench.quality`` prints these figures; ``model.ship`` compares weights files with them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.linalg
import torch

from model.classifier import TrainSettings, load_classifier, read_settings, save_classifier, train_classifier
from model.data import dequantize, load_fashion_mnist
from model.inference.generation import generate
from model.inference.likelihood import log_likelihood
from model.network.classifier import Classifier
from model.network.pixelcnn import PixelCNN

JUDGE = TrainSettings()  # stored with the cached file: a change of any of them retrains
DEFAULT_PATH = Path("runs/quality-classifier.safetensors")


def load_or_train(path: Path = DEFAULT_PATH, data_dir: str | None = None) -> Classifier:
    """The cached judge at ``path``, trained (a minute or two) if missing or stale."""
    if path.is_file() and read_settings(path) == JUDGE.key():
        return load_classifier(path)
    started = time.monotonic()
    print("training the judge classifier (once; cached at", path, ")", flush=True)
    net = train_classifier(JUDGE, data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
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


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Frechet distance between Gaussian fits of feature sets ``(N, D)`` and ``(M, D)``."""
    mu_a, mu_b = a.mean(0).numpy(), b.mean(0).numpy()
    # Features after a ReLU include units that never fire, so a covariance can be singular:
    # a tiny ridge keeps the matrix square root well defined and moves the distance negligibly.
    ridge = 1e-6 * np.eye(a.shape[1])
    cov_a, cov_b = np.cov(a.numpy(), rowvar=False) + ridge, np.cov(b.numpy(), rowvar=False) + ridge
    root = np.real(scipy.linalg.sqrtm(cov_a @ cov_b))  # rounding leaves a negligible imaginary part
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root))


@dataclass(frozen=True)
class Judge:
    """The judge with the test images' features, the reference of every FID."""

    net: Classifier
    test_features: torch.Tensor  # (10000, 128) float64
    test_accuracy: float

    @classmethod
    def ready(cls, path: Path = DEFAULT_PATH, data_dir: str | None = None, *, train: bool = True) -> Judge:
        """The judge at ``path`` (trained there if missing or stale, unless ``train`` is False:
        then any ``model.classifier`` file is taken as it is)."""
        net = load_or_train(path, data_dir) if train else load_classifier(path)
        test = load_fashion_mnist("test", data_dir)
        predicted, features = predict(net, test.images)
        return cls(net, features, float((predicted == test.labels).double().mean()))

    def score(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[float, float, torch.Tensor]:
        """uint8 images ``(N, 1, 28, 28)`` and their intended labels ``(N,)``: class fidelity,
        FID against the test images, and per image whether the judge saw the intended class."""
        predicted, features = predict(self.net, images)
        hit = (predicted == labels).double()
        return float(hit.mean()), frechet_distance(features, self.test_features), hit


def sample_quality(
    model: PixelCNN, judge: Judge, per_class: int, temperature: float = 1.0, batch_size: int = 100
) -> dict[str, object]:
    """Draw ``per_class`` samples of every class (sample k of class y uses seed
    ``y * per_class + k``, ``generate``'s other defaults) and judge them: fidelity, FID, per-class
    fidelity, the samples' own bits/dim under the model and the seconds sampling took."""
    k = model.config.num_classes
    if k is None:
        raise ValueError("class fidelity needs a class-conditional model")
    n = per_class * k
    labels = torch.arange(k).repeat_interleave(per_class)
    started = time.monotonic()
    batches = [
        generate(
            model,
            len(chunk),
            labels=chunk.tolist(),
            seeds=list(range(s, s + len(chunk))),
            temperature=temperature,
        )
        for s in range(0, n, batch_size)
        for chunk in [labels[s : s + batch_size]]
    ]
    values = torch.cat(batches)
    seconds = time.monotonic() - started
    fidelity, fid, hit = judge.score(dequantize(values, model.config.levels), labels)
    bits = log_likelihood(model, values.long(), labels).bits_per_dim
    names = model.config.label_names
    return {
        "fidelity": fidelity,
        "fid": fid,
        "bits_per_dim": float(bits.mean()),
        "per_class": {names[c]: round(float(hit[labels == c].mean()), 3) for c in range(k)},
        "seconds": round(seconds, 1),
    }
