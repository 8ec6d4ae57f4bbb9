"""Each image's label, for a conditional model: the fewest-bits one, or a classifier's guess.

The labels are written into the data, so the decoder does not care how they were chosen; but
for a given input the encoder's bytes depend on the rule. Two rules:

``guessed_labels``: a small classifier's most likely class (``model.network.classifier``):
next to no work, and for most images the fewest-bits label too (it costs the others a few
bits each).

``best_labels``, the exact rule (the codec's default without a classifier): per image, the
label ``y`` with the least ``total_bits`` of ``log_likelihood(model, chunk, y)`` in float32
on one torch thread, the images taken in chunks of ``BATCH`` from the first, ties to the
lower label.

That is a forward pass per label and chunk: for ten classes, ten times the arithmetic of
coding the pixels, and most of an encoder's time. The passes do not depend on each other, so
``best_labels`` runs them side by side on the caller's threads (``model.codec.threads``),
each still on one torch thread: the same ops on the same shapes, so the same totals to the
last bit as one after another, and the same labels. Several torch threads per pass would be
simpler but not exact (and on this project's 2-core CPU they were slower, not faster).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch

from model.codec.container import BATCH, CodecError
from model.codec.threads import side_by_side
from model.inference.likelihood import log_likelihood
from model.inference.threads import one_thread
from model.network.classifier import Classifier, classifier_misfit, guess_labels
from model.network.pixelcnn import PixelCNN


@torch.no_grad()
def rule_bits(model: PixelCNN, chunk: torch.Tensor, label: int) -> torch.Tensor:
    """The rule's totals ``(n,)`` for one of its chunks ``(n, K, H, W)`` under ``label``.

    Call on one torch thread (``one_thread``, or a ``side_by_side`` task): that is part of
    the rule.
    """
    return log_likelihood(model, chunk.long(), torch.full((len(chunk),), label)).total_bits


def best_labels(model: PixelCNN, images: torch.Tensor) -> torch.Tensor:
    """Per image, the rule's label (fewest bits): ``(N, K, H, W)`` -> ``(N,)`` int64.

    Uses the caller's torch threads (``torch.get_num_threads()``), one pass on each.
    """
    n, k = len(images), model.config.num_classes
    if not n or not k or k == 1:
        return torch.zeros(n, dtype=torch.long)
    workers = torch.get_num_threads()
    chunks = images.split(BATCH)
    passes = [partial(rule_bits, model, chunk, y) for y in range(k) for chunk in chunks]
    with one_thread():
        bits = list(side_by_side(passes, workers))
    totals = torch.stack([torch.cat(bits[y * len(chunks) : (y + 1) * len(chunks)]) for y in range(k)], 1)
    return totals.argmin(dim=1)  # the first least: ties to the lower label


def guessed_labels(model: PixelCNN, classifier: Classifier, images: torch.Tensor) -> torch.Tensor:
    """Per image, ``classifier``'s most likely class: ``(N, 1, H, W)`` -> ``(N,)`` int64
    (a ``CodecError`` when the classifier does not fit the model, see ``classifier_misfit``)."""
    misfit = classifier_misfit(model, classifier)
    if misfit:
        raise CodecError(misfit)
    return guess_labels(classifier, images.to(torch.uint8))


def chosen_labels(
    model: PixelCNN,
    images: torch.Tensor,
    labels: int | Sequence[int] | torch.Tensor | None,
    classifier: Classifier | None,
) -> torch.Tensor | None:
    """The labels to code: ``labels`` checked (one, or one per image), else ``classifier``'s
    guesses, else the fewest-bits ones; None for an unconditional model. Bad labels raise
    ``CodecError``."""
    k, n = model.config.num_classes, len(images)
    if k is None:
        if labels is not None:
            raise CodecError("this model is unconditional: it takes no labels")
        return None
    if labels is None:
        return best_labels(model, images) if classifier is None else guessed_labels(model, classifier, images)
    try:
        out = torch.as_tensor(labels).reshape(-1)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise CodecError("labels must be integers: one, or one per image") from exc
    if out.is_floating_point() or out.is_complex() or out.dtype == torch.bool:
        raise CodecError("labels must be integers: one, or one per image")
    out = out.long().expand(n) if out.numel() == 1 else out.long()
    if out.shape != (n,):
        raise CodecError(f"got {out.numel()} labels for {n} images: pass one, or one per image")
    if n and (int(out.min()) < 0 or int(out.max()) >= k):
        raise CodecError(f"labels must be in 0..{k - 1}")
    return out.contiguous()
