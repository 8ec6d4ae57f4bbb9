"""The particle jobs, ``complete`` and ``upscale``: ``n`` results for one image, each by ``K``
particles (``model.inference.particles``). Requests with the same particle count and
temperature (and factor) merge into one batch of all their particles, as ``GenerateJob``s do.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Self

import torch

from app.jobs import Job
from app.metrics import Metrics
from app.progress import BatchRows, Progress
from model.inference.completion import complete
from model.inference.row_kernel import supports
from model.inference.superres import upscale
from model.network.classifier import guess_from_small

if TYPE_CHECKING:
    from app.models.served import ServedModel

Completion = tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]  # images, bits, labels


@dataclass(eq=False, kw_only=True)
class ParticleJob(Job[Completion]):
    """``n`` results for one image by particles (``complete``, ``upscale``): what they share.

    Jobs with the same particle count and temperature (and, for ``upscale``, factor) merge:
    the merged job runs every result's particles as one batch, each result with its own image,
    label and seed, so each comes out as it would alone. ``parts`` (set by ``merge``) says
    whose results are whose.
    """

    n: int
    label: int | None  # None: each result infers its own
    seeds: list[int]
    temperature: float
    particles: int
    progress: Progress | None = None  # a streamed request's rows go here
    labels: list[int | None] | None = None  # set by merge: one per result
    parts: BatchRows | None = field(default=None, repr=False)

    @property
    def images(self) -> int:
        return self.n * self.particles  # every particle is an image of work

    def merge_key(self) -> Hashable:
        return (self.particles, self.temperature)

    # A subclass's inputs of one image, repeated for each of its results in a merged job, and
    # its fields that the merge key makes equal.
    PER_RESULT: ClassVar[tuple[str, ...]] = ()
    SHARED: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def merge(cls, jobs: Sequence[Self]) -> Self:
        if len(jobs) == 1:
            return jobs[0]
        per_result: dict[str, Any] = {
            name: torch.cat([getattr(job, name).expand(job.n, *getattr(job, name).shape) for job in jobs])
            for name in cls.PER_RESULT
        }
        shared: dict[str, Any] = {name: getattr(jobs[0], name) for name in cls.SHARED}
        return cls(**per_result, **shared, **cls.merged_fields(jobs))

    @staticmethod
    def merged_fields(jobs: Sequence[ParticleJob]) -> dict[str, Any]:
        """The fields ``ParticleJob`` itself gives the job that does the work of ``jobs``."""
        return {
            "n": sum(job.n for job in jobs),
            "label": None,
            "labels": [label for job in jobs for label in job.result_labels()],
            "seeds": [seed for job in jobs for seed in job.seeds],
            "temperature": jobs[0].temperature,
            "particles": jobs[0].particles,
            "parts": BatchRows([(job.n, job.progress) for job in jobs], shrinks=False),
        }

    def result_labels(self) -> list[int | None]:
        """The label of each result (None: inferred), in a new list."""
        return list(self.labels) if self.labels is not None else [self.label] * self.n

    def counts(self) -> list[int]:
        """Each merged request's results, in batch order (``[n]`` for a job alone)."""
        return [self.n] if self.parts is None else [count for count, _ in self.parts.parts]

    def compiled(self, served: ServedModel) -> bool:
        return supports(served.model)  # the particles' network runs as the compiled loops

    def sampling(self) -> dict[str, Any]:
        """The keyword arguments ``complete`` and ``upscale`` both take."""
        # A merged batch with a streamed request cuts the leading particles into its parts; a
        # part whose client has gone keeps its rows (particles cannot leave a batch) until all have.
        hook = self.parts if self.parts is not None and self.parts.streamed else self.progress
        return {
            "labels": self.labels if self.labels is not None else self.label,
            "seeds": self.seeds,
            "temperature": self.temperature,
            "particles": self.particles,
            "on_row": hook,
        }

    def split(self, result: Completion, sizes: list[int]) -> list[Completion]:
        if self.parts is None:
            return [result]
        counts = self.counts()  # results, not images of work
        images, bits, labels = result
        pieces = zip(
            images.split(counts),
            bits.split(counts),
            [None] * len(counts) if labels is None else labels.split(counts),
            strict=True,
        )
        return list(pieces)


@dataclass(eq=False, kw_only=True)
class CompleteJob(ParticleJob):
    """Fill ``mask`` of one image ``n`` times -> ``complete``'s images, bits and labels."""

    image: torch.Tensor  # (C, H, W) model values; merged: (n, C, H, W), one per result
    mask: torch.Tensor  # (H, W) bool, True = fill; merged: (n, H, W)

    PER_RESULT = ("image", "mask")

    def run(self, served: ServedModel, metrics: Metrics) -> Completion:
        return complete(served.model, self.image, self.mask, self.n, **self.sampling())


@dataclass(eq=False, kw_only=True)
class UpscaleJob(ParticleJob):
    """Upscale one small image ``n`` times -> ``upscale``'s images, bits and labels."""

    small: torch.Tensor  # (C, H/f, W/f) model values; merged: (n, C, H/f, W/f), one per result
    factor: int

    def merge_key(self) -> Hashable:
        return (self.particles, self.temperature, self.factor)

    PER_RESULT = ("small",)
    SHARED = ("factor",)

    def run(self, served: ServedModel, metrics: Metrics) -> Completion:
        sampling = self.sampling()
        if served.classifier is not None:
            # The classifier's guess from the small image as a whole (it was trained on such
            # enlargements) names the class far more often than particles that each draw one.
            # One guess per request: a merged request's results share its image and label.
            labels, start = self.result_labels(), 0
            for count in self.counts():
                if labels[start] is None:
                    small = self.small if self.small.dim() == 3 else self.small[start]
                    guess = int(guess_from_small(served.classifier, small.unsqueeze(0), self.factor)[0])
                    labels[start : start + count] = [guess] * count
                start += count
            sampling["labels"] = labels
        return upscale(served.model, self.small, self.factor, self.n, **sampling)
