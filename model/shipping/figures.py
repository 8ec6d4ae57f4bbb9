"""The figures that decide whether a Fashion-MNIST weights file replaces the shipped one.

``measure`` scores a file the same way every time (``Measurement``): bits/dim with true labels
on the test and validation images, overall and per class; ``model.shipping.quality``'s class fidelity and
FID of class-conditional samples; and the size of its lossless containers on the first test
images, labels guessed by the shipped classifier as ``/compress`` does. ``refusals`` says why a
candidate is not better than the shipped file (nothing: it is).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from model.checkpoint import file_sha256, load, public_facts, read_metadata, tensors_digest
from model.classifier import classifier_for
from model.codec import compress_with_stats
from model.data import FASHION_CLASSES, load_fashion_mnist
from model.network.pixelcnn import PixelCNN
from model.shipping.quality import Judge, sample_quality
from model.training.export import scores


class ShipError(RuntimeError):
    """A candidate that cannot be measured or shipped; the message is one line saying why."""


@dataclass(frozen=True)
class Measurement:
    """How figures are measured. Figures measured another way are never compared."""

    limit: int | None = None  # test and validation images scored (None: all 10,000 and 5,000)
    per_class: int = 100  # samples per class judged for fidelity and FID
    temperature: float = 1.0
    compression_images: int = 1000  # the first N test images, coded ...
    container: int = 64  # ... this many to a container

    def key(self, judge: Judge) -> dict[str, Any]:
        """These settings and the judge's identity: equal keys, comparable figures."""
        judge_digest = tensors_digest({k: v.detach() for k, v in judge.net.state_dict().items()})
        return {**asdict(self), "judge_sha256": judge_digest}


def check_compatible(model: PixelCNN, path: Path) -> None:
    """The shipped file's interface: 28x28 grayscale, 256 levels, Fashion-MNIST's ten named classes."""
    cfg = model.config
    shape = (cfg.image_size, cfg.levels, cfg.num_classes, cfg.image_channels)
    if shape != (28, 256, 10, 1) or cfg.label_names != FASHION_CLASSES:
        colour = " colour" if cfg.image_channels > 1 else ""
        raise ShipError(
            f"{path}: a {cfg.image_size}x{cfg.image_size}{colour} model with {cfg.num_classes} classes "
            f"({', '.join(cfg.label_names)}); the shipped file is a 28x28 class-conditional Fashion-MNIST "
            "model with its ten classes, and only such a file can replace it"
        )


def compression_figures(model: PixelCNN, how: Measurement, classifier_path: Path) -> dict[str, float | int]:
    """Bits/dim of the containers (and the model's ideal under the same labels) on the first
    ``how.compression_images`` test images, ``how.container`` per container."""
    classifier, why_not = classifier_for(model, classifier_path)
    if classifier is None:
        raise ShipError(f"the label classifier {classifier_path} cannot label this model's images: {why_not}")
    images = load_fashion_mnist("test").images[: how.compression_images]
    size, ideal = 0, 0.0
    for start in range(0, len(images), how.container):
        data, bits = compress_with_stats(model, images[start : start + how.container], classifier=classifier)
        size, ideal = size + len(data), ideal + bits
    dims = len(images) * model.config.image_size**2
    return {
        "images": len(images),
        "container": how.container,
        "container_bits_per_dim": round(8 * size / dims, 4),
        "ideal_bits_per_dim": round(ideal / dims, 4),
    }


def measure(path: Path, how: Measurement, judge: Judge, classifier_path: Path) -> dict[str, Any]:
    """Every figure of the weights at ``path``, with the file's identity and training facts."""
    model = load(path)
    check_compatible(model, path)
    started = time.monotonic()
    test, validation = (load_fashion_mnist(split).first(how.limit) for split in ("test", "validation"))
    test_bpd, test_per_class = scores(model, test, "test")
    val_bpd, val_per_class = scores(model, validation, "validation")
    quality = sample_quality(model, judge, how.per_class, how.temperature)
    # The judge on as many real validation images: the floor that sampling noise alone gives.
    real = load_fashion_mnist("validation").first(how.per_class * len(FASHION_CLASSES))
    real_fidelity, real_fid, _ = judge.score(real.images, real.labels)
    metadata = read_metadata(path)
    return {
        "sha256": file_sha256(path),
        "tensors_sha256": metadata.get("tensors_sha256"),
        "bytes": path.stat().st_size,
        "arch": model.config.arch,
        "config": json.loads(model.config.to_json()),
        "parameters": model.parameter_count(),
        "facts": public_facts(metadata),
        "test_images": len(test),
        "validation_images": len(validation),
        "test_bits_per_dim": round(test_bpd, 4),
        "test_per_class": test_per_class,
        "validation_bits_per_dim": round(val_bpd, 4),
        "validation_per_class": val_per_class,
        "fidelity": round(float(quality["fidelity"]), 4),  # type: ignore[arg-type]
        "fid": round(float(quality["fid"]), 2),  # type: ignore[arg-type]
        "fidelity_per_class": quality["per_class"],
        "sample_bits_per_dim": round(float(quality["bits_per_dim"]), 4),  # type: ignore[arg-type]
        "judge": {
            "test_accuracy": round(judge.test_accuracy, 4),
            "real_fidelity": round(real_fidelity, 4),
            "real_fid": round(real_fid, 2),
        },
        "compression": compression_figures(model, how, classifier_path),
        "seconds": round(time.monotonic() - started, 1),
        "threads": torch.get_num_threads(),
    }


def refusals(candidate: dict[str, Any], shipped: dict[str, Any]) -> list[str]:
    """Why ``candidate`` may not replace ``shipped``: it must have fewer test bits/dim, a higher
    class fidelity and an FID no higher. Empty: it is better."""
    reasons = []
    if candidate["test_bits_per_dim"] >= shipped["test_bits_per_dim"]:
        reasons.append(
            f"test bits/dim {candidate['test_bits_per_dim']} is not below {shipped['test_bits_per_dim']}"
        )
    if candidate["fidelity"] <= shipped["fidelity"]:
        reasons.append(f"class fidelity {candidate['fidelity']} is not above {shipped['fidelity']}")
    if candidate["fid"] > shipped["fid"]:
        reasons.append(f"FID {candidate['fid']} is above {shipped['fid']}")
    return reasons


def read_figures(path: Path) -> dict[str, Any] | None:
    """A figures file (``weights/<stem>.figures.json``), or None if there is none."""
    return json.loads(path.read_text()) if path.is_file() else None


def write_figures(path: Path, record: dict[str, Any]) -> None:
    path.write_text(json.dumps(record, indent=1) + "\n")
