"""The network: causality of both architectures, the gated model's lack of a blind spot,
conditioning, shapes and config checks."""

from __future__ import annotations

import pytest
import torch

from model.network.layers import causal_mask
from model.network.pixelcnn import PixelCNN, PixelCNNConfig
from tests.conftest import random_model

SIZE = 10


def input_gradient(model: PixelCNN, x: torch.Tensor, p: int, labels: torch.Tensor | None) -> torch.Tensor:
    """|d logits[p] / d input| summed over channels: ``(H * W,)``."""
    model = model.double()
    encoded = model.encode_input(x).double().requires_grad_(True)
    original = model.encode_input
    model.encode_input = lambda _x: encoded  # type: ignore[method-assign]
    try:
        out = model(x, labels)
    finally:
        model.encode_input = original  # type: ignore[method-assign]
    i, j = divmod(p, SIZE)
    out[0, :, i, j].sum().backward()
    assert encoded.grad is not None
    return encoded.grad[0].abs().sum(0).flatten()


@pytest.mark.parametrize("arch", ["gated", "pixelcnn", "gated-attention"])
def test_logits_never_depend_on_the_pixel_itself_or_later_pixels(arch: str) -> None:
    model = random_model(arch, size=SIZE)
    x = torch.randint(0, 16, (1, 1, SIZE, SIZE), generator=torch.Generator().manual_seed(1))
    for p in range(0, SIZE * SIZE, 3):
        grad = input_gradient(model, x, p, torch.tensor([4]))
        assert torch.all(grad[p:] == 0), f"pixel {p} sees itself or a later pixel"
        if p % SIZE > 0:
            assert grad[p - 1] != 0, "the pixel to the left must be visible"


def test_gated_model_has_no_blind_spot() -> None:
    # 3 layers of 3x3 after a 7x7 stem: every earlier pixel within 3 rows up and 6 columns
    # either side (and the whole row to the left within reach) must influence the logits.
    model = random_model("gated", size=SIZE, layers=3)
    x = torch.randint(0, 16, (1, 1, SIZE, SIZE), generator=torch.Generator().manual_seed(2))
    i, j = 6, 4
    grad = input_gradient(model, x, i * SIZE + j, torch.tensor([1])).view(SIZE, SIZE)
    for r in range(i - 3, i):
        for c in range(max(0, j - 6), min(SIZE, j + 7)):
            assert grad[r, c] != 0, f"pixel ({r}, {c}) above ({i}, {j}) is in a blind spot"
    for c in range(max(0, j - 6), j):
        assert grad[i, c] != 0, f"pixel ({i}, {c}) to the left is not seen"


def test_classic_pixelcnn_has_its_known_blind_spot() -> None:
    # The masked stack cannot see pixels above-right outside its growing triangle: with a 7x7
    # stem and no further layers reaching up, (i-1, j+4) is invisible to (i, j).
    model = random_model("pixelcnn", size=SIZE, layers=1)
    x = torch.randint(0, 16, (1, 1, SIZE, SIZE), generator=torch.Generator().manual_seed(3))
    i, j = 5, 2
    grad = input_gradient(model, x, i * SIZE + j, torch.tensor([1])).view(SIZE, SIZE)
    assert grad[i - 1, j + 3] != 0
    assert grad[i - 1, j + 5] == 0


@pytest.mark.parametrize("arch", ["gated", "pixelcnn", "gated-attention"])
def test_labels_change_the_output_only_of_a_conditional_model(arch: str) -> None:
    x = torch.randint(0, 16, (2, 1, SIZE, SIZE))
    conditional = random_model(arch, 10, size=SIZE)
    a = conditional(x, torch.tensor([0, 0]))
    b = conditional(x, torch.tensor([5, 5]))
    assert not torch.allclose(a, b)
    unconditional = random_model(arch, None, size=SIZE)
    assert torch.equal(unconditional(x, torch.tensor([0, 0])), unconditional(x, None))


def test_forward_shapes_and_checks() -> None:
    model = random_model("gated", size=SIZE)
    out = model(torch.zeros(3, 1, SIZE, SIZE, dtype=torch.long), torch.tensor([0, 1, 2]))
    assert out.shape == (3, 16, SIZE, SIZE)
    with pytest.raises(ValueError, match="class-conditional"):
        model(torch.zeros(1, 1, SIZE, SIZE, dtype=torch.long))
    with pytest.raises(ValueError, match=r"labels must be in 0\.\.9"):
        model(torch.zeros(1, 1, SIZE, SIZE, dtype=torch.long), torch.tensor([10]))
    with pytest.raises(ValueError, match="shape"):
        model(torch.zeros(1, 3, SIZE, SIZE, dtype=torch.long), torch.tensor([0]))


def test_config_rejects_bad_values_and_round_trips_as_json() -> None:
    config = PixelCNNConfig(arch="pixelcnn", channels=8, layers=2, levels=4, num_classes=None)
    assert PixelCNNConfig.from_json(config.to_json()) == config
    assert PixelCNN(config).config is not None
    for bad in ({"arch": "transformer"}, {"levels": 1}, {"levels": 300}, {"kernel_size": 4}, {"channels": 0}):
        with pytest.raises(ValueError):
            PixelCNNConfig(**bad)  # type: ignore[arg-type]


def test_masks_of_type_a_and_b() -> None:
    a, b = causal_mask(3, "A"), causal_mask(3, "B")
    assert a.tolist() == [[1, 1, 1], [1, 0, 0], [0, 0, 0]]
    assert b.tolist() == [[1, 1, 1], [1, 1, 0], [0, 0, 0]]


def test_gated_attention_sees_exactly_every_earlier_pixel() -> None:
    # Full context: the logits at p depend on every pixel before p in raster order, however
    # far, and on nothing else; checked at the last pixel and a few others.
    model = random_model("gated-attention", size=SIZE, layers=3, attention_every=1)
    x = torch.randint(0, 16, (1, 1, SIZE, SIZE), generator=torch.Generator().manual_seed(5))
    for p in (SIZE * SIZE - 1, SIZE * SIZE // 2 + 3, SIZE, 1):
        grad = input_gradient(model, x, p, torch.tensor([2]))
        seen = set(torch.nonzero(grad).flatten().tolist())
        assert seen == set(range(p)), f"pixel {p} sees {sorted(set(range(p)) ^ seen)} wrongly"


def test_attention_placement_follows_the_config() -> None:
    config = PixelCNNConfig(arch="gated-attention", layers=12, attention_every=4)
    assert config.attention_after == (3, 7)
    assert PixelCNNConfig(arch="gated", layers=12).attention_after == ()
    with pytest.raises(ValueError, match="attention_every"):
        PixelCNNConfig(arch="gated-attention", layers=4, attention_every=4)
    with pytest.raises(ValueError, match="attention_heads"):
        PixelCNNConfig(arch="gated-attention", channels=64, attention_heads=3)
