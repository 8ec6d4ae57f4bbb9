"""One loaded version of a model, as routes use it, and the description ``/model`` and
``/models`` give of it (read from the file's header, so a model need not be loaded to be
described)."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from starlette.requests import Request

from app.durable.context import rows_reported
from app.metrics import Metrics
from app.schemas import ModelInfo
from model.checkpoint import public_facts
from model.codec.container import HASH_BYTES
from model.network.classifier import Classifier
from model.network.pixelcnn import PixelCNN, PixelCNNConfig
from model.pictures import upscale_factors


class JobQueue(Protocol):
    """What a served model queues its jobs on: ``app.worker.InferenceWorker`` (named by its
    shape here, since the worker's tickets name this module's class)."""

    metrics: Metrics

    async def submit(self, job: Any, served: ServedModel, request: Request | None = None) -> Any: ...

    def enqueue(self, job: Any, served: ServedModel) -> Any: ...

    async def wait(self, ticket: Any, request: Request | None = None) -> Any: ...


TAG_SHA_CHARS = 12  # X-Model: name@ the first 12 hex digits of the file's sha256


def _number(metadata: dict[str, str], key: str) -> float | None:
    try:
        return float(json.loads(metadata[key]))
    except (KeyError, ValueError, TypeError):
        return None


def parameter_count(config: PixelCNNConfig) -> int:
    """The network's parameter count, from its config alone (built on the meta device: no memory)."""
    with torch.device("meta"):
        return PixelCNN(config).parameter_count()


def describe(
    name: str, config: PixelCNNConfig, metadata: dict[str, str], weights: str, sha256: str
) -> ModelInfo:
    """The description of a model: its config, and the facts ``public_facts`` allows from the
    file's ``metadata`` (figures, counts, hardware, hyperparameters), never a path or a command
    line, whatever the file holds."""
    k = config.num_classes
    return ModelInfo(
        name=name,
        arch=config.arch,
        config=json.loads(config.to_json()),
        parameters=parameter_count(config),
        image_size=config.image_size,
        image_channels=config.image_channels,
        classes=list(config.label_names) if k else None,
        upscale_factors=list(upscale_factors(config.image_size)),
        weights=weights,
        sha256=sha256,
        test_bits_per_dim=_number(metadata, "test_bits_per_dim"),
        validation_bits_per_dim=_number(metadata, "validation_bits_per_dim"),
        training=public_facts(metadata),
    )


@dataclass(eq=False)
class ServedModel:
    """A model's weights in memory and what serves them: the shared inference worker (jobs
    queue with this version, so a job finishes on the weights it started with even if the
    file is replaced meanwhile) and the label classifier that fits it, if any."""

    name: str
    model: PixelCNN
    info: ModelInfo
    worker: JobQueue
    classifier: Classifier | None = None  # guesses /compress and /upscale labels
    codec_hash: bytes = b""  # the weights hash /compress writes into its containers
    busy: int = 0  # jobs queued or running: a busy model is never evicted
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def tag(self) -> str:
        """``name@sha256-prefix``: the X-Model header of every response it gives."""
        return f"{self.name}@{self.info.sha256[:TAG_SHA_CHARS]}" if self.info.sha256 else self.name

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

    def hold(self, change: int) -> None:
        with self.lock:
            self.busy += change

    async def submit(self, job: Any, request: Request | None = None) -> Any:
        """Queue ``job`` (an ``app.jobs.Job``) on this model's weights and wait for its result."""
        with rows_reported(job, self.size):  # a replayed durable job tells its rows
            return await self.worker.submit(job, self, request)

    def enqueue(self, job: Any) -> Any:
        """Queue ``job`` and return its ticket, for ``worker.wait`` (a streamed answer)."""
        return self.worker.enqueue(job, self)


def codec_hash_of(metadata: dict[str, str]) -> bytes:
    """The weights hash a container records, from the file's stored tensors digest."""
    digest = metadata.get("tensors_sha256", "")
    try:
        return bytes.fromhex(digest[: 2 * HASH_BYTES])
    except ValueError:
        return b""
