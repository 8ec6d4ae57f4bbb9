"""Training and files of the Fashion-MNIST classifier (``model.network.classifier``).

A conditional PixelCNN codes an image best under the label that gives it the fewest bits, and
finding that label exactly costs one forward pass per class. This network guesses it in a
fraction of one pass (on the test set its guess is the fewest-bits label for most images, and
costs a few bits an image more where it is not; see the model card). ``bench.quality`` uses the
same network, trained with its own settings, as its judge.

``python -m model.classifier --out PATH`` trains one on the training split (a couple of minutes
on a 2-core CPU) and saves it as a safetensors file; ``load_classifier`` reads it back without
unpickling. ``--blurred`` also shows it images shrunk by 2, 4 or 7 and enlarged again (nearest),
so that it can tell the class of a small image's enlargement too.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from model.checkpoint import CheckpointError, atomic_write
from model.data import load_fashion_mnist
from model.inference.superres import downscale
from model.network.classifier import Classifier, classifier_misfit, enlarge, guess_labels
from model.network.pixelcnn import PixelCNN
from model.pictures import upscale_factors

FORMAT = "fmnist-classifier/1"
DEFAULT_CLASSIFIER = "weights/fmnist-classifier.safetensors"  # the shipped file, from the repository root
BLUR_FACTORS = upscale_factors(28)  # trained on the small images of every factor upscale serves at 28x28


@dataclass(frozen=True)
class TrainSettings:
    epochs: int = 4
    batch_size: int = 128
    lr: float = 2e-3
    seed: int = 0
    blurred: bool = False  # half the batches' images shrunk by 2, 4 or 7 and enlarged again

    def key(self) -> str:
        """The settings as canonical JSON, stored with the weights."""
        return json.dumps({**asdict(self), "version": 1}, sort_keys=True)


def blur(images: torch.Tensor, factor: int) -> torch.Tensor:
    """uint8 images ``(B, 1, 28, 28)`` shrunk with ``downscale`` and enlarged again (nearest)."""
    return enlarge(downscale(images, factor), factor)


def train_classifier(settings: TrainSettings, data_dir: str | None = None) -> Classifier:
    """A classifier trained on the 55,000 training images, deterministic per ``settings``."""
    torch.manual_seed(settings.seed)
    train = load_fashion_mnist("train", data_dir)
    net = Classifier()
    optimizer = torch.optim.Adam(net.parameters(), lr=settings.lr)
    size = settings.batch_size
    steps = settings.epochs * (len(train) // size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, settings.lr, total_steps=steps)
    generator = torch.Generator().manual_seed(settings.seed)
    net.train()
    for _ in range(settings.epochs):
        order = torch.randperm(len(train), generator=generator)
        for start in range(0, len(train) - size + 1, size):
            idx = order[start : start + size]
            images = train.images[idx]
            # Random horizontal flips: garments are mirror-symmetric, and it regularises.
            flip = torch.rand(len(idx), generator=generator) < 0.5
            images = torch.where(flip[:, None, None, None], images.flip(-1), images)
            if settings.blurred and start // size % 2:
                pick = int(torch.randint(len(BLUR_FACTORS), (1,), generator=generator))
                images = blur(images, BLUR_FACTORS[pick])
            loss = F.cross_entropy(net(images), train.labels[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    return net.eval()


def save_classifier(net: Classifier, path: str | Path, settings: TrainSettings, **facts: float) -> None:
    """Write ``net`` as safetensors, with its format, settings and ``facts`` in the header."""
    tensors = {k: v.detach().contiguous() for k, v in net.state_dict().items()}
    metadata = {"format": FORMAT, "settings": settings.key(), **{k: str(v) for k, v in facts.items()}}
    atomic_write(Path(path), lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


def read_settings(path: str | Path) -> str | None:
    """The settings key stored in a classifier file, or None if it has none."""
    with safe_open(str(path), "pt") as f:
        return (f.metadata() or {}).get("settings")


def load_classifier(path: str | Path) -> Classifier:
    """A classifier file written by ``save_classifier``, in eval mode; ``CheckpointError`` if not."""
    try:
        with safe_open(str(path), "pt") as f:
            metadata = f.metadata() or {}
        if metadata.get("format") not in (FORMAT, None):
            raise CheckpointError(f"{path}: not a classifier file (format {metadata.get('format')!r})")
        net = Classifier()
        net.load_state_dict(load_file(str(path)))
    except (OSError, SafetensorError, RuntimeError) as exc:
        raise CheckpointError(f"cannot load the classifier {path}: {exc}") from exc
    return net.eval()


def classifier_for(model: PixelCNN, path: str | Path) -> tuple[Classifier | None, str | None]:
    """The classifier at ``path`` to guess ``model``'s labels, or None and why not: an
    unconditional model needs none; one that codes other images than it reads cannot use it.
    A missing or damaged file is a ``CheckpointError``."""
    if not model.config.num_classes:
        return None, "the model is unconditional"
    classifier = load_classifier(path)
    misfit = classifier_misfit(model, classifier)
    return (None, misfit) if misfit else (classifier, None)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        allow_abbrev=False, prog="python -m model.classifier", description=__doc__.split("\n")[0]
    )
    p.add_argument("--out", required=True, help="the safetensors file to write")
    p.add_argument("--epochs", type=int, default=TrainSettings.epochs)
    p.add_argument("--seed", type=int, default=TrainSettings.seed)
    p.add_argument("--blurred", action="store_true", help="also train on shrunk-and-enlarged images")
    p.add_argument("--data-dir", default=None)
    args = p.parse_args(argv)
    settings = TrainSettings(epochs=args.epochs, seed=args.seed, blurred=args.blurred)
    started = time.monotonic()
    net = train_classifier(settings, args.data_dir)
    test = load_fashion_mnist("test", args.data_dir)
    facts = {"test_accuracy": float((guess_labels(net, test.images) == test.labels).float().mean())}
    for factor in BLUR_FACTORS if args.blurred else ():
        guessed = guess_labels(net, blur(test.images, factor))
        facts[f"test_accuracy_blur{factor}"] = float((guessed == test.labels).float().mean())
    save_classifier(net, args.out, settings, **facts)
    print(json.dumps({"seconds": round(time.monotonic() - started), **facts}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
