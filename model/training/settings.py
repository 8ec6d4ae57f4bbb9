"""The settings of a training run (what its ``settings.json`` holds) and the schedule they set.

Every field but ``model`` has a default, so that a ``settings.json`` written before a field was
added still loads. ``model.training`` re-exports both names.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass

from model.data.arrays import DEFAULT_VALIDATION_FRACTION
from model.network.pixelcnn import PixelCNNConfig


@dataclass
class TrainSettings:
    """Everything that shapes a run; ``--resume`` reads it back from the run directory."""

    model: PixelCNNConfig
    run_dir: str = "runs/default"
    data: str | None = None  # a folder of images, an .npz file or a folder of IDX files; None: Fashion-MNIST
    data_dir: str | None = None  # where Fashion-MNIST's files are, when data is None
    validation_fraction: float = DEFAULT_VALIDATION_FRACTION  # of the training images, held out
    skip_bad_files: bool = False  # leave unreadable image files out (listed) instead of stopping
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3  # peak Adam learning rate, reached after warmup_steps
    warmup_steps: int = 500
    min_lr_ratio: float = 0.02  # cosine decays to lr * min_lr_ratio at the last step
    grad_clip: float = 1.0  # max global gradient norm
    ema_decay: float = 0.999  # per step; the EMA weights are what gets evaluated and shipped
    bf16: bool = True  # bf16 autocast for forward/backward (loss in float32)
    seed: int = 0
    train_limit: int | None = None  # use only the first N training images (tests, smoke runs)
    val_limit: int | None = None
    max_steps: int | None = None  # stop (with a checkpoint) after this many steps in total
    init_from: str | None = None  # a weights file the run starts from (model and EMA), not random
    init_sha256: str | None = None  # that file's sha256, so the run records what it started from
    grow_to: str | None = None  # with init_from: the arch the file's model is grown into
    checkpoint_minutes: float = 3.0
    samples_per_epoch: bool = True
    log_every: int = 50

    def to_json(self) -> str:
        data = dataclasses.asdict(self)
        data["model"] = json.loads(self.model.to_json())
        return json.dumps(data, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TrainSettings:
        data = json.loads(text)
        data["model"] = PixelCNNConfig.from_json(json.dumps(data["model"]))
        return cls(**data)


def lr_factor(step: int, settings: TrainSettings, total_steps: int) -> float:
    """Linear warmup to 1, then cosine down to ``min_lr_ratio``."""
    if step < settings.warmup_steps:
        return (step + 1) / settings.warmup_steps
    progress = min(1.0, (step - settings.warmup_steps) / max(1, total_steps - settings.warmup_steps))
    low = settings.min_lr_ratio
    return low + (1 - low) * 0.5 * (1 + math.cos(math.pi * progress))
