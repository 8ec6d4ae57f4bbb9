"""A small CNN classifier of Fashion-MNIST, the judge of ``bench.quality``.

Trained once on the 55,000 training images (fixed seed) and cached as a safetensors file under
``runs/`` (which git ignores), keyed by its training settings. Its penultimate layer gives the
features of the Frechet distance; its predictions give class fidelity.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from model.checkpoint import atomic_write
from model.data import load_fashion_mnist

FEATURES = 128
EPOCHS, BATCH_SIZE, LR, SEED = 4, 128, 2e-3, 0
# Stored with the cached file: a change of any of them retrains.
SETTINGS = {"epochs": EPOCHS, "batch_size": BATCH_SIZE, "lr": LR, "seed": SEED, "version": 1}
DEFAULT_PATH = Path("runs/quality-classifier.safetensors")


class Classifier(nn.Module):
    """uint8 images ``(B, 1, 28, 28)`` -> class logits ``(B, 10)``; ``features`` gives ``(B, 128)``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.Conv2d(32, 32, 3, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 14x14
            nn.Conv2d(32, 64, 3, padding=1),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.Conv2d(64, 64, 3, padding=1),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 7x7
        )
        self.hidden = nn.Linear(64 * 7 * 7, FEATURES)
        self.out = nn.Linear(FEATURES, 10)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float() / 127.5 - 1.0
        return F.relu(self.hidden(self.conv(x).flatten(1)))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.out(self.features(images))


def _train(data_dir: str | None) -> Classifier:
    torch.manual_seed(SEED)
    train = load_fashion_mnist("train", data_dir)
    net = Classifier()
    optimizer = torch.optim.Adam(net.parameters(), lr=LR)
    steps = EPOCHS * (len(train) // BATCH_SIZE)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, LR, total_steps=steps)
    generator = torch.Generator().manual_seed(SEED)
    net.train()
    for _ in range(EPOCHS):
        order = torch.randperm(len(train), generator=generator)
        for start in range(0, len(train) - BATCH_SIZE + 1, BATCH_SIZE):
            idx = order[start : start + BATCH_SIZE]
            images = train.images[idx]
            # Random horizontal flips: garments are mirror-symmetric, and it regularises.
            flip = torch.rand(len(idx), generator=generator) < 0.5
            images = torch.where(flip[:, None, None, None], images.flip(-1), images)
            loss = F.cross_entropy(net(images), train.labels[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    return net.eval()


def load_or_train(path: Path = DEFAULT_PATH, data_dir: str | None = None) -> Classifier:
    """The cached classifier at ``path``, trained (about a minute or two) if missing or stale."""
    if path.is_file():
        with safe_open(str(path), "pt") as f:
            stored = (f.metadata() or {}).get("settings")
        if stored == json.dumps(SETTINGS, sort_keys=True):
            net = Classifier()
            net.load_state_dict(load_file(str(path)))
            return net.eval()
    started = time.monotonic()
    print("training the judge classifier (once; cached at", path, ")", flush=True)
    net = _train(data_dir)
    tensors = {k: v.contiguous() for k, v in net.state_dict().items()}
    metadata = {"settings": json.dumps(SETTINGS, sort_keys=True)}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))
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
