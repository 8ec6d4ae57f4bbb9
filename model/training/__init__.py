"""Training: the loop, its settings, data-parallel helpers, and turning a run into weights.

- ``trainer``: ``Trainer``, one run's loop (Adam, schedule, EMA, bf16, checkpoints, resume);
- ``runs``: ``open_run``, which starts, resumes or fine-tunes a run from its settings;
- ``settings``: ``TrainSettings`` (a run's ``settings.json``) and the learning-rate schedule;
- ``distributed``: the process group under ``torchrun`` and each rank's share of the data;
- ``export``: a run's EMA weights, scored, into a shipped weights file with its pictures;
- ``curves``: a run's training curves as a PNG.

The commands are ``python -m model.train`` and ``python -m model.export``.
"""

from model.training.runs import open_run
from model.training.settings import TrainSettings, lr_factor
from model.training.trainer import SETTINGS_FILE, STATE_FILE, Trainer

__all__ = ["SETTINGS_FILE", "STATE_FILE", "TrainSettings", "Trainer", "lr_factor", "open_run"]
