"""The data of a training run: read from its directory's cache or its source, and the class
names it gives a conditional model (``model.export`` and ``model.evaluate`` use them too)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from model.data import DatasetError
from model.data.sources import Dataset, load_cache, open_source, with_size
from model.network.pixelcnn import PixelCNNConfig
from model.training.settings import TrainSettings


def run_dataset(settings: TrainSettings) -> Dataset:
    """The data set of a run: its directory's cache when it has one, else read from the source
    (Fashion-MNIST when ``settings.data`` is None), at the model's size."""
    cached = load_cache(Path(settings.run_dir))
    if cached is not None:
        return with_size(cached, settings.model.image_size)
    return open_source(
        settings.data,
        settings.model.image_size,
        data_dir=settings.data_dir,
        skip_bad_files=settings.skip_bad_files,
        colours=settings.model.image_channels,
    )


def with_class_names(config: PixelCNNConfig, dataset: Dataset) -> PixelCNNConfig:
    """A conditional config given the data set's class names (they must match in number)."""
    if config.num_classes is None:
        return config
    names = dataset.class_names
    if names is None:
        raise DatasetError(f"{dataset.name}: has no classes; train an unconditional model (--no-cond)")
    if len(names) != config.num_classes:
        raise DatasetError(
            f"{dataset.name}: has {len(names)} classes but the model has {config.num_classes} labels"
        )
    if config.class_names not in (None, names):
        raise DatasetError(
            f"{dataset.name}: its classes ({', '.join(names)}) are not the model's "
            f"({', '.join(config.class_names or ())})"
        )
    return dataclasses.replace(config, class_names=names)
