"""Turning a training run into a weights file with its facts and the model card's pictures.

``export`` takes the EMA weights of a run (``best.safetensors``, the best validation epoch;
or the latest ``state.pt`` when asked, or when no epoch has ended yet), scores them on the
run's own validation and test splits (the run's data, size and hold-out; ``limit`` scores
fewer images, ``limit=0`` none), and writes one safetensors file whose metadata holds the
training facts (``FACTS`` in ``model.checkpoint``: figures, counts, the data set, hardware,
hyperparameters, what the run started from; never a path or a command line), plus the
pictures beside it: a per-class sample grid, completions of half-masked images, and the
training curves. ``python -m model.export`` is its command line.
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

from model.checkpoint import HYPERPARAMETERS, CheckpointError, file_sha256, load, read_metadata, save
from model.data import DatasetError, Split, dequantize, quantize
from model.inference.completion import complete
from model.inference.generation import generate
from model.inference.likelihood import per_class_means, score_split
from model.network.pixelcnn import PixelCNN
from model.pictures import image_grid
from model.training.run_data import run_dataset, with_class_names
from model.training.settings import TrainSettings
from model.training.trainer import SETTINGS_FILE, STATE_FILE

BEST_FILE = "best.safetensors"


class ExportError(RuntimeError):
    """A run that cannot be exported; the message is one line saying why and what to do."""


def scores(model: PixelCNN, split: Split, title: str) -> tuple[float, dict[str, float]]:
    """Mean bits/dim with true labels, overall and per class."""
    per_image = score_split(model, split, progress=title)
    return float(per_image.mean()), per_class_means(per_image, split.labels, model.config.label_names)


def run_settings(run_dir: Path) -> TrainSettings:
    if not (run_dir / SETTINGS_FILE).is_file() or not (run_dir / STATE_FILE).is_file():
        raise ExportError(
            f"{run_dir}: not a training run (no {SETTINGS_FILE} and {STATE_FILE}); train with --run-dir first"
        )
    return TrainSettings.from_json((run_dir / SETTINGS_FILE).read_text())


def ema_from_run(
    run_dir: Path, settings: TrainSettings, from_state: bool, train_images: int
) -> tuple[PixelCNN, dict[str, object]]:
    """A run's EMA weights (best epoch; the latest state with ``from_state`` or when no epoch
    has ended) and the facts of its training; ``train_images``: how many it trained on."""
    model = PixelCNN(settings.model)
    state = torch.load(run_dir / STATE_FILE, map_location="cpu", weights_only=True)
    facts: dict[str, object] = {"steps_total": int(state["step"]), "epochs_total": int(state["epoch"])}
    best = run_dir / BEST_FILE
    if not from_state and not best.is_file():
        step = int(state["step"])
        print(f"no epoch has ended yet (no {BEST_FILE}): exporting the latest EMA weights, step {step}")
        from_state = True
    if from_state:
        model.load_state_dict(state["ema"])
        # A run stopped mid-epoch: count its epochs in steps, as the trainer does.
        epochs = int(state["step"]) / max(1, train_images // settings.batch_size)
        facts.update(epochs=round(epochs, 2), steps=int(state["step"]))
    else:
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


def pictures(model: PixelCNN, out_dir: Path, stem: str, images: Split) -> None:
    """A sample grid (10 a class) and completions of the top half of 6 of ``images``."""
    k = model.config.num_classes or 1
    per_class = 10
    labels = [c for c in range(k) for _ in range(per_class)] if model.config.num_classes else None
    samples = generate(model, k * per_class, labels=labels, seeds=list(range(k * per_class)))
    levels, size = model.config.levels, model.config.image_size
    image_grid(dequantize(samples, levels), columns=per_class, scale=3).save(out_dir / f"{stem}-samples.png")
    mask = torch.zeros(size, size, dtype=torch.bool)
    mask[: size // 2] = True
    rows = []
    for index in range(min(6, len(images))):
        image, label = quantize(images.images[index], levels), int(images.labels[index])
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
        masked[:, : size // 2] = 0  # every colour of the top half
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
    limit: int | None = None,
) -> dict[str, Any]:
    """Score a run's EMA weights on its own data, write them to ``out`` with their facts;
    returns a summary. ``limit``: score only the first N images of each split (0: none)."""
    settings = run_settings(run_dir)
    try:
        dataset = run_dataset(settings)
        settings.model = with_class_names(settings.model, dataset)
    except DatasetError as exc:
        raise ExportError(f"the run's data cannot be read: {exc}") from None
    fraction = settings.validation_fraction
    train_images = len(dataset.part("train", fraction).first(settings.train_limit or None))
    model, facts = ema_from_run(run_dir, settings, from_state, train_images)
    held_out = dataset.part("validation", fraction)
    validation = held_out.first(limit)
    test = dataset.test.first(limit) if dataset.test is not None else None
    figures: dict[str, Any] = {}
    started = time.perf_counter()
    if len(validation):
        val, val_per_class = scores(model, validation, "validation")
        figures.update(validation_bits_per_dim=round(val, 5), validation_bits_per_dim_per_class=val_per_class)
    if test is not None and len(test):
        score, test_per_class = scores(model, test, "test")
        figures.update(test_bits_per_dim=round(score, 5), test_bits_per_dim_per_class=test_per_class)
    if figures:
        shown = ", ".join(
            f"{key.split('_')[0]} {value:.4f}"
            for key, value in figures.items()
            if not isinstance(value, dict)
        )
        scored = f"{len(validation):,} validation" + (f" and {len(test):,} test" if test is not None else "")
        print(f"bits/dim: {shown} ({scored} images, {time.perf_counter() - started:.0f} s)")
    save(
        model,
        out,
        data=dataset.describe(fraction),
        data_sha256=dataset.fingerprint,
        train_images=train_images,
        wall_hours=wall_hours,
        hardware=f"{platform.machine()} CPU, {torch.get_num_threads()} threads",
        **figures,
        **facts,
    )
    try:
        load(out)  # the file must load cleanly
    except CheckpointError as exc:
        raise ExportError(f"the written file does not load: {exc}") from None
    stem = out.stem
    if (run_dir / "curves.png").exists():
        shutil.copyfile(run_dir / "curves.png", out.parent / f"{stem}-curves.png")
    if with_pictures:
        pictures(model, out.parent, stem, dataset.test if dataset.test is not None else held_out)
    return {
        "weights": str(out),
        "sha256": file_sha256(out),
        "parameters": model.parameter_count(),
        "config": json.loads(model.config.to_json()),
        "validation_bits_per_dim": figures.get("validation_bits_per_dim"),
        "test_bits_per_dim": figures.get("test_bits_per_dim"),
        "test_per_class": figures.get("test_bits_per_dim_per_class"),
    }
