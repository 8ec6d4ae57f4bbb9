"""Sequential importance resampling over particles: what completion and super-resolution share.

``n`` requested results run ``K`` particles each, as one batch of ``n * K`` (result c owns rows
``c*K .. c*K+K-1``) on the compiled loops a pixel at a time (``RowKernel.steps``) where they
run the network, so that a particle's numbers never depend on the rest of its batch; else on
the cached incremental model (whose sums may differ in the last bits with the batch).
Reproducibility is per result: result c draws everything from one ``torch.Generator`` seeded
with ``seeds[c]``: first one uniform per dimension for each of its particles (a dimension is a
pixel of a grayscale model, one colour of a pixel of a colour model: raster order, red before
green before blue, up front; then ``extra_noise`` more per particle, for a caller that needs
them), then one uniform per resampling of its group and one for the final pick. So a result's
draws depend only on the model, the inputs, its seed and its label, never on the rest of the
batch.

The caller multiplies a particle's weight (``log_weight``, natural log) by whatever the
model said about the evidence at a pixel, and calls ``resample``: a group whose effective
sample size falls below K/2 is resampled (systematic resampling), and its weights reset.
``pick`` finally draws one particle per result by weight.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext

import torch

from model.inference.caches import incremental
from model.inference.incremental import IncrementalModel
from model.inference.row_kernel import RowKernel, supports
from model.inference.sampling import label_from_seed
from model.inference.threads import one_thread
from model.network.pixelcnn import PixelCNN

LN2 = math.log(2.0)
Labels = int | Sequence[int | None] | None
Steps = IncrementalModel | RowKernel  # what runs the network a pixel at a time


def particle_labels(model: PixelCNN, labels: Labels, seeds: list[int], particles: int) -> torch.Tensor | None:
    """``(n * K,)`` labels: the given one per result, else one drawn per particle."""
    k = model.config.num_classes
    if k is None:
        if labels is not None:
            raise ValueError("this model is unconditional: it takes no labels")
        return None
    per_result = [labels] * len(seeds) if labels is None or isinstance(labels, int) else list(labels)
    if len(per_result) != len(seeds):
        raise ValueError(f"got {len(per_result)} labels for {len(seeds)} results")
    out = []
    for seed, y in zip(seeds, per_result, strict=True):
        if y is not None and not 0 <= int(y) < k:
            raise ValueError(f"labels must be in 0..{k - 1}")
        for p in range(particles):
            out.append(int(y) if y is not None else label_from_seed(seed + p * 7919, k))
    return torch.tensor(out, dtype=torch.long)


def systematic(weights: torch.Tensor, u: float) -> torch.Tensor:
    """Systematic resampling: K normalised weights, one uniform -> K ancestor indices."""
    k = weights.shape[0]
    positions = (torch.arange(k, dtype=torch.float64) + u) / k
    return torch.searchsorted(weights.double().cumsum(0), positions).clamp_(max=k - 1)


class Particles:
    """``n`` groups of ``K`` particles, one batch on the network a pixel at a time.

    ``state``: the network a pixel at a time (``begin_row``, ``logits``); ``noise`` ``(n*K, D)``
    float64, one per dimension, D = H*W*C (C = ``image_channels``; dimension d is colour
    ``d % C`` of pixel ``d // C``); ``out`` ``(n*K, D)`` int64 values so far; ``bits``
    ``(n*K,)`` float64 negative log2-likelihood so far (temperature 1); ``log_weight``
    ``(n, K)``; ``labels`` ``(n*K,)``; ``extra_noise`` ``(n*K, extra_noise)`` float64,
    uniforms for the caller's own choices.
    """

    def __init__(
        self, model: PixelCNN, labels: Labels, seeds: list[int], particles: int, extra_noise: int = 0
    ) -> None:
        size, self.colours = model.config.image_size, model.config.image_channels
        pixels = size * size * self.colours  # dimensions
        self.n, self.k = len(seeds), particles
        batch = self.n * particles
        self.labels = particle_labels(model, labels, seeds, particles)
        self.gens = [torch.Generator().manual_seed(s) for s in seeds]
        width = pixels + extra_noise
        noise = [torch.rand(particles, width, generator=g, dtype=torch.float64) for g in self.gens]
        self.noise = torch.cat([rows[:, :pixels] for rows in noise])
        self.extra_noise = torch.cat([rows[:, pixels:] for rows in noise])
        self.compiled = supports(model)
        self.state: Steps = (RowKernel.steps if self.compiled else incremental)(model, self.labels, batch)
        self.out = torch.zeros(batch, pixels, dtype=torch.long)
        self.log_weight = torch.zeros(self.n, particles, dtype=torch.float64)  # natural log
        self.bits = torch.zeros(batch, dtype=torch.float64)

    def own_ops(self) -> AbstractContextManager[None]:
        """Where the caller's pixel loop runs: with the compiled loops, its torch ops on one
        thread (the loops split the batch between as many threads as the caller had when it
        made this group; ``model.inference.threads`` says why); else on the caller's threads."""
        return one_thread() if self.compiled else nullcontext()

    def record(self, d: int, values: torch.Tensor, log_probs: torch.Tensor) -> None:
        """Dimension ``d`` takes ``values`` ``(n*K,)``; ``log_probs`` ``(n*K, levels)`` at
        temperature 1."""
        t, colour = divmod(d, self.colours)
        i, j = divmod(t, self.state.size)
        self.bits -= log_probs.gather(1, values.view(-1, 1)).squeeze(1) / LN2
        self.out[:, d] = values
        self.state.write(i, j, values, colour)  # input for the next colours and pixels

    def images(self, rows: torch.Tensor) -> torch.Tensor:
        """``out`` rows ``(m, D)`` -> images ``(m, C, H, W)`` uint8."""
        size = self.state.size
        return rows.view(-1, size, size, self.colours).permute(0, 3, 1, 2).to(torch.uint8)

    def resample(self) -> torch.Tensor | None:
        """Resample the groups whose effective sample size is below K/2.

        Returns the ancestor of every row ``(n*K,)`` (so the caller can carry its own
        per-particle state along), or None when no group was resampled.
        """
        if self.k == 1:
            return None
        n, k = self.n, self.k
        normalised = torch.softmax(self.log_weight, dim=1)
        ess = 1.0 / (normalised**2).sum(1)
        groups = (ess < k / 2).nonzero().flatten().tolist()
        if not groups:
            return None
        index = torch.arange(n * k)
        for c in groups:
            u = float(torch.rand(1, generator=self.gens[c], dtype=torch.float64))
            index[c * k : (c + 1) * k] = c * k + systematic(normalised[c], u)
            self.log_weight[c] = 0.0
        self.state.select(index)
        # The noise stays with its slot, so duplicated particles diverge again.
        self.out, self.bits = self.out[index], self.bits[index]
        if self.labels is not None:
            self.labels = self.labels[index]  # a particle keeps its label
        return index

    def leading(self) -> torch.Tensor:
        """The particle of highest weight of each result so far: ``(n, C, H, W)`` uint8 (pixels
        not drawn yet are 0, or a completion's known values)."""
        best = self.out.view(self.n, self.k, -1)[torch.arange(self.n), self.log_weight.argmax(1)]
        return self.images(best)

    def pick(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """One particle per result, drawn by its final weight -> images ``(n, C, H, W)`` uint8,
        bits ``(n,)`` float32, labels ``(n,)`` int64 (None for an unconditional model)."""
        n, k = self.n, self.k
        chosen = []
        for c in range(n):
            u = float(torch.rand(1, generator=self.gens[c], dtype=torch.float64))
            cdf = torch.softmax(self.log_weight[c], 0).cumsum(0)
            chosen.append(
                c * k + min(k - 1, int(torch.searchsorted(cdf, torch.tensor([u * float(cdf[-1])]))))
            )
        picked = torch.tensor(chosen)
        images = self.images(self.out[picked])
        labels = None if self.labels is None else self.labels[picked]
        return images, self.bits[picked].float(), labels
