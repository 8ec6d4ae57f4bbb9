"""Turning a training run into a weights file with its facts and the model card's pictures.

``export`` takes the EMA weights of a run (``best.safetensors``, the best validation epoch, or
the latest ``state.pt`` with ``from_state``), scores them on the validation and test sets,
and writes one safetensors file whose metadata holds the training facts (``FACTS`` in
``model.checkpoint``: figures, counts, hardware, hyperparameters, what the run started from;
never a path or a command line), plus the pictures beside it: a per-class sample grid,
completions of half-masked test images, and the training curves. ``python -m model.export``
is its command line.
"""

from __future__ import annotations

import json
import platform
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file

from model.checkpoint import HYPERPARAMETERS, file_sha256, load, read_metadata, save
from model.data import Split, dequantize, load_fashion_mnist, quantize
from model.inference.completion import complete
from model.inference.generation import generate
from model.inference.likelihood import per_class_means, score_split
from model.network.pixelcnn import PixelCNN
from model.pictures import image_grid
from model.training.settings import TrainSettings
from model.training.trainer import SETTINGS_FILE, STATE_FILE


def scores(model: PixelCNN, split: Split) -> tuple[float, dict[str, float]]:
    """Mean bits/dim with true labels, overall and per class."""
    per_image = score_split(model, split)
    return float(per_image.mean()), per_class_means(per_image, split.labels)


def ema_from_run(run_dir: Path, from_state: bool) -> tuple[PixelCNN, dict[str, object]]:
    """A run's EMA weights (best epoch, or latest state) and the facts of its training."""
    settings = TrainSettings.from_json((run_dir / SETTINGS_FILE).read_text())
    model = PixelCNN(settings.model)
    state = torch.load(run_dir / STATE_FILE, map_location="cpu", weights_only=True)
    facts: dict[str, object] = {"steps_total": int(state["step"]), "epochs_total": int(state["epoch"])}
    if from_state:
        model.load_state_dict(state["ema"])
        # A run stopped mid-epoch: count its epochs in steps, as the trainer does.
        train_images = len(load_fashion_mnist("train", settings.data_dir, settings.model.image_size))
        if settings.train_limit:
            train_images = min(train_images, settings.train_limit)
        epochs = int(state["step"]) / (train_images // settings.batch_size)
        facts.update(epochs=round(epochs, 2), steps=int(state["step"]))
    else:
        best = run_dir / "best.safetensors"
        model.load_state_dict(load_file(str(best)))
        with safe_open(str(best), framework="pt") as f:
            meta = f.metadata() or {}
        facts.update(epochs=int(meta["epochs"]), steps=int(meta["steps"]))
    # The hyperparameters only: the run's paths are the training machine's, not the weights'.
    recorded = json.loads(settings.to_json())
    facts["settings"] = {key: recorded[key] for key in HYPERPARAMETERS if key in recorded}
    if settings.init_from and Path(settings.init_from).is_file():
        # A fine-tuning run: record what it started from, so the total training is known.
        start = read_metadata(settings.init_from)
        facts["started_from"] = {
            "sha256": settings.init_sha256,
            "epochs": json.loads(start.get("epochs", "null")),
            "steps": json.loads(start.get("steps", "null")),
        }
    return model.eval(), facts


def pictures(model: PixelCNN, out_dir: Path, stem: str) -> None:
    k = model.config.num_classes or 1
    per_class = 10
    labels = [c for c in range(k) for _ in range(per_class)] if model.config.num_classes else None
    images = generate(model, k * per_class, labels=labels, seeds=list(range(k * per_class)))
    levels = model.config.levels
    image_grid(dequantize(images, levels), columns=per_class, scale=3).save(out_dir / f"{stem}-samples.png")
    test = load_fashion_mnist("test")
    mask = torch.zeros(28, 28, dtype=torch.bool)
    mask[:14] = True
    rows = []
    for index in range(6):
        image, label = quantize(test.images[index], levels), int(test.labels[index])
        filled, _, _ = complete(
            model,
            image,
            mask,
            4,
            labels=label if model.config.num_classes else None,
            seeds=list(range(4)),
            particles=16,
        )
        masked = image.clone()
        masked[0, :14] = 0
        rows.append(torch.cat([image.unsqueeze(0), masked.unsqueeze(0), filled]))
    image_grid(dequantize(torch.cat(rows), levels), columns=6, scale=3).save(
        out_dir / f"{stem}-completions.png"
    )


def export(
    run_dir: Path,
    out: Path,
    *,
    from_state: bool = False,
    wall_hours: float | None = None,
    with_pictures: bool = True,
) -> dict[str, Any]:
    """Score a run's EMA weights, write them to ``out`` with their facts; returns a summary."""
    model, facts = ema_from_run(run_dir, from_state)
    started = time.perf_counter()
    val, val_per_class = scores(model, load_fashion_mnist("validation"))
    test, test_per_class = scores(model, load_fashion_mnist("test"))
    print(f"validation {val:.4f} bits/dim, test {test:.4f} bits/dim ({time.perf_counter() - started:.0f} s)")
    save(
        model,
        out,
        data="Fashion-MNIST: 55,000 training images, 5,000 held out for validation",
        validation_bits_per_dim=round(val, 5),
        test_bits_per_dim=round(test, 5),
        test_bits_per_dim_per_class=test_per_class,
        validation_bits_per_dim_per_class=val_per_class,
        wall_hours=wall_hours,
        hardware=f"{platform.machine()} CPU, {torch.get_num_threads()} threads",
        **facts,
    )
    load(out)  # the file must load cleanly
    stem = out.stem
    if (run_dir / "curves.png").exists():
        shutil.copyfile(run_dir / "curves.png", out.parent / f"{stem}-curves.png")
    if with_pictures:
        pictures(model, out.parent, stem)
    return {
        "weights": str(out),
        "sha256": file_sha256(out),
        "parameters": model.parameter_count(),
        "config": json.loads(model.config.to_json()),
        "validation_bits_per_dim": val,
        "test_bits_per_dim": test,
        "test_per_class": test_per_class,
    }
