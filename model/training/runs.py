"""Opening a run: a new one (from a random init or from a weights file) or one to resume.

``open_run`` looks at the run directory (rank 0 only, under torchrun), settles the run's
settings (a resumed run keeps its own; a run started ``--init-from`` takes the file's
architecture, or grows a gated file into gated-attention) and returns its ``Trainer``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from model.checkpoint import CheckpointError, file_sha256, load
from model.data.sources import Dataset
from model.network.pixelcnn import PixelCNNConfig
from model.training.distributed import World, from_main
from model.training.settings import TrainSettings
from model.training.trainer import SETTINGS_FILE, STATE_FILE, Trainer


def open_run(
    settings: TrainSettings,
    resume: bool,
    device: str = "cpu",
    epochs: int | None = None,
    dataset: Dataset | None = None,
) -> Trainer:
    """A trainer for ``settings``; with ``resume``, continue the run stored in its run dir.

    On resume the run keeps its saved settings, except ``settings.max_steps`` and, when given,
    ``epochs`` (to extend or shorten a run; this also stretches its learning-rate schedule).

    In a process group rank 0 looks at the run directory and tells the others what it found,
    so that every rank starts the same run or fails with the same error. ``dataset``: the data
    already read by the caller (a new run); else the run's cache or its source is read.
    """
    found = _find_run(settings, resume, epochs) if World.current().is_main else None
    found = from_main(found)
    if isinstance(found, Exception):
        raise found
    assert found is not None
    trainer = Trainer(found, device, None if resume else dataset)
    if resume:
        trainer.restore()
    elif found.init_from:
        # Every rank reads the file itself (DDP broadcast its parameters at construction).
        start = load(found.init_from).state_dict()
        # A grown model has new tensors (strict=False), but every tensor of the file must land.
        for net in (trainer.model, trainer.ema):
            result = net.load_state_dict(start, strict=not found.grow_to)
            if result.unexpected_keys:
                raise ValueError(f"{found.init_from}: tensors the new model lacks: {result.unexpected_keys}")
    return trainer


def _grows(config: PixelCNNConfig, settings: TrainSettings) -> bool:
    """Whether ``--init-from`` with ``--arch`` asks for more than the file has: gated grown into
    gated-attention, or a gated-attention file given attention blocks after more layers."""
    if settings.grow_to != config.arch:
        return True
    return config.arch == "gated-attention" and (
        settings.model.attention_every != config.attention_every
        or settings.model.attention_heads != config.attention_heads
    )


def _find_run(settings: TrainSettings, resume: bool, epochs: int | None) -> TrainSettings | Exception:
    run_dir = Path(settings.run_dir)
    if resume:
        if not (run_dir / STATE_FILE).is_file():
            return FileNotFoundError(f"nothing to resume: {run_dir / STATE_FILE} does not exist")
        saved = TrainSettings.from_json((run_dir / SETTINGS_FILE).read_text())
        # Stopping points may change on resume; everything that shapes the run may not.
        saved.max_steps = settings.max_steps
        if epochs is not None:
            saved.epochs = epochs
        return saved
    if (run_dir / STATE_FILE).exists():
        return FileExistsError(f"{run_dir} already holds a run: pass --resume, or another --run-dir")
    if settings.init_from:
        # The starting weights fix the architecture; the model flags do not apply, except that a
        # gated file may grow into gated-attention (its layers kept, attention blocks added).
        config_source = settings.init_from
        try:
            config = load(config_source).config
        except CheckpointError as exc:
            return exc
        if settings.grow_to and _grows(config, settings):
            if (config.arch, settings.grow_to) not in (
                ("gated", "gated-attention"),
                ("gated-attention",) * 2,
            ):
                return ValueError(f"--arch {settings.grow_to} cannot start from a {config.arch} file")
            grown = dataclasses.replace(
                config,
                arch=settings.grow_to,
                attention_every=settings.model.attention_every,
                attention_heads=settings.model.attention_heads,
            )
            kept = set(config.attention_after)
            if not kept <= set(grown.attention_after) or (
                kept and grown.attention_heads != config.attention_heads
            ):
                return ValueError(
                    f"--attention-every {grown.attention_every} --attention-heads {grown.attention_heads} "
                    f"would drop or reshape the file's attention blocks (after layers {sorted(kept)}); "
                    f"choose a divisor of {config.attention_every} and {config.attention_heads} heads"
                )
            config = grown
        else:
            settings = dataclasses.replace(settings, grow_to=None)  # nothing to grow: load strictly
        return dataclasses.replace(settings, model=config, init_sha256=file_sha256(config_source))
    return settings
