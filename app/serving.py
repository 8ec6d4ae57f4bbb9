"""What the lifespan builds and the routes use: the model, its description and its worker."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request

from app.errors import ClientError
from app.metrics import Metrics
from app.schemas import ModelInfo
from app.settings import Settings, get_settings
from app.worker import InferenceWorker
from model.checkpoint import file_sha256, public_facts, read_metadata
from model.network.classifier import Classifier
from model.network.pixelcnn import PixelCNN
from model.pictures import upscale_factors


@dataclass
class Serving:
    model: PixelCNN
    info: ModelInfo
    worker: InferenceWorker
    metrics: Metrics
    classifier: Classifier | None = None  # guesses /compress and /upscale labels

    @property
    def size(self) -> int:
        return self.model.config.image_size

    @property
    def levels(self) -> int:
        return self.model.config.levels

    @property
    def colours(self) -> int:
        """Channels of the model's images: 1 (grayscale) or 3 (RGB)."""
        return self.model.config.image_channels


def _number(metadata: dict[str, str], key: str) -> float | None:
    try:
        return float(json.loads(metadata[key]))
    except (KeyError, ValueError, TypeError):
        return None


def describe(model: PixelCNN, weights: Path | None) -> ModelInfo:
    """The ``/model`` description, from the config and the weights file's metadata.

    ``training`` holds only the facts ``public_facts`` allows (figures, counts, hardware,
    hyperparameters), never a path or a command line, whatever the file holds.
    """
    metadata = read_metadata(weights) if weights is not None and weights.is_file() else {}
    k = model.config.num_classes
    return ModelInfo(
        arch=model.config.arch,
        config=json.loads(model.config.to_json()),
        parameters=model.parameter_count(),
        image_size=model.config.image_size,
        image_channels=model.config.image_channels,
        classes=list(model.config.label_names) if k else None,
        upscale_factors=list(upscale_factors(model.config.image_size)),
        weights=weights.name if weights is not None else "in-memory",
        sha256=file_sha256(weights) if weights is not None and weights.is_file() else "",
        test_bits_per_dim=_number(metadata, "test_bits_per_dim"),
        validation_bits_per_dim=_number(metadata, "validation_bits_per_dim"),
        training=public_facts(metadata),
    )


def get_serving(request: Request) -> Serving:
    serving: Serving | None = getattr(request.app.state, "serving", None)
    if serving is None:
        raise ClientError(503, "the model is not loaded yet", headers={"Retry-After": "5"})
    return serving


ServingDep = Annotated[Serving, Depends(get_serving)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
