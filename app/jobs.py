"""The work a route hands the inference worker: one small class per kind of job.

A job knows its size in the queue (``images``: the images of work it costs), how to run on
the model, and, for kinds that batch, how to merge with others and split the result back:
jobs of one class with equal, non-None ``merge_key`` may be merged into one batch
(``merge``), run once (``run``) and their results cut apart (``split``). A new endpoint adds
a class here (particle jobs, ``complete`` and ``upscale``, are in ``app.particle_jobs``); the
worker never looks at what a job is.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Self, TypeVar

import torch

from app.errors import ClientError
from app.metrics import Metrics
from app.progress import BatchRows, Progress
from model.codec.container import CodecError
from model.codec.range_coder import compress_with_stats, decompress
from model.inference.cached import cached_sample
from model.inference.likelihood import Likelihood, log_likelihood
from model.inference.row_kernel import supports
from model.network.pixelcnn import PixelCNN

if TYPE_CHECKING:
    from app.models.served import ServedModel

R = TypeVar("R")


class Job(ABC, Generic[R]):
    """One request's work, with result type ``R``. By default a job runs alone."""

    @property
    @abstractmethod
    def images(self) -> int:
        """The images of work this job costs, counted against the queue's limit."""

    def merge_key(self) -> Hashable | None:
        """Jobs of one class with equal keys may run as one batch; None: always alone."""
        return None

    @classmethod
    def merge(cls, jobs: Sequence[Self]) -> Self:
        """One job doing the work of ``jobs`` (only called with equal merge keys)."""
        if len(jobs) != 1:
            raise ValueError(f"{cls.__name__} jobs run alone")
        return jobs[0]

    def compiled(self, served: ServedModel) -> bool:
        """Whether this job runs as compiled loops that split a batch between threads of their
        own, rather than as many small torch ops (see ``SMALL_BATCH_IMAGES``)."""
        return False

    @abstractmethod
    def run(self, served: ServedModel, metrics: Metrics) -> R:
        """Do the work on the worker thread (under ``torch.no_grad``) with ``served``'s model."""

    def split(self, result: R, sizes: list[int]) -> list[R]:
        """The merged result, cut into one result per merged job of ``sizes`` images."""
        return [result]


def _cat(parts: list[torch.Tensor | None]) -> torch.Tensor | None:
    return None if parts[0] is None else torch.cat([p for p in parts if p is not None])


@dataclass(eq=False)  # compared by identity: fields hold tensors
class GenerateJob(Job[tuple[torch.Tensor, torch.Tensor]]):
    """Sample images from per-image noise -> ``(images (n, C, H, W) uint8, bits (n,) float64)``."""

    noise: torch.Tensor  # (n, H*W*C) float64 uniforms, one per pixel and colour
    labels: torch.Tensor | None  # (n,) int64, None for an unconditional model
    temperatures: torch.Tensor  # (n,) float64
    progress: Progress | None = None  # a streamed request's rows go here
    parts: BatchRows | None = field(default=None, repr=False)  # set by merge: whose rows are whose

    @property
    def images(self) -> int:
        return int(self.noise.shape[0])

    def merge_key(self) -> Hashable:
        return self.labels is None

    @classmethod
    def merge(cls, jobs: Sequence[GenerateJob]) -> GenerateJob:
        return cls(
            torch.cat([job.noise for job in jobs]),
            _cat([job.labels for job in jobs]),
            torch.cat([job.temperatures for job in jobs]),
            parts=BatchRows([(job.images, job.progress) for job in jobs]),
        )

    def compiled(self, served: ServedModel) -> bool:
        return supports(served.model)

    def run(self, served: ServedModel, metrics: Metrics) -> tuple[torch.Tensor, torch.Tensor]:
        # Only a batch with a streamed request watches its rows (and may drop a request's images).
        hook = self.parts if self.parts is not None and self.parts.streamed else None
        images, bits = cached_sample(served.model, self.noise, self.labels, self.temperatures, on_row=hook)
        metrics.images_generated.labels(model=served.name).inc(images.shape[0])
        return images, bits

    def split(
        self, result: tuple[torch.Tensor, torch.Tensor], sizes: list[int]
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        images, bits = result
        if self.parts is not None:  # a request dropped on the way gets no images (nobody waits)
            sizes = self.parts.sizes()
        return list(zip(images.split(sizes), bits.split(sizes), strict=True))


@dataclass(eq=False)
class LikelihoodJob(Job[Likelihood]):
    """Score images ``(n, C, H, W)`` int64 with their labels (or summed over labels)."""

    values: torch.Tensor
    labels: torch.Tensor | None

    @property
    def images(self) -> int:
        return int(self.values.shape[0])

    def merge_key(self) -> Hashable:
        return self.labels is None

    @classmethod
    def merge(cls, jobs: Sequence[LikelihoodJob]) -> LikelihoodJob:
        return cls(torch.cat([job.values for job in jobs]), _cat([job.labels for job in jobs]))

    def run(self, served: ServedModel, metrics: Metrics) -> Likelihood:
        return log_likelihood(served.model, self.values, self.labels)

    def split(self, result: Likelihood, sizes: list[int]) -> list[Likelihood]:
        posterior = result.class_posterior
        parts = zip(
            result.log2_probs.split(sizes),
            result.total_bits.split(sizes),
            result.bits_per_dim.split(sizes),
            [None] * len(sizes) if posterior is None else posterior.split(sizes),
            strict=True,
        )
        return [Likelihood(*part) for part in parts]


@dataclass(eq=False)
class CompressJob(Job[tuple[bytes, float]]):
    """Compress images ``(n, K, H, W)`` (K: the model's colours) -> the container and its ideal
    bits (alone: the codec must see the same batch shapes when decoding)."""

    values: torch.Tensor

    @property
    def images(self) -> int:
        return int(self.values.shape[0])

    def run(self, served: ServedModel, metrics: Metrics) -> tuple[bytes, float]:
        # The model's classifier guesses the labels; without one, the fewest-bits search.
        return compress_with_stats(served.model, self.values, classifier=served.classifier)


@dataclass(eq=False)
class DecompressJob(Job[torch.Tensor]):
    """Decompress a container of ``count`` images -> ``(count, K, H, W)`` uint8; damage, or data
    of another colour count than the model's, is a 400."""

    data: bytes
    count: int

    @property
    def images(self) -> int:
        return self.count

    def run(self, served: ServedModel, metrics: Metrics) -> torch.Tensor:
        try:
            return decompress(served.model, self.data)
        except CodecError as exc:  # truncated, corrupted, not ours, or other weights
            raise ClientError(400, f"cannot decompress: {exc}") from None


@dataclass(eq=False)
class CallJob(Job[Any]):
    """Any function of the model, run alone (tests use it to hold the worker busy)."""

    function: Callable[[PixelCNN], Any]
    size: int = 1

    @property
    def images(self) -> int:
        return self.size

    def run(self, served: ServedModel, metrics: Metrics) -> Any:
        return self.function(served.model)
