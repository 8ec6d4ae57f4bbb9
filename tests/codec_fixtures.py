"""Reference containers: what the codec wrote for fixed inputs, kept to pin its bytes down.

``python -m tests.codec_fixtures [CASE ...]`` writes ``tests/fixtures/codec/<case>.bin``.
They were made by the encoder as it was before it was rewritten for speed (issue 18), at
commit 518d4b6, so ``tests/test_codec_fixtures.py`` checks that today's encoder writes exactly
these bytes and that they still decode. Rewrite them only when the weights of a case change
(the shipped weights, or how a small seeded model is built), with that same encoder (check out
518d4b6 with the new weights and this file beside it), never to make an encoder change pass.

Inputs are fixed: Fashion-MNIST test images by index for the shipped weights, seeded noise for
small seeded models (``tests.conftest.random_model``).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from model.checkpoint import load
from model.data import load_fashion_mnist
from model.network.pixelcnn import PixelCNN
from tests.conftest import SHIPPED_WEIGHTS, random_model

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "codec"


@dataclass(frozen=True)
class Case:
    model: str  # "shipped", or "<arch>-<conditional|unconditional>" for a small seeded model
    first: int  # test images first .. first + count - 1, or the seed of the noise
    count: int
    labels: int | tuple[int, ...] | None = None  # None: the codec picks each image's label


CASES = {
    "shipped-image-0": Case("shipped", 0, 1),
    "shipped-image-1": Case("shipped", 1, 1),
    "shipped-image-2": Case("shipped", 2, 1),
    "shipped-images-0-63": Case("shipped", 0, 64),
    "shipped-images-100-139": Case("shipped", 100, 40),  # a full coder batch and 8 more
    "shipped-given-labels": Case("shipped", 64, 4, (0, 3, 9, 3)),
    "shipped-one-given-label": Case("shipped", 68, 1, 7),
    "gated-conditional-noise-1": Case("gated-conditional", 1, 1),
    "gated-conditional-noise-40": Case("gated-conditional", 40, 40),
    "gated-unconditional-noise-5": Case("gated-unconditional", 5, 5),
    "pixelcnn-conditional-noise-3": Case("pixelcnn-conditional", 3, 3),
    "gated-attention-conditional-noise-3": Case("gated-attention-conditional", 3, 3),
}


def case_model(name: str) -> PixelCNN:
    if name == "shipped":
        return load(SHIPPED_WEIGHTS)
    arch, kind = name.rsplit("-", 1)
    classes = 10 if kind == "conditional" else None
    return random_model(arch, classes, size=8, channels=8, layers=2, seed=4)


def case_images(case: Case, model: PixelCNN) -> torch.Tensor:
    """The case's input, model values ``(count, 1, H, W)`` uint8."""
    if case.model == "shipped":
        return load_fashion_mnist("test").images[case.first : case.first + case.count]
    cfg = model.config
    shape = (case.count, 1, cfg.image_size, cfg.image_size)
    generator = torch.Generator().manual_seed(case.first)
    return torch.randint(0, cfg.levels, shape, generator=generator).to(torch.uint8)


def main(names: list[str]) -> None:
    """Write the fixtures of ``names`` (all cases if none)."""
    from model.codec import compress

    FIXTURES.mkdir(parents=True, exist_ok=True)
    models: dict[str, PixelCNN] = {}
    for name in names or CASES:
        case = CASES[name]
        model = models.setdefault(case.model, case_model(case.model))
        data = compress(model, case_images(case, model), case.labels)
        (FIXTURES / f"{name}.bin").write_bytes(data)
        print(f"{name}: {len(data)} bytes")


if __name__ == "__main__":
    main(sys.argv[1:])
